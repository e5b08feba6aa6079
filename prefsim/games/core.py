r"""The preference game: payoff, exploitability, best response, duality gap.

Two players pick policies :math:`\pi_1, \pi_2` over ``K`` responses; player 1
wins with probability :math:`\pi_1^\top P \pi_2`, where ``P`` is a preference
matrix (:math:`P_{ij} = \Pr(i \succ j)`, :math:`P + P^\top = 1`). The game is
symmetric and constant-sum (:math:`\pi^\top P \pi = \tfrac12` for every
:math:`\pi`).

**Unregularised** (:math:`\tau = 0`). A minimax (von Neumann) winner
:math:`\pi^*` satisfies :math:`\pi^{*\top} P \pi \ge \tfrac12` for every
:math:`\pi`. Its distance is measured by the exploitability

.. math:: \mathrm{expl}(\pi) = \max_j (P\pi)_j - \tfrac12 \;\ge 0,

zero exactly at the minimax winners (THEORY.md §6).

**KL-regularised** (:math:`\tau > 0`, reference :math:`\mu`; Munos et al.
2023, "Nash Learning from Human Feedback", §3 and §4):

.. math:: J(\pi_1, \pi_2) = \pi_1^\top P \pi_2 - \tau\,\mathrm{KL}(\pi_1\|\mu)
          + \tau\,\mathrm{KL}(\pi_2\|\mu),

with a unique Nash equilibrium :math:`\pi^*_\tau \propto \mu\,
e^{P\pi^*_\tau/\tau}`. The best response to :math:`\pi` is
:math:`\mathrm{BR}(\pi) = \mathrm{softmax}(\log\mu + P\pi/\tau)` and the
duality gap is

.. math:: \mathrm{gap}(\pi) = \max_{\pi'} J(\pi', \pi) - \min_{\pi'} J(\pi, \pi')
          = 2\bigl[\tau\log\textstyle\sum_k \mu_k e^{(P\pi)_k/\tau}
          + \tau\,\mathrm{KL}(\pi\|\mu)\bigr] - 1 \;\ge 0,

(using :math:`P^\top\pi = 1 - P\pi`), zero iff :math:`\pi = \pi^*_\tau`. As
:math:`\tau \to 0` with full-support :math:`\mu` the gap tends to
:math:`2\,\mathrm{expl}(\pi)`.

Shapes: ``K`` responses; every function broadcasts over leading axes, so a
batch of games is ``P[B, K, K]``, ``ref[B, K]``, ``pi[B, K]``.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim import policies
from prefsim.models import general

__all__ = [
    "Game",
    "advantages",
    "best_response",
    "check_game",
    "duality_gap",
    "exploitability",
    "gap",
    "log_best_response",
    "make_game",
    "payoff",
]


class Game(NamedTuple):
  r"""A (KL-regularised) preference game, the problem pytree of every solver.

  Attributes:
    P: ``[K, K]`` preference matrix, :math:`P_{ij} = \Pr(i \succ j)`.
    ref: ``[K]`` reference policy :math:`\mu` (a probability vector); also
      every solver's starting policy.
    tau: scalar regularisation strength :math:`\tau \ge 0`; ``0`` is the
      unregularised game.

  Being a pytree, a ``Game`` with a leading axis on every leaf is a batch of
  games (``prefsim.sweep(..., problem_axis=0)``). Build one with
  :func:`make_game`, which checks it.
  """

  P: jax.Array
  ref: jax.Array
  tau: jax.Array


def check_game(P, ref, tau, pi=None, *, pi_name: str = "pi") -> None:
  """Check the arguments of a game function; raises ``ValueError`` if bad.

  Static checks (always): ``P`` is ``[..., K, K]``, ``ref`` (and ``pi``) end
  in ``K``. Value checks (only when concrete, i.e. outside ``jit``): ``P`` is
  a preference matrix (:func:`prefsim.models.general.validate`), ``ref`` (and
  ``pi``) a probability vector, ``tau >= 0``. ``pi_name`` is the name the
  messages give the policy argument.
  """
  if np.ndim(P) < 2 or np.shape(P)[-1] != np.shape(P)[-2]:
    raise ValueError(f"P must be a [..., K, K] preference matrix, got shape "
                     f"{np.shape(P)}")
  k = np.shape(P)[-1]
  for name, x in (("ref", ref), (pi_name, pi)):
    if x is not None and (np.ndim(x) < 1 or np.shape(x)[-1] != k):
      raise ValueError(f"{name} must be a [..., K] distribution with K = {k} "
                       f"(P has shape {np.shape(P)}), got shape {np.shape(x)}")
  if _checks.is_concrete(P):
    for p in np.reshape(np.asarray(P), (-1, k, k)):
      try:
        general.validate(p, atol=1e-5)
      except ValueError as e:
        raise ValueError(f"P: {e}") from None
  for name, x in (("ref", ref), (pi_name, pi)):
    if x is not None and _checks.is_concrete(x):
      a = np.asarray(x, np.float64)
      if np.any(a < -1e-6) or np.any(np.abs(a.sum(-1) - 1.0) > 1e-4):
        raise ValueError(
            f"{name} must be a probability vector (entries >= 0, summing to "
            f"1), got entries in [{a.min():.3g}, {a.max():.3g}] with sums in "
            f"[{a.sum(-1).min():.6g}, {a.sum(-1).max():.6g}]")
  _checks.check_nonnegative("tau", tau)


def make_game(P: jax.typing.ArrayLike, ref: jax.typing.ArrayLike | None = None,
              tau: float = 0.0) -> Game:
  r"""Build and check a :class:`Game`.

  Args:
    P: ``[K, K]`` preference matrix (or ``[B, K, K]`` for a batch).
    ref: ``[K]`` reference policy; ``None`` gives the uniform policy.
    tau: regularisation strength, ``>= 0``.

  Returns:
    ``Game(P, ref, tau)`` as float arrays.

  Raises:
    ValueError: ``P`` is not a preference matrix, ``ref`` not a distribution
      over ``K`` responses, or ``tau < 0`` (the message names the argument).
  """
  dtype = _checks.default_float()
  P = jnp.asarray(P, dtype)
  if ref is None:
    k = np.shape(P)[-1] if np.ndim(P) >= 1 else 1
    ref = jnp.full(np.shape(P)[:-1], 1.0 / k, dtype)
  ref = jnp.asarray(ref, dtype)
  check_game(P, ref, tau)
  tau = jnp.broadcast_to(jnp.asarray(tau, dtype), np.shape(P)[:-2])
  return Game(P, ref, tau)


def payoff(P: jax.Array, pi1: jax.Array, pi2: jax.Array) -> jax.Array:
  r"""Probability that a draw from ``pi1`` beats a draw from ``pi2``.

  .. math:: \Pr(\pi_1 \succ \pi_2) = \pi_1^\top P \pi_2

  Args:
    P: ``[..., K, K]`` preference matrix.
    pi1: ``[..., K]`` policy.
    pi2: ``[..., K]`` policy.
  Returns:
    ``[...]`` win probabilities.
  """
  return jnp.einsum("...j,...jk,...k->...", pi1, P, pi2)


def advantages(P: jax.Array, pi: jax.Array) -> jax.Array:
  r"""``(P pi)_j - 1/2``: how much response ``j`` beats a draw from ``pi``.

  Computed as :math:`((P - \tfrac12)\pi)_j` (equal for a probability vector
  ``pi``): the entries of :math:`P - \tfrac12` are exact, so a gap near zero
  is not lost to the round-off of numbers near 1/2 (about 3e-8 in float32).
  No argument checks (used inside solvers' steps).

  Args:
    P: ``[..., K, K]`` preference matrix.
    pi: ``[..., K]`` policy.
  Returns:
    ``[..., K]`` advantages; :func:`exploitability` is their maximum.
  """
  return jnp.einsum("...jk,...k->...j", P - 0.5, pi)


def exploitability(P: jax.typing.ArrayLike, pi: jax.typing.ArrayLike
                   ) -> jax.Array:
  r"""How much the best pure response beats ``pi`` by.

  .. math:: \mathrm{expl}(\pi) = \max_j (P\pi)_j - \tfrac12 \in [0, \tfrac12]

  It is ``>= 0`` because :math:`\pi^\top P\pi = \tfrac12`, and zero exactly
  when ``pi`` is a minimax winner (THEORY.md §6).

  Args:
    P: ``[..., K, K]`` preference matrix.
    pi: ``[..., K]`` policy.
  Returns:
    ``[...]`` exploitabilities.
  Raises:
    ValueError: shapes disagree, or (eagerly) ``P`` is not a preference
      matrix or ``pi`` not a distribution.
  Tests:
    tests/games/test_core.py::test_exploitability_nonnegative_and_zero_at_uniform_rps.
  """
  check_game(P, None, 0.0, pi)
  return jnp.max(advantages(jnp.asarray(P), jnp.asarray(pi)), axis=-1)


def _safe_tau(tau):
  tau = jnp.asarray(tau)
  positive = tau > 0
  return positive, jnp.where(positive, tau, 1.0)


def best_response(P: jax.typing.ArrayLike, pi: jax.typing.ArrayLike,
                  ref: jax.typing.ArrayLike, tau: jax.typing.ArrayLike
                  ) -> jax.Array:
  r"""The best response to ``pi`` in the KL-regularised game.

  .. math:: \mathrm{BR}(\pi) = \arg\max_{\pi'}\ \pi'^\top P\pi
            - \tau\,\mathrm{KL}(\pi'\|\mu) = \mathrm{softmax}(\log\mu + P\pi/\tau)

  At ``tau = 0`` it is the pure best response, one-hot on
  :math:`\arg\max_j (P\pi)_j` (the first maximiser on ties).

  Args:
    P: ``[..., K, K]`` preference matrix.
    pi: ``[..., K]`` the opponent's policy.
    ref: ``[..., K]`` reference policy :math:`\mu`.
    tau: ``[...]`` regularisation strength, ``>= 0``.
  Returns:
    ``[..., K]`` the best response.
  Tests:
    tests/games/test_core.py::test_best_response_maximises_regularised_payoff.
  """
  check_game(P, ref, tau, pi)
  return jnp.exp(log_best_response(jnp.asarray(P), jnp.asarray(pi), ref, tau))


def log_best_response(P: jax.Array, pi: jax.Array, ref: jax.Array,
                      tau: jax.Array) -> jax.Array:
  r"""``log`` of :func:`best_response`, without argument checks (for use
  inside solvers, where the game was checked once).

  Args:
    P: ``[..., K, K]``; pi, ref: ``[..., K]``; tau: ``[...]``.
  Returns:
    ``[..., K]`` :math:`\log\mathrm{BR}(\pi)`; ``-inf`` off the argmax at
    ``tau = 0``.
  """
  v = advantages(P, pi)
  positive, t = _safe_tau(tau)
  soft = jax.nn.log_softmax(jnp.log(ref) + v / t[..., None], axis=-1)
  hard = jnp.log(jax.nn.one_hot(jnp.argmax(v, axis=-1), v.shape[-1],
                                dtype=v.dtype))
  return jnp.where(positive[..., None], soft, hard)


def duality_gap(P: jax.typing.ArrayLike, pi: jax.typing.ArrayLike,
                ref: jax.typing.ArrayLike, tau: jax.typing.ArrayLike
                ) -> jax.Array:
  r"""Duality gap of ``pi`` in the KL-regularised preference game.

  .. math:: \mathrm{gap}(\pi) = \max_{\pi'} J(\pi', \pi) - \min_{\pi'} J(\pi, \pi')
            = 2\bigl[\tau\log\textstyle\sum_k \mu_k e^{(P\pi)_k/\tau}
            + \tau\,\mathrm{KL}(\pi\|\mu)\bigr] - 1

  Subtracting :math:`\pi^\top P\pi = \tfrac12` gives the form computed
  here, free of cancellation near the equilibrium:

  .. math:: \mathrm{gap}(\pi) = 2\tau\,\mathrm{KL}\bigl(\pi\,\|\,\mathrm{BR}(\pi)\bigr)
            \quad(\tau > 0), \qquad
            \mathrm{gap}(\pi) = 2\max_j (P\pi)_j - 1 = 2\,\mathrm{expl}(\pi)
            \quad(\tau = 0).

  ``>= 0``, zero iff ``pi`` is the regularised Nash equilibrium; ``+inf``
  where ``pi`` puts mass outside ``ref``'s support. In float32 gaps down to
  about 1e-12 are resolved (see :func:`prefsim.policies.kl`).

  Args:
    P: ``[..., K, K]`` preference matrix.
    pi: ``[..., K]`` policy.
    ref: ``[..., K]`` reference policy :math:`\mu`.
    tau: ``[...]`` regularisation strength, ``>= 0``.
  Returns:
    ``[...]`` gaps.
  Tests:
    tests/games/test_core.py::test_duality_gap_nonnegative,
    tests/games/test_core.py::test_duality_gap_matches_its_definition.
  """
  check_game(P, ref, tau, pi)
  P, pi = jnp.asarray(P), jnp.asarray(pi)
  positive, t = _safe_tau(tau)
  soft = 2.0 * t * policies.kl(jnp.log(pi),
                               log_best_response(P, pi, ref, t))
  hard = 2.0 * jnp.max(advantages(P, pi), axis=-1)
  return jnp.where(positive, soft, hard)


def gap(game: Game, pi: jax.Array) -> jax.Array:
  """The solvers' progress measure: duality gap if ``tau > 0``, else exploitability.

  Args:
    game: a :class:`Game` (leaves may carry leading batch axes).
    pi: ``[..., K]`` policy.
  Returns:
    ``[...]`` :func:`duality_gap` where ``game.tau > 0`` and
    :func:`exploitability` where ``game.tau == 0``. Mind the units at
    ``tau = 0``: the duality gap there would be twice the exploitability;
    ``gap`` reports the exploitability, the quantity papers plot for the
    unregularised game.
  """
  P, ref, tau = game
  return jnp.where(jnp.asarray(tau) > 0, duality_gap(P, pi, ref, tau),
                   exploitability(P, pi))
