"""Tests of prefsim.loglinear: the log-linear bandit, its data and metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st

from prefsim import loglinear
from prefsim import policies
from prefsim import testing as pt
from prefsim.testing import strategies as pst

X, K, D = 6, 5, 3


def _problem(seed=0, beta=0.5, theta_norm=2.0, eps=0.0, ref_scale=1.0):
  return loglinear.make_problem(jax.random.key(seed), X, K, D, beta=beta,
                                theta_norm=theta_norm, eps=eps,
                                ref_scale=ref_scale)


def _np(problem):
  """The problem's arrays in float64 NumPy."""
  return [np.asarray(a, np.float64) for a in problem]


def _np_logprobs(theta, features, ref_logprobs):
  """log pi_theta = log(pi_ref e^{theta.phi} / sum), computed directly."""
  w = np.exp(ref_logprobs) * np.exp(features @ theta)
  return np.log(w / w.sum(-1, keepdims=True))


def _np_regularised(theta, problem):
  """J_beta(pi_theta) = E_x[E_pi r* - beta KL(pi || pi_ref)], in float64."""
  features, ref, theta_star, beta, _ = _np(problem)
  lp = _np_logprobs(np.asarray(theta, np.float64), features, ref)
  r = beta * features @ theta_star
  p = np.exp(lp)
  return np.mean(np.sum(p * r, -1) - beta * np.sum(p * (lp - ref), -1))


def test_make_problem_shapes_norm_and_reference():
  problem = _problem(theta_norm=1.5, ref_scale=0.0)
  assert problem.features.shape == (X, K, D)
  assert problem.ref_logprobs.shape == (X, K)
  np.testing.assert_allclose(jnp.linalg.norm(problem.theta_star), 1.5,
                             rtol=1e-6)
  np.testing.assert_allclose(problem.ref_logprobs, -np.log(K), rtol=1e-6)
  skewed = _problem(ref_scale=2.0)
  np.testing.assert_allclose(jnp.exp(skewed.ref_logprobs).sum(-1), 1.0,
                             rtol=1e-6)
  assert float(jnp.std(skewed.ref_logprobs)) > 0.5


@hypothesis.given(key=pst.keys(), beta=pst.betas(0.05, 5.0),
                  theta_norm=st.floats(0.0, 5.0),
                  ref_scale=st.floats(0.0, 2.0))
def test_theta_star_policy_is_kl_optimal(key, beta, theta_norm, ref_scale):
  """The premise of the problem: with r* = beta theta*^T phi, the
  KL-regularised optimum pi_ref e^{r*/beta} / Z (prefsim.policies) is the
  log-linear policy at theta* (computed directly, in float64)."""
  problem = loglinear.make_problem(key, X, K, D, beta=beta,
                                   theta_norm=theta_norm, ref_scale=ref_scale)
  features, ref, theta_star, _, _ = _np(problem)
  direct = _np_logprobs(theta_star, features, ref)
  star = policies.kl_optimal(problem.ref_logprobs,
                             loglinear.true_rewards(problem), problem.beta)
  np.testing.assert_allclose(star, direct, atol=2e-5 * (1 + theta_norm))
  np.testing.assert_allclose(loglinear.optimal_logprobs(problem), direct,
                             atol=2e-5 * (1 + theta_norm))
  np.testing.assert_allclose(loglinear.logprobs(problem.theta_star, problem),
                             direct, atol=2e-5 * (1 + theta_norm))


@hypothesis.given(theta=pst.vectors(D, -2.0, 2.0), seed=pst.seeds())
def test_logratios_match_direct_computation(theta, seed):
  problem = _problem(seed=seed % 1000)
  features, ref, _, _, _ = _np(problem)
  direct = _np_logprobs(theta.astype(np.float64), features, ref) - ref
  h = loglinear.logratios(jnp.asarray(theta), problem)
  np.testing.assert_allclose(h, direct, atol=1e-5)
  # The normaliser cancels in a pair's margin:
  # h(x, i) - h(x, j) = theta . (phi_i - phi_j).
  margins = np.asarray(h)[:, :, None] - np.asarray(h)[:, None, :]
  feature_margins = np.einsum("xijd,d->xij",
                              features[:, :, None] - features[:, None],
                              theta.astype(np.float64))
  np.testing.assert_allclose(margins, feature_margins, atol=2e-5)
  np.testing.assert_allclose(loglinear.logprobs(jnp.zeros(D), problem),
                             problem.ref_logprobs, atol=1e-6)


@hypothesis.given(theta=pst.vectors(D, -3.0, 3.0), beta=pst.betas(0.1, 5.0),
                  seed=pst.seeds())
def test_kl_gap_is_the_regularised_gap(theta, beta, seed):
  """J_beta(pi*) - J_beta(pi_theta) = beta E_x KL(pi_theta || pi*) for every
  theta (r* = beta log pi*/pi_ref + beta log Z), with J_beta computed
  directly in float64; hence the gap is >= 0 and 0 at theta*."""
  problem = _problem(seed=seed % 1000, beta=beta, theta_norm=1.0 / beta)
  gap = loglinear.kl_gap(jnp.asarray(theta), problem)
  direct = (_np_regularised(np.asarray(problem.theta_star), problem)
            - _np_regularised(theta, problem))
  scale = 1 + abs(_np_regularised(theta, problem))
  np.testing.assert_allclose(gap, direct, atol=3e-5 * scale)
  assert float(gap) >= 0.0
  np.testing.assert_allclose(loglinear.kl_gap(problem.theta_star, problem), 0.0,
                             atol=1e-5)
  np.testing.assert_allclose(
      loglinear.regularised_reward(jnp.asarray(theta), problem),
      _np_regularised(theta, problem), atol=3e-5 * scale)


def test_true_reward_and_suboptimality_by_hand():
  problem = _problem(ref_scale=0.0)
  features, ref, theta_star, beta, _ = _np(problem)
  r = beta * features @ theta_star
  # At theta = 0 the policy is pi_ref (uniform): J = mean reward.
  np.testing.assert_allclose(loglinear.reward(jnp.zeros(D), problem),
                             r.mean(), atol=1e-5)
  j_star = np.mean(np.sum(np.exp(_np_logprobs(theta_star, features, ref)) * r,
                          -1))
  np.testing.assert_allclose(loglinear.suboptimality(jnp.zeros(D), problem),
                             j_star - r.mean(), atol=1e-5)
  np.testing.assert_allclose(
      loglinear.suboptimality(problem.theta_star, problem), 0.0, atol=1e-6)
  np.testing.assert_allclose(
      loglinear.param_error(jnp.zeros(D), problem), 2.0, rtol=1e-6)


@hypothesis.given(seed=pst.seeds())
def test_true_reward_increases_along_theta_star(seed):
  """d/dc J(pi_{c theta*}) = Var_{pi_c}(r*) / beta >= 0: the unregularised
  reward grows past pi*, so the sub-optimality gap is negative for c > 1."""
  problem = _problem(seed=seed % 1000)
  cs = jnp.linspace(0.0, 3.0, 13)
  rewards = jax.vmap(lambda c: loglinear.reward(c * problem.theta_star,
                                                problem))(cs)
  assert np.all(np.diff(np.asarray(rewards)) > 0)
  assert float(loglinear.suboptimality(2 * problem.theta_star, problem)) < 0


def test_sample_dataset_labels_follow_bt_with_flips():
  """Pr(the higher-reward response is chosen) = (1-eps) s + eps (1-s) with
  s = sigma(|r*(y1) - r*(y2)|), pair by pair; pairs are distinct and from
  pi_ref."""
  n = 40000
  for eps in (0.0, 0.3):
    problem = _problem(eps=eps, ref_scale=1.0)
    d = loglinear.sample_dataset(jax.random.key(7), problem, n)
    prompt, chosen, rejected = map(np.asarray, d)
    assert np.all(chosen != rejected)
    r = np.asarray(loglinear.true_rewards(problem), np.float64)
    gap = r[prompt, chosen] - r[prompt, rejected]
    s = 1 / (1 + np.exp(-np.abs(gap)))
    p_better = (1 - eps) * s + eps * (1 - s)
    better = gap > 0
    sd = np.sqrt(np.sum(p_better * (1 - p_better)))
    assert abs(better.sum() - p_better.sum()) < 4.5 * sd
    # Responses come from pi_ref: frequencies over all slots of prompt 0.
    slots = np.concatenate([chosen[prompt == 0], rejected[prompt == 0]])
    counts = np.bincount(slots, minlength=K) / slots.size
    ref0 = np.exp(np.asarray(problem.ref_logprobs[0], np.float64))
    # Distinct pairs over-sample rare responses; compare with the exact law
    # of the unordered pair {y1, y2}, y2 ~ pi_ref restricted to y != y1.
    pair = ref0[:, None] * ref0[None, :] / (1 - ref0[:, None])
    np.fill_diagonal(pair, 0.0)
    expected = (pair.sum(0) + pair.sum(1)) / 2
    np.testing.assert_allclose(counts, expected, atol=0.02)


def test_with_flip_rates_batches_every_leaf():
  problem = _problem()
  batch = loglinear.with_flip_rates(problem, [0.0, 0.2, 0.4])
  assert batch.features.shape == (3, X, K, D) and batch.eps.shape == (3,)
  assert batch.beta.shape == (3,) and batch.theta_star.shape == (3, D)
  np.testing.assert_allclose(batch.eps, [0.0, 0.2, 0.4], rtol=1e-6)
  np.testing.assert_array_equal(batch.features[2], problem.features)


def test_metrics_jit_and_vmap():
  problem = _problem()
  thetas = jax.random.normal(jax.random.key(3), (4, D))
  pt.assert_jit_matches_eager(loglinear.metrics, thetas[0], problem,
                              rtol=1e-5, atol=1e-6)
  pt.assert_vmap_matches_loop(lambda t: loglinear.metrics(t, problem), thetas,
                              rtol=1e-5, atol=1e-6)
  batch = loglinear.with_flip_rates(problem, [0.1, 0.2])
  out = jax.vmap(loglinear.metrics, in_axes=(None, 0))(thetas[0], batch)
  assert out["kl_gap"].shape == (2,)
  pt.assert_traced_once(loglinear.kl_gap, [(thetas[0], problem),
                                           (thetas[1], problem)])


@pytest.mark.parametrize("call, match", [
    (lambda: _problem(eps=0.5), "eps"),
    (lambda: _problem(beta=0.0), "beta"),
    (lambda: _problem(theta_norm=-1.0), "theta_norm"),
    (lambda: loglinear.make_problem(jax.random.key(0), 3, 1, 2, beta=1.0,
                                    theta_norm=1.0), "n_responses"),
    (lambda: loglinear.logprobs(jnp.zeros(D + 1), _problem()), "theta"),
    (lambda: loglinear.with_flip_rates(_problem(), [0.1, 0.6]), "eps"),
    (lambda: loglinear.with_flip_rates(_problem(), 0.1), "eps"),
])
def test_bad_input_names_the_argument(call, match):
  with pytest.raises((TypeError, ValueError), match=match):
    call()


def test_kl_gap_identity_in_float64():
  # x64 must be set at start-up: run in a subprocess.
  script = textwrap.dedent("""
      import jax
      jax.config.update("jax_enable_x64", True)
      import jax.numpy as jnp, numpy as np
      from prefsim import loglinear
      p = loglinear.make_problem(jax.random.key(0), 6, 5, 3, beta=0.3,
                                 theta_norm=3.0, ref_scale=1.0)
      assert p.features.dtype == jnp.float64
      for s in range(5):
        t = jax.random.normal(jax.random.key(s), (3,))
        gap = loglinear.kl_gap(t, p)
        direct = (loglinear.regularised_reward(p.theta_star, p)
                  - loglinear.regularised_reward(t, p))
        assert abs(gap - direct) < 1e-12, (gap, direct)
      assert abs(loglinear.kl_gap(p.theta_star, p)) < 1e-14
      print("ok")
  """)
  env = dict(os.environ, JAX_PLATFORMS="cpu")
  out = subprocess.run([sys.executable, "-c", script], capture_output=True,
                       text=True, env=env, timeout=300)
  assert out.returncode == 0, out.stderr[-3000:]
  assert out.stdout.strip().endswith("ok")
