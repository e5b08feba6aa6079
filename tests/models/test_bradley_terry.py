"""Tests for prefsim.models.bradley_terry (BT, Plackett-Luce, Davidson ties).

Reference values come from hand computations and from choix (an independent
implementation of the same maximum-likelihood estimates); invariants check
jit, vmap, gradients and caching; properties are the model's theorems.
"""

from __future__ import annotations

import functools
import itertools
import os
import subprocess
import sys
import textwrap

import choix
import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import strategies as st
from jax.test_util import check_grads

from prefsim import _optim
from prefsim import testing as pt
from prefsim.models import bradley_terry as bt
from prefsim.testing import strategies as pst

K = 10  # items in the fitting tests (dense Newton path)
P_SMALL = 1_000  # comparisons; one compilation of fit for this shape
U_TRUE = jnp.linspace(-1.5, 1.5, K)
_FLOAT = jnp.zeros(()).dtype  # the default float dtype


def _comparisons(key, utilities, n):
  """n BT comparisons between uniformly random distinct pairs -> (w, l)."""
  k = utilities.shape[0]
  k_i, k_d, k_y = jax.random.split(key, 3)
  i = jax.random.randint(k_i, (n,), 0, k)
  j = (i + jax.random.randint(k_d, (n,), 1, k)) % k
  i_wins = bt.sample(k_y, utilities, i, j)
  return jnp.where(i_wins, i, j), jnp.where(i_wins, j, i)


@functools.lru_cache(maxsize=None)
def _data(seed, n=P_SMALL):
  w, l = _comparisons(jax.random.key(seed), U_TRUE, n)
  return np.asarray(w), np.asarray(l)


def _centred(x):
  x = np.asarray(x, np.float64)
  return x - x.mean()


# ---------------------------------------------------------------- reference


def test_prob_reference_values():
  np.testing.assert_allclose(bt.prob(0.0, 0.0), 0.5)
  np.testing.assert_allclose(bt.prob(np.log(3.0), 0.0), 0.75, rtol=1e-6)
  np.testing.assert_allclose(bt.prob(jnp.array([0.0, 1.0]), 1.0),
                             [1 / (1 + np.e), 0.5], rtol=1e-6)


def test_log_likelihood_matches_hand_and_choix():
  u = np.array([0.0, np.log(2.0), np.log(4.0)])
  w, l = np.array([2, 1, 0, 2]), np.array([0, 0, 1, 1])
  # pi = (1, 2, 4): P(2>0)=4/5, P(1>0)=2/3, P(0>1)=1/3, P(2>1)=2/3.
  by_hand = np.log(4 / 5) + np.log(2 / 3) + np.log(1 / 3) + np.log(2 / 3)
  np.testing.assert_allclose(bt.log_likelihood(u, w, l), by_hand, rtol=1e-6)
  np.testing.assert_allclose(
      bt.log_likelihood(u, w, l),
      choix.log_likelihood_pairwise(list(zip(w, l)), u), rtol=1e-6)


def test_pl_log_prob_matches_hand_and_choix():
  u = np.array([0.3, -1.0, 2.0, 0.5, -0.2])
  rankings = np.array([[2, 0, 4], [1, 3, 0], [4, 2, 3]])
  pi = np.exp(u)
  by_hand = [np.log(pi[a] / (pi[a] + pi[b] + pi[c]) * pi[b] / (pi[b] + pi[c]))
             for a, b, c in rankings]
  np.testing.assert_allclose(bt.pl_log_prob(u, rankings), by_hand, rtol=1e-5)
  np.testing.assert_allclose(
      jnp.sum(bt.pl_log_prob(u, rankings)),
      choix.log_likelihood_rankings([tuple(r) for r in rankings], u),
      rtol=1e-5)
  # Leading axes broadcast: [2, 3, m] -> [2, 3].
  stacked = np.stack([rankings, rankings[::-1]])
  np.testing.assert_allclose(bt.pl_log_prob(u, stacked)[1],
                             np.array(by_hand)[::-1], rtol=1e-5)


def test_davidson_prob_reference_values():
  # pi_i = 2, pi_j = 1, nu = 1: denominators 2 + 1 + sqrt(2).
  p_win, p_tie, p_loss = bt.davidson_prob(np.log(2.0), 0.0, 0.0)
  d = 3 + np.sqrt(2)
  np.testing.assert_allclose([p_win, p_tie, p_loss], [2 / d, np.sqrt(2) / d,
                                                      1 / d], rtol=1e-6)
  u = np.array([np.log(2.0), 0.0, 1.0])
  i, j, o = np.array([0, 1, 2]), np.array([1, 2, 0]), np.array([0, 1, 2])
  nu = 0.5
  pi = np.exp(u)

  def p(a, b, out):
    tie = nu * np.sqrt(pi[a] * pi[b])
    return [pi[a], tie, pi[b]][out] / (pi[a] + pi[b] + tie)

  by_hand = sum(np.log(p(a, b, out)) for a, b, out in zip(i, j, o))
  np.testing.assert_allclose(
      bt.davidson_log_likelihood(u, np.log(nu), i, j, o), by_hand, rtol=1e-6)


def test_is_strongly_connected_reference_graphs():
  assert bt.is_strongly_connected([0, 1, 2], [1, 2, 0], 3)  # a 3-cycle
  assert not bt.is_strongly_connected([0, 1], [1, 2], 3)  # 0 > 1 > 2
  assert not bt.is_strongly_connected([0, 1, 2, 3], [1, 0, 3, 2], 4)
  assert bt.is_strongly_connected([0, 1, 2, 3, 0, 2], [1, 0, 3, 2, 2, 0], 4)
  assert bt.is_strongly_connected(np.zeros(0, int), np.zeros(0, int), 1)


def test_fit_matches_choix():
  w, l = _data(0)
  data = list(zip(w.tolist(), l.tolist()))
  mle = _centred(choix.ilsr_pairwise(K, data, tol=1e-12))
  for method in ("newton", "newton_cg"):
    est = bt.fit(w, l, K, method=method)
    assert est.dtype == _FLOAT  # float32, or float64 under x64
    np.testing.assert_allclose(_centred(est), mle, atol=1e-4)
  # L2: choix's penalty is alpha * |u|^2, ours l2 / 2 * |u|^2.
  l2 = 3.0
  map_choix = _centred(choix.opt_pairwise(K, data, alpha=l2 / 2, tol=1e-10))
  np.testing.assert_allclose(_centred(bt.fit(w, l, K, l2=l2)), map_choix,
                             atol=1e-4)


def test_pl_fit_matches_choix():
  u = jnp.linspace(-1.0, 1.0, 8)
  rankings = np.asarray(bt.pl_sample(jax.random.key(1), u, 400, m=3))
  data = [tuple(r) for r in rankings.tolist()]
  mle = _centred(choix.ilsr_rankings(8, data, tol=1e-12))
  np.testing.assert_allclose(_centred(bt.pl_fit(rankings, 8)), mle, atol=1e-4)
  l2 = 2.0
  map_choix = _centred(choix.opt_rankings(8, data, alpha=l2 / 2, tol=1e-10))
  np.testing.assert_allclose(_centred(bt.pl_fit(rankings, 8, l2=l2)),
                             map_choix, atol=1e-4)


# ----------------------------------------------------------- transformations


def test_jit_matches_eager():
  u = np.array([0.5, -1.0, 2.0, 0.0], np.float32)
  w, l = np.array([0, 2, 3, 1]), np.array([1, 0, 2, 3])
  pt.assert_jit_matches_eager(bt.log_likelihood, u, w, l, rtol=1e-6)
  pt.assert_jit_matches_eager(bt.pl_log_prob, u, np.array([[2, 0, 3, 1]]),
                              rtol=1e-6)
  pt.assert_jit_matches_eager(
      lambda u, nu: bt.davidson_log_likelihood(u, nu, w, l,
                                               np.array([0, 1, 2, 1])),
      u, np.float32(-0.3), rtol=1e-6)


def test_samplers_jit_matches_eager_and_vmap_over_keys():
  u = jnp.linspace(-1.0, 1.0, 6)
  i, j = jnp.array([0, 1, 2, 5]), jnp.array([3, 4, 5, 0])
  key, keys = jax.random.key(4), jax.random.split(jax.random.key(5), 3)
  samplers = [lambda k: bt.sample(k, u, i, j),
              lambda k: bt.pl_sample(k, u, 5, m=3),
              lambda k: bt.davidson_sample(k, u, jnp.float32(0.1), i, j)]
  for sampler in samplers:
    pt.assert_jit_matches_eager(sampler, key)
    pt.assert_vmap_matches_loop(sampler, keys)


def test_pl_and_davidson_fit_under_jit_and_vmap():
  u = jnp.linspace(-1.0, 1.0, 5)
  rankings = [bt.pl_sample(jax.random.key(s), u, 300, m=3) for s in (0, 1)]
  fit_pl = lambda r: bt.pl_fit(r, 5, l2=0.1)
  pt.assert_trees_allclose(jax.jit(fit_pl)(rankings[0]), fit_pl(rankings[0]),
                           atol=1e-5)
  pt.assert_vmap_matches_loop(fit_pl, jnp.stack(rankings), atol=1e-5)
  i, j = jnp.array([0, 1, 2, 3, 4] * 60), jnp.array([1, 2, 3, 4, 0] * 60)
  outcomes = bt.davidson_sample(jax.random.key(2), u, jnp.float32(0.0), i, j)
  fit_d = lambda o: bt.davidson_fit(i, j, o, 5, l2=0.1)
  pt.assert_trees_allclose(jax.jit(fit_d)(outcomes), fit_d(outcomes),
                           atol=1e-5)


def test_fit_vmap_matches_loop():
  ws, ls = zip(*(_data(s) for s in (0, 1)))
  pt.assert_vmap_matches_loop(lambda w, l: bt.fit(w, l, K),
                              np.stack(ws), np.stack(ls), atol=2e-5)


def test_log_likelihood_vmap_matches_loop():
  us = np.random.default_rng(0).normal(size=(4, K)).astype(np.float32)
  w, l = _data(0)
  pt.assert_vmap_matches_loop(lambda u: bt.log_likelihood(u, w, l), us,
                              rtol=1e-5)


def test_gradients_match_finite_differences():
  u = jnp.array([0.3, -0.7, 1.1, 0.0])
  w, l = jnp.array([0, 2, 3, 1, 2]), jnp.array([1, 0, 2, 3, 3])
  tol = dict(atol=5e-2, rtol=5e-2, eps=1e-2)  # float32 finite differences
  check_grads(bt.prob, (u[:2], u[2:]), order=2, **tol)
  check_grads(jax.jit(lambda u: bt.log_likelihood(u, w, l)), (u,), order=1,
              **tol)
  rankings = jnp.array([[2, 0, 3, 1], [1, 3, 0, 2]])
  check_grads(jax.jit(lambda u: bt.pl_log_prob(u, rankings)), (u,), order=1,
              **tol)
  outcomes = jnp.array([0, 1, 2, 1, 0])
  check_grads(jax.jit(lambda u, nu: bt.davidson_log_likelihood(
      u, nu, w, l, outcomes)), (u, jnp.float32(0.2)), order=1, **tol)


def test_fit_does_not_recompile():
  (w0, l0), (w1, l1) = _data(0), _data(1)
  bt.fit(w0, l0, K).block_until_ready()
  before = bt._fit_core._cache_size()
  bt.fit(w1, l1, K, l2=0.5).block_until_ready()
  bt.fit(jnp.asarray(w0), jnp.asarray(l0), K, l2=1).block_until_ready()
  assert bt._fit_core._cache_size() == before
  r = np.asarray(bt.pl_sample(jax.random.key(1), jnp.linspace(-1, 1, 8), 400,
                              m=3))
  bt.pl_fit(r, 8).block_until_ready()
  before = bt._pl_fit_core._cache_size()
  bt.pl_fit(r[::-1], 8, l2=0.1).block_until_ready()
  assert bt._pl_fit_core._cache_size() == before


def test_minimize_lbfgs_pytree_quadratic():
  target = {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
  scales = jnp.array([1.0, 10.0, 100.0])

  def fun(x):
    return (jnp.sum(scales * (x["a"] - target["a"]) ** 2)
            + jnp.cosh(x["b"] - target["b"]))

  x0 = jax.tree_util.tree_map(jnp.zeros_like, target)
  x, n_iter = jax.jit(lambda x0: _optim.minimize_lbfgs(fun, x0, tol=1e-5))(x0)
  pt.assert_trees_allclose(x, target, atol=1e-4)
  assert 0 < int(n_iter) < 100
  g = jax.grad(fun)(x)
  assert max(float(jnp.max(jnp.abs(v))) for v in jax.tree.leaves(g)) <= 1e-4


# ------------------------------------------------------- theorem properties


@hypothesis.given(u=pst.vectors(6))
def test_prob_complement(u):
  np.testing.assert_allclose(bt.prob(u[:3], u[3:]) + bt.prob(u[3:], u[:3]),
                             1.0, rtol=1e-6)


@hypothesis.given(u=pst.vectors(K), shift=st.floats(-50, 50))
def test_log_likelihood_shift_invariant(u, shift):
  w, l = _data(0)
  np.testing.assert_allclose(bt.log_likelihood(u + np.float32(shift), w, l),
                             bt.log_likelihood(u, w, l), rtol=1e-4)


@hypothesis.given(eighths=st.lists(st.integers(-24, 24), min_size=K,
                                   max_size=K),
                  shift=st.integers(-100, 100), seed=pst.seeds())
def test_sampling_and_fit_shift_invariant(eighths, shift, seed):
  # Utilities on a 1/8 grid shifted by an integer: exact in float32, so the
  # same key draws the same comparisons and fit returns the same mean-zero u.
  u = jnp.asarray(eighths, jnp.float32) / 8
  key = jax.random.key(seed)
  w0, l0 = _comparisons(key, u, P_SMALL)
  w1, l1 = _comparisons(key, u + shift, P_SMALL)
  np.testing.assert_array_equal(w0, w1)
  np.testing.assert_array_equal(l0, l1)
  if bt.is_strongly_connected(w0, l0, K):
    est = bt.fit(w0, l0, K)
    assert abs(float(jnp.mean(est))) < 1e-5


def test_fit_recovers_utilities_error_shrinks_with_n():
  # Asymptotic normality of the MLE: RMSE ~ n^{-1/2}, so 20x more data should
  # shrink the error by sqrt(20) ~ 4.5; we require a factor above 2, and the
  # n=20000 RMSE below 0.08 (about twice its theoretical value, ~0.04).
  keys = jax.random.split(jax.random.key(2024), 8)

  def rmse(n):
    def one(key):
      w, l = _comparisons(key, U_TRUE, n)
      return bt.fit(w, l, K)
    est = jax.jit(jax.vmap(one))(keys)
    return jnp.sqrt(jnp.mean((est - (U_TRUE - U_TRUE.mean())) ** 2, axis=1))

  small, large = rmse(1_000), rmse(20_000)
  pt.assert_finite((small, large))
  assert float(large.mean()) < 0.5 * float(small.mean())
  assert float(large.mean()) < 0.08
  assert float(small.mean()) < 0.35


@hypothesis.given(seed=st.integers(0, 30),
                  l2=st.sampled_from([0.0, 0.01, 1.0, 30.0]))
def test_fit_first_order_optimality(seed, l2):
  # At the maximiser the gradient of sum log sigma - l2/2 |u|^2 vanishes.
  w, l = _data(seed)
  est = bt.fit(w, l, K, l2=l2)
  grad = jax.grad(lambda u: bt.log_likelihood(u, w, l)
                  - 0.5 * l2 * jnp.sum(u ** 2))(est)
  # Entries are sums of ~200 terms of size O(1); a non-optimum gives O(1).
  assert float(jnp.max(jnp.abs(grad))) < 1e-2
  assert abs(float(jnp.mean(est))) < 1e-5


@hypothesis.given(u=pst.utilities(5))
def test_pl_probabilities_of_all_orderings_sum_to_one(u):
  full = np.array(list(itertools.permutations(range(4))))
  np.testing.assert_allclose(jnp.sum(jnp.exp(bt.pl_log_prob(u, full))), 1.0,
                             rtol=1e-5)
  subset = np.array(list(itertools.permutations([4, 1, 2])))
  np.testing.assert_allclose(jnp.sum(jnp.exp(bt.pl_log_prob(u, subset))),
                             1.0, rtol=1e-5)


@hypothesis.given(u=pst.vectors(K))
def test_pl_with_two_items_is_bradley_terry(u):
  pairs = np.array([[0, 1], [3, 2], [9, 4], [5, 7]])
  np.testing.assert_allclose(
      bt.pl_log_prob(u, pairs),
      jax.nn.log_sigmoid(u[pairs[:, 0]] - u[pairs[:, 1]]), rtol=1e-5,
      atol=1e-6)


def test_pl_sample_first_place_is_softmax():
  # Luce's choice axiom: the top item is drawn from softmax(u) (over the
  # ranked subset). Pearson chi-square below the 0.999 quantile.
  u = jnp.array([1.0, 0.5, 0.0, -0.5, -1.0, 0.2])
  n, k = 20_000, 6
  full = np.asarray(bt.pl_sample(jax.random.key(7), u, n))
  assert full.shape == (n, k) and np.issubdtype(full.dtype, np.integer)
  assert np.all(np.sort(full, axis=1) == np.arange(k))
  observed = np.bincount(full[:, 0], minlength=k)
  expected = n * np.asarray(jax.nn.softmax(u), np.float64)
  chi2 = np.sum((observed - expected) ** 2 / expected)
  assert chi2 < scipy.stats.chi2.ppf(0.999, k - 1)

  m = 3
  sub = np.asarray(bt.pl_sample(jax.random.key(8), u, n, m=m))
  assert sub.shape == (n, m)
  assert np.all(np.diff(np.sort(sub, axis=1), axis=1) > 0)
  # Subsets are uniform: every item appears in a fraction m / K of the rows.
  # Inclusion counts have variance n (m/K)(1 - m/K) and sum to n m exactly.
  seen = np.bincount(sub.ravel(), minlength=k)
  chi2_subset = np.sum((seen - n * m / k) ** 2 / (n * m / k * (1 - m / k)))
  assert chi2_subset < scipy.stats.chi2.ppf(0.999, k - 1)
  # First place given the subset: softmax over the subset.
  un = np.asarray(u, np.float64)
  p_first = np.exp(un[sub]) / np.exp(un[sub]).sum(axis=1, keepdims=True)
  expected = np.zeros(k)
  np.add.at(expected, sub, p_first)
  observed = np.bincount(sub[:, 0], minlength=k)
  chi2 = np.sum((observed - expected) ** 2 / expected)
  assert chi2 < scipy.stats.chi2.ppf(0.999, k - 1)


def test_sample_frequencies_match_prob():
  u = jnp.array([0.0, 1.0, -2.0])
  i = jnp.repeat(jnp.array([0, 1, 2]), 20_000)
  j = jnp.repeat(jnp.array([1, 2, 0]), 20_000)
  y = bt.sample(jax.random.key(3), u, i, j)
  assert y.shape == i.shape and y.dtype == jnp.bool_
  freq = np.asarray(y).reshape(3, -1).mean(axis=1)
  p = np.asarray(bt.prob(u[jnp.array([0, 1, 2])], u[jnp.array([1, 2, 0])]))
  z = (freq - p) / np.sqrt(p * (1 - p) / 20_000)
  assert np.all(np.abs(z) < 5)


@hypothesis.given(u=pst.vectors(6), log_nu=st.floats(-3.0, 3.0))
def test_davidson_probabilities_sum_to_one(u, log_nu):
  p = bt.davidson_prob(u[:3], u[3:], log_nu)
  np.testing.assert_allclose(sum(p), 1.0, rtol=1e-5)
  # Symmetry: swapping the items swaps win and loss.
  q = bt.davidson_prob(u[3:], u[:3], log_nu)
  np.testing.assert_allclose(p[0], q[2], rtol=1e-5, atol=1e-7)
  np.testing.assert_allclose(p[1], q[1], rtol=1e-5, atol=1e-7)


@hypothesis.given(u=pst.vectors(6))
def test_davidson_reduces_to_bradley_terry(u):
  p_win, p_tie, _ = bt.davidson_prob(u[:3], u[3:], -40.0)
  np.testing.assert_allclose(p_win, bt.prob(u[:3], u[3:]), rtol=1e-5,
                             atol=1e-7)
  assert float(jnp.max(p_tie)) < 1e-12


def test_davidson_fit_recovers_nu_and_utilities():
  # Four seeds of 20000 comparisons among 5 items; standard errors are about
  # 0.025 (utilities) and 0.02 (log nu): tolerances of 4 standard errors.
  k, n = 5, 20_000
  u = jnp.linspace(-1.0, 1.0, k)
  log_nu = jnp.log(0.8)

  def one(key):
    k_i, k_d, k_o = jax.random.split(key, 3)
    i = jax.random.randint(k_i, (n,), 0, k)
    j = (i + jax.random.randint(k_d, (n,), 1, k)) % k
    o = bt.davidson_sample(k_o, u, log_nu, i, j)
    u_hat, log_nu_hat = bt.davidson_fit(i, j, o, k)
    grad = jax.grad(bt.davidson_log_likelihood, (0, 1))(u_hat, log_nu_hat, i,
                                                         j, o)
    return u_hat, log_nu_hat, grad

  u_hat, log_nu_hat, grad = jax.jit(jax.vmap(one))(
      jax.random.split(jax.random.key(5), 4))
  assert np.all(np.abs(np.asarray(u_hat) - np.asarray(u)) < 0.1)
  assert np.all(np.abs(np.asarray(log_nu_hat) - float(log_nu)) < 0.08)
  np.testing.assert_allclose(jnp.mean(u_hat, axis=1), 0.0, atol=1e-5)
  # First-order optimality: the gradient of the total log-likelihood over
  # 20000 comparisons is at rounding level.
  assert float(jnp.max(jnp.abs(grad[0]))) < 0.05
  assert float(jnp.max(jnp.abs(grad[1]))) < 0.05


def test_davidson_fit_with_l2_is_stationary():
  i = np.array([0, 1, 2, 0, 1, 2, 0, 3, 3, 1])
  j = np.array([1, 2, 0, 2, 0, 1, 3, 1, 2, 3])
  o = np.array([0, 1, 2, 0, 0, 1, 2, 1, 0, 2])
  l2 = 0.7
  u_hat, log_nu_hat = bt.davidson_fit(i, j, o, 4, l2=l2)
  grad = jax.grad(
      lambda u, nu: bt.davidson_log_likelihood(u, nu, i, j, o)
      - 0.5 * l2 * jnp.sum(u ** 2), (0, 1))(u_hat, log_nu_hat)
  assert float(jnp.max(jnp.abs(grad[0]))) < 1e-4
  assert abs(float(grad[1])) < 1e-4


def test_large_margins_stay_finite_in_float32():
  u = jnp.array([0.0, 1e4, -1e4], jnp.float32)
  w, l = jnp.array([2, 0, 1]), jnp.array([1, 1, 2])
  value, grad = jax.value_and_grad(bt.log_likelihood)(u, w, l)
  pt.assert_finite((value, grad))
  np.testing.assert_allclose(value, -2e4 - 1e4, rtol=1e-6)
  r = jnp.array([[2, 0, 1], [1, 0, 2]])
  pt.assert_finite(jax.value_and_grad(
      lambda u: jnp.sum(bt.pl_log_prob(u, r)))(u))
  pt.assert_finite(jax.value_and_grad(bt.davidson_log_likelihood, (0, 1))(
      u, jnp.float32(0.0), w, l, jnp.array([0, 1, 2])))
  pt.assert_finite(bt.davidson_prob(u[1], u[2], 0.0))


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize("call, match", [
    (lambda: bt.fit([0, 1, 2], [1, 0], 3), "winners"),
    (lambda: bt.fit([0, 1, 3], [1, 0, 0], 3), r"winners must lie in \[0, 3\)"),
    (lambda: bt.fit([0, 1, 2], [1, 0, -1], 3), r"losers must lie in \[0, 3\)"),
    (lambda: bt.fit([0, 1, 2], [1, 2, 0], 3, l2=-0.1), "l2"),
    (lambda: bt.fit([0, 1, 2], [1, 2, 0], 3, method="bfgs"), "method"),
    (lambda: bt.log_likelihood(jnp.zeros(3), [0, 1], [1]), "winners"),
    (lambda: bt.log_likelihood(jnp.zeros(3), [0, 5], [1, 0]), "winners"),
    (lambda: bt.sample(jax.random.key(0), jnp.zeros(3), [0, 1], [1, 3]),
     r"j must lie in \[0, 3\)"),
    (lambda: bt.sample(jax.random.key(0), jnp.zeros(3), [0, 1], [1]), "i"),
    (lambda: bt.pl_fit(np.array([[0, 1], [1, 9]]), 3), "rankings"),
    (lambda: bt.pl_fit(np.array([[0, 1, 1]]), 3), "rankings"),
    (lambda: bt.pl_fit(np.array([[0, 1, 2], [2, 1, 0]]), 3, l2=-1.0), "l2"),
    (lambda: bt.pl_sample(jax.random.key(0), jnp.zeros(3), 5, m=4), "m"),
    (lambda: bt.davidson_fit([0, 1], [1, 0], [0, 3], 2), "outcomes"),
    (lambda: bt.davidson_fit([0, 1], [1, 0], [0, 2], 2), "no ties"),
    (lambda: bt.davidson_fit([0, 1], [1, 0], [0, 1], 2, l2=-1.0), "l2"),
])
def test_bad_input_raises_naming_the_argument(call, match):
  with pytest.raises((ValueError, TypeError), match=match):
    call()


def test_float_indices_raise_type_error():
  with pytest.raises(TypeError, match="winners"):
    bt.fit(np.array([0.0, 1.0]), np.array([1, 0]), 2)


# 0 and 1 beat each other, 2 and 3 beat each other, 0 beats 2: the graph is
# weakly but not strongly connected (nobody from {2, 3} beats {0, 1}).
_W_WEAK, _L_WEAK = np.array([0, 1, 2, 3, 0]), np.array([1, 0, 3, 2, 2])


def test_fit_without_mle_raises_and_l2_rescues():
  with pytest.raises(ValueError, match="does not exist") as info:
    bt.fit(_W_WEAK, _L_WEAK, 4)
  assert "l2 > 0" in str(info.value)
  est = bt.fit(_W_WEAK, _L_WEAK, 4, l2=0.1)
  pt.assert_finite(est)
  assert float(est[0]) > float(est[2])
  # Rankings 0 > 1 and 2 > 3 only: two separate groups.
  with pytest.raises(ValueError, match="does not exist"):
    bt.pl_fit(np.array([[0, 1], [2, 3]]), 4)
  pt.assert_finite(bt.pl_fit(np.array([[0, 1], [2, 3]]), 4, l2=0.1))
  i, j, o = np.array([0, 2, 0]), np.array([1, 3, 2]), np.array([1, 1, 0])
  with pytest.raises(ValueError, match="does not exist"):
    bt.davidson_fit(i, j, o, 4)
  pt.assert_finite(bt.davidson_fit(i, j, o, 4, l2=0.1))
  # Ties link items both ways: 0 ~ 1 ~ 2 plus 2 > 0 has a (finite) MLE.
  u_hat, log_nu_hat = bt.davidson_fit([0, 1, 2], [1, 2, 0], [1, 1, 0], 3)
  pt.assert_finite((u_hat, log_nu_hat))
  assert float(u_hat[2]) > float(u_hat[0])


def test_fit_under_jit_without_mle_is_documented_behaviour():
  # Under jit no check runs; the docstring says the gaps between the groups
  # grow until the likelihood gain falls below rounding (or max_iter).
  est = jax.jit(lambda w, l: bt.fit(w, l, 4))(_W_WEAK, _L_WEAK)
  pt.assert_finite(est)
  assert float(est[0] - est[2]) > 10.0


# --------------------------------------------------------------------- x64


def test_float64_fits_match_choix_tightly():
  # x64 must be set at start-up: run in a subprocess.
  script = textwrap.dedent("""
      import jax
      jax.config.update("jax_enable_x64", True)
      import choix, numpy as np, jax.numpy as jnp
      from prefsim.models import bradley_terry as bt
      rng = np.random.default_rng(0)
      u = np.linspace(-1, 1, 6)
      i = rng.integers(0, 6, 400); j = (i + rng.integers(1, 6, 400)) % 6
      y = rng.random(400) < 1 / (1 + np.exp(-(u[i] - u[j])))
      w, l = np.where(y, i, j), np.where(y, j, i)
      c = lambda x: x - x.mean()
      for method in ("newton", "newton_cg"):
        est = bt.fit(w, l, 6, method=method)
        assert est.dtype == jnp.float64, est.dtype
        ref = c(choix.ilsr_pairwise(6, list(zip(w, l)), tol=1e-14))
        assert np.abs(c(est) - ref).max() < 1e-8, np.abs(c(est) - ref).max()
      r = np.asarray(bt.pl_sample(jax.random.key(0), jnp.asarray(u), 300, 3))
      est = bt.pl_fit(r, 6)
      assert est.dtype == jnp.float64
      ref = c(choix.ilsr_rankings(6, [tuple(x) for x in r], tol=1e-14))
      assert np.abs(c(est) - ref).max() < 1e-7, np.abs(c(est) - ref).max()
      o = np.asarray(bt.davidson_sample(jax.random.key(1), jnp.asarray(u),
                                        -0.5, i, j))
      uh, nu = bt.davidson_fit(i, j, o, 6)
      g = jax.grad(bt.davidson_log_likelihood, (0, 1))(uh, nu, i, j, o)
      assert uh.dtype == jnp.float64 and nu.dtype == jnp.float64
      assert max(np.abs(g[0]).max(), abs(g[1])) < 1e-6, g
      print("ok")
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, env=env, timeout=300,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(
                           os.path.abspath(__file__)))))
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().endswith("ok")
