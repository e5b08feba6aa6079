r"""Iterative solvers of the preference game, as :class:`prefsim.Algorithm`\ s.

Every factory returns ``Algorithm(init, step)`` over the problem pytree
:class:`prefsim.games.Game` ``(P, ref, tau)``; ``ref`` (:math:`\mu`) is both
the KL anchor and the starting policy :math:`\pi_0`. Policies are kept as
log-probabilities and every update is a ``log_softmax`` of a sum of logs, so
no iterate under- or overflows however peaked it gets.

Write :math:`v(\pi) = (P - \tfrac12)\pi` for the advantage of each response
against a draw from :math:`\pi` (it is :math:`P\pi - \tfrac12`; the constant
cancels in every normalisation) and

.. math:: \mathrm{MD}_\eta(\pi, g) \propto
          \pi^{1-\eta\tau}\,\mu^{\eta\tau}\,e^{\eta g}

for one step of KL-regularised (magnetic) mirror descent from :math:`\pi`
along the payoff vector :math:`g`; at :math:`\tau = 0` it is the Hedge step
:math:`\pi e^{\eta g}`. The geometric mixture needs :math:`\eta\tau \le 1`
(the papers' setting); with :math:`\eta\tau > 1` the exponent of :math:`\pi`
is negative and the iteration is not a mirror step any more (not checked:
``tau`` lives in the problem, which may be traced).

=======================  =====================================================
solver                   update (:math:`\pi_{t+1}` from :math:`\pi_t`)
=======================  =====================================================
:func:`mwu`              :math:`\pi_t e^{\eta v(\pi_t)}` (ignores ``tau``)
:func:`omd`              :math:`\mathrm{MD}_\eta(\pi_t, v(\pi_t))`
:func:`nash_md`          :math:`\pi^\mu_t e^{\eta v(\pi^\mu_t)}`,
                         :math:`\pi^\mu_t \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}`
:func:`extragradient`    :math:`\mathrm{MD}_\eta(\pi_t, v(\pi_{t+1/2}))`,
                         :math:`\pi_{t+1/2} = \mathrm{MD}_\eta(\pi_t, v(\pi_t))`
:func:`optimistic_mwu`   :math:`\mathrm{MD}_\eta(\pi_t, 2v(\pi_t) - v(\pi_{t-1}))`
:func:`spo`              :math:`\mathrm{MD}_\eta(\pi_t, v(\hat\pi_t))`,
                         :math:`\hat\pi_t` the empirical law of ``n_samples``
                         draws from :math:`\pi_t`
:func:`fictitious_play`  :math:`\mathrm{BR}(\bar\pi_t)`
=======================  =====================================================

Each step's ``info`` is a dict with exactly

- ``"policy"``: the iterate :math:`\pi_{t+1}`, ``[K]``;
- ``"average_policy"``: :math:`\bar\pi_{t+1} = \frac1{t+2}\sum_{s=0}^{t+1}\pi_s`,
  the uniform average of every iterate so far *including*
  :math:`\pi_0 = \mu`, ``[K]`` (for fictitious play this is its own average);
- ``"gap"`` and ``"average_gap"``: :func:`prefsim.games.core.gap` of each
  (the duality gap of the KL game when ``tau > 0``, the exploitability
  :math:`\max_j (P\pi)_j - \tfrac12` when ``tau = 0``), scalars.

The state is a :class:`SolverState` (:class:`OptimisticState` for
optimistic MWU) with ``policy`` and ``average_policy``. Everything is pure,
so ``prefsim.sweep(key, alg, games, T, S, problem_axis=0)`` runs a batch of
games (a :class:`~prefsim.games.Game` whose leaves carry a leading axis) at
once.

References:
  Munos et al. Nash Learning from Human Feedback. ICML 2024,
  arXiv:2312.00886 (Nash-MD; the regularised game).
  Zhou, Fazel, Du. Extragradient Preference Optimization (EGPO): Beyond
  Last-Iterate Convergence for Nash Learning from Human Feedback. 2025,
  arXiv:2503.08942 (extragradient; online mirror descent / online IPO).
  Swamy et al. A Minimaximalist Approach to Reinforcement Learning from
  Human Feedback. ICML 2024, arXiv:2401.04056 (SPO).
  Freund, Schapire. Adaptive game playing using multiplicative weights.
  Games and Economic Behavior 1999 (MWU / Hedge in games).
  Rakhlin, Sridharan. Optimization, learning, and games with predictable
  sequences. NeurIPS 2013 (optimistic mirror descent).
  Brown 1951; Robinson 1951 (fictitious play).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim.games import core
from prefsim.run import Algorithm

__all__ = [
    "OptimisticState",
    "SolverState",
    "extragradient",
    "fictitious_play",
    "mwu",
    "nash_md",
    "omd",
    "optimistic_mwu",
    "spo",
]


class SolverState(NamedTuple):
  """The state of a game solver after ``t`` steps.

  Attributes:
    log_policy: ``[K]`` :math:`\\log\\pi_t` (``-inf`` off the support, e.g.
      fictitious play's pure best responses at ``tau = 0``).
    average_policy: ``[K]`` the average of :math:`\\pi_0, \\dots, \\pi_t`.
    n_iterates: ``[]`` how many iterates the average holds, ``t + 1``.
  """

  log_policy: jax.Array
  average_policy: jax.Array
  n_iterates: jax.Array

  @property
  def policy(self) -> jax.Array:
    """``[K]`` the iterate :math:`\\pi_t`."""
    return jnp.exp(self.log_policy)


class OptimisticState(NamedTuple):
  """:class:`SolverState` plus the previous advantage, for optimistic MWU.

  Attributes:
    log_policy: ``[K]`` :math:`\\log\\pi_t`.
    average_policy: ``[K]`` the average of :math:`\\pi_0, \\dots, \\pi_t`.
    n_iterates: ``[]`` ``t + 1``.
    previous_advantage: ``[K]`` :math:`v(\\pi_{t-1})` (:math:`v(\\pi_0)`
      before the first step).
  """

  log_policy: jax.Array
  average_policy: jax.Array
  n_iterates: jax.Array
  previous_advantage: jax.Array

  @property
  def policy(self) -> jax.Array:
    """``[K]`` the iterate :math:`\\pi_t`."""
    return jnp.exp(self.log_policy)


def _check_eta(eta) -> float:
  if isinstance(eta, bool) or not isinstance(eta, (int, float, np.floating,
                                                   np.integer)):
    raise TypeError(f"eta must be a Python float (a static step size), got "
                    f"{type(eta).__name__}")
  if not np.isfinite(eta) or eta <= 0:
    raise ValueError(f"eta must be a finite step size > 0, got {eta}")
  return float(eta)


def _checked(game: core.Game) -> core.Game:
  """``game`` as arrays after :func:`core.check_game` (static checks only
  inside ``jit``; the values too when called eagerly)."""
  if not isinstance(game, tuple) or len(game) != 3:
    raise TypeError("the problem must be a prefsim.games.Game(P, ref, tau), "
                    f"got {type(game).__name__}")
  P, ref, tau = game
  core.check_game(P, ref, tau)
  if np.ndim(P) != 2 or np.ndim(ref) != 1 or np.ndim(tau) != 0:
    raise ValueError(
        "a solver steps one game: P [K, K], ref [K], tau [] (batch games "
        "with prefsim.sweep(..., problem_axis=0)); got shapes "
        f"{np.shape(P)}, {np.shape(ref)}, {np.shape(tau)}")
  P, ref = jnp.asarray(P), jnp.asarray(ref)
  return core.Game(P, ref, jnp.asarray(tau, P.dtype))


def _mirror(log_pi, game, eta, g):
  r"""``log MD_eta(pi, g)``: log of :math:`\pi^{1-\eta\tau}\mu^{\eta\tau}e^{\eta g}`,
  normalised (written around :math:`\log\mu` so that entries outside
  :math:`\mu`'s support stay ``-inf`` without ``0 * inf``)."""
  log_ref = jnp.log(game.ref)
  d = jnp.where(jnp.isfinite(log_ref), log_pi - log_ref, 0.0)
  return jax.nn.log_softmax(log_ref + (1.0 - eta * game.tau) * d + eta * g)


def _advantage(game, log_pi):
  """``v(pi) = (P - 1/2) pi``, exact near zero (see core)."""
  return core.advantages(game.P, jnp.exp(log_pi))


def _advance(state, log_policy, game, **extra):
  """The next state (the average updated) and the step's info."""
  policy = jnp.exp(log_policy)
  n = state.n_iterates + 1
  average = state.average_policy + (policy - state.average_policy) / n
  new = type(state)(log_policy, average, n, **extra)
  info = {"policy": policy, "average_policy": average,
          "gap": core.gap(game, policy), "average_gap": core.gap(game, average)}
  return new, info


def _init(key, game) -> SolverState:
  del key
  game = _checked(game)
  return SolverState(jnp.log(game.ref), game.ref,
                     jnp.ones((), game.ref.dtype))


def _deterministic(update: Callable) -> Algorithm:
  """An Algorithm whose step is ``log pi_{t+1} = update(log pi_t, game)``."""

  def step(key, state, game):
    del key
    game = _checked(game)
    return _advance(state, update(state.log_policy, game), game)

  return Algorithm(_init, step)


def mwu(eta: float) -> Algorithm:
  r"""Multiplicative weights (Hedge) in self-play, the unregularised dynamics.

  .. math:: \pi_{t+1} \propto \pi_t\, e^{\eta (P\pi_t)}

  The learner plays :math:`\pi_t` against itself and updates on the payoff
  vector :math:`P\pi_t`. ``tau`` is *ignored* by the update (the gap is still
  measured on the game, so with ``tau > 0`` it reports how far the
  unregularised dynamics are from the regularised equilibrium). At
  ``tau = 0`` the exploitability of the average of :math:`\pi_0..\pi_T` is
  the average regret, at most
  :math:`\ln(1/\min_j\mu_j)/(\eta (T+1)) + \eta/8` (Hedge's regret bound,
  Freund and Schapire 1999), i.e. :math:`O(1/\sqrt T)` with
  :math:`\eta \propto 1/\sqrt T`; the last iterate does not converge: on
  rock-paper-scissors it spirals away from the uniform equilibrium.

  Args:
    eta: step size, ``> 0`` (static).
  Returns:
    ``Algorithm(init, step)`` over a :class:`~prefsim.games.Game`; state
    :class:`SolverState`; info as in the module docstring.
  Raises:
    ValueError: ``eta <= 0`` (the message names ``eta``); at ``init``, a
      game of the wrong shapes (and, eagerly, values) via
      :func:`prefsim.games.core.check_game`.
  Tests:
    tests/games/test_solvers.py::test_mwu_average_meets_hedge_regret_bound_on_rps,
    tests/games/test_solvers.py::test_mwu_last_iterate_cycles_on_rps.
  """
  eta = _check_eta(eta)
  return _deterministic(
      lambda log_pi, game: jax.nn.log_softmax(
          log_pi + eta * _advantage(game, log_pi)))


def omd(eta: float) -> Algorithm:
  r"""Online mirror descent on the KL-regularised game (online IPO, INPO's target).

  .. math:: \pi_{t+1} \propto \pi_t^{1-\eta\tau}\,\mu^{\eta\tau}\,
            e^{\eta (P\pi_t)}

  the maximiser of :math:`\eta[\pi^\top P\pi_t - \tau\mathrm{KL}(\pi\|\mu)]
  - (1 - \eta\tau)\mathrm{KL}(\pi\|\pi_t)` (magnetic mirror descent). Its
  fixed point is the regularised Nash equilibrium
  :math:`\pi^*_\tau \propto \mu e^{P\pi^*_\tau/\tau}`; for ``tau > 0`` and a
  small enough step the last iterate converges to it linearly. It is the
  tabular step that one SGD step on EGPO's online IPO loss takes, and the
  minimiser of INPO's loss (:mod:`prefsim.games.losses`).

  Args:
    eta: step size, ``> 0``, with ``eta * tau <= 1`` (static).
  Returns:
    ``Algorithm(init, step)``; state :class:`SolverState`.
  Raises:
    ValueError: ``eta <= 0``; a bad game at ``init``.
  References:
    Zhou, Fazel, Du 2025, arXiv:2503.08942 (online mirror descent / online
    IPO); Zhang et al. 2024, Iterative Nash Policy Optimization (INPO).
  Tests:
    tests/games/test_solvers.py::test_omd_and_extragradient_last_iterate_converge_linearly.
  """
  eta = _check_eta(eta)
  return _deterministic(
      lambda log_pi, game: _mirror(log_pi, game, eta,
                                   _advantage(game, log_pi)))


def nash_md(eta: float) -> Algorithm:
  r"""Nash-MD (Munos et al. 2023): a mirror step against a regularised opponent.

  .. math:: \pi^\mu_t \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}, \qquad
            \pi_{t+1} \propto \pi^\mu_t\, e^{\eta (P\pi^\mu_t)}

  i.e. :math:`\pi_{t+1} = \arg\max_\pi \eta\,\pi^\top P\pi^\mu_t -
  \mathrm{KL}(\pi\|\pi^\mu_t)`. With a constant step the iteration's fixed
  point is not :math:`\pi^*_\tau` (the payoff is evaluated at
  :math:`\pi^\mu_t`, not at the iterate), so the gap stalls at a level that
  shrinks with ``eta``; the paper's last-iterate rate uses a decreasing step.

  Args:
    eta: step size, ``> 0``, with ``eta * tau <= 1`` (static).
  Returns:
    ``Algorithm(init, step)``; state :class:`SolverState`.
  Raises:
    ValueError: ``eta <= 0``; a bad game at ``init``.
  References:
    Munos et al. Nash Learning from Human Feedback. ICML 2024,
    arXiv:2312.00886, the Nash-MD algorithm.
  Tests:
    tests/games/test_solvers.py::test_nash_md_stalls_at_a_gap_that_shrinks_with_the_step.
  """
  eta = _check_eta(eta)

  def update(log_pi, game):
    log_mix = _mirror(log_pi, game, eta, jnp.zeros_like(log_pi))
    return jax.nn.log_softmax(log_mix + eta * _advantage(game, log_mix))

  return _deterministic(update)


def extragradient(eta: float) -> Algorithm:
  r"""Extragradient (EGPO, Zhou, Fazel, Du 2025) on the KL-regularised game.

  .. math:: \pi_{t+1/2} \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}
            e^{\eta (P\pi_t)}, \qquad
            \pi_{t+1} \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}
            e^{\eta (P\pi_{t+1/2})}

  Both steps start from :math:`\pi_t`; the second uses the payoff at the
  extrapolated :math:`\pi_{t+1/2}`. For ``tau > 0`` the last iterate
  converges linearly to :math:`\pi^*_\tau` (the paper's main result). Two
  matrix-vector products per step.

  Args:
    eta: step size, ``> 0``, with ``eta * tau <= 1`` (static).
  Returns:
    ``Algorithm(init, step)``; state :class:`SolverState`.
  Raises:
    ValueError: ``eta <= 0``; a bad game at ``init``.
  References:
    Zhou, Fazel, Du. Extragradient Preference Optimization (EGPO).
    arXiv:2503.08942, 2025.
  Tests:
    tests/games/test_solvers.py::test_omd_and_extragradient_last_iterate_converge_linearly.
  """
  eta = _check_eta(eta)

  def update(log_pi, game):
    log_half = _mirror(log_pi, game, eta, _advantage(game, log_pi))
    return _mirror(log_pi, game, eta, _advantage(game, log_half))

  return _deterministic(update)


def optimistic_mwu(eta: float) -> Algorithm:
  r"""Optimistic MWU: a mirror step on the extrapolated payoff.

  .. math:: \pi_{t+1} \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}
            e^{\eta (2P\pi_t - P\pi_{t-1})}, \qquad \pi_{-1} := \pi_0

  (at ``tau = 0`` plain optimistic Hedge, whose last iterate converges in
  zero-sum games where MWU's cycles). One matrix-vector product per step;
  the previous one is kept in the state.

  Args:
    eta: step size, ``> 0``, with ``eta * tau <= 1`` (static).
  Returns:
    ``Algorithm(init, step)``; state :class:`OptimisticState`.
  Raises:
    ValueError: ``eta <= 0``; a bad game at ``init``.
  References:
    Rakhlin, Sridharan. Optimization, learning, and games with predictable
    sequences. NeurIPS 2013; Daskalakis, Panageas. Last-iterate convergence:
    zero-sum games and constrained min-max optimization. ITCS 2019.
  Tests:
    tests/games/test_solvers.py::test_optimistic_mwu_last_iterate_converges.
  """
  eta = _check_eta(eta)

  def init(key, game):
    state = _init(key, game)
    game = _checked(game)
    return OptimisticState(*state, _advantage(game, state.log_policy))

  def step(key, state, game):
    del key
    game = _checked(game)
    v = _advantage(game, state.log_policy)
    log_pi = _mirror(state.log_policy, game, eta,
                     2.0 * v - state.previous_advantage)
    return _advance(state, log_pi, game, previous_advantage=v)

  return Algorithm(init, step)


def spo(eta: float, n_samples: int) -> Algorithm:
  r"""Self-play preference optimisation (SPO) from sampled win rates.

  Each step draws :math:`y'_1, \dots, y'_n \sim \pi_t` (``n = n_samples``,
  from the step's key) and gives every response :math:`y` the reward
  :math:`\hat r_t(y) = \frac1n\sum_i P[y, y'_i]`, its expected win rate
  against those samples (``P`` averaged: no Bernoulli noise on the
  outcomes), an unbiased estimate of :math:`(P\pi_t)(y)`. Then the mirror
  step

  .. math:: \pi_{t+1} \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}\,
            e^{\eta \hat r_t}

  (Hedge at ``tau = 0``): the tabular, full-information form of SPO's
  no-regret learner. The average of a no-regret learner in self-play is an
  approximate minimax winner, its exploitability the learner's average
  regret.

  Args:
    eta: step size, ``> 0`` (static).
    n_samples: responses drawn per step, ``>= 1`` (static).
  Returns:
    ``Algorithm(init, step)``; state :class:`SolverState`. Stochastic:
    results depend on the step keys.
  Raises:
    ValueError: ``eta <= 0`` or ``n_samples < 1``; a bad game at ``init``.
    TypeError: ``n_samples`` not an int.
  References:
    Swamy, Dann, Kidambi, Wu, Agarwal. A Minimaximalist Approach to
    Reinforcement Learning from Human Feedback. ICML 2024, arXiv:2401.04056.
  Tests:
    tests/games/test_solvers.py::test_spo_average_approaches_the_condorcet_winner.
  """
  eta = _check_eta(eta)
  n_samples = _checks.check_static_int("n_samples", n_samples)

  def step(key, state, game):
    game = _checked(game)
    k = state.log_policy.shape[-1]
    samples = jax.random.categorical(key, state.log_policy, shape=(n_samples,))
    empirical = jnp.mean(jax.nn.one_hot(samples, k, dtype=game.P.dtype),
                         axis=0)
    rewards = core.advantages(game.P, empirical)
    return _advance(state, _mirror(state.log_policy, game, eta, rewards),
                    game)

  return Algorithm(_init, step)


def fictitious_play() -> Algorithm:
  r"""Fictitious play: best-respond to the average of one's own past play.

  .. math:: \pi_{t+1} = \mathrm{BR}(\bar\pi_t), \qquad
            \bar\pi_{t+1} = \bar\pi_t + \frac{\pi_{t+1} - \bar\pi_t}{t + 2},
            \qquad \bar\pi_0 = \pi_0 = \mu

  with :func:`prefsim.games.core.best_response`: pure (one-hot on the first
  maximiser of :math:`P\bar\pi_t`) at ``tau = 0``, the softmax
  :math:`\mathrm{softmax}(\log\mu + P\bar\pi_t/\tau)` otherwise (smooth
  fictitious play). The average converges to a minimax winner in every
  zero-sum game (Robinson 1951), possibly slowly; the iterates themselves
  need not converge.

  Returns:
    ``Algorithm(init, step)``; state :class:`SolverState` (``log_policy``
    holds ``-inf`` off a pure best response).
  Raises:
    ValueError: a bad game at ``init``.
  References:
    Brown. Iterative solution of games by fictitious play. 1951;
    Robinson. An iterative method of solving a game. Annals of Mathematics
    1951.
  Tests:
    tests/games/test_solvers.py::test_fictitious_play_average_converges_on_rps.
  """

  def step(key, state, game):
    del key
    game = _checked(game)
    log_br = core.log_best_response(
        game.P, state.average_policy, game.ref, game.tau)
    return _advance(state, log_br, game)

  return Algorithm(_init, step)
