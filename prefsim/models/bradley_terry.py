r"""Bradley-Terry, Plackett-Luce and Davidson (ties) preference models.

Items ``0..K-1`` carry utilities :math:`u \in \mathbb{R}^K`; utilities are
identified only up to a common shift, and every fit returns the mean-zero
representative.

* Bradley-Terry (BT): :math:`P(i \succ j) = \sigma(u_i - u_j)`.
* Plackett-Luce (PL): a ranking :math:`\tau` (best first) of ``m`` items has
  probability :math:`\prod_k e^{u_{\tau_k}} / \sum_{l \ge k} e^{u_{\tau_l}}`.
* Davidson (1970): BT with ties, governed by :math:`\nu = e^{\log\nu}`.

Shapes use the glossary: ``K`` items, ``P`` comparisons (pairs), ``R``
rankings, ``m`` ranking length.

Existence of the maximum-likelihood estimate: with no L2 penalty the BT
(and PL) MLE exists, and is unique up to the shift, iff the directed
comparison graph with an edge loser -> winner for every comparison is
strongly connected (Zermelo 1929; Ford 1957; Hunter 2004, Assumption 1).
``fit`` checks this on the host when its inputs are concrete; see
:func:`is_strongly_connected`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.sparse
import scipy.sparse.csgraph

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim import _optim

__all__ = [
    "davidson_fit",
    "davidson_log_likelihood",
    "davidson_prob",
    "davidson_sample",
    "fit",
    "is_strongly_connected",
    "log_likelihood",
    "pl_fit",
    "pl_log_prob",
    "pl_sample",
    "prob",
    "sample",
]

# Above this many items ``fit(method="auto")`` switches from the dense
# Cholesky Newton step (O(K^3) per step, K^2 memory) to matrix-free Newton-CG.
_DENSE_MAX_ITEMS = 256


def _n_items_of(utilities: Any) -> int:
  _checks.check_ndim("utilities", utilities, 1, "one utility per item, [K]")
  return int(np.shape(utilities)[0])


# --------------------------------------------------------------------------
# Bradley-Terry
# --------------------------------------------------------------------------


def prob(u_i: jax.typing.ArrayLike, u_j: jax.typing.ArrayLike) -> jax.Array:
  r"""Bradley-Terry probability that item ``i`` beats item ``j``.

  .. math:: P(i \succ j) = \sigma(u_i - u_j) = \frac{e^{u_i}}{e^{u_i} + e^{u_j}}

  Args:
    u_i: utilities of the first items, any shape broadcasting with ``u_j``.
    u_j: utilities of the second items.

  Returns:
    The win probabilities, the broadcast shape of ``u_i`` and ``u_j``.

  References:
    Bradley, R. A. and Terry, M. E. Rank analysis of incomplete block designs:
    I. The method of paired comparisons. Biometrika 39(3/4):324-345, 1952.
  """
  return jax.nn.sigmoid(jnp.subtract(u_i, u_j))


def log_likelihood(utilities: jax.typing.ArrayLike,
                   winners: jax.typing.ArrayLike,
                   losers: jax.typing.ArrayLike) -> jax.Array:
  r"""Bradley-Terry log-likelihood of a list of comparisons.

  .. math:: \ell(u) = \sum_{p=1}^{P} \log \sigma(u_{w_p} - u_{l_p})

  computed in a stable log-sigmoid form, so that the value and its gradient
  stay finite for utility gaps of 1e4 in float32. Invariant to adding a
  constant to every utility.

  Args:
    utilities: item utilities, shape [K].
    winners: integer indices in ``[0, K)`` of the winning items, shape [P].
    losers: integer indices of the losing items, shape [P].

  Returns:
    The log-likelihood, a scalar.

  Raises:
    ValueError: ``winners`` and ``losers`` differ in shape, or (when concrete)
      hold indices outside ``[0, K)``. Under ``jit`` indices are not checked
      and out-of-range ones are clamped by the gather.

  References:
    Hunter, D. R. MM algorithms for generalized Bradley-Terry models. Annals
    of Statistics 32(1):384-406, 2004: the model of eq. (1).
  """
  k = _n_items_of(utilities)
  _checks.check_same_shape(winners=winners, losers=losers)
  _checks.check_indices("winners", winners, k)
  _checks.check_indices("losers", losers, k)
  u = jnp.asarray(utilities)
  return jnp.sum(log_sigmoid(u[winners] - u[losers]))


def sample(key: jax.Array, utilities: jax.typing.ArrayLike,
           i: jax.typing.ArrayLike, j: jax.typing.ArrayLike) -> jax.Array:
  r"""Samples Bradley-Terry outcomes: True where ``i`` beats ``j``.

  .. math:: \mathbb{1}[i \succ j] \sim \mathrm{Bernoulli}(\sigma(u_i - u_j))

  Args:
    key: a ``jax.random`` key.
    utilities: item utilities, shape [K].
    i: integer indices of the first items, shape [P] (any shape).
    j: integer indices of the second items, same shape as ``i``.

  Returns:
    Boolean outcomes shaped like ``i``.

  Raises:
    ValueError: ``i`` and ``j`` differ in shape, or (when concrete) hold
      indices outside ``[0, K)``; under ``jit`` out-of-range indices are
      clamped by the gather.

  References:
    Bradley and Terry (1952), Biometrika 39(3/4):324-345.
  """
  k = _n_items_of(utilities)
  _checks.check_same_shape(i=i, j=j)
  _checks.check_indices("i", i, k)
  _checks.check_indices("j", j, k)
  u = jnp.asarray(utilities)
  return jax.random.bernoulli(key, prob(u[i], u[j]))


def is_strongly_connected(winners: Any, losers: Any, n_items: int) -> bool:
  r"""Whether the comparison graph is strongly connected (host-side).

  The graph has the ``n_items`` items as vertices and an edge
  ``loser -> winner`` for every comparison. It is strongly connected iff for
  every split of the items into two non-empty groups, some item of each group
  beats some item of the other at least once; this is exactly when the
  Bradley-Terry MLE without penalty exists (finite, unique up to a shift).

  Args:
    winners: integer indices of the winners, shape [P] (concrete).
    losers: integer indices of the losers, shape [P] (concrete).
    n_items: the number of items K.

  Returns:
    A Python bool.

  References:
    Zermelo, E. Die Berechnung der Turnier-Ergebnisse als ein Maximumproblem
    der Wahrscheinlichkeitsrechnung. Math. Zeitschrift 29:436-460, 1929.
    Ford, L. R. Solution of a ranking problem from binary comparisons. Amer.
    Math. Monthly 64(8):28-33, 1957.
    Hunter (2004), Assumption 1.
  """
  n_items = _checks.check_static_int("n_items", n_items)
  _checks.check_same_shape(winners=winners, losers=losers)
  _checks.check_indices("winners", winners, n_items)
  _checks.check_indices("losers", losers, n_items)
  return _strongly_connected(winners, losers, n_items)


def _strongly_connected(winners: Any, losers: Any, n_items: int) -> bool:
  """`is_strongly_connected` without the argument checks."""
  if n_items == 1:
    return True
  w = np.asarray(winners).ravel()
  l = np.asarray(losers).ravel()
  graph = scipy.sparse.coo_matrix(
      (np.ones(w.size, np.int8), (l, w)), shape=(n_items, n_items)).tocsr()
  n_comp, _ = scipy.sparse.csgraph.connected_components(
      graph, directed=True, connection="strong")
  return bool(n_comp == 1)


def _raise_if_no_mle(name: str, winners: Any, losers: Any, n_items: int,
                     what: str) -> None:
  if not _strongly_connected(winners, losers, n_items):
    raise ValueError(
        f"{name}: the comparison graph ({what}) over {n_items} items is not "
        "strongly connected, so the maximum-likelihood estimate does not "
        "exist (some utilities diverge; Zermelo 1929, Ford 1957, Hunter 2004 "
        "Assumption 1). Pass l2 > 0 for a penalised (MAP) estimate, or add "
        "comparisons.")


def _pair_objective_and_step_parts(u, winners, losers, l2):
  """Margins, BT probabilities and gradient of the penalised log-likelihood."""
  k = u.shape[0]
  x = u[winners] - u[losers]
  s_loss = jax.nn.sigmoid(-x)  # P(loser beats winner) under u.
  g = (jax.ops.segment_sum(s_loss, winners, num_segments=k)
       - jax.ops.segment_sum(s_loss, losers, num_segments=k) - l2 * u)
  return x, s_loss, g


def _objective_gain(u, step, t, x, winners, losers, l2):
  """f(u + t step) - f(u) computed as a sum of differences (no cancellation).

  f(u) = sum_p log sigma(u_w - u_l) - l2/2 |u|^2.
  """
  dx = step[winners] - step[losers]
  gain = jnp.sum(log_sigmoid(x + t * dx) - log_sigmoid(x))
  return gain - 0.5 * l2 * (2 * t * (u @ step) + t * t * (step @ step))


def _newton_direction_dense(u, x, winners, losers, l2, g, counts):
  """Newton step from the dense K x K Hessian (Cholesky)."""
  del x, winners, losers
  k = u.shape[0]
  s = jax.nn.sigmoid(u[:, None] - u[None, :])
  w = counts * s * s.T  # N_ij sigma(u_i - u_j) sigma(u_j - u_i).
  diag = jnp.sum(w, axis=1) + l2
  # A ridge at rounding level keeps the factorisation finite when the graph
  # is disconnected (singular Laplacian); g is orthogonal to its null space.
  ridge = jnp.finfo(u.dtype).eps * (1 + jnp.max(diag))
  h = (jnp.diag(diag + ridge) - w) + 1.0 / k
  factor = jax.scipy.linalg.cho_factor(h, lower=True)
  return jax.scipy.linalg.cho_solve(factor, g)


def _newton_direction_cg(u, x, winners, losers, l2, g, counts, cg_iters):
  """Newton step by Jacobi-preconditioned CG, Hessian-vector by segment_sum."""
  del counts
  k = u.shape[0]
  s = jax.nn.sigmoid(x)
  weight = s * (1 - s)
  diag = (jax.ops.segment_sum(weight, winners, num_segments=k)
          + jax.ops.segment_sum(weight, losers, num_segments=k) + l2 + 1.0 / k)

  def hvp(v):
    wdv = weight * (v[winners] - v[losers])
    return (jax.ops.segment_sum(wdv, winners, num_segments=k)
            - jax.ops.segment_sum(wdv, losers, num_segments=k)
            + l2 * v + jnp.mean(v))

  step, _ = jax.scipy.sparse.linalg.cg(
      hvp, g, tol=1e-3 if u.dtype == jnp.float32 else 1e-6, maxiter=cg_iters,
      M=lambda v: v / diag)
  return step


@functools.partial(jax.jit,
                   static_argnames=("n_items", "method", "max_iter"))
def _fit_core(winners, losers, l2, tol, *, n_items, method, max_iter):
  """Damped Newton ascent on the penalised BT log-likelihood (jitted)."""
  dtype = _checks.default_float()
  k = n_items
  if method == "newton":
    counts = jnp.zeros((k, k), dtype).at[winners, losers].add(1)
    counts = counts + counts.T
    direction = _newton_direction_dense
  else:
    counts = None
    direction = functools.partial(_newton_direction_cg,
                                  cg_iters=min(max(k, 10), 200))
  eps = jnp.finfo(dtype).eps
  # Rounding level of a sum of P log-sigmoid differences (the gain below).
  noise = 8 * eps * jnp.sqrt(jnp.asarray(winners.size + 1, dtype))

  def cond(carry):
    _, it, step_size, _, done = carry
    return (it < max_iter) & (step_size > tol) & jnp.logical_not(done)

  def body(carry):
    u, it, prev_size, _, _ = carry
    x, _, g = _pair_objective_and_step_parts(u, winners, losers, l2)
    step = direction(u, x, winners, losers, l2, g, counts)
    step = step - jnp.mean(step)
    slope = g @ step  # Newton decrement squared (twice the predicted gain).
    gain_at = lambda t: _objective_gain(u, step, t, x, winners, losers, l2)
    # Rounding level of the gain (a sum of P log-sigmoid differences).
    scale = noise * (1 + jnp.mean(jnp.abs(log_sigmoid(x))))

    # Backtracking (Armijo) on the gain, computed as a sum of differences; a
    # step whose predicted gain is below rounding level is taken as it is.
    def ls_cond(t):
      gain = gain_at(t)
      bad = (gain < 1e-4 * t * slope) | jnp.isnan(gain)
      return bad & (t * slope > scale) & (t > 1e-8)

    t = jax.lax.while_loop(ls_cond, lambda t: 0.5 * t, jnp.ones((), dtype))
    gain = gain_at(t)
    failed = (t <= 1e-8) | jnp.isnan(gain) | ~jnp.isfinite(slope)
    new_u = jnp.where(failed, u, u + t * step)
    new_u = new_u - jnp.mean(new_u)
    size = jnp.where(failed, 0.0, t * jnp.max(jnp.abs(step))).astype(dtype)
    # Float precision floor: the gain is below its rounding error and the
    # steps have stopped shrinking (they are rounding noise).
    stalled = (gain <= scale) & (size >= 0.5 * prev_size)
    return new_u, it + 1, size, gain, failed | stalled

  init = (jnp.zeros((k,), dtype), jnp.zeros((), jnp.int32),
          jnp.full((), jnp.inf, dtype), jnp.zeros((), dtype),
          jnp.zeros((), bool))
  u, n_iter, _, _, _ = jax.lax.while_loop(cond, body, init)
  return u, n_iter


def fit(winners: jax.typing.ArrayLike, losers: jax.typing.ArrayLike,
        n_items: int, *, l2: float | jax.Array = 0.0, method: str = "auto",
        tol: float | None = None, max_iter: int = 100) -> jax.Array:
  r"""Bradley-Terry maximum-likelihood (or L2-penalised MAP) utilities.

  .. math:: \hat u = \arg\max_{u:\ \sum_i u_i = 0}\ \sum_{p=1}^{P}
            \log\sigma(u_{w_p} - u_{l_p}) - \frac{\lambda}{2}\lVert u\rVert^2

  by damped Newton ascent from :math:`u = 0`. With win counts
  :math:`C_{ij}` and :math:`N = C + C^\top`, the gradient is
  :math:`g_i = \sum_j C_{ij} - \sum_j N_{ij}\sigma(u_i - u_j) - \lambda u_i`
  and the negative Hessian is the weighted graph Laplacian
  :math:`L = \mathrm{diag}(W\mathbf 1) - W + \lambda I`,
  :math:`W_{ij} = N_{ij}\sigma(u_i-u_j)\sigma(u_j-u_i)`. The shift gauge is
  fixed by solving :math:`(L + \mathbf 1\mathbf 1^\top/K)\,d = g`: the
  gradient sums to zero, so the step stays mean-zero. Each step is
  safeguarded by Armijo backtracking on the gain in log-likelihood (summed
  as per-comparison differences, so that it is accurate near the optimum);
  the loop stops when the largest utility change is at most ``tol``, or
  earlier when float precision is reached (the gain is below its rounding
  error and the steps stop shrinking), or after ``max_iter`` steps.

  ``method="newton"`` factors the dense K x K Hessian (Cholesky, O(K^3) per
  step, K^2 memory; the most robust on ill-conditioned, e.g. chain-like,
  comparison graphs); ``method="newton_cg"`` solves for the step by
  Jacobi-preconditioned conjugate gradients with Hessian-vector products over
  the P pairs (O(K + P) memory; about 4x faster than ``"newton"`` at 1,000
  items and 100,000 comparisons on a 2-core CPU). ``"auto"`` picks
  ``"newton"`` for ``n_items <= 256`` and ``"newton_cg"`` above. The jitted
  core is cached per (shapes, ``n_items``, ``method``, ``max_iter``).

  Args:
    winners: integer indices in ``[0, n_items)`` of the winners, shape [P].
    losers: integer indices of the losers, shape [P].
    n_items: the number of items K, a Python int (it fixes the output shape).
    l2: the L2 penalty :math:`\lambda \ge 0` (a float or scalar array).
    method: ``"auto"``, ``"newton"`` or ``"newton_cg"``.
    tol: stop when :math:`\max_i |\Delta u_i| \le` ``tol``; default ``1e-5``
      in float32 and ``1e-10`` under x64.
    max_iter: the most Newton steps.

  Returns:
    The mean-zero utilities, shape [K], float32 (float64 under x64).

  Raises:
    ValueError: when the inputs are concrete: ``winners``/``losers`` differ in
      shape or hold indices outside ``[0, n_items)``; ``l2 < 0``; or
      ``l2 == 0`` and the comparison graph (edges loser -> winner) is not
      strongly connected, so that the MLE does not exist.

    TypeError: ``winners``/``losers`` are not integers, or ``n_items`` /
      ``max_iter`` are not Python ints.

  Under ``jit``/``vmap`` (traced ``winners``, ``losers`` or ``l2``) no value
  check runs, and if the MLE does not exist (``l2 == 0`` on a graph that is
  not strongly connected) the result is not an estimate: on a weakly
  connected graph the gaps between the groups grow until the gain in
  likelihood falls below rounding or ``max_iter`` is reached (gaps of about
  15 in float32); on a disconnected graph each component is fitted but the
  offsets between components are arbitrary. Out-of-range indices are not
  checked (they are clamped or dropped). Check :func:`is_strongly_connected`
  on the host first, or use ``l2 > 0``.

  References:
    Zermelo (1929); Ford (1957); Hunter (2004), Assumption 1 and eq. (1);
    choix (``ilsr_pairwise``, ``opt_pairwise``) computes the same MLE,
    checked in tests/models/test_bradley_terry.py::test_fit_matches_choix.
  """
  n_items = _checks.check_static_int("n_items", n_items)
  _checks.check_same_shape(winners=winners, losers=losers)
  _checks.check_ndim("winners", winners, 1, "one entry per comparison, [P]")
  _checks.check_indices("winners", winners, n_items)
  _checks.check_indices("losers", losers, n_items)
  _checks.check_nonnegative("l2", l2)
  if method not in ("auto", "newton", "newton_cg"):
    raise ValueError(f"method must be 'auto', 'newton' or 'newton_cg', got "
                     f"{method!r}")
  if method == "auto":
    method = "newton" if n_items <= _DENSE_MAX_ITEMS else "newton_cg"
  dtype = _checks.default_float()
  if tol is None:
    tol = 1e-5 if dtype == jnp.float32 else 1e-10
  max_iter = _checks.check_static_int("max_iter", max_iter)
  # Dispatch first (asynchronously), so that the host-side connectivity check
  # below overlaps the fit; its result is dropped if the check fails.
  u, _ = _fit_core(jnp.asarray(winners, jnp.int32),
                   jnp.asarray(losers, jnp.int32),
                   jnp.asarray(l2, dtype), jnp.asarray(tol, dtype),
                   n_items=n_items, method=method, max_iter=max_iter)
  if _checks.is_concrete(winners, losers, l2) and float(np.asarray(l2)) == 0:
    _raise_if_no_mle("fit", winners, losers, n_items, "edges loser -> winner")
  return u


# --------------------------------------------------------------------------
# Plackett-Luce
# --------------------------------------------------------------------------


def _check_rankings(rankings: Any, n_items: int) -> None:
  if np.ndim(rankings) < 1:
    raise ValueError(f"rankings must have a last axis of ranked items [..., m],"
                     f" got shape {np.shape(rankings)}")
  _checks.check_indices("rankings", rankings, n_items)
  if _checks.is_concrete(rankings) and np.size(rankings):
    r = np.sort(np.asarray(rankings), axis=-1)
    if np.any(r[..., 1:] == r[..., :-1]):
      raise ValueError("rankings: each row must list distinct items (a "
                       "ranking of the m items it holds), found a repeat")


def pl_log_prob(utilities: jax.typing.ArrayLike,
                rankings: jax.typing.ArrayLike) -> jax.Array:
  r"""Plackett-Luce log-probability of rankings (best first).

  .. math:: \log P(\tau) = \sum_{k=1}^{m}\Big[u_{\tau_k}
            - \log\sum_{l=k}^{m} e^{u_{\tau_l}}\Big]

  computed with a reverse ``lax.cumlogsumexp``. A row lists ``m`` distinct
  items and ranks just those (choix's convention: a ranking of a subset).
  With ``m = 2`` this is the BT term :math:`\log\sigma(u_a - u_b)`.

  Args:
    utilities: item utilities, shape [K].
    rankings: integer item indices ordered best first, shape [..., m]
      (typically [R, m]).

  Returns:
    The log-probabilities, shape [...] (typically [R]).

  Raises:
    ValueError: (when concrete) an index outside ``[0, K)`` or a row with a
      repeated item. Under ``jit`` neither is checked.

  References:
    Plackett, R. L. The analysis of permutations. JRSS C 24(2):193-202, 1975.
    Luce, R. D. Individual Choice Behavior. Wiley, 1959.
    Hunter (2004), Annals of Statistics 32(1):384-406 (the Plackett-Luce
    generalisation of the model of eq. (1)).
  """
  k = _n_items_of(utilities)
  _check_rankings(rankings, k)
  u = jnp.asarray(utilities)[jnp.asarray(rankings)]
  tails = jax.lax.cumlogsumexp(u, axis=u.ndim - 1, reverse=True)
  return jnp.sum(u - tails, axis=-1)


def pl_sample(key: jax.Array, utilities: jax.typing.ArrayLike, n: int,
              m: int | None = None) -> jax.Array:
  r"""Samples Plackett-Luce rankings by the Gumbel trick.

  Sorting :math:`u_i + G_i`, :math:`G_i \sim \mathrm{Gumbel}(0, 1)` i.i.d.,
  in decreasing order gives a ranking distributed as Plackett-Luce with
  utilities :math:`u`. With ``m`` given, each row first draws a uniformly
  random subset of ``m`` items (as ``choix.generate_rankings``) and ranks it.

  Args:
    key: a ``jax.random`` key.
    utilities: item utilities, shape [K].
    n: the number of rankings R, a Python int.
    m: the ranking length, a Python int in ``[1, K]``; ``None`` ranks all K.

  Returns:
    Integer rankings, best first, shape [n, m] (m = K when ``m`` is None).

  References:
    Yellott, J. I. The relationship between Luce's choice axiom, Thurstone's
    theory of comparative judgment, and the double exponential distribution.
    J. Math. Psych. 15(2):109-144, 1977.
  """
  k = _n_items_of(utilities)
  n = _checks.check_static_int("n", n)
  u = jnp.asarray(utilities)
  if m is None:
    noisy = u + jax.random.gumbel(key, (n, k), u.dtype)
    return jnp.argsort(-noisy, axis=-1)
  m = _checks.check_static_int("m", m)
  if m > k:
    raise ValueError(f"m must lie in [1, {k}] (the number of items), got {m}")
  key_subset, key_order = jax.random.split(key)
  _, subset = jax.lax.top_k(jax.random.uniform(key_subset, (n, k)), m)
  noisy = u[subset] + jax.random.gumbel(key_order, (n, m), u.dtype)
  order = jnp.argsort(-noisy, axis=-1)
  return jnp.take_along_axis(subset, order, axis=-1)


@functools.partial(jax.jit, static_argnames=("n_items", "max_iter"))
def _pl_fit_core(rankings, l2, tol, *, n_items, max_iter):
  dtype = _checks.default_float()
  n_rankings = rankings.shape[0]

  def loss(u):
    lp = pl_log_prob(u, rankings)
    return -(jnp.sum(lp) - 0.5 * l2 * (u @ u)) / n_rankings

  u, _ = _optim.minimize_lbfgs(loss, jnp.zeros((n_items,), dtype),
                               max_iter=max_iter, tol=tol)
  return u - jnp.mean(u)


def pl_fit(rankings: jax.typing.ArrayLike, n_items: int, *,
           l2: float | jax.Array = 0.0, tol: float | None = None,
           max_iter: int = 1000) -> jax.Array:
  r"""Plackett-Luce maximum-likelihood (or L2-penalised MAP) utilities.

  .. math:: \hat u = \arg\max_{u:\ \sum_i u_i = 0}\ \sum_{r=1}^{R}
            \log P(\tau_r \mid u) - \frac{\lambda}{2}\lVert u\rVert^2

  by L-BFGS (:func:`prefsim._optim.minimize_lbfgs`) on the objective divided
  by R, from :math:`u = 0`; the gradient sums to zero, so the iterates stay
  mean-zero.

  Args:
    rankings: integer item indices ordered best first, shape [R, m].
    n_items: the number of items K, a Python int.
    l2: the L2 penalty :math:`\lambda \ge 0`.
    tol: stop when the largest gradient entry of the objective divided by R
      is at most ``tol``; default ``1e-6`` in float32, ``1e-10`` under x64.
    max_iter: the most L-BFGS iterations.

  Returns:
    The mean-zero utilities, shape [K].

  Raises:
    ValueError: when concrete: bad indices or a row with a repeated item;
      ``l2 < 0``; or ``l2 == 0`` and the graph with an edge
      :math:`\tau_{k+1} \to \tau_k` (each ranked item beats every later one)
      is not strongly connected, so that the MLE does not exist.

  Under ``jit``/``vmap`` these checks are skipped; where the MLE does not
  exist the result is not an estimate: the gaps between groups grow until
  the gradient falls below ``tol`` (gaps of about 10 to 15 in float32).

  References:
    Hunter (2004), Assumption 1 and the Plackett-Luce model. choix
    (``ilsr_rankings``, ``opt_rankings``) computes the same MLE, checked in
    tests/models/test_bradley_terry.py::test_pl_fit_matches_choix.
  """
  n_items = _checks.check_static_int("n_items", n_items)
  _checks.check_ndim("rankings", rankings, 2, "[R, m]")
  _check_rankings(rankings, n_items)
  _checks.check_nonnegative("l2", l2)
  if (_checks.is_concrete(rankings, l2) and float(np.asarray(l2)) == 0):
    r = np.asarray(rankings)
    _raise_if_no_mle("pl_fit", r[:, :-1].ravel(), r[:, 1:].ravel(), n_items,
                     "edges from each ranked item to the one above it")
  dtype = _checks.default_float()
  if tol is None:
    tol = 1e-6 if dtype == jnp.float32 else 1e-10
  max_iter = _checks.check_static_int("max_iter", max_iter)
  return _pl_fit_core(jnp.asarray(rankings, jnp.int32), jnp.asarray(l2, dtype),
                      jnp.asarray(tol, dtype), n_items=n_items,
                      max_iter=max_iter)


# --------------------------------------------------------------------------
# Davidson (1970): ties
# --------------------------------------------------------------------------


def _davidson_logits(u_i, u_j, log_nu):
  u_i, u_j, log_nu = jnp.broadcast_arrays(u_i, u_j, log_nu)
  return jnp.stack([u_i, log_nu + 0.5 * (u_i + u_j), u_j], axis=-1)


def davidson_prob(u_i: jax.typing.ArrayLike, u_j: jax.typing.ArrayLike,
                  log_nu: jax.typing.ArrayLike
                  ) -> tuple[jax.Array, jax.Array, jax.Array]:
  r"""Davidson's win, tie and loss probabilities for a pair.

  With :math:`\pi_i = e^{u_i}` and :math:`\nu = e^{\log\nu}`,

  .. math:: P(i \succ j) = \frac{\pi_i}{\pi_i + \pi_j + \nu\sqrt{\pi_i\pi_j}},
            \quad
            P(i = j) = \frac{\nu\sqrt{\pi_i\pi_j}}
                            {\pi_i + \pi_j + \nu\sqrt{\pi_i\pi_j}},

  computed as a softmax over :math:`(u_i,\ \log\nu + (u_i+u_j)/2,\ u_j)`. As
  :math:`\log\nu \to -\infty` it reduces to Bradley-Terry.

  Args:
    u_i: utilities of the first items, any shape broadcasting with the others.
    u_j: utilities of the second items.
    log_nu: the log tie parameter :math:`\log\nu`.

  Returns:
    ``(p_win, p_tie, p_loss)``, each of the broadcast shape, summing to 1.

  References:
    Davidson, R. R. On extending the Bradley-Terry model to accommodate ties
    in paired comparison experiments. JASA 65(329):317-328, 1970 (with
    pi = exp(u)); restated in Firth, Kosmidis and Turner, Davidson-Luce model
    for multi-item choice with ties, arXiv:1909.07123, Section 1.1.
  """
  p = jax.nn.softmax(_davidson_logits(u_i, u_j, log_nu), axis=-1)
  return p[..., 0], p[..., 1], p[..., 2]


def _check_davidson(utilities, i, j, outcomes):
  k = _n_items_of(utilities)
  _checks.check_same_shape(i=i, j=j, outcomes=outcomes)
  _checks.check_indices("i", i, k)
  _checks.check_indices("j", j, k)
  _checks.check_integer("outcomes", outcomes)
  if _checks.is_concrete(outcomes) and np.size(outcomes):
    o = np.asarray(outcomes)
    if o.min() < 0 or o.max() > 2:
      raise ValueError("outcomes must lie in {0: i wins, 1: tie, 2: j wins}, "
                       f"got values in [{o.min()}, {o.max()}]")


def davidson_log_likelihood(utilities: jax.typing.ArrayLike,
                            log_nu: jax.typing.ArrayLike,
                            i: jax.typing.ArrayLike, j: jax.typing.ArrayLike,
                            outcomes: jax.typing.ArrayLike) -> jax.Array:
  r"""Davidson log-likelihood of paired comparisons with ties.

  .. math:: \ell(u, \nu) = \sum_{p=1}^{P} \log P(o_p \mid u_{i_p}, u_{j_p},
            \nu)

  with the probabilities of :func:`davidson_prob`, in log-sum-exp form.

  Args:
    utilities: item utilities, shape [K].
    log_nu: the log tie parameter, a scalar.
    i: integer indices of the first items, shape [P].
    j: integer indices of the second items, shape [P].
    outcomes: integers, shape [P]: 0 if ``i`` won, 1 for a tie, 2 if ``j`` won.

  Returns:
    The log-likelihood, a scalar.

  Raises:
    ValueError: (when concrete) shapes differ, indices outside ``[0, K)``, or
      outcomes outside {0, 1, 2}. Under ``jit`` these are not checked.

  References:
    Davidson (1970), JASA 65(329):317-328.
  """
  _check_davidson(utilities, i, j, outcomes)
  u = jnp.asarray(utilities)
  z = _davidson_logits(u[i], u[j], log_nu)
  logp = z - jax.nn.logsumexp(z, axis=-1, keepdims=True)
  picked = jnp.take_along_axis(logp, jnp.asarray(outcomes)[..., None], axis=-1)
  return jnp.sum(picked)


def davidson_sample(key: jax.Array, utilities: jax.typing.ArrayLike,
                    log_nu: jax.typing.ArrayLike, i: jax.typing.ArrayLike,
                    j: jax.typing.ArrayLike) -> jax.Array:
  r"""Samples Davidson outcomes (0: ``i`` wins, 1: tie, 2: ``j`` wins).

  .. math:: o \sim \mathrm{Categorical}\big(P(i\succ j), P(i=j),
            P(j\succ i)\big)

  Args:
    key: a ``jax.random`` key.
    utilities: item utilities, shape [K].
    log_nu: the log tie parameter, a scalar.
    i: integer indices of the first items, shape [P].
    j: integer indices of the second items, same shape as ``i``.

  Returns:
    int32 outcomes shaped like ``i``.

  References:
    Davidson (1970), JASA 65(329):317-328.
  """
  k = _n_items_of(utilities)
  _checks.check_same_shape(i=i, j=j)
  _checks.check_indices("i", i, k)
  _checks.check_indices("j", j, k)
  u = jnp.asarray(utilities)
  z = _davidson_logits(u[i], u[j], log_nu)
  return jax.random.categorical(key, z, axis=-1).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=("n_items", "max_iter"))
def _davidson_fit_core(i, j, outcomes, l2, tol, log_nu0, *, n_items,
                       max_iter):
  dtype = _checks.default_float()
  n = i.shape[0]

  def loss(params):
    u, log_nu = params
    z = _davidson_logits(u[i], u[j], log_nu)
    logp = z - jax.nn.logsumexp(z, axis=-1, keepdims=True)
    ll = jnp.sum(jnp.take_along_axis(logp, outcomes[:, None], axis=-1))
    return -(ll - 0.5 * l2 * (u @ u)) / n

  (u, log_nu), _ = _optim.minimize_lbfgs(
      loss, (jnp.zeros((n_items,), dtype), log_nu0), max_iter=max_iter,
      tol=tol)
  return u - jnp.mean(u), log_nu


def davidson_fit(i: jax.typing.ArrayLike, j: jax.typing.ArrayLike,
                 outcomes: jax.typing.ArrayLike, n_items: int, *,
                 l2: float | jax.Array = 0.0, tol: float | None = None,
                 max_iter: int = 1000) -> tuple[jax.Array, jax.Array]:
  r"""Davidson maximum-likelihood utilities and tie parameter.

  .. math:: (\hat u, \widehat{\log\nu}) = \arg\max\ \ell(u, \nu)
            - \frac{\lambda}{2}\lVert u\rVert^2,\qquad \textstyle\sum_i u_i = 0

  by L-BFGS from :math:`u = 0` and :math:`\nu_0 = 2t/(1-t)`, where ``t`` is
  the fraction of ties (the MLE of :math:`\nu` when all utilities are equal).
  The penalty applies to ``u`` only.

  Args:
    i: integer indices of the first items, shape [P].
    j: integer indices of the second items, shape [P].
    outcomes: 0 if ``i`` won, 1 for a tie, 2 if ``j`` won, shape [P].
    n_items: the number of items K, a Python int.
    l2: the L2 penalty :math:`\lambda \ge 0` on the utilities.
    tol: stop when the largest gradient entry of the objective divided by P
      is at most ``tol``; default ``1e-6`` in float32, ``1e-10`` under x64.
    max_iter: the most L-BFGS iterations.

  Returns:
    ``(utilities, log_nu)``: mean-zero utilities of shape [K] and a scalar.

  Raises:
    ValueError: when concrete: bad shapes, indices or outcomes; ``l2 < 0``;
      no tie or only ties among the outcomes (the MLE of :math:`\log\nu` is
      then :math:`-\infty` or :math:`+\infty`); or ``l2 == 0`` and the graph
      with edges loser -> winner, and both ways for a tie, is not strongly
      connected.

  Under ``jit``/``vmap`` these checks are skipped (the starting
  :math:`\nu_0` uses the tie fraction clipped to [0.001, 0.999]); where the
  MLE does not exist the result is not an estimate: the diverging
  parameters grow until the gradient falls below ``tol``.

  References:
    Davidson (1970), JASA 65(329):317-328.
  """
  n_items = _checks.check_static_int("n_items", n_items)
  _checks.check_ndim("i", i, 1, "one entry per comparison, [P]")
  _check_davidson(np.zeros(n_items), i, j, outcomes)
  _checks.check_nonnegative("l2", l2)
  dtype = _checks.default_float()
  if _checks.is_concrete(outcomes):
    o = np.asarray(outcomes)
    tie_rate = float(np.mean(o == 1)) if o.size else 0.0
    if tie_rate in (0.0, 1.0):
      raise ValueError(
          "outcomes: " + ("no ties" if tie_rate == 0 else "only ties") +
          ", so the MLE of log_nu does not exist (it is "
          + ("-inf" if tie_rate == 0 else "+inf") + "); use fit for ties-free"
          " data")
    log_nu0 = np.log(2 * tie_rate / (1 - tie_rate))
    if _checks.is_concrete(i, j, l2) and float(np.asarray(l2)) == 0:
      ii, jj = np.asarray(i), np.asarray(j)
      win_i, tie = o == 0, o == 1
      winners = np.where(win_i, ii, jj)
      losers = np.where(win_i, jj, ii)
      # A tie adds the edge j -> i next to the i -> j given by np.where.
      winners = np.concatenate([winners, ii[tie]])
      losers = np.concatenate([losers, jj[tie]])
      _raise_if_no_mle("davidson_fit", winners, losers, n_items,
                       "edges loser -> winner, both ways for a tie")
  else:
    tie_rate = jnp.clip(jnp.mean(outcomes == 1), 1e-3, 1 - 1e-3)
    log_nu0 = jnp.log(2 * tie_rate / (1 - tie_rate))
  if tol is None:
    tol = 1e-6 if dtype == jnp.float32 else 1e-10
  max_iter = _checks.check_static_int("max_iter", max_iter)
  return _davidson_fit_core(
      jnp.asarray(i, jnp.int32), jnp.asarray(j, jnp.int32),
      jnp.asarray(outcomes, jnp.int32), jnp.asarray(l2, dtype),
      jnp.asarray(tol, dtype), jnp.asarray(log_nu0, dtype), n_items=n_items,
      max_iter=max_iter)
