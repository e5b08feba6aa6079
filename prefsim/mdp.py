r"""Tabular Markov decision processes: value iteration, shaping, gridworlds.

A :class:`TabularMDP` has ``S`` states and ``A`` actions, transition
probabilities :math:`P(s'|s,a)`, rewards :math:`r(s,a,s')` (or
:math:`r(s,a)`), a discount :math:`\gamma\in[0,1)`, an initial distribution
and a mask of terminal states. Terminal states are absorbing and worth
nothing: every action leaves a terminal state where it is
(:math:`P(s|s,a)=1`, checked by :func:`make_mdp`), rewards collected there
are ignored, and :math:`V^*(s)=Q^*(s,\cdot)=0`. The optimal values solve

.. math:: Q^*(s,a) = [s\notin\mathcal{T}]\sum_{s'} P(s'|s,a)
          \bigl[r(s,a,s') + \gamma V^*(s')\bigr], \qquad
          V^*(s) = \max_a Q^*(s,a).

Every function takes one MDP; ``jax.vmap`` over a stacked :class:`TabularMDP`
batches them (the MDP is a pytree).

Gridworlds (:func:`gridworld`, :func:`delivery`, :func:`random_gridworld`)
number cell ``(i, j)`` of an ``H x W`` grid as state ``i * W + j``; the four
deterministic actions are up, down, left, right (``0..3``); a move off the
grid stays put. Reward is linear in the features of the cell entered:
:math:`r(s,a) = w^\top\phi(\mathrm{next}(s,a))`, and builders return the
per-transition features ``[S, A, F]`` with the MDP, for reward learning.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks

__all__ = [
    "DELIVERY_FEATURES",
    "DELIVERY_WEIGHTS",
    "Gridworld",
    "TabularMDP",
    "bellman_residual",
    "check_mdp",
    "check_policy",
    "delivery",
    "expected_rewards",
    "greedy_policy",
    "gridworld",
    "make_mdp",
    "policy_value",
    "random_gridworld",
    "random_mdp",
    "scaled_return",
    "shape",
    "value_iteration",
]

# Knox et al. (2022), delivery domain: reward features and their weights.
DELIVERY_FEATURES = ("step", "goal", "sheep", "coin", "roadblock", "mud")
DELIVERY_WEIGHTS = (-1.0, 50.0, -50.0, 1.0, -1.0, -2.0)

# Grid moves (row, column) of the actions up, down, left, right.
_MOVES = ((-1, 0), (1, 0), (0, -1), (0, 1))


class TabularMDP(NamedTuple):
  """A tabular MDP (a pytree; build it with :func:`make_mdp`).

  Attributes:
    transitions: :math:`P(s'|s,a)`, shape [S, A, S], rows summing to 1.
    rewards: :math:`r(s,a,s')` shape [S, A, S], or :math:`r(s,a)` [S, A].
    gamma: the discount, a scalar in [0, 1).
    initial: the initial state distribution, shape [S].
    terminal: boolean mask of the absorbing, zero-value states, shape [S].
  """
  transitions: jax.Array
  rewards: jax.Array
  gamma: jax.Array
  initial: jax.Array
  terminal: jax.Array


class Gridworld(NamedTuple):
  """A gridworld MDP with its reward features.

  Attributes:
    mdp: the :class:`TabularMDP`, rewards [S, A] equal to ``features @ w``.
    features: features of each transition (those of the cell entered),
      shape [S, A, F].
  """
  mdp: TabularMDP
  features: jax.Array


def check_mdp(mdp: TabularMDP, *, atol: float = 1e-5) -> tuple[int, int]:
  """Check an MDP's shapes (trace time) and values (eagerly, when concrete).

  Args:
    mdp: the :class:`TabularMDP`.
    atol: tolerance on the row sums of ``transitions`` and ``initial``.

  Returns:
    ``(S, A)``, the numbers of states and actions.

  Raises:
    ValueError: naming the field, when ``transitions`` is not [S, A, S] with
      non-negative rows summing to 1; ``rewards`` is neither [S, A, S] nor
      [S, A]; ``gamma`` is not a scalar in [0, 1); ``initial`` is not a
      distribution over [S]; ``terminal`` is not [S]; or a terminal state
      is not absorbing (:math:`P(s|s,a) \\ne 1`).
    TypeError: ``terminal`` is not boolean.

  Tests:
    tests/test_mdp.py::test_make_mdp_rejects_bad_input
  """
  p, r, gamma, init, term = mdp
  _checks.check_ndim("transitions", p, 3, "P(s'|s,a), [S, A, S]")
  s, a, s2 = np.shape(p)
  if s2 != s or s == 0 or a == 0:
    raise ValueError(f"transitions must have shape [S, A, S] with S, A >= 1, "
                     f"got {np.shape(p)}")
  if np.shape(r) not in ((s, a, s), (s, a)):
    raise ValueError(f"rewards must have shape [S, A, S] = {(s, a, s)} or "
                     f"[S, A] = {(s, a)}, got {np.shape(r)}")
  _checks.check_ndim("gamma", gamma, 0, "a scalar discount")
  _checks.check_in_range("gamma", gamma, 0.0, 1.0, high_open=True)
  if np.shape(init) != (s,):
    raise ValueError(f"initial must have shape [S] = ({s},), got "
                     f"{np.shape(init)}")
  if np.shape(term) != (s,):
    raise ValueError(f"terminal must have shape [S] = ({s},), got "
                     f"{np.shape(term)}")
  if jnp.result_type(term) != jnp.bool_:
    raise TypeError(f"terminal must be a boolean mask, got dtype "
                    f"{jnp.result_type(term)}")
  if _checks.is_concrete(p):
    pn = np.asarray(p, np.float64)
    sums = pn.sum(-1)
    if np.any(pn < 0) or not np.allclose(sums, 1.0, atol=atol):
      worst = np.unravel_index(np.argmax(np.abs(sums - 1)), sums.shape)
      raise ValueError(
          f"transitions must be non-negative with rows summing to 1; row "
          f"(s, a) = {tuple(int(i) for i in worst)} sums to {sums[worst]}"
          f" and the smallest entry is {pn.min()}")
    if _checks.is_concrete(term):
      tn = np.asarray(term)
      stay = pn[tn, :, :][:, :, tn.nonzero()[0]] if tn.any() else None
      if stay is not None and not np.allclose(
          np.einsum("kak->ka", stay), 1.0, atol=atol):
        raise ValueError("transitions must keep terminal states where they "
                         "are (P(s|s,a) = 1 for every terminal s)")
  if _checks.is_concrete(init):
    ini = np.asarray(init, np.float64)
    if np.any(ini < 0) or not np.isclose(ini.sum(), 1.0, atol=atol):
      raise ValueError(f"initial must be a distribution (non-negative, "
                       f"summing to 1), sums to {ini.sum()}")
  return s, a


def make_mdp(transitions: jax.typing.ArrayLike, rewards: jax.typing.ArrayLike,
             gamma: float | jax.typing.ArrayLike,
             initial: jax.typing.ArrayLike | None = None,
             terminal: jax.typing.ArrayLike | None = None) -> TabularMDP:
  """Build a checked :class:`TabularMDP` in the default float dtype.

  Args:
    transitions: :math:`P(s'|s,a)`, shape [S, A, S].
    rewards: :math:`r(s,a,s')` [S, A, S] or :math:`r(s,a)` [S, A].
    gamma: the discount, in [0, 1).
    initial: initial distribution [S]; default uniform over the non-terminal
      states.
    terminal: boolean mask [S] of absorbing zero-value states; default none.

  Returns:
    The :class:`TabularMDP`.

  Raises:
    ValueError, TypeError: as :func:`check_mdp`.

  Tests:
    tests/test_mdp.py::test_make_mdp_rejects_bad_input
  """
  dt = _checks.default_float()
  p = jnp.asarray(transitions, dt)
  _checks.check_ndim("transitions", p, 3, "P(s'|s,a), [S, A, S]")
  s = p.shape[0]
  term = (jnp.zeros((s,), bool) if terminal is None else jnp.asarray(terminal))
  if initial is None:
    live = 1.0 - term.astype(dt)
    initial = live / jnp.maximum(live.sum(), 1.0)
  mdp = TabularMDP(p, jnp.asarray(rewards, dt), jnp.asarray(gamma, dt),
                   jnp.asarray(initial, dt), term)
  check_mdp(mdp)
  return mdp


def expected_rewards(mdp: TabularMDP) -> jax.Array:
  r"""Expected one-step rewards, zero at terminal states.

  .. math:: \bar r(s,a) = [s\notin\mathcal{T}]\sum_{s'}P(s'|s,a)\,r(s,a,s')

  Args:
    mdp: the :class:`TabularMDP`.

  Returns:
    :math:`\bar r`, shape [S, A].
  """
  r = mdp.rewards
  if r.ndim == 3:
    r = jnp.einsum("sat,sat->sa", mdp.transitions, r)
  return jnp.where(mdp.terminal[:, None], 0.0, r)


def _bellman(mdp: TabularMDP, rbar: jax.Array, v: jax.Array) -> jax.Array:
  """Q(s, a) = rbar(s, a) + gamma [s not terminal] sum_s' P(s'|s,a) v(s')."""
  live = jnp.logical_not(mdp.terminal)[:, None]
  return rbar + mdp.gamma * jnp.where(live, mdp.transitions @ v, 0.0)


def value_iteration(mdp: TabularMDP, *, tol: float = 1e-4,
                    max_iter: int = 10_000) -> tuple[jax.Array, jax.Array]:
  r"""Optimal values :math:`V^*` and :math:`Q^*`, to a tolerance.

  Runs value iteration :math:`V_{k+1} = \max_a Q_k`, :math:`Q_k =
  \bar r + \gamma P V_k` (terminal states held at 0) from :math:`V_0 = 0`
  until :math:`\|V_{k+1}-V_k\|_\infty \le \epsilon(1-\gamma)/(2\gamma)`
  with :math:`\epsilon` = ``tol`` (or the float resolution of
  :math:`V`, if larger), so the greedy policy :math:`\pi` is
  ``tol``-optimal (Puterman 1994, Theorem 6.3.1). It then evaluates
  :math:`\pi` exactly (one policy-iteration step),

  .. math:: V = (I - \gamma P_\pi)^{-1} \bar r_\pi, \qquad
            Q = \bar r + \gamma P V,

  so :math:`V^* - \mathrm{tol} \le V \le V^*`, and the Bellman optimality
  residual :math:`\max_s(\max_a Q(s,a) - V(s))` lies in [0, tol].

  Gradients: the loop runs on ``stop_gradient`` inputs and the greedy
  policy is held fixed, so derivatives flow through the linear solve only.
  Where the optimal policy is unique this is the exact derivative of
  :math:`V^*, Q^*` in the rewards (and in ``gamma`` and ``transitions``),
  by the envelope theorem: :math:`\partial V^*/\partial \bar r_\pi =
  (I-\gamma P_\pi)^{-1}`. Reverse and forward mode both work. At ties
  between optimal actions it is the derivative along the tied policy
  chosen by ``argmax`` (a one-sided derivative).

  Jittable and vmappable (a ``lax.while_loop``; under ``vmap`` every MDP
  runs until the slowest has converged).

  Args:
    mdp: the :class:`TabularMDP`.
    tol: the optimality tolerance :math:`\epsilon` of the returned values.
    max_iter: the most value-iteration sweeps.

  Returns:
    ``(V, Q)``: shapes [S] and [S, A]; both zero at terminal states.

  References:
    Puterman, M. L. Markov Decision Processes. Wiley 1994: Theorem 6.3.1
    (stopping rule of value iteration), Section 6.4 (policy iteration).

  Tests:
    tests/test_mdp.py::test_value_iteration_bellman_residual_within_tol,
    tests/test_mdp.py::test_value_iteration_matches_numpy_loop,
    tests/test_mdp.py::test_value_iteration_jit_and_vmap_equal_eager,
    tests/test_mdp.py::test_value_iteration_gradients_match_finite_differences
  """
  check_mdp(mdp)
  return _value_iteration(mdp, tol, max_iter)


@functools.partial(jax.jit, static_argnames=("max_iter",))
def _value_iteration(mdp: TabularMDP, tol: jax.Array,
                     max_iter: int) -> tuple[jax.Array, jax.Array]:
  """`value_iteration` without the checks, compiled once per shape."""
  s = mdp.transitions.shape[0]
  rbar = expected_rewards(mdp)
  frozen = jax.tree_util.tree_map(jax.lax.stop_gradient, mdp)
  rbar0 = jax.lax.stop_gradient(rbar)
  eps = jnp.finfo(rbar0.dtype).eps
  gamma0 = frozen.gamma
  factor = (1.0 - gamma0) / (2.0 * jnp.maximum(gamma0, eps))

  def cond(carry):
    _, it, delta, v = carry
    floor = 8 * eps * jnp.max(jnp.abs(v))
    return (it < max_iter) & (delta > jnp.maximum(tol * factor, floor))

  def body(carry):
    v, it, _, _ = carry
    v_new = _bellman(frozen, rbar0, v).max(-1)
    return v_new, it + 1, jnp.max(jnp.abs(v_new - v)), v_new

  v0 = jnp.zeros((s,), rbar0.dtype)
  v, _, _, _ = jax.lax.while_loop(
      cond, body, (v0, jnp.zeros((), jnp.int32), jnp.asarray(jnp.inf, v0.dtype),
                   v0))
  greedy = jnp.argmax(_bellman(frozen, rbar0, v), -1)
  v = _policy_value(mdp, rbar, jax.nn.one_hot(greedy, rbar.shape[1],
                                              dtype=rbar.dtype))
  return v, _bellman(mdp, rbar, v)


def _policy_value(mdp: TabularMDP, rbar: jax.Array,
                  policy: jax.Array) -> jax.Array:
  """V = (I - gamma P_pi)^-1 r_pi, terminal rows of P_pi zeroed."""
  s = rbar.shape[0]
  live = jnp.logical_not(mdp.terminal)
  p_pi = jnp.einsum("sa,sat->st", policy, mdp.transitions)
  p_pi = jnp.where(live[:, None], p_pi, 0.0)
  r_pi = jnp.sum(policy * rbar, -1)
  return _solve_row_dominant(jnp.eye(s, dtype=rbar.dtype) - mdp.gamma * p_pi,
                             r_pi)


def _solve_row_dominant(a: jax.Array, b: jax.Array) -> jax.Array:
  r"""Solves :math:`Ax = b` for a strictly row-diagonally-dominant ``a``.

  :math:`A = I - \gamma P_\pi` with :math:`P_\pi` row-substochastic and
  :math:`\gamma < 1` has :math:`|A_{ii}| - \sum_{j \ne i} |A_{ij}| \ge
  1 - \gamma > 0`, so Gaussian elimination without pivoting never meets a
  zero pivot and its growth factor is at most 2 (Wilkinson 1961). Written
  in JAX (a ``fori_loop`` of rank-one updates, then back substitution)
  rather than ``jnp.linalg.solve``: under ``vmap`` the latter calls
  jaxlib's batched LAPACK kernels, which deadlocked XLA:CPU's two-thread
  pool when one computation held several of them
  (docs/regret_vs_partial_return.md, Notes). Differentiable (the loops have
  fixed trip counts).
  """
  n = a.shape[-1]
  rows = jnp.arange(n)
  ab = jnp.concatenate([a, b[:, None]], axis=1)                 # [n, n+1]

  def eliminate(k, ab):
    factors = jnp.where(rows > k, ab[:, k] / ab[k, k], 0.0)
    return ab - factors[:, None] * ab[k][None, :]

  ab = jax.lax.fori_loop(0, n, eliminate, ab)

  def substitute(i, x):
    k = n - 1 - i                     # x[j] = 0 for j <= k until set
    return x.at[k].set((ab[k, n] - jnp.dot(ab[k, :n], x)) / ab[k, k])

  return jax.lax.fori_loop(0, n, substitute, jnp.zeros_like(b))


def check_policy(policy: jax.typing.ArrayLike, s: int, a: int) -> None:
  """Checks a stochastic policy ``[S, A]``: its shape at trace time, entries
  in [0, 1] and rows summing to 1 where it is concrete.

  Raises:
    ValueError: naming ``policy`` and what is wrong.
  """
  if np.shape(policy) != (s, a):
    raise ValueError(f"policy must have shape [S, A] = {(s, a)}, got "
                     f"{np.shape(policy)}")
  _checks.check_in_range("policy", policy, 0.0, 1.0)
  if _checks.is_concrete(policy) and not np.allclose(
      np.sum(policy, -1), 1.0, atol=1e-5):
    raise ValueError("policy rows must sum to 1 (each row a distribution "
                     "over the A actions)")


def policy_value(mdp: TabularMDP, policy: jax.typing.ArrayLike) -> jax.Array:
  r"""Exact state values :math:`V^\pi` of a stochastic policy.

  .. math:: V^\pi = (I - \gamma P_\pi)^{-1}\,\bar r_\pi, \qquad
            P_\pi(s'|s) = [s\notin\mathcal{T}]\sum_a \pi(a|s) P(s'|s,a),
            \quad \bar r_\pi(s) = \sum_a \pi(a|s)\,\bar r(s,a),

  the solution of the Bellman expectation equation (zero at terminal
  states). Jittable, vmappable and differentiable (one linear solve).

  Args:
    mdp: the :class:`TabularMDP`.
    policy: :math:`\pi(a|s)`, shape [S, A], rows summing to 1.

  Returns:
    :math:`V^\pi`, shape [S].

  Raises:
    ValueError: ``policy`` is not [S, A], or (when concrete) its rows are
      not distributions; or as :func:`check_mdp`. Under ``jit`` values are
      not checked: rows that do not sum to 1 give the values of the
      unnormalised weights.

  References:
    Puterman, M. L. Markov Decision Processes. Wiley 1994: Theorem 6.1.1
    (policy evaluation as a linear system).

  Tests:
    tests/test_mdp.py::test_policy_value_solves_the_bellman_expectation_equation
  """
  s, a = check_mdp(mdp)
  check_policy(policy, s, a)
  rbar = expected_rewards(mdp)
  return _policy_value(mdp, rbar, jnp.asarray(policy, rbar.dtype))


def greedy_policy(q: jax.typing.ArrayLike, *, atol: float = 0.0) -> jax.Array:
  r"""The greedy policy of action values, uniform over tied actions.

  .. math:: \pi(a|s) = \frac{[q(s,a) \ge \max_b q(s,b) - \mathrm{atol}]}
            {\#\{b : q(s,b) \ge \max_{b'} q(s,b') - \mathrm{atol}\}}.

  Spreading over ties (rather than ``argmax``'s first index) makes a
  constant ``q``, e.g. the values of an all-zero learned reward, give the
  uniform random policy.

  Args:
    q: action values, shape [..., A] (e.g. :math:`Q^*` [S, A]).
    atol: actions within ``atol`` of the best count as tied (>= 0).

  Returns:
    :math:`\pi`, shape [..., A], rows summing to 1.

  Raises:
    ValueError: ``q`` has no action axis, or ``atol < 0``.

  Tests:
    tests/test_mdp.py::test_greedy_policy_spreads_over_ties
  """
  if np.ndim(q) < 1:
    raise ValueError(f"q must have an action axis [..., A], got shape "
                     f"{np.shape(q)}")
  _checks.check_nonnegative("atol", atol)
  q = jnp.asarray(q)
  best = q >= q.max(-1, keepdims=True) - atol
  best = best.astype(_checks.default_float() if not jnp.issubdtype(
      q.dtype, jnp.floating) else q.dtype)
  return best / best.sum(-1, keepdims=True)


def scaled_return(mdp: TabularMDP, policy: jax.typing.ArrayLike, *,
                  tol: float = 1e-4) -> jax.Array:
  r"""Mean scaled return: 1 for an optimal policy, 0 for uniform random.

  With :math:`J(\pi) = \sum_s \rho_0(s) V^\pi(s)` the expected return
  from the initial distribution :math:`\rho_0` (``mdp.initial``),

  .. math:: \mathrm{scaled}(\pi) = \frac{J(\pi) - J(\pi_U)}
            {J(\pi^*) - J(\pi_U)},

  with :math:`\pi_U` the uniform random policy and :math:`J(\pi^*)` from
  :func:`value_iteration` at ``tol`` (so an optimal policy scores 1 up to
  ``tol / (J(\pi^*) - J(\pi_U))``, possibly slightly above 1). Below 0:
  worse than acting at random. Knox et al. (2022) call a policy
  near-optimal when this exceeds 0.9. The expected return is normalised
  as a whole (a ratio of means over start states, not a mean of per-state
  ratios, which would be undefined where :math:`V^*(s) = V^{\pi_U}(s)`).
  Jittable and vmappable.

  Args:
    mdp: the :class:`TabularMDP` (its true rewards).
    policy: :math:`\pi(a|s)`, shape [S, A], rows summing to 1.
    tol: tolerance of value iteration.

  Returns:
    The scaled return, a scalar; NaN where the uniform random policy is
    already optimal from :math:`\rho_0` (:math:`J(\pi^*) = J(\pi_U)`,
    nothing to scale by).

  Raises:
    ValueError: as :func:`policy_value`.

  References:
    Knox, W. B., Hatgis-Kessell, S., Booth, S., Niekum, S., Stone, P. and
    Allievi, A. Models of human preference for learning reward functions.
    TMLR 2023, arXiv:2206.02231 (the mean scaled return and the 0.9
    threshold, in its synthetic-preference experiments).

  Tests:
    tests/test_mdp.py::test_scaled_return_is_one_for_optimal_zero_for_uniform
  """
  s, a = check_mdp(mdp)
  check_policy(policy, s, a)
  rbar = expected_rewards(mdp)
  _, q_star = _value_iteration(mdp, tol, 10_000)
  # V* is the value of the greedy policy of Q* (value_iteration's last
  # step), so the three values come from one batched solve.
  policies = jnp.stack([jnp.asarray(policy, rbar.dtype),
                        jnp.full((s, a), 1.0 / a, rbar.dtype),
                        jax.nn.one_hot(jnp.argmax(q_star, -1), a,
                                       dtype=rbar.dtype)])
  j_pi, j_u, j_star = jax.vmap(
      lambda pi: _policy_value(mdp, rbar, pi))(policies) @ mdp.initial
  gap = j_star - j_u
  ok = gap > 0
  return jnp.where(ok, (j_pi - j_u) / jnp.where(ok, gap, 1.0), jnp.nan)


def bellman_residual(mdp: TabularMDP, v: jax.typing.ArrayLike) -> jax.Array:
  r"""Bellman optimality residual :math:`\|\max_a(\bar r+\gamma PV)-V\|_\infty`.

  Args:
    mdp: the :class:`TabularMDP`.
    v: state values, shape [S].

  Returns:
    The residual, a scalar (0 exactly at :math:`V^*`).
  """
  check_mdp(mdp)
  v = jnp.asarray(v)
  return jnp.max(jnp.abs(_bellman(mdp, expected_rewards(mdp), v).max(-1) - v))


def shape(mdp: TabularMDP, potential: jax.typing.ArrayLike) -> TabularMDP:
  r"""Potential-based reward shaping.

  .. math:: r'(s,a,s') = r(s,a,s') + \gamma\Phi(s') - \Phi(s),

  with :math:`\Phi = 0` on terminal states (the episodic form, so that
  the shaping terms telescope to :math:`-\Phi(s_0)` along every episode).
  Then :math:`Q'^* = Q^* - \Phi(s)` and :math:`V'^* = V^* - \Phi` on
  non-terminal states: the optimal advantages, hence optimal policies and
  regrets, are unchanged (Ng, Harada & Russell 1999, Theorem 1).

  Args:
    mdp: the :class:`TabularMDP`.
    potential: :math:`\Phi`, shape [S].

  Returns:
    The shaped MDP, rewards [S, A, S].

  Raises:
    ValueError: ``potential`` is not [S].

  References:
    Ng, A. Y., Harada, D. and Russell, S. Policy invariance under reward
    transformations: theory and application to reward shaping. ICML 1999.

  Tests:
    tests/models/test_regret.py::test_shaping_keeps_regret_preferences_changes_partial_return
  """
  s, a = check_mdp(mdp)
  if np.shape(potential) != (s,):
    raise ValueError(f"potential must have shape [S] = ({s},), got "
                     f"{np.shape(potential)}")
  phi = jnp.where(mdp.terminal, 0.0, jnp.asarray(potential, mdp.rewards.dtype))
  r = mdp.rewards
  if r.ndim == 2:
    r = jnp.broadcast_to(r[:, :, None], (s, a, s))
  r = r + mdp.gamma * phi[None, None, :] - phi[:, None, None]
  return mdp._replace(rewards=r)


def gridworld(cell_features: jax.typing.ArrayLike,
              weights: jax.typing.ArrayLike, *,
              terminal: jax.typing.ArrayLike | None = None,
              gamma: float = 0.99,
              initial: jax.typing.ArrayLike | None = None) -> Gridworld:
  r"""A deterministic 4-action gridworld with linear cell rewards.

  State ``i * W + j`` is cell ``(i, j)``; actions ``0..3`` move up, down,
  left, right, and a move off the grid stays put. Entering cell ``c`` pays
  :math:`r = w^\top\phi(c)`; terminal cells are absorbing.

  Args:
    cell_features: :math:`\phi`, shape [H, W, F].
    weights: :math:`w`, shape [F].
    terminal: boolean mask of terminal cells [H, W]; default none.
    gamma: the discount, in [0, 1).
    initial: initial distribution over the ``H * W`` states; default uniform
      over non-terminal cells.

  Returns:
    A :class:`Gridworld`: the MDP (rewards [S, A]) and the per-transition
    features [S, A, F], with ``S = H * W``, ``A = 4``.

  Raises:
    ValueError: on shapes, or as :func:`make_mdp`.

  Tests:
    tests/test_mdp.py::test_gridworld_moves_and_rewards
  """
  _checks.check_ndim("cell_features", cell_features, 3, "[H, W, F]")
  h, w, f = np.shape(cell_features)
  if np.shape(weights) != (f,):
    raise ValueError(f"weights must have shape [F] = ({f},), got "
                     f"{np.shape(weights)}")
  if terminal is None:
    terminal = np.zeros((h, w), bool)
  if np.shape(terminal) != (h, w):
    raise ValueError(f"terminal must have shape [H, W] = {(h, w)}, got "
                     f"{np.shape(terminal)}")
  term = np.asarray(terminal, bool).ravel()
  s = h * w
  rows, cols = np.divmod(np.arange(s), w)
  nxt = np.empty((s, 4), np.int64)
  for a, (di, dj) in enumerate(_MOVES):
    i2 = np.clip(rows + di, 0, h - 1)
    j2 = np.clip(cols + dj, 0, w - 1)
    nxt[:, a] = np.where(term, np.arange(s), i2 * w + j2)
  p = np.zeros((s, 4, s))
  p[np.arange(s)[:, None], np.arange(4)[None, :], nxt] = 1.0
  dt = _checks.default_float()
  phi = jnp.asarray(cell_features, dt).reshape(s, f)[nxt]
  mdp = make_mdp(p, phi @ jnp.asarray(weights, dt), gamma, initial, term)
  return Gridworld(mdp, phi)


def delivery(key: jax.Array, *, height: int = 10, width: int = 10,
             n_goal: int = 1, n_sheep: int = 2, n_coin: int = 4,
             n_roadblock: int = 8, n_mud: int = 12,
             weights: jax.typing.ArrayLike = DELIVERY_WEIGHTS,
             gamma: float = 0.999) -> Gridworld:
  r"""A random delivery-domain gridworld after Knox et al. (2022).

  A 10 x 10 grid, 4 deterministic actions, and the six features
  :data:`DELIVERY_FEATURES` = (step, goal, sheep, coin, roadblock, mud)
  weighted :data:`DELIVERY_WEIGHTS` = (-1, +50, -50, +1, -1, -2): every move
  pays the step cost and the features of the cell entered. Layout (ours,
  drawn from ``key``): ``n_goal`` goal cells, ``n_sheep`` sheep cells (goal
  and sheep cells are terminal), ``n_coin`` coin, ``n_roadblock``
  roadblock and ``n_mud`` mud cells, on distinct cells chosen uniformly
  without replacement; the other cells are empty. Coins pay on every entry
  (the reward stays Markov in the cell). The episode starts uniformly on a
  non-terminal cell. The paper is undiscounted; its code runs value
  iteration with :math:`\gamma = 0.999` (THEORY.md §4), our default.

  Args:
    key: a ``jax.random`` key for the layout.
    height, width: grid size (Python ints).
    n_goal, n_sheep, n_coin, n_roadblock, n_mud: cell counts (Python ints).
    weights: the six feature weights.
    gamma: the discount, in [0, 1).

  Returns:
    A :class:`Gridworld` (``S = height * width``, ``A = 4``, ``F = 6``).

  Raises:
    ValueError: the cells do not fit in the grid, or as :func:`gridworld`.

  References:
    Knox, W. B., Hatgis-Kessell, S., Booth, S., Niekum, S., Stone, P. and
    Allievi, A. Models of human preference for learning reward functions.
    Transactions on Machine Learning Research 2023, arXiv:2206.02231 (the
    delivery domain).

  Tests:
    tests/test_mdp.py::test_delivery_layout_and_features
  """
  height = _checks.check_static_int("height", height)
  width = _checks.check_static_int("width", width)
  counts = [_checks.check_static_int(n, c, 0) for n, c in (
      ("n_goal", n_goal), ("n_sheep", n_sheep), ("n_coin", n_coin),
      ("n_roadblock", n_roadblock), ("n_mud", n_mud))]
  s = height * width
  if sum(counts) >= s:
    raise ValueError(f"the {sum(counts)} goal, sheep, coin, roadblock and mud "
                     f"cells must leave a free cell of the {s}")
  cells = np.asarray(jax.random.permutation(key, s))
  kind = np.zeros(s, np.int64)  # 0 = empty, 1..5 = goal..mud
  start = 0
  for k, c in enumerate(counts, start=1):
    kind[cells[start:start + c]] = k
    start += c
  feats = np.zeros((s, 6))
  feats[:, 0] = 1.0
  feats[np.arange(s), kind] += kind > 0
  terminal = (kind == 1) | (kind == 2)
  return gridworld(feats.reshape(height, width, 6), weights,
                   terminal=terminal.reshape(height, width), gamma=gamma)


def random_gridworld(key: jax.Array, height: int, width: int,
                     n_features: int, *, p_terminal: float = 0.1,
                     gamma: float = 0.99) -> Gridworld:
  r"""A gridworld with random binary cell features and Gaussian weights.

  Each cell has feature ``k`` with probability 1/2 independently; weights
  are standard normal; each cell is terminal with probability
  ``p_terminal`` (at least one cell is left non-terminal).

  Args:
    key: a ``jax.random`` key.
    height, width, n_features: sizes (Python ints).
    p_terminal: probability that a cell is terminal.
    gamma: the discount, in [0, 1).

  Returns:
    A :class:`Gridworld`.

  Tests:
    tests/test_mdp.py::test_value_iteration_bellman_residual_within_tol
  """
  height = _checks.check_static_int("height", height)
  width = _checks.check_static_int("width", width)
  n_features = _checks.check_static_int("n_features", n_features)
  _checks.check_in_range("p_terminal", p_terminal, 0.0, 1.0)
  k_feat, k_w, k_term = jax.random.split(key, 3)
  feats = jax.random.bernoulli(k_feat, 0.5, (height, width, n_features))
  weights = jax.random.normal(k_w, (n_features,))
  term = np.array(jax.random.bernoulli(k_term, p_terminal, (height, width)))
  term.flat[0] = False
  return gridworld(np.asarray(feats, np.float64), np.asarray(weights),
                   terminal=term, gamma=gamma)


def random_mdp(key: jax.Array, n_states: int, n_actions: int, *,
               gamma: float | jax.typing.ArrayLike = 0.9,
               p_terminal: float = 0.0) -> TabularMDP:
  r"""A random MDP: Dirichlet transitions, Gaussian rewards.

  .. math:: P(\cdot|s,a) \sim \mathrm{Dir}(\mathbf 1_S), \quad
            r(s,a,s') \sim \mathcal N(0, 1),

  each state terminal (absorbing) with probability ``p_terminal``, state 0
  never; the initial distribution is uniform over non-terminal states.
  Jittable and vmappable over ``key`` (sizes static); values are checked
  only when concrete.

  Args:
    key: a ``jax.random`` key.
    n_states: S (Python int).
    n_actions: A (Python int).
    gamma: the discount, in [0, 1).
    p_terminal: probability that a state is terminal.

  Returns:
    The :class:`TabularMDP`, rewards [S, A, S].

  Tests:
    tests/test_mdp.py::test_value_iteration_matches_numpy_loop
  """
  s = _checks.check_static_int("n_states", n_states)
  a = _checks.check_static_int("n_actions", n_actions)
  _checks.check_in_range("p_terminal", p_terminal, 0.0, 1.0)
  p, r, term = _random_mdp_arrays(key, s, a, p_terminal)
  return make_mdp(p, r, gamma, terminal=term)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _random_mdp_arrays(key, s, a, p_terminal):
  """Transitions, rewards and terminal mask of `random_mdp`.

  Flat Dirichlet rows as normalised Exp(1) draws (cheaper to compile than
  ``jax.random.dirichlet``'s gamma sampler).
  """
  dt = _checks.default_float()
  k_p, k_r, k_t = jax.random.split(key, 3)
  p = jax.random.exponential(k_p, (s, a, s), dt)
  p = p / p.sum(-1, keepdims=True)
  term = jax.random.bernoulli(k_t, p_terminal, (s,)).at[0].set(False)
  stay = jnp.broadcast_to(jnp.eye(s, dtype=dt)[:, None, :], (s, a, s))
  p = jnp.where(term[:, None, None], stay, p)
  return p, jax.random.normal(k_r, (s, a, s), dt), term
