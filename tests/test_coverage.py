"""Tests of prefsim.coverage: coverage coefficients, ranking accuracy, and the
theorems of Song et al. 2024 and Chen et al. 2024 that need no trainer."""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from prefsim import _checks
from prefsim import coverage as cov
from prefsim import data as pdata
from prefsim import losses
from prefsim import policies
from prefsim import testing as pt
from prefsim.testing import strategies as pst


def _f(*arrays):
  """The arrays in the default float dtype (float64 under JAX_ENABLE_X64)."""
  return [jnp.asarray(a, _checks.default_float()) for a in arrays]


def _ratio64(p, q):
  """max_{x,y: p>0} p/q in float64 NumPy (inf where q = 0 < p)."""
  p, q = np.exp(np.float64(p)), np.exp(np.float64(q))
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.max(np.where(p > 0, p / q, 0.0))


def _zero_out(logprobs, x, y):
  """Removes response y at prompt x and renormalises (float64 in, out)."""
  out = np.array(logprobs, np.float64)
  out[x, y] = -np.inf
  out[x] -= np.log(np.sum(np.exp(out[x])))
  return out


# --- coverage coefficients ------------------------------------------------


@hypothesis.given(p=pst.tabular_policies(3, 5), q=pst.tabular_policies(3, 5))
def test_coverage_is_at_least_one_and_one_iff_equal(p, q):
  """For normalised policies max pi/mu >= 1 (both sum to 1), with equality
  iff pi = mu; the value is the float64 maximum density ratio."""
  c = float(cov.coverage(p, q))
  np.testing.assert_allclose(c, _ratio64(p, q), rtol=2e-6)
  assert c >= 1.0 - 1e-6
  np.testing.assert_allclose(cov.coverage(p, p), 1.0, rtol=0, atol=0)
  if np.max(np.abs(np.exp(p) - np.exp(q))) > 1e-3:
    assert c > 1.0 + 1e-4


@hypothesis.given(p=pst.tabular_policies(3, 5), q=pst.tabular_policies(3, 5),
                  x=st.integers(0, 2), y=st.integers(0, 4))
def test_coverage_is_infinite_outside_the_support(p, q, x, y):
  """C(pi, mu) = +inf when pi puts mass where mu has none; a pi that also
  drops that response is covered, with the ratio over the rest."""
  q0 = _zero_out(q, x, y)
  assert cov.coverage(p, q0.astype(np.float32)) == np.inf
  assert cov.chi2_coverage(p, q0.astype(np.float32)) == np.inf
  p0 = _zero_out(p, x, y)
  c = cov.coverage(p0.astype(np.float32), q0.astype(np.float32))
  np.testing.assert_allclose(c, _ratio64(p0, q0), rtol=2e-6)


@hypothesis.given(p=pst.tabular_policies(3, 5), q=pst.tabular_policies(3, 5),
                  rho=pst.tabular_policies(1, 3))
def test_chi2_coverage_lies_between_one_and_coverage(p, q, rho):
  """C_chi2 = E_rho sum_y pi^2/mu = 1 + E_rho chi2(pi||mu): it equals the
  float64 sum, is 1 at pi = mu and lies in [1, C(pi, mu)]."""
  p64, q64 = np.exp(np.float64(p)), np.exp(np.float64(q))
  per_prompt = np.sum(p64 ** 2 / q64, axis=-1)
  np.testing.assert_allclose(cov.chi2_coverage(p, q), per_prompt.mean(),
                             rtol=1e-5)
  weights = np.exp(np.float64(rho[0]))
  got = cov.chi2_coverage(p, q, prompt_logprobs=rho[0])
  np.testing.assert_allclose(got, weights @ per_prompt, rtol=1e-5)
  np.testing.assert_allclose(cov.chi2_coverage(p, p), 1.0, rtol=1e-5)
  assert 1.0 - 1e-5 <= got <= cov.coverage(p, q) * (1 + 1e-5)


@hypothesis.given(cls=pst.tabular_policies(12, 5), q=pst.tabular_policies(3, 5))
def test_global_coverage_is_the_max_over_the_class(cls, q):
  """C_glo over a class {pi_1..pi_N} = max_n C(pi_n, mu); one member outside
  mu's support makes it infinite."""
  cls = cls.reshape(4, 3, 5)
  want = max(_ratio64(member, q) for member in cls)
  np.testing.assert_allclose(cov.global_coverage(cls, q), want, rtol=2e-6)
  q0 = _zero_out(q, 1, 2).astype(np.float32)
  assert cov.global_coverage(cls, q0) == np.inf


@hypothesis.given(cls=pst.tabular_policies(12, 5, scale=1.0),
                  ref=pst.tabular_policies(3, 5, scale=1.0),
                  radius=st.floats(0.0, 0.5))
def test_local_coverage_is_the_max_over_the_kl_ball(cls, ref, radius):
  """Partial (KL-ball) coverage: C_loc(eps) = max C(pi, pi_ref) over the
  members with E_x KL(pi || pi_ref) <= eps (float64 KL; draws within 1e-4 of
  the boundary are skipped), <= the global coefficient, equal to it once the
  ball holds the class, and 1 at eps = 0 when pi_ref is in the class."""
  cls = cls.reshape(4, 3, 5)
  p64, q64 = np.exp(np.float64(cls)), np.exp(np.float64(ref))
  kls = np.mean(np.sum(p64 * np.log(p64 / q64), axis=-1), axis=-1)   # [4]
  hypothesis.assume(np.all(np.abs(kls - radius) > 1e-4))
  ratios = [_ratio64(member, ref) for member in cls]
  want = max([r for r, k in zip(ratios, kls) if k <= radius], default=0.0)
  got = cov.local_coverage(cls, ref, radius)
  np.testing.assert_allclose(got, want, rtol=2e-6)
  assert got <= cov.global_coverage(cls, ref)
  np.testing.assert_allclose(cov.local_coverage(cls, ref, kls.max() + 1e-3),
                             cov.global_coverage(cls, ref), rtol=0)
  with_ref = np.concatenate([cls, ref[None]])
  np.testing.assert_allclose(cov.local_coverage(with_ref, ref, 0.0), 1.0,
                             rtol=0)


def test_support_mask_and_out_of_support_mass_by_hand():
  data = pdata.PreferenceData(prompt=jnp.array([0, 0, 1]),
                              chosen=jnp.array([0, 2, 1]),
                              rejected=jnp.array([1, 0, 3]))
  mask = cov.support_mask(data, 3, 4)
  np.testing.assert_array_equal(mask, [[1, 1, 1, 0], [0, 1, 0, 1],
                                       [0, 0, 0, 0]])
  uniform = jnp.full((3, 4), -np.log(4.0))
  np.testing.assert_allclose(cov.out_of_support_mass(uniform, mask),
                             [0.25, 0.5, 1.0], rtol=1e-6)
  stacked = jnp.stack([uniform, uniform])
  assert cov.out_of_support_mass(stacked, mask).shape == (2, 3)


def test_bad_inputs_raise():
  p = jnp.full((2, 3), -np.log(3.0))
  with pytest.raises(ValueError, match="shapes must match"):
    cov.coverage(p, p[:, :2])
  with pytest.raises(ValueError, match="pi must have 2 axes"):
    cov.coverage(p[0], p[0])
  with pytest.raises(ValueError, match="shapes must match"):
    cov.chi2_coverage(p, p[:1])
  with pytest.raises(ValueError, match="prompt_logprobs"):
    cov.chi2_coverage(p, p, prompt_logprobs=jnp.zeros(3))
  with pytest.raises(ValueError, match="share"):
    cov.global_coverage(p[None], p[:, :2])
  with pytest.raises(ValueError, match="policies must have 3 axes"):
    cov.global_coverage(p, p)
  with pytest.raises(ValueError, match="ref"):
    cov.local_coverage(p[None], p[:, :2], 0.1)
  with pytest.raises(ValueError, match="radius"):
    cov.local_coverage(p[None], p, -0.1)
  with pytest.raises(TypeError, match="mask must be boolean"):
    cov.out_of_support_mass(p, jnp.ones((2, 3)))
  with pytest.raises(ValueError, match="share"):
    cov.out_of_support_mass(p, jnp.ones((2, 2), bool))
  # A reference with a zero where the data has mass.
  ref = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))
  data = pdata.PreferenceData(prompt=jnp.array([1, 0]),
                              chosen=jnp.array([2, 0]),
                              rejected=jnp.array([0, 1]))
  cov.check_reference_support(ref, data)   # all used cells have mass
  bad = data._replace(rejected=jnp.array([0, 2]))
  with pytest.raises(ValueError, match="response 2 at prompt 0"):
    cov.check_reference_support(ref, bad)
  with pytest.raises(ValueError, match="data.chosen"):
    cov.support_mask(data, 2, 2)
  # Pairs sampled from the reference never leave its support.
  prompt, first, second = pdata.sample_pairs(jax.random.key(0), ref, 64)
  sampled = pdata.PreferenceData(prompt, first, second)
  cov.check_reference_support(ref, sampled)
  assert not np.any(cov.support_mask(sampled, 2, 3) & ~(ref > -np.inf))
  # Ranking-accuracy arguments.
  with pytest.raises(ValueError, match="shapes must match"):
    cov.ranking_accuracy(jnp.zeros(3), jnp.zeros(2))
  with pytest.raises(ValueError, match="alpha"):
    cov.idealized_ranking_accuracy(jnp.zeros(2), jnp.zeros(2), 0.0, 1.0)
  with pytest.raises(ValueError, match="alpha"):
    cov.optimal_log_ratio(jnp.zeros(2), jnp.zeros(2), 1.5, 1.0)
  with pytest.raises(ValueError, match="beta"):
    cov.dpo_ranks_correctly(jnp.zeros(2), jnp.zeros(2), jnp.zeros(2), 0.0)


def test_jit_and_vmap_match_eager():
  rng = np.random.default_rng(0)
  logp = jax.nn.log_softmax(jnp.asarray(rng.normal(size=(4, 3, 5))), -1)
  ref = logp[0]
  for fn in (cov.coverage, cov.chi2_coverage):
    pt.assert_jit_matches_eager(fn, logp[1], ref, rtol=1e-5)
    pt.assert_vmap_matches_loop(lambda p, fn=fn: fn(p, ref), logp, rtol=1e-5)
  pt.assert_jit_matches_eager(cov.global_coverage, logp, ref, rtol=1e-5)
  pt.assert_jit_matches_eager(lambda p, r: cov.local_coverage(p, r, 0.5),
                              logp, ref, rtol=1e-5)
  alpha = jnp.asarray(rng.uniform(0.1, 1.0, size=(3, 5)))
  for fn in (cov.ranking_accuracy,
             lambda w, l: cov.idealized_ranking_accuracy(w, l, alpha, 0.5),
             lambda w, l: cov.dpo_ranks_correctly(w ** 2, w, l, 0.5)):
    pt.assert_jit_matches_eager(fn, logp[1], logp[2])
    pt.assert_vmap_matches_loop(fn, logp[1], logp[2])


# --- Song et al. 2024: coverage and the RLHF optimum -----------------------


_N_SEEN = 4   # responses 0..3 appear in pairs; response 4 in none


@hypothesis.given(logits=pst.tabular_policies(3, 5),
                  seen_ref=pst.tabular_policies(3, 4),
                  m=st.floats(8.0, 20.0), beta=pst.betas(0.1, 10.0),
                  key=pst.keys())
def test_unseen_logit_moves_kl_not_dpo_loss(logits, seen_ref, m,
                                                         beta, key):
  """Tabular softmax, response y = 4 in no pair of any prompt: raising its
  logit by t leaves every DPO log-ratio margin, hence the DPO loss, unchanged
  (the normaliser cancels), while the out-of-support mass -> 1, KL(pi_t ||
  pi_ref) rises from below -log pi_ref(y|x) to that value and the coverage
  C(pi_t, pi_ref) rises to 1/pi_ref(y|x). With pi_ref(y|x) = e^{-m}, m drawn
  up to 20, the KL the data cannot see exceeds any bound as pi_ref(y|x) -> 0
  (for a fixed pi_ref it is bounded by -log pi_ref(y|x), its supremum)."""
  # pi_ref(4|x) = e^{-m}; the seen responses share the rest.
  ref = np.concatenate([np.float64(seen_ref) + np.log1p(-np.exp(-m)),
                        np.full((3, 1), -m)], axis=-1)
  logits, ref = _f(logits, ref)
  prompt, first, second = pdata.sample_pairs(
      key, jnp.zeros((3, _N_SEEN)), 8)
  data = pdata.PreferenceData(prompt, first, second)
  mask = cov.support_mask(data, 3, 5)
  assert not np.any(mask[:, _N_SEEN:])

  def dpo_loss(t):
    logp = policies.softmax_logprobs(logits + t * jax.nn.one_hot(4, 5))
    h = logp - ref
    per_pair = losses.dpo(h[data.prompt, data.chosen],
                          h[data.prompt, data.rejected], beta=beta)
    return jnp.sum(per_pair), logp

  base, logp0 = dpo_loss(0.0)
  kl0 = policies.kl(logp0, ref)
  assert np.all(kl0 < m)
  t_max = 60.0 + m           # pi_t(4|x) = 1 up to e^{-50}
  eps = np.finfo(_checks.default_float()).eps
  for t in (1.0, 10.0, t_max):
    loss, logp = dpo_loss(t)
    # Round-off only: 8 pairs x 4 log-probabilities, each off by at most
    # ~eps * (t + 10) (|logit| <= 10 + t), through a loss of slope <= beta.
    np.testing.assert_allclose(loss, base, rtol=0,
                               atol=8 * 4 * eps * (t + 10) * beta)
  np.testing.assert_allclose(cov.out_of_support_mass(logp, mask), 1.0,
                             rtol=1e-6)
  np.testing.assert_allclose(policies.kl(logp, ref), m, rtol=1e-5)
  np.testing.assert_allclose(jnp.log(cov.coverage(logp, ref)), m, rtol=1e-5)


@hypothesis.given(ref=pst.tabular_policies(3, 5), rewards=pst.vectors(15),
                  beta=pst.betas(0.1, 10.0))
def test_rlhf_optimum_ratio_is_bounded_by_reward_range(ref, rewards, beta):
  """pi*(y|x)/pi_ref(y|x) = e^{r(x,y)/beta} / E_ref e^{r/beta}
  <= exp((r_max(x) - r_min(x)) / beta) at every prompt: the KL-regularised
  optimum is covered by pi_ref with a coefficient the reward range bounds."""
  ref, rewards = _f(ref, rewards.reshape(3, 5))
  star = policies.kl_optimal(ref, rewards, beta)
  spread = np.float64(rewards).max(-1) - np.float64(rewards).min(-1)
  for x in range(3):
    log_c = float(jnp.log(cov.coverage(star[x:x + 1], ref[x:x + 1])))
    bound = spread[x] / beta
    assert log_c <= bound + 1e-5 * (1 + bound)
    assert log_c >= -1e-5     # and >= 1, as for any pair of distributions


# --- Chen et al. 2024: ranking accuracy ------------------------------------


def test_accuracies_by_hand():
  # Ties count as ranked right in R ...
  np.testing.assert_allclose(
      cov.ranking_accuracy(jnp.array([-1.0, -2.0, -3.0, -1.0]),
                           jnp.array([-1.0, -1.0, -4.0, -5.0])), 0.75)
  # ... but not at the optimum (strict >): alpha = 1/2 and equal references.
  assert cov.idealized_ranking_accuracy(jnp.zeros(1), jnp.zeros(1), 0.5,
                                        1.0) == 0.0
  # alpha = 1: odds 1/0.001 = 1000 (footnote 5 / App. C.4), not 999.
  lw = jnp.array([-np.log(999.5), -np.log(1000.5)], jnp.float32)
  np.testing.assert_array_equal(
      cov.idealized_ranking_accuracy(lw[:, None], jnp.zeros((2, 1)), 1.0, 1.0),
      [1.0, 0.0])
  # beta = 2: the odds enter as 1000^{1/2} = 31.6.
  lw = jnp.array([-np.log(31.0), -np.log(32.0)], jnp.float32)
  np.testing.assert_array_equal(
      cov.idealized_ranking_accuracy(lw[:, None], jnp.zeros((2, 1)), 1.0, 2.0),
      [1.0, 0.0])
  # Thm 3.1 is exact: infinite log-odds at alpha = 1; 3:1 agreement, beta = 1.
  assert cov.optimal_log_ratio(jnp.zeros(()), jnp.zeros(()), 1.0, 1.0) == np.inf
  np.testing.assert_allclose(
      cov.optimal_log_ratio(jnp.log(0.2), jnp.log(0.4), 0.75, 0.5),
      np.log(0.5) + 2 * np.log(3.0), rtol=1e-6)
  # Thm 4.1's threshold at c = 0 is log 2.
  np.testing.assert_allclose(cov.dpo_loss_threshold(jnp.zeros(()),
                                                     jnp.zeros(()), 3.0),
                             np.log(2.0), rtol=1e-6)


@jax.jit
def _fit_population_dpo(ref, alpha, beta):
  """Gradient descent on tabular logits [X, K] for the population DPO loss of
  the pair (y_w, y_l) = (0, 1) at every prompt with rater agreement alpha:
  sum_x alpha_x l(h_0 - h_1) + (1 - alpha_x) l(h_1 - h_0). Other responses
  appear in no pair. The loss is strongly convex in the margin z_0 - z_1 with
  curvature >= 2 beta^2 min(alpha (1 - alpha)); lr = 1 / beta^2."""

  def objective(logits):
    h = policies.softmax_logprobs(logits) - ref
    return jnp.sum(alpha * losses.dpo(h[:, 0], h[:, 1], beta=beta)
                   + (1 - alpha) * losses.dpo(h[:, 1], h[:, 0], beta=beta))

  def step(logits, _):
    return logits - jax.grad(objective)(logits) / beta ** 2, None

  logits, _ = jax.lax.scan(step, jnp.zeros_like(ref), None, length=1500)
  return policies.softmax_logprobs(logits)


def _alphas(n):
  return hnp.arrays(np.float32, (n,), elements=st.floats(
      1 / 32, 31 / 32, width=32))


@hypothesis.given(ref=pst.tabular_policies(4, 3), alpha=_alphas(4),
                  beta=pst.betas(0.5, 2.0))
def test_thm31_ratio_matches_population_dpo_minimiser(ref, alpha, beta):
  """Chen et al. 2024, Thm 3.1: the minimiser of the population DPO loss
  with rater agreement alpha satisfies pi*(y_w)/pi*(y_l) =
  [pi_ref(y_w)/pi_ref(y_l)] (alpha/(1-alpha))^{1/beta}, checked against
  numerically optimised tabular logits (a third response in no pair)."""
  ref, alpha = _f(ref, alpha)
  fitted = _fit_population_dpo(ref, alpha, beta)
  want = cov.optimal_log_ratio(ref[:, 0], ref[:, 1], alpha, beta)
  np.testing.assert_allclose(fitted[:, 0] - fitted[:, 1], want, rtol=0,
                             atol=2e-4)
  # The same ratio from its formula in float64.
  a = np.float64(alpha)
  by_hand = (np.float64(ref[:, 0]) - np.float64(ref[:, 1])
             + np.log(a / (1 - a)) / beta)
  np.testing.assert_allclose(want, by_hand, rtol=1e-5, atol=1e-5)


@hypothesis.given(ref=pst.tabular_policies(16, 2), alpha=_alphas(16),
                  beta=pst.betas(0.2, 5.0))
def test_idealized_accuracy_matches_fitted_dpo(ref, alpha, beta):
  """Chen et al. 2024, Cor. 3.3: the ranking accuracy of the DPO optimum is
  R* = E 1[(pi_ref(y_w)/pi_ref(y_l)) (alpha/(1-alpha))^{1/beta} > 1]: it
  matches, pair by pair, the ranking accuracy of a tabular policy optimised
  numerically on the soft labels alpha (pairs within 1e-2 of a tie in
  float64 are left out: there the sign is round-off)."""
  ref, alpha = _f(ref, alpha)
  fitted = _fit_population_dpo(ref, alpha, beta)
  observed = cov.ranking_accuracy(fitted[:, :1], fitted[:, 1:])   # [16]
  ideal = cov.idealized_ranking_accuracy(ref[:, :1], ref[:, 1:],
                                         alpha[:, None], beta)
  a = np.float64(alpha)
  margin = (np.float64(ref[:, 0]) - np.float64(ref[:, 1])
            + np.log(a / (1 - a)) / beta)
  clear = np.abs(margin) > 1e-2
  np.testing.assert_array_equal(observed[clear], ideal[clear])
  np.testing.assert_array_equal(ideal[clear], (margin > 0)[clear])
  if clear.all():
    np.testing.assert_allclose(
        cov.ranking_accuracy(fitted[:, 0], fitted[:, 1]),
        cov.idealized_ranking_accuracy(ref[:, 0], ref[:, 1], alpha, beta))


@hypothesis.given(pol=pst.tabular_policies(16, 2),
                  ref=pst.tabular_policies(16, 2),
                  beta=pst.betas(0.05, 5.0))
def test_thm41_ranked_right_iff_loss_below_threshold(pol, ref, beta):
  """Chen et al. 2024, Thm 4.1: with c = log pi_ref(y_l)/pi_ref(y_w),
  pi(y_w) >= pi(y_l) iff L_DPO <= -log sigma(beta c), for every pair (pairs
  within 1e-3 of a tie are left out: there the sign is round-off; beta*|c| <=
  30 keeps both sides above float32 underflow)."""
  pol, ref = _f(pol, ref)
  loss = losses.dpo(pol[:, 0] - ref[:, 0], pol[:, 1] - ref[:, 1], beta=beta)
  said = cov.dpo_ranks_correctly(loss, ref[:, 0], ref[:, 1], beta)
  gap = np.float64(pol[:, 0]) - np.float64(pol[:, 1])
  clear = np.abs(gap) > 1e-3
  np.testing.assert_array_equal(said[clear], (gap >= 0)[clear])
  # R from the loss equals R from the log-probabilities on the clear pairs.
  if clear.any():
    np.testing.assert_allclose(
        cov.ranking_accuracy(pol[clear, 0], pol[clear, 1]),
        np.mean(said[clear]))
