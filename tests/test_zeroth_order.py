"""Tests of prefsim.zeroth_order: ranking oracles, ZO-RankSGD and baselines.

Theorem tests state the property in their docstring and check it on drawn
inputs (hypothesis, values not shapes); Monte Carlo checks use fixed keys,
vmapped, with the tolerance stated next to them.
"""

from __future__ import annotations

import functools
import math

import hypothesis
from hypothesis import given
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import prefsim
from prefsim import zeroth_order as zo
from prefsim.testing import strategies as pst

C_PAIR = 2.0 / math.sqrt(math.pi)   # E|z1 - z2| for independent N(0, 1)
FEW = hypothesis.settings(max_examples=3)
N_MC = 20000   # Monte Carlo draws of the direction, shared (one compile)


def _edges(ranking, m):
  """The comparison graph of a ranking, by definition: (better, worse) pairs."""
  ranking = [int(i) for i in ranking]
  rest = [j for j in range(m) if j not in ranking]
  inside = [(ranking[a], ranking[b]) for a in range(len(ranking))
            for b in range(a + 1, len(ranking))]
  return inside + [(i, j) for i in ranking for j in rest]


def _weights_by_edges(ranking, m):
  """(1/|E|) sum over edges of (e_worse - e_better), in float64."""
  edges = _edges(ranking, m)
  w = np.zeros(m)
  for better, worse in edges:
    w[worse] += 1.0
    w[better] -= 1.0
  return w / len(edges)


def _linear(a):
  return lambda x: x @ a


def _unit(a):
  a = np.asarray(a, np.float64)
  return a / np.linalg.norm(a)


@functools.partial(jax.jit, static_argnames=("m", "k", "n"))
def _linear_directions(key, a, *, m, k, n):
  """n rank directions [n, D] at x = 0 for f(x) = a.x (mu = 1e-3)."""
  oracle = zo.rank_oracle(_linear(a))
  x = jnp.zeros_like(a)
  return jax.vmap(lambda kk: zo.rank_estimator(kk, oracle, x, m=m, k=k,
                                               mu=1e-3))(
                                                   jax.random.split(key, n))


# --------------------------------------------------------------------------
# The oracle
# --------------------------------------------------------------------------


_ORACLE = zo.rank_oracle(lambda x: jnp.sum((x - 0.5) ** 2))
_ORACLE_JIT = jax.jit(_ORACLE, static_argnums=2)


@given(points=pst.vectors(7 * 3).map(lambda v: v.reshape(7, 3)))
def test_exact_oracle_returns_the_k_best_in_order(points):
  """The exact (m, k) oracle returns the k lowest values, best first,
  eagerly and under jit."""
  order = np.argsort(np.sum((points.astype(np.float64) - 0.5) ** 2, 1),
                     kind="stable")
  got = _ORACLE(jax.random.key(0), jnp.asarray(points), 3)
  jitted = _ORACLE_JIT(jax.random.key(0), jnp.asarray(points), 7)
  np.testing.assert_array_equal(got, order[:3])
  np.testing.assert_array_equal(jitted, order)
  assert got.dtype == jnp.int32 and got.shape == (3,)


def test_noisy_oracle_first_place_is_softmax_of_minus_f():
  """Plackett-Luce over -f/T: the first place is distributed as
  softmax(-f/T); a tiny temperature gives the exact ranking. Chi-square
  statistic over 5 cells with 4 dof below 25 (p < 1e-4 under the law)."""
  values = np.array([0.3, -0.2, 0.9, 0.0, 0.5])
  temperature = 0.4
  points = jnp.asarray(values)[:, None]
  oracle = zo.rank_oracle(lambda x: x[0], noise=temperature)
  n = 40000
  first = jax.jit(jax.vmap(lambda kk: oracle(kk, points, 1)[0]))(
      jax.random.split(jax.random.key(11), n))
  counts = np.bincount(np.asarray(first), minlength=5)
  p = np.exp(-values / temperature)
  p /= p.sum()
  chi2 = np.sum((counts - n * p) ** 2 / (n * p))
  assert chi2 < 25.0, (chi2, counts / n, p)
  cold = zo.rank_oracle(lambda x: x[0], noise=1e-4)
  np.testing.assert_array_equal(cold(jax.random.key(3), points, 5),
                                np.argsort(values))


def test_non_finite_values_raise_eagerly_and_rank_last_in_jit():
  """Eagerly a non-finite f value raises ValueError; inside jit NaN and +inf
  rank after every finite value (NaN last), -inf first, and the rank
  direction stays finite."""
  values = jnp.array([1.0, jnp.nan, -jnp.inf, jnp.inf, 0.0, 1.0])
  points = values[:, None]
  oracle = zo.rank_oracle(lambda x: x[0])
  with pytest.raises(ValueError, match="non-finite"):
    oracle(jax.random.key(0), points, 3)
  ranked = jax.jit(oracle, static_argnums=2)(jax.random.key(0), points, 6)
  np.testing.assert_array_equal(ranked, [2, 4, 0, 5, 3, 1])
  noisy = zo.rank_oracle(lambda x: x[0], noise=0.5)
  ranked = jax.jit(noisy, static_argnums=2)(jax.random.key(1), points, 6)
  assert int(ranked[0]) == 2 and list(np.asarray(ranked[-2:])) == [3, 1]

  def blows_up(x):
    return jnp.where(x[0] > 0, jnp.nan, jnp.sum(x * x))

  g = jax.jit(lambda kk: zo.rank_estimator(kk, zo.rank_oracle(blows_up),
                                           jnp.zeros(4), m=6, k=6, mu=1.0))(
                                               jax.random.key(2))
  assert np.all(np.isfinite(g))


# --------------------------------------------------------------------------
# The estimator: theorem properties
# --------------------------------------------------------------------------


@FEW
@given(seed=pst.seeds())
def test_rank_weights_match_the_edge_list_and_sum_to_zero(seed):
  """The weights equal (1/|E|) sum over the comparison graph of
  (e_worse - e_better), |E| = k(k-1)/2 + k(m-k), and they sum to zero: the
  direction is unchanged when every perturbation moves by one vector."""
  rng = np.random.default_rng(seed)
  for m, k in [(2, 1), (5, 1), (5, 3), (5, 5), (10, 4), (10, 10)]:
    ranking = rng.permutation(m)[:k]
    w = np.asarray(zo.rank_weights(jnp.asarray(ranking), m), np.float64)
    np.testing.assert_allclose(w, _weights_by_edges(ranking, m), atol=1e-6)
    assert zo.n_edges(m, k) == len(_edges(ranking, m))
    assert zo.n_edges(m, k) == k * (k - 1) // 2 + k * (m - k)
    assert abs(w.sum()) < 1e-6
    xi = rng.normal(size=(m, 3))
    shift = rng.normal(size=3) * 10
    np.testing.assert_allclose(w @ (xi + shift), w @ xi, atol=1e-4)


@given(key=pst.keys(), x=pst.vectors(6), scale=st.floats(0.1, 10.0),
       power=st.integers(0, 2))
def test_direction_invariant_to_increasing_transforms(key, x, scale, power):
  """ZO-RankSGD sees f only through ranks: for strictly increasing h, the
  direction from rank_oracle(h o f) equals the one from rank_oracle(f) with
  the same key, exactly."""
  a = jnp.arange(1.0, 7.0)
  f = lambda z: jnp.sum((z - a) ** 2) + jnp.sum(jnp.sin(z))
  transforms = [lambda v: scale * v + 3.0,
                lambda v: v ** 3 + scale * v,
                lambda v: jnp.exp(v / (50.0 * scale))]
  h = transforms[power]
  kwargs = dict(m=8, k=5, mu=0.3)
  g_f = zo.rank_estimator(key, zo.rank_oracle(f), jnp.asarray(x), **kwargs)
  g_h = zo.rank_estimator(key, zo.rank_oracle(lambda z: h(f(z))),
                          jnp.asarray(x), **kwargs)
  np.testing.assert_array_equal(g_f, g_h)


@hypothesis.settings(max_examples=3)
@given(a=pst.vectors(8, 0.1, 3.0), seed=pst.seeds())
def test_mean_direction_is_scaled_normalised_gradient(a, seed):
  """On linear f, E[g] = c_{m,k} grad f/|grad f|; for m = 2, k = 1 (and any
  m with k >= m - 1) c = 2/sqrt(pi); c_{m,k} of mean_scale otherwise.
  Monte Carlo with N = 20,000: |mean - c a_hat| below 4 sqrt(tr Cov / N)
  (tr Cov estimated from the sample)."""
  a = a * np.where(np.arange(8) % 2, -1.0, 1.0).astype(np.float32)
  unit = _unit(a)
  key = jax.random.key(seed)
  for m, k, c in [(2, 1, C_PAIR), (10, 10, C_PAIR),
                  (10, 1, zo.mean_scale(10, 1)), (10, 3, zo.mean_scale(10, 3))]:
    g = np.asarray(_linear_directions(key, jnp.asarray(a), m=m, k=k, n=N_MC),
                   np.float64)
    tol = 4 * math.sqrt(np.sum(g.var(0)) / N_MC)
    assert np.linalg.norm(g.mean(0) - c * unit) < tol, (m, k, g.mean(0) @ unit,
                                                        c, tol)
  assert abs(zo.mean_scale(2, 1) - C_PAIR) < 1e-9
  assert abs(zo.mean_scale(10, 9) - C_PAIR) < 1e-9
  assert zo.mean_scale(10, 1) > zo.mean_scale(10, 3) > C_PAIR


@hypothesis.settings(max_examples=3)
@given(a=pst.vectors(8, 0.1, 3.0), seed=pst.seeds())
def test_more_candidates_lower_the_variance(a, seed):
  """Larger m and k lower the estimator's variance. On linear f the part
  orthogonal to grad f has covariance trace exactly (D-1) sum_l w_l^2 (the
  weights of any ranking are a permutation of the same values), checked to
  5 % (the estimate's relative standard error is about 0.4 %), and the
  total trace tr Cov(g) falls strictly along
  (2,1) > (5,1) > (10,1) > (10,3) > (10,10) (N = 20,000; the closest
  neighbours differ by > 25 %)."""
  n, d = N_MC, 8
  unit = _unit(a)
  key = jax.random.key(seed)
  totals = []
  for m, k in [(2, 1), (5, 1), (10, 1), (10, 3), (10, 10)]:
    g = np.asarray(_linear_directions(key, jnp.asarray(a), m=m, k=k, n=n),
                   np.float64)
    ortho = g - np.outer(g @ unit, unit)
    expected = (d - 1) * np.sum(
        _weights_by_edges(list(range(k)), m) ** 2)
    assert abs(np.sum(ortho.var(0)) / expected - 1) < 0.05, (m, k)
    totals.append(np.sum(g.var(0)))
  assert all(x > y for x, y in zip(totals, totals[1:])), totals


_STEP_QUAD = zo.quadratic(jax.random.key(5), 20)


@functools.partial(jax.jit, static_argnames=("m", "k"))
def _descent(key, x, lr, *, m, k):
  """f(x - lr g) - f(x) for 4,000 ZO-RankSGD steps from x (mu = 1e-3)."""
  f, _ = _STEP_QUAD
  problem = zo.Problem(f, x)
  alg = zo.zo_rank_sgd(1.0, m, k, 1e-3)   # lr applied below, traced
  state = alg.init(key, problem)

  def one(kk):
    new, _ = alg.step(kk, state, problem)
    return f(x + lr * (new.x - x)) - f(x)   # new.x - x = -1.0 * g

  return jax.vmap(one)(jax.random.split(key, 4000))


@FEW
@given(seed=pst.seeds(), scale=st.floats(0.5, 3.0))
def test_expected_descent_for_small_steps(seed, scale):
  """For a small step on smooth f, E[f(x - eta g)] < f(x): the decrease is
  eta c_{m,k} |grad f| to first order. With L = 2 lambda_max(A) and
  eta = 0.02 c |grad f| / (L E|g|^2) the second-order term is at most 1 %
  of it; the Monte Carlo mean (N = 4,000) must lie within 10 % of
  -eta c |grad f| (its standard error is about 2 %)."""
  f, _ = _STEP_QUAD
  x = jnp.asarray(np.random.default_rng(seed).normal(size=20) * scale,
                  jnp.float32)
  grad = np.asarray(jax.grad(f)(x), np.float64)
  lips = np.linalg.eigvalsh(np.asarray(jax.hessian(f)(x), np.float64)).max()
  for m, k in [(2, 1), (10, 10)]:
    c = zo.mean_scale(m, k)
    second_moment = 2.0 * 20 + c * c   # E|g|^2 <= 2 D + c^2 for these (m, k)
    lr = 0.02 * c * np.linalg.norm(grad) / (lips * second_moment)
    change = np.asarray(_descent(jax.random.key(seed), x, lr, m=m, k=k),
                        np.float64)
    predicted = -lr * c * np.linalg.norm(grad)
    assert change.mean() < 0
    assert abs(change.mean() / predicted - 1) < 0.1, (m, k, change.mean(),
                                                       predicted)


# --------------------------------------------------------------------------
# Baselines
# --------------------------------------------------------------------------


def test_zo_sgd_is_unbiased_on_a_quadratic():
  """Gaussian smoothing on a quadratic: E[(f(x+mu xi) - f(x))/mu xi] =
  grad f(x) exactly (odd moments vanish). N = 40,000; the covariance trace
  is about (D+1)|grad|^2, so the error's rms is 0.017 |grad|; tolerance 4x."""
  f, _ = zo.quadratic(jax.random.key(1), 10)
  x = jnp.linspace(-1.0, 1.0, 10)
  grad = np.asarray(jax.grad(f)(x), np.float64)
  lr, n = 0.01, 40000
  alg = zo.zo_sgd(lr, mu=0.01)
  problem = zo.Problem(f, x)
  state = alg.init(jax.random.key(0), problem)
  new, info = jax.jit(jax.vmap(alg.step, in_axes=(0, None, None)))(
      jax.random.split(jax.random.key(2), n), state, problem)
  g = (np.asarray(x, np.float64) - np.asarray(new.x, np.float64)) / lr
  err = np.linalg.norm(g.mean(0) - grad) / np.linalg.norm(grad)
  assert err < 4 * math.sqrt(11 / n), err
  np.testing.assert_array_equal(info["queries"], 1)


def test_comparison_sgd_mean_is_root_two_over_pi_times_unit_gradient():
  """One comparison of x and x + mu xi: E[xi sign(a.xi)] = sqrt(2/pi)
  a/|a| on linear f. N = 40,000, covariance trace <= D = 5: tolerance
  4 sqrt(D/N)."""
  a = np.array([1.0, -2.0, 0.5, 3.0, -1.0], np.float32)
  lr, n = 0.1, 40000
  alg = zo.comparison_sgd(lr, mu=0.01)
  problem = zo.Problem(_linear(jnp.asarray(a)), jnp.zeros(5))
  state = alg.init(jax.random.key(0), problem)
  new, _ = jax.jit(jax.vmap(alg.step, in_axes=(0, None, None)))(
      jax.random.split(jax.random.key(4), n), state, problem)
  g = -np.asarray(new.x, np.float64).mean(0) / lr
  assert np.linalg.norm(g - math.sqrt(2 / math.pi) * _unit(a)) < 4 * math.sqrt(
      5 / n)


# --------------------------------------------------------------------------
# Test functions
# --------------------------------------------------------------------------


def test_quadratic_minimum_is_minus_quarter_h_squared():
  """f = x'Ax + b'x with A = GG' of rank D/2 and b = Gh in range(A): the
  minimum -b'A^+b/4 (computed here from f's own Hessian and gradient in
  float64) equals the returned f* = -|h|^2/4."""
  f, f_star = zo.quadratic(jax.random.key(7), 12)
  hess = np.asarray(jax.hessian(f)(jnp.zeros(12)), np.float64)   # 2A
  b = np.asarray(jax.grad(f)(jnp.zeros(12)), np.float64)
  assert np.linalg.matrix_rank(hess, tol=1e-4) == 6
  x_star = -np.linalg.pinv(hess) @ b
  np.testing.assert_allclose(hess @ x_star, -b, atol=1e-4)   # b in range(A)
  assert abs(0.5 * x_star @ hess @ x_star + b @ x_star - float(f_star)) < 1e-4
  np.testing.assert_allclose(f(jnp.asarray(x_star, jnp.float32)), f_star,
                             rtol=1e-4, atol=1e-4)


def test_rosenbrock_minimum_and_reference_values():
  """Rosenbrock: 0 with zero gradient at (1, ..., 1); D - 1 at 0; a value by
  hand at (0.5, -1, 2): 100*1.5625 + 0.25 + 100*1 + 4 = 260.5."""
  assert float(zo.rosenbrock(jnp.ones(7))) == 0.0
  np.testing.assert_array_equal(jax.grad(zo.rosenbrock)(jnp.ones(7)), 0.0)
  assert float(zo.rosenbrock(jnp.zeros(7))) == 6.0
  np.testing.assert_allclose(zo.rosenbrock(jnp.array([0.5, -1.0, 2.0])),
                             260.5)


@given(theta=pst.vectors(zo.POINT_MASS_DIM, -2.0, 2.0))
def test_point_mass_return_matches_a_python_loop(theta):
  """The point-mass return equals a float64 Python rollout of the same
  dynamics; doing nothing returns -H."""
  th = theta.astype(np.float64)
  w, c = th[:8].reshape(2, 4), th[8:]
  total = 0.0
  for p0 in [(1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)]:
    p, v = np.array(p0), np.zeros(2)
    for _ in range(50):
      act = np.tanh(w @ np.concatenate([p, v]) + c)
      v = v + 0.1 * act
      p = p + 0.1 * v
      total += -(p @ p) - 0.01 * (act @ act)
  np.testing.assert_allclose(zo.point_mass_return(jnp.asarray(theta)),
                             total / 4, rtol=1e-4)
  np.testing.assert_allclose(
      zo.point_mass_return(jnp.zeros(zo.POINT_MASS_DIM)), -50.0, rtol=1e-6)


# --------------------------------------------------------------------------
# Algorithms and transformations
# --------------------------------------------------------------------------


def test_algorithms_run_sweep_and_reduce_f():
  """Every Algorithm runs under prefsim.sweep, counts one query per step,
  lowers f on a quadratic, and compiles once per f: a new x0 does not
  retrace."""
  traces = []

  def f(x):
    traces.append(1)
    return jnp.sum((x - 1.0) ** 2)

  algorithms = {
      "zo_rank_sgd": zo.zo_rank_sgd(0.05, 6, 3, 0.05),
      "zo_rank_sgd_noisy": zo.zo_rank_sgd(0.05, 6, 3, 0.05, noise=0.1),
      "zo_sgd": zo.zo_sgd(0.02, 0.05),
      "comparison_sgd": zo.comparison_sgd(0.05, 0.05),
      "rank_es": zo.rank_es(0.05, 6, 3, 0.05),
  }
  key = jax.random.key(3)
  problem = zo.Problem(f, jnp.zeros(5))
  for name, alg in algorithms.items():
    _, infos = prefsim.sweep(key, alg, problem, 200, 3)
    assert infos["f"].shape == (3, 200)
    np.testing.assert_array_equal(infos["queries"][0], np.arange(1, 201))
    assert float(np.mean(infos["f"][:, -1])) < 0.5 * float(f(jnp.zeros(5))), (
        name)
  count = len(traces)
  prefsim.sweep(key, algorithms["rank_es"], problem._replace(x0=jnp.ones(5)),
                200, 3)
  assert len(traces) == count, "a new x0 retraced f"


def test_rank_estimator_jit_equals_eager():
  f, _ = zo.quadratic(jax.random.key(0), 8)
  oracle = zo.rank_oracle(f)
  x = jnp.linspace(-1, 1, 8)
  eager = zo.rank_estimator(jax.random.key(1), oracle, x, m=7, k=4, mu=0.1)
  jitted = jax.jit(lambda kk, xx: zo.rank_estimator(kk, oracle, xx, m=7, k=4,
                                                     mu=0.1))(
                                                         jax.random.key(1), x)
  np.testing.assert_allclose(eager, jitted, rtol=1e-6, atol=1e-6)


def test_bad_arguments_raise():
  f = lambda x: jnp.sum(x * x)
  oracle = zo.rank_oracle(f)
  x = jnp.zeros(3)
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="m must be >= 2"):
    zo.rank_estimator(key, oracle, x, m=1, k=1, mu=0.1)
  with pytest.raises(ValueError, match="k"):
    zo.rank_estimator(key, oracle, x, m=4, k=5, mu=0.1)
  with pytest.raises(ValueError, match="k must be >= 1"):
    zo.rank_estimator(key, oracle, x, m=4, k=0, mu=0.1)
  for mu in (0.0, -1.0):
    with pytest.raises(ValueError, match="mu"):
      zo.rank_estimator(key, oracle, x, m=4, k=2, mu=mu)
    with pytest.raises(ValueError, match="mu"):
      zo.zo_rank_sgd(0.1, 4, 2, mu)
  with pytest.raises(ValueError, match="x must have 1 axes"):
    zo.rank_estimator(key, oracle, jnp.zeros((2, 3)), m=4, k=2, mu=0.1)
  with pytest.raises(ValueError, match="lr"):
    zo.zo_sgd(0.0, 0.1)
  with pytest.raises(ValueError, match="noise"):
    zo.rank_oracle(f, noise=0.0)
  with pytest.raises(ValueError, match="k"):
    zo.rank_es(0.1, 3, 4, 0.1)
  with pytest.raises(ValueError, match="m must be >= 2"):
    zo.n_edges(1, 1)
  with pytest.raises(TypeError, match="callable"):
    zo.rank_oracle("f")
  with pytest.raises(TypeError, match="Problem"):
    zo.zo_sgd(0.1, 0.1).init(key, {"f": f, "x0": x})
  with pytest.raises(ValueError, match="even"):
    zo.quadratic(key, 7)

