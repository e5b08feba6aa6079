"""Tests of prefsim.policies."""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import strategies as st
from jax.test_util import check_grads

from prefsim import policies
from prefsim import testing as pt
from prefsim.testing import strategies as pst


def _objective(logprobs, ref_logprobs, rewards, beta):
  """J(pi) = E_pi[r] - beta KL(pi || pi_ref), per prompt."""
  return (policies.expected_reward(logprobs, rewards)
          - beta * policies.kl(logprobs, ref_logprobs))


def test_kl_optimal_by_hand_two_responses():
  # pi_ref = (1/2, 1/2), r = (log 3, 0), beta = 1: pi* = (3/4, 1/4).
  out = policies.kl_optimal(jnp.log(jnp.array([0.5, 0.5])),
                            jnp.array([np.log(3.0), 0.0]), 1.0)
  np.testing.assert_allclose(jnp.exp(out), [0.75, 0.25], rtol=1e-6)


@hypothesis.given(ref=pst.tabular_policies(3, 5), rewards=pst.vectors(5),
                  beta=pst.betas(0.1, 10.0))
def test_kl_optimal_satisfies_its_defining_equation(ref, rewards, beta):
  """pi* = pi_ref exp(r / beta) / Z: log pi* - log pi_ref - r/beta is the
  same constant -log Z(x) for every response of a prompt, and pi* sums to 1."""
  out = policies.kl_optimal(ref, rewards, beta)
  np.testing.assert_allclose(jnp.exp(out).sum(-1), 1.0, rtol=1e-5)
  log_z = -(out - ref - rewards / beta)
  np.testing.assert_allclose(log_z, log_z[:, :1] * np.ones((1, 5)),
                             atol=1e-4 * (1 + np.abs(rewards).max() / beta))


@hypothesis.given(ref=pst.tabular_policies(2, 4), rewards=pst.vectors(4),
                  others=pst.tabular_policies(16, 4), beta=pst.betas(0.1, 10))
def test_kl_optimal_maximises_the_regularised_reward(ref, rewards, others,
                                                     beta):
  """J(pi*) >= J(pi) for every policy pi, and J(pi*) = beta log E_ref e^{r/beta}
  (the regularised objective's closed-form value)."""
  best = policies.kl_optimal(ref, rewards, beta)
  j_best = _objective(best, ref, rewards, beta)                # [2]
  j_others = _objective(others[:, None, :], ref[None], rewards, beta)  # [16, 2]
  tol = 1e-5 * (1 + np.abs(rewards).max())
  assert np.all(j_others <= j_best[None] + tol)
  closed = beta * jax.scipy.special.logsumexp(ref + rewards / beta, axis=-1)
  np.testing.assert_allclose(j_best, closed, rtol=1e-4, atol=tol)


def test_kl_optimal_rejects_non_positive_beta():
  with pytest.raises(ValueError, match="beta"):
    policies.kl_optimal(jnp.zeros(3), jnp.zeros(3), 0.0)


@hypothesis.given(p=pst.tabular_policies(4, 6), q=pst.tabular_policies(4, 6))
def test_kl_matches_textbook_sum(p, q):
  ours = policies.kl(p, q)
  ref = scipy.stats.entropy(np.exp(p.astype(np.float64)),
                            np.exp(q.astype(np.float64)), axis=-1)
  np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-6)
  assert np.all(ours >= -1e-6)
  np.testing.assert_allclose(policies.kl(p, p), 0.0, atol=1e-6)


def test_kl_zero_mass_terms_have_finite_value_and_gradient():
  p = jnp.log(jnp.array([0.0, 0.25, 0.75]))
  q = jnp.log(jnp.array([0.2, 0.3, 0.5]))
  expected = 0.25 * np.log(0.25 / 0.3) + 0.75 * np.log(0.75 / 0.5)
  np.testing.assert_allclose(policies.kl(p, q), expected, rtol=1e-6)
  pt.assert_finite(jax.grad(lambda a, b: policies.kl(a, b), (0, 1))(p, q))
  # Mass outside q's support: infinite divergence.
  assert policies.kl(q, p) == np.inf


def test_kl_resolves_nearby_policies_in_float32():
  """KL(p||q) for q = softmax(z + d w), d = 1e-4, is about d^2/2 Var_p(w) ~ 1e-9:
  the float32 result must match a float64 evaluation to 1 %, far below the
  ~1e-7 round-off floor of the textbook sum."""
  z = np.asarray(jax.random.normal(jax.random.key(1), (64, 10)), np.float64)
  w = np.asarray(jax.random.normal(jax.random.key(2), (64, 10)), np.float64)
  logp = z - scipy.special.logsumexp(z, axis=-1, keepdims=True)
  zq = z + 1e-4 * w
  logq = zq - scipy.special.logsumexp(zq, axis=-1, keepdims=True)
  expected = np.sum(np.exp(logp) * (logp - logq), axis=-1)
  assert np.all(expected < 1e-7)
  ours = policies.kl(jnp.asarray(logp, jnp.float32), jnp.asarray(logq, jnp.float32))
  # The inputs' own float32 round-off (~6e-8 per entry) bounds what any
  # float32 evaluation can resolve; relative error 1 % holds well above it.
  np.testing.assert_allclose(ours, expected, rtol=1e-2)


def test_kl_of_far_apart_policies_is_finite():
  """q/p up to e^200 (p tiny where q is not): the divergence and its gradient
  stay finite and match the textbook sum in float64."""
  logp = np.array([-200.0, np.log1p(-np.exp(-200.0))])
  logq = np.array([np.log(0.5), np.log(0.5)])
  expected = float(np.sum(np.exp(logp) * (logp - logq)))
  for dtype in (jnp.float32, jnp.float64):
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
      continue
    a, b = jnp.asarray(logp, dtype), jnp.asarray(logq, dtype)
    np.testing.assert_allclose(policies.kl(a, b), expected, rtol=1e-5)
    pt.assert_finite(jax.grad(policies.kl, (0, 1))(a, b))


def test_loglinear_matches_manual_softmax_and_gradients():
  key_f, key_t = jax.random.split(jax.random.key(0))
  features = jax.random.normal(key_f, (3, 4, 2))
  theta = jax.random.normal(key_t, (2,))
  logits = np.einsum("xkd,d->xk", np.asarray(features), np.asarray(theta))
  expected = logits - scipy.special.logsumexp(logits, axis=-1, keepdims=True)
  np.testing.assert_allclose(policies.loglinear_logprobs(features, theta),
                             expected, rtol=1e-5, atol=1e-6)
  check_grads(lambda t: policies.loglinear_logprobs(features, t), (theta,),
              order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
  with pytest.raises(ValueError, match="share D"):
    policies.loglinear_logprobs(features, jnp.zeros(3))


def test_sample_frequencies_match_the_policy():
  probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.25, 0.25]])
  draws = np.asarray(policies.sample(jax.random.key(1), jnp.log(probs),
                                     n=20000))
  assert draws.shape == (20000, 2)
  for x in range(2):
    counts = np.bincount(draws[:, x], minlength=3)
    stat = np.sum((counts - 20000 * probs[x]) ** 2 / (20000 * probs[x]))
    assert stat < scipy.stats.chi2.ppf(0.999, df=2), (x, counts)


def test_transformation_invariants():
  ref = jnp.log(jnp.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]]))
  rewards = jnp.array([[1.0, -1.0, 0.5], [0.0, 2.0, -3.0]])
  pt.assert_jit_matches_eager(lambda r: policies.kl_optimal(ref, r, 0.5),
                              rewards, rtol=1e-5)
  pt.assert_vmap_matches_loop(lambda a, b: policies.kl(a, b), ref, ref[::-1])
  check_grads(lambda r: policies.kl_optimal(ref, r, 0.5), (rewards,),
              order=1, modes=("rev",), atol=1e-2, rtol=1e-2)
  check_grads(lambda a: policies.kl(a, ref[::-1]), (ref,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
  pt.assert_traced_once(lambda r: policies.kl_optimal(ref, r, 0.5),
                        [(rewards,), (rewards + 1.0,)])
  keys = jax.random.split(jax.random.key(0), 3)
  pt.assert_jit_matches_eager(lambda k: policies.sample(k, ref, n=4), keys[0])
  pt.assert_vmap_matches_loop(lambda k: policies.sample(k, ref), keys)
  check_grads(lambda a: policies.expected_reward(a, rewards), (ref,), order=1,
              modes=("rev",), atol=1e-2, rtol=1e-2)
