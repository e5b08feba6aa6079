r"""Exact minimax (von Neumann) winners, batched over games.

A minimax winner of a preference matrix ``P`` is a policy :math:`\pi^*` that
no response beats: :math:`(P\pi^*)_j \le \tfrac12` for every ``j``, i.e.
zero exploitability (THEORY.md §6). It always exists (von Neumann's minimax
theorem; the game is symmetric, so its value is :math:`\tfrac12`) and is the
solution of a linear program. This module solves that program by a
primal-dual interior-point method written in ``jax.numpy``, so that one
compiled call solves a whole batch of games.

**Formulation.** With :math:`x = 2\pi` the minimax winners are exactly the
solutions of the linear complementarity problem

.. math:: x \ge 0, \qquad w = P^\top x - \mathbf 1 \ge 0, \qquad x^\top w = 0 .

It is the optimality system of the self-dual linear program
:math:`\min \mathbf 1^\top x` s.t. :math:`P^\top x \ge \mathbf 1,\ x \ge 0`
(whose optimum is 2, the inverse of the game's value): because
:math:`P + P^\top = \mathbf 1\mathbf 1^\top`,
:math:`x^\top P^\top x = \tfrac12(\mathbf 1^\top x)^2`, so the matrix
:math:`P^\top` is positive semidefinite (the problem is *monotone*),
:math:`x^\top w = 0` forces :math:`\mathbf 1^\top x = 2`, and
:math:`w \ge 0` reads :math:`(P^\top\pi)_j \ge \tfrac12`, i.e.
:math:`(P\pi)_j \le \tfrac12`.

**Algorithm.** Mehrotra's predictor-corrector infeasible interior-point
method for the monotone LCP, from :math:`x = 2\cdot\mathbf 1/K`,
:math:`w = \mathbf 1`. Each iteration factors the ``K x K`` Newton matrix
:math:`X^{-1}W + P^\top` once (its symmetric part is positive definite, so
it is nonsingular) and solves it twice (predictor with
:math:`\sigma = 0`; corrector with centring
:math:`\sigma = (\mu_{\rm aff}/\mu)^3` and the second-order term), then steps
99 % of the way to the boundary. The full predictor step
:math:`x + \Delta x_{\rm aff}` (a Newton step on the complementarity
conditions), clipped at 0 and normalised, is a candidate answer; the loop
keeps the least exploitable candidate and stops when its exploitability is
at most ``1e-7`` (float32) or ``1e-13`` (float64), after 50 iterations, or on
a non-finite iterate. A final *purification* guesses the support
:math:`S = \{i : x_i > w_i\}`, solves the equalising system
:math:`((P - \tfrac12)\pi)_i = v` for :math:`i \in S`,
:math:`\pi_i = 0` for :math:`i \notin S`, :math:`\mathbf 1^\top\pi = 1`,
clips it to a distribution and keeps it if it is no more exploitable. The
answer is never more exploitable than the loop's best candidate and, where
the winner is unique and its support is identified, exact up to round-off
(exact zeros off the support; one-hot for a Condorcet winner).

**Precision.** Every game of a batch runs until the slowest one stops. In
float64 the loop reaches ``1e-13`` in 6 to 18 iterations on random games
(K = 10 to 100). In float32 the residual's round-off (about ``K`` times the
unit round-off) limits the method: random 10 x 10 games reach ``1e-7`` in
4 to 13 iterations; on 100 x 100 games, a winner with a nearly degenerate
item (weight and advantage both near zero) can keep a game at a few times
``1e-7`` until the 50th iteration. Use float64 for large games where that
matters.

References:
  J. von Neumann (1928), Zur Theorie der Gesellschaftsspiele, Math. Ann. 100.
  G. B. Dantzig (1951), A proof of the equivalence of the programming problem
  and the game problem, in Activity Analysis of Production and Allocation.
  M. Kojima, N. Megiddo, T. Noma, A. Yoshise (1991), A Unified Approach to
  Interior Point Algorithms for Linear Complementarity Problems, LNCS 538.
  S. Mehrotra (1992), On the implementation of a primal-dual interior point
  method, SIAM J. Optim. 2(4).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import linalg

from prefsim import _checks
from prefsim.games import core

__all__ = ["minimax_winner"]

_MAX_ITER = 50
_STEP_FRACTION = 0.99
# Target exploitability of the interior-point loop, per dtype: below float32's
# unit round-off (1.2e-7) and well above float64's.
_TOL = {np.dtype(np.float32): 1e-7, np.dtype(np.float64): 1e-13}


def _step_to_boundary(v: jax.Array, dv: jax.Array) -> jax.Array:
  """Largest ``alpha`` in [0, 1] with ``v + alpha * dv >= 0`` (``v > 0``)."""
  shrinking = dv < 0
  ratios = jnp.where(shrinking, -v / jnp.where(shrinking, dv, -1.0), 1.0)
  return jnp.minimum(1.0, jnp.min(ratios))


def _normalise(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(clip(x, 0) / sum, valid)``; valid if the sum is finite and > 0."""
  x = jnp.maximum(x, 0.0)
  total = jnp.sum(x)
  valid = jnp.isfinite(total) & (total > 0)
  return jnp.where(valid, x / jnp.where(valid, total, 1.0), 0.0), valid


def _exploitability(P: jax.Array, pi: jax.Array, valid: jax.Array
                    ) -> jax.Array:
  """Exploitability of a candidate, ``+inf`` if it is not a valid one."""
  e = jnp.max(core.advantages(P, pi))
  return jnp.where(valid & jnp.isfinite(e), e, jnp.inf)


def _purify(P: jax.Array, support: jax.Array) -> jax.Array:
  """Solve the equalising system of a guessed support; a candidate answer.

  Unknowns ``(pi, v)``: ``((P - 1/2) pi)_i - v = 0`` on the support,
  ``pi_i = 0`` off it, ``sum(pi) = 1``. Returns its exploitability and the
  solution clipped at 0 and normalised (``+inf`` if singular).
  """
  k = P.shape[-1]
  dtype = P.dtype
  on = jnp.concatenate([P - 0.5, -jnp.ones((k, 1), dtype)], axis=1)
  off = jnp.concatenate([jnp.eye(k, dtype=dtype), jnp.zeros((k, 1), dtype)],
                        axis=1)
  total = jnp.concatenate([jnp.ones((1, k), dtype), jnp.zeros((1, 1), dtype)],
                          axis=1)
  system = jnp.concatenate([jnp.where(support[:, None], on, off), total])
  rhs = jnp.zeros((k + 1,), dtype).at[k].set(1.0)
  pi, valid = _normalise(jnp.linalg.solve(system, rhs)[:k])
  return _exploitability(P, pi, valid), pi


def _solve(P: jax.Array) -> jax.Array:
  """The interior-point method for one game ``P[K, K]``; returns ``pi[K]``."""
  k = P.shape[-1]
  dtype = P.dtype
  tol = _TOL[np.dtype(dtype)]
  M = P.T  # the LCP matrix: w = M x - 1

  def newton_matrix_factors(x, w):
    return linalg.lu_factor(jnp.diag(w / x) + M)

  def direction(factors, x, r, target):
    """Solve M dx - dw = -r, w dx + x dw = target; return (dx, dw)."""
    dx = linalg.lu_solve(factors, target / x - r)
    return dx, M @ dx + r

  def body(carry):
    x, w, best, best_e, it, _ = carry
    r = M @ x - 1.0 - w
    mu = jnp.dot(x, w) / k
    factors = newton_matrix_factors(x, w)
    dx_aff, dw_aff = direction(factors, x, r, -x * w)
    # Candidate: the full predictor (Newton) step, clipped and normalised.
    cand, valid = _normalise(x + dx_aff)
    cand_e = _exploitability(P, cand, valid)
    better = cand_e < best_e
    best = jnp.where(better, cand, best)
    best_e = jnp.where(better, cand_e, best_e)
    alpha = jnp.minimum(_step_to_boundary(x, dx_aff),
                        _step_to_boundary(w, dw_aff))
    mu_aff = jnp.dot(x + alpha * dx_aff, w + alpha * dw_aff) / k
    sigma = (mu_aff / mu)**3
    dx, dw = direction(factors, x, r,
                       -x * w + sigma * mu - dx_aff * dw_aff)
    alpha = _STEP_FRACTION * jnp.minimum(_step_to_boundary(x, dx),
                                         _step_to_boundary(w, dw))
    x_new, w_new = x + alpha * dx, w + alpha * dw
    finite = jnp.all(jnp.isfinite(x_new)) & jnp.all(jnp.isfinite(w_new))
    x = jnp.where(finite, x_new, x)
    w = jnp.where(finite, w_new, w)
    return x, w, best, best_e, it + 1, finite

  def cond(carry):
    _, _, _, best_e, it, finite = carry
    return (best_e > tol) & (it < _MAX_ITER) & finite

  x = jnp.full((k,), 2.0 / k, dtype)
  w = jnp.ones((k,), dtype)
  uniform = jnp.full((k,), 1.0 / k, dtype)
  start = (x, w, uniform, _exploitability(P, uniform, jnp.array(True)),
           jnp.array(0), jnp.array(True))
  x, w, best, best_e, _, _ = jax.lax.while_loop(cond, body, start)
  pure_e, pure = _purify(P, x > w)
  return jnp.where(pure_e <= best_e, pure, best)


@jax.jit
def _solve_batch(P: jax.Array) -> jax.Array:
  return jax.vmap(_solve)(P)


def minimax_winner(P: jax.typing.ArrayLike) -> jax.Array:
  r"""A minimax (von Neumann) winner of each preference matrix, exactly.

  .. math:: \pi^* \in \arg\min_{\pi\in\Delta_K}\ \max_j\ (P\pi)_j,
            \qquad \max_j\ (P\pi^*)_j - \tfrac12 = 0,

  i.e. :math:`\pi^{*\top} P\pi \ge \tfrac12` for every :math:`\pi`. Solved as
  a linear program by a batched interior-point method with a final
  purification (see the module docstring). The result is a distribution
  (entries :math:`\ge 0` summing to 1, to round-off) whose exploitability
  (:func:`prefsim.games.exploitability`) is at most ``1e-13`` in float64
  and about ``1e-7`` in float32 on typical games (a few times ``1e-7`` on
  some 100 x 100 ones); the tests check ``1e-10`` and ``1e-6``. Where
  the winner is unique (generic games, a Condorcet winner) this is it; where
  it is not (ties :math:`P_{ij} = \tfrac12`), one of the winners. For a
  transitive (Bradley-Terry) ``P`` it is the Condorcet winner, one-hot; for
  rock-paper-scissors, uniform.

  Every game of a batch runs the same iterations (until the slowest one has
  converged, at most 50); one compilation per shape and dtype.

  Args:
    P: ``[..., K, K]`` preference matrices (``P[i, j] = Pr(i beats j)``);
      leading axes are a batch of games, e.g. ``[B, K, K]``. Float32 or
      float64 (other dtypes are cast to the default float).

  Returns:
    ``[..., K]`` minimax winners, in ``P``'s float dtype.

  Raises:
    ValueError: ``P`` is not ``[..., K, K]`` (always), or, when ``P`` is
      concrete (outside ``jit``), a matrix is not a preference matrix
      (entries in [0, 1], diagonal 1/2, ``P + P.T == 1``). Under ``jit`` the
      values are not checked; a matrix that is not a preference matrix gives
      a distribution with no guarantee.

  References:
    von Neumann (1928); Dantzig (1951) (game = LP); Mehrotra (1992)
    (predictor-corrector). THEORY.md §6.

  Tests:
    tests/games/test_minimax.py::test_minimax_winner_has_zero_exploitability,
    tests/games/test_minimax.py::test_minimax_winner_is_the_condorcet_winner,
    tests/games/test_minimax.py::test_minimax_winner_of_rock_paper_scissors_is_uniform,
    tests/games/test_minimax.py::test_minimax_winner_matches_scipy_linprog.
  """
  core.check_game(P, None, 0.0)
  P = jnp.asarray(P)
  if P.dtype not in (jnp.float32, jnp.float64):
    P = P.astype(_checks.default_float())
  k = P.shape[-1]
  batch = P.shape[:-2]
  pi = _solve_batch(P.reshape((-1, k, k)))
  return pi.reshape(batch + (k,))
