r"""Zeroth-order optimisation from ranking oracles: ZO-RankSGD and baselines.

When the only feedback is someone ranking a few candidates, a descent
direction must come from ranks alone. Tang, Rybin and Chang (2023) turn an
``(m, k)`` ranking oracle into such a direction with guarantees (ZO-RankSGD).
This module gives the oracle, the estimator and the optimisers as pure,
jittable pieces, and the test functions of the study ``zo_rank``:

* :func:`rank_oracle` — the ``(m, k)`` ranking oracle of a function ``f``:
  the indices of the ``k`` best (lowest ``f``) of ``m`` points, best first;
  exact, or noisy (a Plackett-Luce ranking over :math:`-f/T`, a judge who errs
  on close calls).
* :func:`rank_weights` and :func:`rank_estimator` — the ZO-RankSGD direction
  from the comparison graph that a ranking implies.
* Algorithms (:class:`prefsim.Algorithm`) on a :class:`Problem`:
  :func:`zo_rank_sgd`; the baselines :func:`zo_sgd` (two-point value
  oracle, Gaussian smoothing) and :func:`comparison_sgd` (one pairwise
  comparison per query); and :func:`rank_es`, a rank-based evolution
  strategy, for contrast.
* Test functions: :func:`quadratic` (:math:`x^\top A x + b^\top x`,
  :math:`A = GG^\top`), :func:`rosenbrock`, and :func:`point_mass_return`
  (the return of a linear policy on a 2-D point mass).

Every Algorithm's state is a :class:`ZOState` with the iterate ``x`` and the
number of oracle calls ``queries``; its per-step ``info`` is
``{"f": f(x_{t+1}), "queries": calls so far}`` (the logged ``f`` is for
monitoring: it is not an oracle call and the algorithms never see it).

Shapes: ``D`` the dimension of ``x``, ``m`` the points per ranking query,
``k`` the ranked ones.

Non-finite values of ``f``: called eagerly (concrete values), the oracles
raise ``ValueError``. Inside ``jit`` (every Algorithm under
:func:`prefsim.run`) they cannot raise: a rank oracle ranks NaN and
:math:`+\infty` after every finite value (NaN last) and :math:`-\infty`
first, ties by index, so the rank-based directions stay finite; the
value-based :func:`zo_sgd` propagates the NaN or infinity into ``x``.

References:
  Tang, Rybin, Chang. Zeroth-Order Optimization Meets Human Feedback:
  Provable Learning via Ranking Oracles. arXiv:2303.03751 (ICLR);
  §2 (a descent direction from ranking information) and §3 (ZO-RankSGD).
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from prefsim import _checks
from prefsim.models import bradley_terry
from prefsim.run import Algorithm

__all__ = [
    "POINT_MASS_DIM",
    "Problem",
    "ZOState",
    "comparison_sgd",
    "mean_scale",
    "n_edges",
    "point_mass_return",
    "quadratic",
    "rank_es",
    "rank_estimator",
    "rank_oracle",
    "rank_weights",
    "rosenbrock",
    "zo_rank_sgd",
    "zo_sgd",
]

Oracle = Callable[[jax.Array, jax.Array, int], jax.Array]


class Problem(NamedTuple):
  """A black-box minimisation problem: the objective and the starting point.

  A pytree whose only leaf is ``x0``: ``f`` is static (aux data), so a
  problem passes through ``jit``, :func:`prefsim.run` and
  :func:`prefsim.sweep` (``problem_axis=0`` batches starting points), and a
  new ``x0`` reuses the compiled code while a new ``f`` compiles anew.

  Attributes:
    f: the objective, a function of one point ``[D]`` to a scalar; written
      for one point (the oracles ``vmap`` it) and traceable by JAX.
    x0: the starting point, shape [D].
  """

  f: Callable[[jax.Array], jax.Array]
  x0: jax.Array


jax.tree_util.register_pytree_node(
    Problem, lambda p: ((p.x0,), p.f), lambda f, leaves: Problem(f, *leaves))


class ZOState(NamedTuple):
  """The state of every zeroth-order Algorithm here.

  Attributes:
    x: the iterate, shape [D].
    queries: oracle calls made so far, an int32 scalar.
  """

  x: jax.Array
  queries: jax.Array


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _check_m_k(m: Any, k: Any) -> tuple[int, int]:
  """``m >= 2`` and ``1 <= k <= m`` as Python ints, else ``ValueError``."""
  m = _checks.check_static_int("m", m, 2)
  k = _checks.check_static_int("k", k, 1)
  if k > m:
    raise ValueError(f"k (ranked points) must lie in [1, m] = [1, {m}], got "
                     f"{k}")
  return m, k


def _check_point(x: Any) -> None:
  _checks.check_ndim("x", x, 1, "one point, [D]")


def _check_finite_values(values: jax.Array) -> None:
  """Eagerly (concrete values) raise on NaN or infinite objective values."""
  if _checks.is_concrete(values):
    v = np.asarray(values)
    if not np.all(np.isfinite(v)):
      raise ValueError(
          f"f returned non-finite values ({np.sum(~np.isfinite(v))} of "
          f"{v.size} points: {v[~np.isfinite(v)][:4]}); a rank oracle "
          "cannot rank them. Inside jit they are ranked last (NaN, +inf) or "
          "first (-inf), see prefsim.zeroth_order")


def _check_problem(problem: Any) -> None:
  if not isinstance(problem, Problem):
    raise TypeError("problem must be a prefsim.zeroth_order.Problem(f, x0), "
                    f"got {type(problem).__name__}")
  if not callable(problem.f):
    raise TypeError(f"problem.f must be callable, got "
                    f"{type(problem.f).__name__}")


def _check_hyper(lr: Any, mu: Any) -> None:
  _checks.check_positive("lr", lr)
  _checks.check_positive("mu", mu)


# --------------------------------------------------------------------------
# The oracle and the estimator
# --------------------------------------------------------------------------


def rank_oracle(f: Callable[[jax.Array], jax.Array],
                noise: float | None = None) -> Oracle:
  r"""The ``(m, k)`` ranking oracle of ``f``: the ``k`` best of ``m`` points.

  The returned ``oracle(key, points, k)`` evaluates ``f`` on the ``m`` rows
  of ``points`` and returns the indices of the ``k`` lowest values, best
  first. With ``noise = T > 0`` the order is instead a Plackett-Luce ranking
  with utilities :math:`-f/T`,

  .. math:: \Pr(\tau) = \prod_{r=1}^{m}
            \frac{e^{-f(x_{\tau_r})/T}}{\sum_{l \ge r} e^{-f(x_{\tau_l})/T}},

  truncated to its first ``k`` places (sampled with
  :func:`prefsim.models.bradley_terry.pl_sample`): two points whose values
  differ by much less than ``T`` are a coin flip, as for a human judge. The
  exact oracle (``noise=None``) is the limit :math:`T \to 0`; its ranking is
  invariant to any strictly increasing transform of ``f``, the noisy one is
  not (``T`` sets the scale). The exact oracle ignores ``key``; ties are
  broken by index.

  Args:
    f: the objective, a function of one point ``[D]`` to a scalar.
    noise: the Plackett-Luce temperature ``T > 0``, or None for the exact
      oracle.

  Returns:
    ``oracle(key, points, k)``: ``points`` of shape [m, D] and a Python int
    ``k`` in ``[1, m]`` give int32 indices of shape [k], best first.

  Raises:
    ValueError: ``noise <= 0`` (eager). The oracle raises ``ValueError`` when
      called eagerly on values that are not all finite, or with ``k`` outside
      ``[1, m]``; inside ``jit`` NaN and :math:`+\infty` are ranked last (NaN
      after :math:`+\infty`) and :math:`-\infty` first.
    TypeError: ``f`` is not callable.

  References:
    Tang, Rybin, Chang (2023), arXiv:2303.03751, §2: the ranking oracle.
    Tests: tests/test_zeroth_order.py::test_exact_oracle_returns_the_k_best_in_order,
    tests/test_zeroth_order.py::test_noisy_oracle_first_place_is_softmax_of_minus_f,
    tests/test_zeroth_order.py::test_non_finite_values_raise_eagerly_and_rank_last_in_jit.
  """
  if not callable(f):
    raise TypeError(f"f must be callable, got {type(f).__name__}")
  if noise is not None:
    _checks.check_positive("noise", noise)

  def oracle(key: jax.Array, points: jax.Array, k: int) -> jax.Array:
    _checks.check_ndim("points", points, 2, "[m, D]")
    _check_m_k(points.shape[0], k)
    values = jax.vmap(f)(points)
    _check_finite_values(values)
    if noise is None:
      ranking = _exact_ranking(values)
    else:
      utilities = -values / jnp.asarray(noise, values.dtype)
      ranking = bradley_terry.pl_sample(key, utilities, 1)[0]
    return ranking[:k].astype(jnp.int32)

  return oracle


def _exact_ranking(values: jax.Array) -> jax.Array:
  """All ``m`` indices by increasing value, NaN last, ties by index.

  The order of a stable ``argsort`` (which also puts NaN last), computed
  from the ``m x m`` comparisons and one scatter: for the small ``m`` of a
  ranking query this is far cheaper than a sort on CPU.
  """
  m = values.shape[0]
  nan = jnp.isnan(values)
  v = jnp.where(nan, jnp.inf, values)
  idx = jnp.arange(m)
  tie = (v[:, None] == v[None, :]) & (idx[:, None] < idx[None, :])
  ahead = (nan[:, None] == nan[None, :]) & ((v[:, None] < v[None, :]) | tie)
  ahead = ahead | (~nan[:, None] & nan[None, :])   # [j, l]: j ranks before l
  rank = jnp.sum(ahead, axis=0)
  return jnp.zeros((m,), jnp.int32).at[rank].set(idx.astype(jnp.int32))


def mean_scale(m: int, k: int) -> float:
  r"""The length :math:`c_{m,k}` of the mean rank direction on linear ``f``.

  For :math:`f(x) = a^\top x` and the exact oracle,
  :math:`E[\hat g] = c_{m,k}\,a/\lVert a\rVert` (the weights depend only on
  the projections :math:`z_l = \hat a^\top\xi_l`, so the orthogonal part
  averages out), with

  .. math:: c_{m,k} = \frac{1}{|E|}\sum_{r=0}^{k-1}(2r - m + 1 - k)\,
            E[z_{(r)}],

  :math:`z_{(r)}` the ``r``-th smallest of ``m`` standard normals (the
  unranked points' projections sum to minus the ranked ones' in
  expectation). :math:`c_{2,1} = 2/\sqrt\pi`, and
  :math:`c_{m,k} = 2/\sqrt\pi` whenever :math:`k \ge m - 1` (every pair is
  an edge and :math:`E|z_i - z_j| = 2/\sqrt\pi`). The order-statistic means
  are computed by the trapezoidal rule on a fine grid (error below 1e-9).

  Args:
    m: points per query, ``>= 2``.
    k: ranked points, in ``[1, m]``.

  Returns:
    :math:`c_{m,k}`, a Python float.

  Raises:
    ValueError: ``m < 2`` or ``k`` outside ``[1, m]``.

  Tests: tests/test_zeroth_order.py::test_mean_direction_is_scaled_normalised_gradient.
  """
  m, k = _check_m_k(m, k)
  z = np.linspace(-12.0, 12.0, 48001)
  cdf = special.ndtr(z)
  pdf = np.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
  total = 0.0
  for r in range(k):
    # Density of the r-th smallest of m: m C(m-1, r) F^r (1-F)^(m-1-r) f.
    density = (m * math.comb(m - 1, r) * cdf ** r * (1.0 - cdf) ** (m - 1 - r)
               * pdf)
    total += (2 * r - m + 1 - k) * np.trapezoid(z * density, z)
  return float(total / n_edges(m, k))


def n_edges(m: int, k: int) -> int:
  r"""Edges of the comparison graph of an ``(m, k)`` ranking.

  .. math:: |E| = \binom{k}{2} + k(m - k)

  Every ordered pair inside the top ``k`` and every top-``k`` point against
  each of the ``m - k`` unranked ones.

  Raises:
    ValueError: ``m < 2`` or ``k`` outside ``[1, m]``.
  """
  m, k = _check_m_k(m, k)
  return k * (k - 1) // 2 + k * (m - k)


def rank_weights(ranking: jax.Array, m: int) -> jax.Array:
  r"""Per-point weights of the ZO-RankSGD direction from an ``(m, k)`` ranking.

  A ranking :math:`\tau_1, \dots, \tau_k` (best first) of ``k`` of ``m``
  points implies the comparison graph :math:`E` of pairs ``(i, j)``, "``i``
  better than ``j``": every pair inside the top ``k`` and every top-``k``
  point against every unranked one. The ZO-RankSGD direction is the average
  over the edges of the worse point's perturbation minus the better one's,

  .. math:: \hat g = \frac{1}{|E|}\sum_{(i,j)\in E} (\xi_j - \xi_i)
            = \sum_{l=1}^{m} w_l\,\xi_l,

  so point ``l`` has weight :math:`w_l = (\#\text{edges it loses} -
  \#\text{edges it wins})/|E|`: :math:`(2r - m + 1)/|E|` for the point at
  0-based rank ``r < k`` and :math:`k/|E|` for an unranked point. The weights
  sum to zero, so :math:`\hat g` is unchanged when every :math:`\xi_l` moves
  by the same vector.

  Args:
    ranking: int indices of the ``k`` best points, best first, shape [k].
    m: the number of points, a Python int ``>= 2``.

  Returns:
    The weights, shape [m], in the default float dtype.

  Raises:
    ValueError: ``m < 2``, ``k`` outside ``[1, m]``, or (when concrete)
      indices outside ``[0, m)``. Under ``jit`` indices are not checked
      (out-of-range ones are dropped by the scatter) and repeated indices
      are not detected.

  References:
    Tang, Rybin, Chang (2023), arXiv:2303.03751, §2 (the rank-based
    estimator from the comparison graph of a ranking).
    Tests: tests/test_zeroth_order.py::test_rank_weights_match_the_edge_list_and_sum_to_zero.
  """
  _checks.check_ndim("ranking", ranking, 1, "the k best indices, [k]")
  m, k = _check_m_k(m, np.shape(ranking)[0])
  _checks.check_indices("ranking", ranking, m)
  dtype = _checks.default_float()
  ranked = 2 * jnp.arange(k, dtype=dtype) - (m - 1)
  weights = jnp.full((m,), k, dtype).at[jnp.asarray(ranking)].set(
      ranked, mode="drop")
  return weights / n_edges(m, k)


def rank_estimator(key: jax.Array, oracle: Oracle, x: jax.Array, *, m: int,
                   k: int, mu: float | jax.Array) -> jax.Array:
  r"""The ZO-RankSGD direction at ``x`` from one ``(m, k)`` ranking query.

  Draw :math:`\xi_1, \dots, \xi_m \sim N(0, I_D)`, ask the oracle to rank
  the points :math:`x + \mu\xi_l`, and average over the implied comparison
  graph (:func:`rank_weights`):

  .. math:: \hat g = \frac{1}{|E|}\sum_{(i,j)\in E}(\xi_j - \xi_i),
            \qquad |E| = \binom{k}{2} + k(m-k).

  :math:`-\hat g` is a descent direction in expectation. For ``m = 2``,
  ``k = 1`` and linear ``f`` (or :math:`\mu \to 0` on smooth ``f``),
  :math:`E[\hat g] = \frac{2}{\sqrt\pi}\nabla f / \lVert\nabla f\rVert`:
  :math:`\hat g = (\xi_1 - \xi_2)\,\mathrm{sign}(\nabla f^\top(\xi_1 -
  \xi_2))` with :math:`\xi_1 - \xi_2 \sim N(0, 2I)` and
  :math:`E[z\,\mathrm{sign}(a^\top z)] = \sigma\sqrt{2/\pi}\,a/\lVert a
  \rVert` for :math:`z \sim N(0, \sigma^2 I)`. The same holds for any ``m``
  with ``k >= m - 1`` (a full ranking: every pair is an edge). With the
  exact oracle the direction depends on ``f`` only through the ranking, so
  it is invariant to strictly increasing transforms of ``f``.

  Args:
    key: a ``jax.random`` key (split between the perturbations and the
      oracle).
    oracle: a ranking oracle, e.g. ``rank_oracle(f)``.
    x: the current point, shape [D].
    m: points per query, a Python int ``>= 2``.
    k: ranked points, a Python int in ``[1, m]``.
    mu: the smoothing radius :math:`\mu > 0`.

  Returns:
    :math:`\hat g`, shape [D], dtype of ``x`` (promoted to float).

  Raises:
    ValueError: ``m < 2``, ``k`` outside ``[1, m]``, ``x`` not 1-D, or (eager)
      ``mu <= 0``. Under ``jit`` a traced ``mu`` is not checked: ``mu = 0``
      makes every point ``x``, the (exact) oracle ranks the ties by index
      and :math:`\hat g` is a random direction that ignores ``f``.

  References:
    Tang, Rybin, Chang (2023), arXiv:2303.03751, §2.
    Tests: tests/test_zeroth_order.py::test_direction_invariant_to_increasing_transforms,
    tests/test_zeroth_order.py::test_mean_direction_is_scaled_normalised_gradient,
    tests/test_zeroth_order.py::test_more_candidates_lower_the_variance,
    tests/test_zeroth_order.py::test_bad_arguments_raise.
  """
  m, k = _check_m_k(m, k)
  _check_point(x)
  _checks.check_positive("mu", mu)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(_checks.default_float())
  key_xi, key_oracle = jax.random.split(key)
  xi = jax.random.normal(key_xi, (m, x.shape[0]), x.dtype)
  ranking = oracle(key_oracle, x + jnp.asarray(mu, x.dtype) * xi, k)
  return rank_weights(ranking, m).astype(x.dtype) @ xi


# --------------------------------------------------------------------------
# Algorithms
# --------------------------------------------------------------------------


def _init(key: jax.Array, problem: Problem) -> ZOState:
  del key
  _check_problem(problem)
  x0 = jnp.asarray(problem.x0)
  if not jnp.issubdtype(x0.dtype, jnp.floating):
    x0 = x0.astype(_checks.default_float())
  _check_point(x0)
  return ZOState(x0, jnp.zeros((), jnp.int32))


def _advance(state: ZOState, x: jax.Array, problem: Problem
             ) -> tuple[ZOState, dict[str, jax.Array]]:
  """One oracle call made: the new state and the step's info."""
  new = ZOState(x.astype(state.x.dtype), state.queries + 1)
  return new, {"f": problem.f(new.x), "queries": new.queries}


def zo_rank_sgd(lr: float, m: int, k: int, mu: float, *,
                noise: float | None = None) -> Algorithm:
  r"""ZO-RankSGD: one ``(m, k)`` ranking query per step.

  .. math:: x_{t+1} = x_t - \eta\,\hat g_t

  with :math:`\hat g_t` the rank estimator (:func:`rank_estimator`) of the
  problem's ranking oracle (:func:`rank_oracle` with ``noise``).

  Args:
    lr: the step size :math:`\eta > 0`.
    m: points per query, ``>= 2``.
    k: ranked points, in ``[1, m]``.
    mu: the smoothing radius :math:`\mu > 0`.
    noise: the oracle's Plackett-Luce temperature, or None for exact ranks.

  Returns:
    An :class:`prefsim.Algorithm` on a :class:`Problem`; state
    :class:`ZOState`; info ``{"f", "queries"}`` (one query per step).

  Raises:
    ValueError: ``m < 2``, ``k`` outside ``[1, m]``, ``lr <= 0``,
      ``mu <= 0`` or ``noise <= 0``.

  References:
    Tang, Rybin, Chang (2023), arXiv:2303.03751, §3.
    Tests: tests/test_zeroth_order.py::test_expected_descent_for_small_steps,
    tests/test_zeroth_order.py::test_algorithms_run_sweep_and_reduce_f.
  """
  m, k = _check_m_k(m, k)
  _check_hyper(lr, mu)
  if noise is not None:
    _checks.check_positive("noise", noise)

  def step(key, state, problem):
    oracle = rank_oracle(problem.f, noise)
    g = rank_estimator(key, oracle, state.x, m=m, k=k, mu=mu)
    return _advance(state, state.x - lr * g, problem)

  return Algorithm(_init, step)


def zo_sgd(lr: float, mu: float) -> Algorithm:
  r"""ZO-SGD: the two-point value oracle with Gaussian smoothing.

  .. math:: \hat g_t = \frac{f(x_t + \mu\xi) - f(x_t)}{\mu}\,\xi,\quad
            \xi \sim N(0, I_D),\qquad x_{t+1} = x_t - \eta\,\hat g_t.

  :math:`\hat g` is an unbiased estimate of the gradient of the Gaussian
  smoothing :math:`f_\mu(x) = E f(x + \mu\xi)`; on a quadratic
  :math:`E[\hat g] = \nabla f(x)` exactly (the odd moments of :math:`\xi`
  vanish). One query is one call of the two-point value oracle (two values
  of ``f``). Since :math:`E\lVert\hat g\rVert^2 \approx (D + 2)\lVert\nabla
  f\rVert^2` for small :math:`\mu`, an :math:`L`-smooth ``f`` decreases in
  expectation for :math:`\eta < 2/((D+2)L)`, fastest at :math:`1/((D+2)L)`.
  Needs values, not ranks: it is not invariant to transforms of ``f``, and
  inside ``jit`` a non-finite value makes ``x`` non-finite.

  Args:
    lr: the step size :math:`\eta > 0`.
    mu: the smoothing radius :math:`\mu > 0`.

  Returns:
    An :class:`prefsim.Algorithm` on a :class:`Problem`; state
    :class:`ZOState`; info ``{"f", "queries"}``.

  Raises:
    ValueError: ``lr <= 0`` or ``mu <= 0``.

  References:
    Nesterov, Spokoiny. Random gradient-free minimization of convex
    functions. Found. Comput. Math. 17:527-566, 2017 (Gaussian smoothing).
    Tests: tests/test_zeroth_order.py::test_zo_sgd_is_unbiased_on_a_quadratic.
  """
  _check_hyper(lr, mu)

  def step(key, state, problem):
    x = state.x
    xi = jax.random.normal(key, x.shape, x.dtype)
    g = (problem.f(x + mu * xi) - problem.f(x)) / mu * xi
    return _advance(state, x - lr * g, problem)

  return Algorithm(_init, step)


def comparison_sgd(lr: float, mu: float, *,
                   noise: float | None = None) -> Algorithm:
  r"""Comparison-only descent: one pairwise comparison per query.

  .. math:: \hat g_t = \xi\;\mathrm{sign}\bigl(f(x_t + \mu\xi) - f(x_t)\bigr),
            \quad \xi \sim N(0, I_D),\qquad x_{t+1} = x_t - \eta\,\hat g_t,

  the sign read from the ``(2, 1)`` ranking oracle on
  :math:`\{x_t, x_t + \mu\xi\}` (with ``noise``, a Bradley-Terry comparison
  at temperature ``T``). For linear ``f``,
  :math:`E[\hat g] = \sqrt{2/\pi}\,\nabla f/\lVert\nabla f\rVert` with
  :math:`E\lVert\hat g\rVert^2 = D`: the same signal-to-noise ratio as the
  ``(2, 1)`` rank estimator.

  Args:
    lr: the step size :math:`\eta > 0`.
    mu: the smoothing radius :math:`\mu > 0`.
    noise: the comparison's temperature, or None for exact comparisons.

  Returns:
    An :class:`prefsim.Algorithm` on a :class:`Problem`; state
    :class:`ZOState`; info ``{"f", "queries"}``.

  Raises:
    ValueError: ``lr <= 0``, ``mu <= 0`` or ``noise <= 0``.

  References:
    Tang, Rybin, Chang (2023), arXiv:2303.03751 (the comparison-based
    baseline of their experiments).
    Tests: tests/test_zeroth_order.py::test_comparison_sgd_mean_is_root_two_over_pi_times_unit_gradient.
  """
  _check_hyper(lr, mu)
  if noise is not None:
    _checks.check_positive("noise", noise)

  def step(key, state, problem):
    x = state.x
    key_xi, key_oracle = jax.random.split(key)
    xi = jax.random.normal(key_xi, x.shape, x.dtype)
    best = rank_oracle(problem.f, noise)(
        key_oracle, jnp.stack([x, x + mu * xi]), 1)[0]
    # x better than x + mu xi: f grows along xi, so step against it.
    sign = jnp.where(best == 0, 1.0, -1.0).astype(x.dtype)
    return _advance(state, x - lr * sign * xi, problem)

  return Algorithm(_init, step)


def rank_es(lr: float, m: int, k: int, mu: float, *,
            noise: float | None = None) -> Algorithm:
  r"""A rank-based evolution strategy: move towards the ``k`` best samples.

  .. math:: x_{t+1} = x_t + \eta \sum_{r=1}^{k} w_r\,\xi_{\tau_r},\qquad
            w_r = \frac{\log(k + \tfrac12) - \log r}
                       {\sum_{s=1}^{k} \log(k + \tfrac12) - \log s},

  with :math:`\tau` the ``(m, k)`` ranking of :math:`x_t + \mu\xi_l`:
  weighted recombination of the selected perturbations with positive,
  decreasing log-rank weights (as in CMA-ES, without step-size or
  covariance adaptation). Unlike ZO-RankSGD the weights do not sum to zero:
  unranked points carry no information and the step is a weighted mean of
  the winners' perturbations.

  Args:
    lr: the step size :math:`\eta > 0` (``lr = mu`` moves to the weighted
      mean of the selected points).
    m: points per query, ``>= 2``.
    k: selected points, in ``[1, m]``.
    mu: the sampling radius :math:`\mu > 0`.
    noise: the oracle's Plackett-Luce temperature, or None for exact ranks.

  Returns:
    An :class:`prefsim.Algorithm` on a :class:`Problem`; state
    :class:`ZOState`; info ``{"f", "queries"}``.

  Raises:
    ValueError: ``m < 2``, ``k`` outside ``[1, m]``, ``lr <= 0``,
      ``mu <= 0`` or ``noise <= 0``.

  References:
    Hansen. The CMA evolution strategy: a tutorial. arXiv:1604.00772
    (weighted recombination).
    Tests: tests/test_zeroth_order.py::test_algorithms_run_sweep_and_reduce_f.
  """
  m, k = _check_m_k(m, k)
  _check_hyper(lr, mu)
  if noise is not None:
    _checks.check_positive("noise", noise)
  raw = np.log(k + 0.5) - np.log(np.arange(1, k + 1))
  recombination = raw / raw.sum()

  def step(key, state, problem):
    x = state.x
    key_xi, key_oracle = jax.random.split(key)
    xi = jax.random.normal(key_xi, (m, x.shape[0]), x.dtype)
    ranking = rank_oracle(problem.f, noise)(key_oracle, x + mu * xi, k)
    move = jnp.asarray(recombination, x.dtype) @ xi[ranking]
    return _advance(state, x + lr * move, problem)

  return Algorithm(_init, step)


# --------------------------------------------------------------------------
# Test functions
# --------------------------------------------------------------------------


def quadratic(key: jax.Array, dim: int
              ) -> tuple[Callable[[jax.Array], jax.Array], jax.Array]:
  r"""A random convex quadratic of rank ``dim/2`` with a finite minimum.

  .. math:: f(x) = x^\top A x + b^\top x,\qquad A = GG^\top,\quad
            b = G h,\qquad f^* = -\tfrac14\lVert h\rVert^2,

  with :math:`G \in \mathbb{R}^{D \times D/2}`, entries
  :math:`N(0, 1/D)`, and :math:`h \sim N(0, I_{D/2})`. :math:`A` is singular
  (rank :math:`D/2`), so a generic :math:`b` would make ``f`` unbounded
  below; :math:`b = Gh` lies in the range of :math:`A` and the minimum is
  attained where :math:`G^\top x = -h/2` (``G`` has full column rank almost
  surely): :math:`f = \lVert G^\top x\rVert^2 + h^\top G^\top x`. The
  scale :math:`1/D` keeps the largest curvature :math:`2\lambda_{\max}(A)`
  near :math:`2(1 + 1/\sqrt2)^2 \approx 5.8` for any ``D``.

  Args:
    key: a ``jax.random`` key.
    dim: the dimension ``D``, an even Python int ``>= 2``.

  Returns:
    ``(f, f_star)``: the function of one point ``[D]`` and its minimum value.

  Raises:
    ValueError: ``dim`` odd or below 2.

  Tests: tests/test_zeroth_order.py::test_quadratic_minimum_is_minus_quarter_h_squared.
  """
  dim = _checks.check_static_int("dim", dim, 2)
  if dim % 2:
    raise ValueError(f"dim must be even (G is D x D/2), got {dim}")
  dtype = _checks.default_float()
  key_g, key_h = jax.random.split(key)
  g = jax.random.normal(key_g, (dim, dim // 2), dtype) / math.sqrt(dim)
  h = jax.random.normal(key_h, (dim // 2,), dtype)

  def f(x: jax.Array) -> jax.Array:
    z = x @ g
    return z @ z + h @ z

  return f, -0.25 * (h @ h)


def rosenbrock(x: jax.Array) -> jax.Array:
  r"""The Rosenbrock function, minimum 0 at :math:`x = (1, \dots, 1)`.

  .. math:: f(x) = \sum_{i=1}^{D-1} 100\,(x_{i+1} - x_i^2)^2 + (1 - x_i)^2

  Args:
    x: a point, shape [D], ``D >= 2``.

  Returns:
    The value, a scalar.

  Tests: tests/test_zeroth_order.py::test_rosenbrock_minimum_and_reference_values.
  """
  _checks.check_ndim("x", x, 1, "one point, [D]")
  x = jnp.asarray(x)
  return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


POINT_MASS_DIM = 10  # W [2, 4] and c [2] of the linear policy.
_STARTS = ((1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0))


def point_mass_return(theta: jax.Array, *, horizon: int = 50,
                      dt: float = 0.1) -> jax.Array:
  r"""Mean return of a linear tanh policy on a 2-D point mass, four episodes.

  State :math:`s = (p, v) \in \mathbb{R}^4`; action
  :math:`a = \tanh(W s + c) \in [-1, 1]^2` with
  :math:`\theta = (\mathrm{vec}\,W, c) \in \mathbb{R}^{10}`; dynamics
  :math:`v' = v + \Delta t\,a`, :math:`p' = p + \Delta t\,v'`; reward
  :math:`r = -\lVert p'\rVert^2 - 0.01\lVert a\rVert^2`. The return
  :math:`\sum_{t<H} r_t` is averaged over four episodes that start at rest
  at :math:`p_0 = (\pm1, 0), (0, \pm1)` (deterministic: a ranking of
  policies by this return is what a judge watching the four episodes
  reports). Doing nothing (:math:`\theta = 0`) returns :math:`-H`.

  Args:
    theta: the policy parameters, shape [10]: ``W`` row-major, then ``c``.
    horizon: the episode length ``H``, a Python int.
    dt: the time step.

  Returns:
    The mean return, a scalar (higher is better; minimise its negative).

  Tests: tests/test_zeroth_order.py::test_point_mass_return_matches_a_python_loop.
  """
  _checks.check_ndim("theta", theta, 1, f"[{POINT_MASS_DIM}]")
  if np.shape(theta)[0] != POINT_MASS_DIM:
    raise ValueError(f"theta must have shape [{POINT_MASS_DIM}], got "
                     f"{np.shape(theta)}")
  horizon = _checks.check_static_int("horizon", horizon)
  theta = jnp.asarray(theta)
  w, c = theta[:8].reshape(2, 4), theta[8:]
  p0 = jnp.asarray(_STARTS, theta.dtype)

  def body(carry, _):
    p, v = carry
    a = jnp.tanh(jnp.concatenate([p, v], axis=-1) @ w.T + c)
    v = v + dt * a
    p = p + dt * v
    return (p, v), -jnp.sum(p * p, -1) - 0.01 * jnp.sum(a * a, -1)

  _, rewards = jax.lax.scan(body, (p0, jnp.zeros_like(p0)), None,
                            length=horizon)
  return jnp.mean(jnp.sum(rewards, axis=0))
