r"""The Nash equilibrium of the KL-regularised preference game.

With reference :math:`\mu` and strength :math:`\tau > 0` the game
:math:`J(\pi_1, \pi_2) = \pi_1^\top P\pi_2 - \tau\,\mathrm{KL}(\pi_1\|\mu)
+ \tau\,\mathrm{KL}(\pi_2\|\mu)` (THEORY.md §6; :mod:`prefsim.games.core`)
has a unique Nash equilibrium :math:`\pi^*_\tau`, the fixed point of the
best response,

.. math:: \pi^*_\tau = \mathrm{softmax}\bigl(\log\mu + P\pi^*_\tau/\tau\bigr).

:func:`kl_nash` solves it by a damped Newton method on the log-policy,
continued in :math:`\tau`. For ``tau = 0`` (the unregularised game) use
:func:`prefsim.games.minimax_winner`.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim.games import core

__all__ = ["kl_nash"]

# Step sizes tried along each Newton direction; 0 keeps the iterate, so the
# merit (the duality gap at the current stage's tau) never increases.
_ALPHAS = tuple(2.0 ** -i for i in range(10)) + (0.0,)
_MAX_ITERS = 400           # Newton steps in all, a safety cap
_STAGE_ITERS = 8           # steps allowed per stage before backing up
_FIRST_RATIO = 4.0         # first continuation factor tau_k / tau_{k+1}
_MAX_RATIO = 64.0
_STAGE_KL = 1e-8           # a stage is solved when KL(pi || BR(pi)) <= this
_POLISH = 2                # full Newton steps after the final stage converged


class _State(NamedTuple):
  z: jax.Array        # [K] log-policy (normalised)
  c: jax.Array        # [] multiplier of the normalisation
  t: jax.Array        # [] tau of the current stage
  z_ok: jax.Array     # the last solved stage, to back up to
  c_ok: jax.Array
  t_ok: jax.Array
  ratio: jax.Array    # [] continuation factor
  stage_iters: jax.Array
  iters: jax.Array
  gap: jax.Array      # [] duality gap of z at tau t
  done: jax.Array


def _final_kl(dtype) -> float:
  """The final stage's tolerance on KL(pi || BR(pi)), by precision."""
  return 1e-22 if jnp.finfo(dtype).bits == 64 else 1e-13


def _newton(P, log_ref, z, c, t):
  r"""One damped Newton step on :math:`F(z, c) = 0` at strength ``t``.

  :math:`F(z, c) = \tau(z - \log\mu) - (P - \tfrac12)e^z + c\mathbf 1`
  with :math:`\mathbf 1^\top e^z = 1`; the bordered Jacobian is
  :math:`\begin{pmatrix}\tau I - (P-\tfrac12)\,\mathrm{diag}(\pi) & \mathbf 1\\
  \pi^\top & 0\end{pmatrix}`, nonsingular for every :math:`\pi > 0`.
  The step length is the best of :data:`_ALPHAS` by the duality gap at ``t``.
  """
  k = z.shape[-1]
  pi = jnp.exp(z)
  a = P - 0.5
  resid = t * (z - log_ref) - a @ pi + c
  jac = jnp.zeros((k + 1, k + 1), z.dtype)
  jac = jac.at[:k, :k].set(t * jnp.eye(k, dtype=z.dtype) - a * pi[None, :])
  jac = jac.at[:k, k].set(1.0).at[k, :k].set(pi)
  step = jnp.linalg.solve(jac, -jnp.append(resid, 0.0))
  alphas = jnp.asarray(_ALPHAS, z.dtype)
  cand = z[None, :] + alphas[:, None] * step[None, :k]
  cand = cand - jax.nn.logsumexp(cand, axis=-1, keepdims=True)
  gaps = core.duality_gap(P, jnp.exp(cand), jnp.exp(log_ref), t)
  gaps = jnp.where(jnp.isnan(gaps), jnp.inf, gaps)
  best = jnp.argmin(gaps)
  return cand[best], c + alphas[best] * step[k], gaps[best]


def _solve_one(P, ref, tau):
  dtype = P.dtype
  log_ref = jnp.log(ref)
  final_kl = _final_kl(dtype)
  t0 = jnp.maximum(tau, 1.0)
  zero = jnp.zeros((), jnp.int32)
  start = _State(z=log_ref, c=jnp.zeros((), dtype), t=t0, z_ok=log_ref,
                 c_ok=jnp.zeros((), dtype), t_ok=t0,
                 ratio=jnp.asarray(_FIRST_RATIO, dtype), stage_iters=zero,
                 iters=zero, gap=jnp.asarray(jnp.inf, dtype),
                 done=jnp.asarray(False))

  def body(s: _State) -> _State:
    z, c, gap = _newton(P, log_ref, s.z, s.c, s.t)
    final = s.t <= tau
    near = gap <= 2.0 * s.t * _STAGE_KL
    # No step length lowers the gap: round-off when near, else a failure.
    stalled = (s.stage_iters > 0) & (gap >= s.gap)
    done = (final & near & ((gap <= 2.0 * s.t * final_kl) | stalled)
            | (s.iters + 1 >= _MAX_ITERS))
    # An intermediate stage solved: remember it and move tau on (faster next
    # time if it took few steps). Stuck: back up to the last solved stage
    # and continue with a smaller factor.
    advance = near & ~final
    stuck = ~near & (stalled | (s.stage_iters + 1 >= _STAGE_ITERS))
    fast = s.stage_iters < 2
    ratio = jnp.where(advance & fast, jnp.minimum(s.ratio ** 2, _MAX_RATIO),
                      jnp.where(stuck, jnp.sqrt(s.ratio), s.ratio))
    z_ok = jnp.where(advance, z, s.z_ok)
    c_ok = jnp.where(advance, c, s.c_ok)
    t_ok = jnp.where(advance, s.t, s.t_ok)
    move = advance | stuck
    return _State(z=jnp.where(stuck, s.z_ok, z), c=jnp.where(stuck, s.c_ok, c),
                  t=jnp.where(move, jnp.maximum(tau, t_ok / ratio), s.t),
                  z_ok=z_ok, c_ok=c_ok, t_ok=t_ok, ratio=ratio,
                  stage_iters=jnp.where(move, 0, s.stage_iters + 1),
                  iters=s.iters + 1, gap=gap, done=done)

  s = jax.lax.while_loop(lambda s: ~s.done, body, start)
  z, c = s.z, s.c
  for _ in range(_POLISH):
    z, c, _ = _newton(P, log_ref, z, c, tau)
  return jnp.exp(z)


def kl_nash(P: jax.typing.ArrayLike, ref: jax.typing.ArrayLike,
            tau: jax.typing.ArrayLike) -> jax.Array:
  r"""The Nash equilibrium :math:`\pi^*_\tau` of the KL-regularised game.

  The unique policy with zero duality gap in
  :math:`J(\pi_1, \pi_2) = \pi_1^\top P\pi_2 - \tau\,\mathrm{KL}(\pi_1\|\mu)
  + \tau\,\mathrm{KL}(\pi_2\|\mu)`, characterised by the fixed point

  .. math:: \pi^*_\tau \propto \mu\,\exp(P\pi^*_\tau/\tau).

  **Algorithm.** Newton's method on the log-policy :math:`z = \log\pi`:

  .. math:: F(z, c) = \tau(z - \log\mu) - (P - \tfrac12)\,e^{z}
            + c\,\mathbf 1 = 0, \qquad \mathbf 1^\top e^{z} = 1,

  (:math:`P - \tfrac12` is skew-symmetric; it differs from :math:`P` on a
  distribution by the constant :math:`\tfrac12`, which :math:`c` absorbs). The
  bordered Jacobian :math:`\bigl(\begin{smallmatrix}\tau I - (P - \frac12)D &
  \mathbf 1\\ \pi^\top & 0\end{smallmatrix}\bigr)`, :math:`D =
  \mathrm{diag}(\pi)`, is nonsingular for every :math:`\pi > 0`: on the
  tangent space it is similar to :math:`\tau I - S` with :math:`S =
  D^{1/2}(P - \tfrac12)D^{1/2}` skew-symmetric, whose symmetric part is
  :math:`\tau I`. Each step is damped: of the step lengths
  :math:`1, \tfrac12, \dots, 2^{-9}, 0` the one with the smallest duality
  gap (:func:`prefsim.games.duality_gap`) is taken, after renormalising
  :math:`z`, so the gap never increases within a stage. Globalisation by
  continuation in :math:`\tau`: starting from :math:`\pi = \mu` at
  :math:`\tau_0 = \max(\tau, 1)`, each stage is solved to
  :math:`\mathrm{KL}(\pi\|\mathrm{BR}(\pi)) \le 10^{-8}` and warm-starts the
  next at :math:`\tau_{k+1} = \max(\tau, \tau_k/r)`; :math:`r` starts at 4,
  squares (up to 64) after a stage solved in under two steps, and a stage
  not solved in 8 steps, or where no step length lowers the gap, restarts
  from the last solved one with :math:`r \to \sqrt r`. The final stage
  (:math:`\tau_k = \tau`) stops at :math:`\mathrm{KL}(\pi\|\mathrm{BR}(\pi))
  \le 10^{-22}` in float64 (:math:`10^{-13}` in float32), i.e. at duality
  gap :math:`2\tau\,\mathrm{KL}`, or, once below :math:`10^{-8}`, when no
  step length lowers the gap (round-off); then two more damped steps. A
  ``lax.while_loop`` runs it, capped at 400 steps; each step solves one
  ``(K+1) x (K+1)`` system.

  **Accuracy.** Measured on 7,200 random games (``K`` = 3, 10, 100; EGPO's
  random matrices with :math:`\mu = \mathrm{softmax}(N(0, 1))` and random
  0/1 tournaments with :math:`\mu = \mathrm{softmax}(3N(0, 1))`;
  :math:`\tau` from ``1e-4`` to ``10``): duality gap at most ``2e-29`` in
  float64 and ``7e-12`` in float32 (the round-off of the float32 gap).
  Plain fixed-point iteration
  :math:`\pi \leftarrow \mathrm{BR}(\pi)` does not converge for small
  :math:`\tau` (:math:`P/\tau` is no contraction). Should a game reach the
  400-step cap, the result is the best iterate found: check it with
  :func:`prefsim.games.duality_gap`.

  Args:
    P: ``[..., K, K]`` preference matrix (a batch of games on leading axes).
    ref: ``[..., K]`` reference policy :math:`\mu`, full support.
    tau: scalar or ``[...]`` regularisation strength, ``> 0``.
  Returns:
    ``[..., K]`` the equilibrium :math:`\pi^*_\tau`, in the default float
    dtype (float64 under ``jax_enable_x64``).
  Raises:
    ValueError: shapes disagree, ``P`` is not a preference matrix, ``ref`` not
      a distribution, or ``tau <= 0`` (value checks eagerly only; under
      ``jit`` a ``tau <= 0`` or a ``ref`` with zeros gives NaN or garbage).
  References:
    Munos et al. Nash Learning from Human Feedback. ICML 2024,
    arXiv:2312.00886 (the regularised preference game and its unique Nash
    equilibrium).
  Tests:
    tests/games/test_nash.py::test_kl_nash_is_the_fixed_point_with_zero_gap,
    tests/games/test_nash.py::test_kl_nash_is_the_limit_of_omd,
    tests/games/test_nash.py::test_kl_nash_tends_to_ref_as_tau_grows,
    tests/games/test_nash.py::test_kl_nash_tends_to_a_minimax_winner_as_tau_shrinks,
    tests/games/test_nash.py::test_kl_nash_small_tau,
    tests/games/test_nash.py::test_kl_nash_batched_equals_loop,
    tests/games/test_nash.py::test_kl_nash_uniform_on_rock_paper_scissors,
    tests/games/test_nash.py::test_kl_nash_rejects_bad_input.
  """
  core.check_game(P, ref, tau)
  _checks.check_positive("tau", tau)
  dtype = _checks.default_float()
  P = jnp.asarray(P, dtype)
  ref = jnp.asarray(ref, dtype)
  tau = jnp.asarray(tau, dtype)
  batch = jnp.broadcast_shapes(np.shape(P)[:-2], np.shape(ref)[:-1],
                               np.shape(tau))
  k = np.shape(P)[-1]
  P = jnp.broadcast_to(P, batch + (k, k))
  ref = jnp.broadcast_to(ref, batch + (k,))
  tau = jnp.broadcast_to(tau, batch)
  return _solve(P, ref, tau)


# Jitted once per shape and dtype, so that eager calls do not retrace the loop.
_solve = jax.jit(jnp.vectorize(_solve_one, signature="(k,k),(k),()->(k)"))
