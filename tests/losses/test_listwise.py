"""Tests of the listwise losses of prefsim.losses: PL-DPO, LiPO-lambda,
InfoNCA and NCA."""

from __future__ import annotations

import functools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.special
from hypothesis import strategies as st
from jax.test_util import check_grads

from prefsim import _optim
from prefsim import losses
from prefsim import testing as pt
from prefsim.models import bradley_terry
from prefsim.testing import strategies as pst

_FLOAT = jax.dtypes.canonicalize_dtype(jnp.float64)
_LIPO_K2 = 1.0 - 1.0 / np.log2(3.0)  # |1/log2(2) - 1/log2(3)|, gains 1 and 0


@hypothesis.given(h=pst.vectors(2, -8.0, 8.0), beta=pst.betas(0.1, 5.0))
def test_pl_dpo_and_lipo_reduce_to_dpo_at_k2(h, beta):
  """With K = 2: Plackett-Luce DPO is DPO (Rafailov et al. 2023, App. A.3);
  LiPO-lambda is DPO weighted by the constant lambda weight
  (2^1 - 1) |1/log2(2) - 1/log2(3)|, whichever response ranks first
  (Liu et al. 2024, Sec. 4); InfoNCA with hard targets is DPO (Chen et al.
  2024)."""
  dpo = losses.dpo(h[0], h[1], beta=beta)
  np.testing.assert_allclose(losses.pl_dpo(h, beta=beta), dpo, rtol=2e-6)
  np.testing.assert_allclose(
      losses.lipo_lambda(h, jnp.asarray([1.0, 0.0]), beta=beta),
      _LIPO_K2 * dpo, rtol=2e-6)
  np.testing.assert_allclose(
      losses.lipo_lambda(h, jnp.asarray([0.0, 1.0]), beta=beta),
      _LIPO_K2 * losses.dpo(h[1], h[0], beta=beta), rtol=2e-6)
  hard = jnp.asarray([1e3, 0.0])   # softmax(hard / 1) == (1, 0) exactly
  np.testing.assert_allclose(
      losses.infonca(h, hard, beta=beta, alpha=1.0), dpo, rtol=2e-6)


@hypothesis.given(h=pst.vectors(5, -5.0, 5.0), beta=pst.betas(0.1, 5.0))
def test_pl_dpo_is_the_plackett_luce_likelihood(h, beta):
  """pl_dpo(h) = -log P_PL(0 > 1 > ... > m-1 | utilities beta h), against a
  float64 loop over the stages and against bradley_terry.pl_log_prob."""
  s = beta * h.astype(np.float64)
  loop = sum(scipy.special.logsumexp(s[k:]) - s[k] for k in range(len(s)))
  got = losses.pl_dpo(h, beta=beta)
  np.testing.assert_allclose(got, loop, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(
      got, -bradley_terry.pl_log_prob(beta * jnp.asarray(h), jnp.arange(5)),
      rtol=1e-5, atol=1e-5)


def _lipo_loop(h, labels, beta):
  """LiPO-lambda by its definition, pair by pair, in float64."""
  s = beta * np.asarray(h, np.float64)
  psi = np.asarray(labels, np.float64)
  rank = np.empty(len(s), int)
  rank[np.argsort(-s, kind="stable")] = np.arange(1, len(s) + 1)
  total = 0.0
  for i in range(len(s)):
    for j in range(len(s)):
      if psi[i] > psi[j]:
        weight = (abs((2 ** psi[i] - 1) - (2 ** psi[j] - 1))
                  * abs(1 / np.log2(1 + rank[i]) - 1 / np.log2(1 + rank[j])))
        total += weight * np.logaddexp(0.0, -(s[i] - s[j]))
  return total


@hypothesis.given(h=pst.vectors(5, -5.0, 5.0),
                  labels=st.lists(st.integers(0, 3), min_size=5, max_size=5),
                  beta=pst.betas(0.1, 5.0))
def test_lipo_lambda_matches_a_pair_loop(h, labels, beta):
  """LiPO-lambda equals its definition summed pair by pair (ties in the
  labels do not count; ranks from the current rewards)."""
  hypothesis.assume(len(set(np.round(beta * h, 4))) == 5)  # no tied ranks
  got = losses.lipo_lambda(h, jnp.asarray(labels, jnp.float32), beta=beta)
  np.testing.assert_allclose(got, _lipo_loop(h, labels, beta), rtol=1e-5,
                             atol=1e-6)


@functools.partial(jax.jit, static_argnums=0)
def _minimise(loss, rewards, beta, alpha):
  """Minimises loss(h, rewards) over the log-ratios h with L-BFGS."""
  fun = lambda h: loss(h, rewards, beta=beta, alpha=alpha)
  h, _ = _optim.minimize_lbfgs(fun, jnp.zeros_like(rewards), max_iter=500,
                               tol=1e-7)
  return h


@hypothesis.given(rewards=pst.vectors(4, -1.5, 1.5),
                  alpha=st.floats(0.5, 2.0), beta=st.floats(0.5, 2.0),
                  shift=st.floats(-3.0, 3.0))
def test_infonca_fixes_only_relative_rewards(rewards, alpha, beta, shift):
  """Chen et al. 2024 (InfoNCA): minimisers satisfy s_i - s_j =
  log(p_i / p_j) with p = softmax(r / alpha); the loss is unchanged by a
  common shift of every s, so only differences are fixed."""
  r = jnp.asarray(rewards)
  s = beta * _minimise(losses.infonca, r, beta, alpha)
  log_p = jax.nn.log_softmax(r / alpha)
  np.testing.assert_allclose(s - s[0], log_p - log_p[0], atol=2e-4)
  h = s / beta
  np.testing.assert_allclose(
      losses.infonca(h + shift / beta, r, beta=beta, alpha=alpha),
      losses.infonca(h, r, beta=beta, alpha=alpha), rtol=1e-5)


@hypothesis.given(rewards=pst.vectors(4, -1.5, 1.5),
                  alpha=st.floats(0.5, 2.0), beta=st.floats(0.5, 2.0))
def test_nca_optimum_is_absolute(rewards, alpha, beta):
  """Chen et al. 2024 (NCA): the minimiser is absolute, s_i* = log(K p_i)
  with p = softmax(r / alpha); shifting it raises the loss."""
  r = jnp.asarray(rewards)
  s = beta * _minimise(losses.nca, r, beta, alpha)
  np.testing.assert_allclose(s, np.log(4.0) + jax.nn.log_softmax(r / alpha),
                             atol=2e-4)
  h = s / beta
  at_opt = losses.nca(h, r, beta=beta, alpha=alpha)
  for shift in (-0.5, 0.5):
    assert losses.nca(h + shift / beta, r, beta=beta, alpha=alpha) > at_opt


@hypothesis.given(h=pst.vectors(2, -8.0, 8.0), beta=pst.betas(0.1, 5.0))
def test_nca_pair_is_nca_with_hard_labels(h, beta):
  """TRL's nca_pair is NCA with K = 2 and targets (1, 0)."""
  hard = jnp.asarray([1e3, 0.0])
  np.testing.assert_allclose(
      losses.nca(h, hard, beta=beta, alpha=1.0),
      losses.nca_pair(h[0], h[1], beta=beta), rtol=2e-6)


# --- numerics and transformations ---------------------------------------

_B = 0.5
_LABELS = jnp.asarray([3.0, 2.0, 2.0, 1.0, 0.0])
_CASES = {
    "pl_dpo": lambda h, r: losses.pl_dpo(h, beta=_B),
    "lipo_lambda": lambda h, r: losses.lipo_lambda(
        h, jnp.broadcast_to(_LABELS, h.shape), beta=_B),
    "infonca": lambda h, r: losses.infonca(h, r, beta=_B, alpha=0.7),
    "nca": lambda h, r: losses.nca(h, r, beta=_B, alpha=0.7),
}


def _inputs(seed, shape=(5,)):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return (jax.random.normal(k1, shape, _FLOAT),
          jax.random.normal(k2, shape, _FLOAT))


@pytest.mark.parametrize("name", sorted(_CASES))
def test_large_logratios_stay_finite(name):
  fn = _CASES[name]
  h = jnp.asarray([1e4, -1e4, 0.0, 5e3, -1e4], _FLOAT)
  r = jnp.asarray([1e4, -1e4, 0.0, 2.0, -3.0], _FLOAT)
  pt.assert_finite(fn(h, r), "value")
  pt.assert_finite(jax.grad(lambda x: fn(x, r))(h), "gradient")


@pytest.mark.parametrize("name", sorted(_CASES))
def test_gradients_match_finite_differences(name):
  h, r = _inputs(0)
  check_grads(lambda x: _CASES[name](x, r), (h,), order=1,
              modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(_CASES))
def test_jit_vmap_and_single_trace(name):
  fn = _CASES[name]
  h, r = _inputs(1, (3, 5))
  pt.assert_jit_matches_eager(fn, h, r, rtol=1e-6)
  pt.assert_vmap_matches_loop(fn, h, r, rtol=1e-6)
  pt.assert_traced_once(fn, [(h, r), _inputs(2, (3, 5))])


def test_bad_input_raises():
  h = jnp.zeros(3)
  with pytest.raises(ValueError, match="m >= 2"):
    losses.pl_dpo(jnp.zeros(1), beta=1.0)
  with pytest.raises(ValueError, match="beta must lie in"):
    losses.pl_dpo(h, beta=0.0)
  with pytest.raises(ValueError, match="shapes must match"):
    losses.lipo_lambda(h, jnp.zeros(4), beta=1.0)
  with pytest.raises(ValueError, match="shapes must match"):
    losses.nca(h, jnp.zeros(4), beta=1.0, alpha=1.0)
  with pytest.raises(ValueError, match="alpha must lie in"):
    losses.infonca(h, h, beta=1.0, alpha=0.0)
