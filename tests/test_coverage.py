"""Tests of prefsim.coverage: coverage coefficients, ranking accuracy, the
offline/online/hybrid trainers, and the theorems of Song et al. 2024 and
Chen et al. 2024 that they check."""

from __future__ import annotations

import functools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import prefsim
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


# --- Song et al. 2024: offline DPO, online RLHF and HyPO trainers ---------


def _tiny_tabular(beta=0.5):
  """X = 2, K = 3, one-hot features; pairs (x=0: 0 > 1), (x=1: 2 > 0), so
  response 2 of prompt 0 and response 1 of prompt 1 are in no pair."""
  ref = np.log(np.array([[0.5, 0.3, 0.2], [0.25, 0.25, 0.5]]))
  rewards = np.array([[1.0, 0.0, -2.0], [0.5, 3.0, 1.0]])
  data = pdata.PreferenceData(prompt=jnp.array([0, 1]),
                              chosen=jnp.array([0, 2]),
                              rejected=jnp.array([1, 0]))
  ref, rewards = _f(ref, rewards)
  return cov.coverage_problem(cov.tabular_features(2, 3), ref, rewards, data,
                              beta=beta), ref, rewards


def _metrics64(logits, ref, rewards, mask):
  """J, E_x KL(pi || pi_ref) and the unseen mass of softmax(ref + logits),
  in float64 NumPy."""
  z = np.float64(ref) + np.float64(logits)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  p = np.exp(logp)
  return {"reward": np.mean(np.sum(p * np.float64(rewards), -1)),
          "kl": np.mean(np.sum(p * (logp - np.float64(ref)), -1)),
          "out_of_support_mass": np.mean(np.sum(np.where(mask, 0, p), -1))}


def test_trainer_infos_by_hand():
  """One SGD step of each trainer from theta = 0 on a tiny tabular problem:
  the DPO gradient at pi = pi_ref is -+beta/2 per pair on the chosen /
  rejected logits (over P = 2 pairs), the KL gradient is 0, so theta_1 is
  known in closed form (for HyPO's sampled KL too: every log-ratio is 0 at
  pi_ref); every info field is then checked against float64 NumPy."""
  beta, lr = 0.5, 2.0
  problem, ref, rewards = _tiny_tabular(beta)
  mask = np.array([[1, 1, 0], [1, 0, 1]], bool)
  np.testing.assert_array_equal(problem.mask, mask)
  logits = np.zeros((2, 3))
  step = lr * beta / 2 / 2
  logits[0, 0], logits[0, 1], logits[1, 2], logits[1, 0] = (step, -step,
                                                            step, -step)
  want = _metrics64(logits, ref, rewards, mask)
  key = jax.random.key(0)
  for alg in (cov.offline_dpo(lr=lr), cov.hypo(lam=0.3, lr=lr, exact_kl=True),
              cov.hypo(lam=0.3, lr=lr, n_samples=4)):
    state = jax.jit(alg.init)(key, problem)
    state, info = jax.jit(alg.step)(key, state, problem)
    np.testing.assert_allclose(state.theta, logits.ravel(), rtol=1e-6)
    np.testing.assert_allclose(info["loss"], np.log(2.0), rtol=1e-6)
    for name, value in want.items():
      np.testing.assert_allclose(info[name], value, rtol=1e-5, atol=1e-7)
  # The loss option reaches the loss: IPO's (margin - 1/(2 beta))^2 is
  # 1/(4 beta^2) = 1 at pi_ref.
  ipo = cov.offline_dpo(losses.ipo, lr=lr)
  _, info = jax.jit(ipo.step)(key, jax.jit(ipo.init)(key, problem), problem)
  np.testing.assert_allclose(info["loss"], 1 / (4 * beta ** 2), rtol=1e-6)
  # RLHF, exact gradient: at pi_ref the gradient of E_pi r - beta KL is
  # pi_ref (r - E_ref r) per logit, and the loss is -E_x E_ref r_hat.
  alg = cov.online_rlhf(reward_model="tabular", reward_l2=0.1, lr=lr,
                        exact=True)
  state = jax.jit(alg.init)(key, problem)
  r_hat = np.float64(state.reward_model)
  p_ref = np.exp(np.float64(ref))
  state1, info = jax.jit(alg.step)(key, state, problem)
  np.testing.assert_allclose(info["loss"], -np.mean(np.sum(p_ref * r_hat, -1)),
                             rtol=1e-5, atol=1e-6)
  grad = p_ref * (r_hat - np.sum(p_ref * r_hat, -1, keepdims=True)) / 2
  np.testing.assert_allclose(state1.theta, lr * grad.ravel(), rtol=1e-5,
                             atol=1e-7)
  for name, value in _metrics64(lr * grad, ref, rewards, mask).items():
    np.testing.assert_allclose(info[name], value, rtol=1e-5, atol=1e-7)
  # The tabular reward model gives an unseen response the lowest seen reward
  # of its prompt, and fits the seen ones by BT MAP: winner above loser.
  np.testing.assert_allclose(r_hat[0, 2], min(r_hat[0, 0], r_hat[0, 1]))
  np.testing.assert_allclose(r_hat[1, 1], min(r_hat[1, 0], r_hat[1, 2]))
  assert r_hat[0, 0] > r_hat[0, 1] and r_hat[1, 2] > r_hat[1, 0]


@jax.jit
@functools.partial(jax.vmap, in_axes=(0, None, None))
def _kl_estimates(key, logp, ref):
  """HyPO's on-policy estimate of E_x KL(pi || pi_ref), 4 samples a prompt."""
  return cov.score_function_surrogate(key, logp, logp - ref, 4)


@hypothesis.given(pi=pst.tabular_policies(3, 5), ref=pst.tabular_policies(3, 5),
                  key=pst.keys())
def test_hypo_kl_term_is_nonnegative_zero_iff_ref(pi, ref, key):
  """HyPO's penalty E_x KL(pi || pi_ref) is >= 0 and zero iff pi = pi_ref on
  the support of pi_ref (a response with pi_ref = 0 must have pi = 0, and
  then does not count); its on-policy estimate (the value of
  score_function_surrogate with v = log pi - log pi_ref) is exactly 0 at
  pi = pi_ref for every sample, and its mean over 2048 keys lies within 5
  standard errors of the exact KL."""
  ref0 = _zero_out(ref, 1, 4)
  pi0 = _zero_out(pi, 1, 4)
  pi0, ref0 = _f(pi0, ref0)
  exact = float(jnp.mean(policies.kl(pi0, ref0)))
  p64, q64 = np.exp(np.float64(pi0)), np.exp(np.float64(ref0))
  with np.errstate(divide="ignore", invalid="ignore"):
    terms = np.where(p64 > 0, p64 * np.log(p64 / q64), 0.0)
  np.testing.assert_allclose(exact, terms.sum(-1).mean(), rtol=1e-4,
                             atol=1e-6)
  assert exact >= 0.0
  if np.max(np.abs(p64 - q64)) > 1e-3:
    assert exact > 1e-7
  assert float(jnp.mean(policies.kl(ref0, ref0))) == 0.0

  keys = jax.random.split(key, 2048)
  np.testing.assert_array_equal(_kl_estimates(keys, ref0, ref0), 0.0)
  draws = np.float64(_kl_estimates(keys, pi0, ref0))
  se = draws.std() / np.sqrt(draws.size)
  assert abs(draws.mean() - exact) <= 5 * se + 1e-5


@pytest.mark.parametrize("what", ["kl", "rlhf"])
def test_score_function_gradient_is_unbiased(what):
  """The REINFORCE gradient with a leave-one-out baseline is unbiased: over
  4096 keys (vmapped, fixed seeds) its mean matches the exact gradient of
  E_x KL(pi_theta || pi_ref) (what = kl, HyPO's term) and of the
  KL-regularised reward E_x[E_pi r - beta KL] (what = rlhf), within 5
  standard errors per coordinate, on a log-linear policy."""
  rng = np.random.default_rng(3)
  features, theta, rewards = _f(rng.normal(size=(4, 5, 3)),
                                rng.normal(size=3), rng.normal(size=(4, 5)))
  ref = policies.softmax_logprobs(_f(rng.normal(size=(4, 5)))[0])
  beta = 0.7

  def logprobs(th):
    return policies.softmax_logprobs(ref + features @ th)

  def exact(th):
    logp = logprobs(th)
    if what == "kl":
      return jnp.mean(policies.kl(logp, ref))
    return cov.kl_regularised_reward(logp, ref, rewards, beta)

  def sampled(k, th):
    logp = logprobs(th)
    values = (logp - ref if what == "kl"
              else rewards - beta * (logp - ref))
    return cov.score_function_surrogate(k, logp, values, 3)

  keys = jax.random.split(jax.random.key(11), 4096)
  grads = np.float64(jax.vmap(jax.grad(sampled, 1), in_axes=(0, None))(
      keys, theta))
  want = np.float64(jax.grad(exact)(theta))
  se = grads.std(0) / np.sqrt(len(keys))
  assert np.all(np.abs(grads.mean(0) - want) <= 5 * se + 1e-6), (
      grads.mean(0), want, se)


def _full_tabular(key, beta):
  """X = 3, K = 4, every ordered pair of responses compared once per prompt,
  labels from BT on drawn rewards: the comparison graph of each prompt is
  complete, so every response is seen."""
  x, i, j = np.meshgrid(np.arange(3), np.arange(4), np.arange(4),
                        indexing="ij")
  keep = i != j
  x, i, j = x[keep], i[keep], j[keep]
  rewards = jax.random.normal(key, (3, 4))
  data = pdata.label_bt(jax.random.fold_in(key, 1), rewards, jnp.asarray(x),
                        jnp.asarray(i), jnp.asarray(j))
  ref = policies.softmax_logprobs(jax.random.normal(jax.random.fold_in(key, 2),
                                                    (3, 4)))
  return cov.coverage_problem(cov.tabular_features(3, 4), ref, rewards, data,
                              beta=beta)


_EXACT_RLHF = cov.online_rlhf(reward_model="tabular", reward_l2=0.1,
                              exact=True, lr=6.0)


@hypothesis.given(key=pst.keys())
def test_online_rlhf_exact_converges_to_kl_optimal(key):
  """Online RLHF with the exact gradient, tabular policy, beta = 1: it
  converges to the maximiser of E_pi r_hat - beta KL(pi || pi_ref) over all
  policies, policies.kl_optimal(pi_ref, r_hat, beta), of its own reward
  model r_hat (drawn data), and attains the optimal value
  E_x beta log E_ref e^{r_hat/beta} (Rafailov et al. 2023, App. A.1):
  max |pi_T - pi*| <= 1e-4 after 2000 gradient steps (entropy-regularised
  softmax policy gradient converges linearly, Mei et al. 2020)."""
  beta = 1.0
  problem = _full_tabular(key, beta)
  final, info = prefsim.run(jax.random.key(0), _EXACT_RLHF, problem, 2000)
  star = policies.kl_optimal(problem.ref_logprobs, final.reward_model, beta)
  got = cov.policy_logprobs(final.theta, problem)
  np.testing.assert_allclose(jnp.exp(got), jnp.exp(star), rtol=0, atol=1e-4)
  z = np.float64(problem.ref_logprobs) + np.float64(final.reward_model) / beta
  value = beta * np.log(np.exp(z).sum(-1)).mean()
  np.testing.assert_allclose(-info["loss"][-1], value, rtol=1e-5, atol=1e-6)
  assert np.all(np.diff(np.float64(info["loss"])) <= 1e-6)   # ascent


def test_linear_reward_model_recovers_dpo_optimum():
  """The BT MLE of a linear reward r = w.phi and DPO on a log-linear policy
  are the same logistic regression: theta = w_hat / beta is a stationary
  point of the DPO loss (gradient below 1e-4), and DPO trained from 0
  reaches it (so RLHF with this reward model, whose optimum is
  pi_{w_hat/beta}, coincides with DPO)."""
  beta = 0.5
  rng = np.random.default_rng(0)
  features, rewards = _f(rng.normal(size=(6, 4, 3)), rng.normal(size=(6, 4)))
  ref = policies.softmax_logprobs(_f(rng.normal(size=(6, 4)))[0])
  data = pdata.bt_dataset(jax.random.key(2), ref, rewards, 400)
  problem = cov.coverage_problem(features, ref, rewards, data, beta=beta)
  r_hat = cov.fit_reward_model(problem, "linear")
  w = np.linalg.lstsq(np.float64(features).reshape(-1, 3),
                      np.float64(r_hat).ravel(), rcond=None)[0]
  theta = jnp.asarray(w / beta, features.dtype)
  grad = jax.grad(cov._dpo_loss, 1)(losses.dpo, theta, problem)
  assert np.max(np.abs(grad)) < 1e-4
  # Gradient descent with lr = 4 <= 1/L: L <= beta^2 lambda_max(E zz^T)/4,
  # 1/L >= 5.5 on these pairs (z = phi_w - phi_l).
  final, _ = prefsim.run(jax.random.key(0), cov.offline_dpo(lr=4.0), problem,
                         1000)
  np.testing.assert_allclose(final.theta, theta, atol=1e-3)


def test_tabular_dpo_never_moves_unseen_logits():
  """Tabular softmax: the DPO gradient of a logit whose response is in no
  pair is exactly zero (the normaliser cancels in every margin), so DPO
  leaves those logits at 0 — the reason the coverage study needs shared
  features."""
  problem, _, _ = _tiny_tabular()
  final, _ = prefsim.run(jax.random.key(0), cov.offline_dpo(lr=1.0), problem,
                         200)
  theta = np.asarray(final.theta).reshape(2, 3)
  assert theta[0, 2] == 0.0 and theta[1, 1] == 0.0
  assert np.all(theta[~np.asarray(problem.mask)] == 0)
  assert np.all(np.abs(theta[np.asarray(problem.mask)]) > 0.1)


def test_trainers_jit_and_vmap():
  """sweep's seed i equals run(fold_in(key, i)) for every trainer (HyPO and
  RLHF sample on-policy); results are finite; a batch of problems sweeps
  with problem_axis=0 and each row equals its own run."""
  problem, _, _ = _tiny_tabular()
  algs = [cov.offline_dpo(lr=0.5), cov.offline_dpo(losses.ipo, lr=0.5),
          cov.hypo(lam=0.2, lr=0.5, n_samples=3),
          cov.online_rlhf(reward_model="tabular", reward_l2=0.1, lr=0.5),
          cov.online_rlhf(reward_model="linear", reward_l2=0.1, lr=0.5,
                          n_samples=2)]
  key = jax.random.key(5)
  for alg in algs:
    pt.assert_finite(prefsim.sweep(key, alg, problem, 20, 3)[1])
  for alg in algs[2:4]:      # the on-policy samplers
    _, infos = prefsim.sweep(key, alg, problem, 20, 3)
    _, one = prefsim.run(jax.random.fold_in(key, 2), alg, problem, 20)
    pt.assert_trees_allclose(jax.tree.map(lambda v: v[2], infos), one,
                             rtol=1e-5, atol=1e-6)
  batch = jax.tree.map(lambda v: jnp.stack([v, v]), problem)
  batch = batch._replace(beta=jnp.array([0.5, 2.0], problem.beta.dtype))
  alg = algs[2]
  _, infos = prefsim.sweep(key, alg, batch, 20, 1, problem_axis=0)
  for c, beta in enumerate((0.5, 2.0)):
    _, one = prefsim.run(jax.random.fold_in(key, 0), alg,
                         problem._replace(beta=jnp.asarray(beta,
                                                           problem.beta.dtype)),
                         20)
    pt.assert_trees_allclose(jax.tree.map(lambda v: v[0, c], infos), one,
                             rtol=1e-5, atol=1e-6)


def test_trainer_bad_inputs_raise():
  problem, ref, rewards = _tiny_tabular()
  data = pdata.PreferenceData(prompt=jnp.array([0]), chosen=jnp.array([2]),
                              rejected=jnp.array([0]))
  zero_ref = jnp.log(jnp.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]]))
  with pytest.raises(ValueError, match="response 2 at prompt 0"):
    cov.coverage_problem(cov.tabular_features(2, 3), zero_ref, rewards, data,
                         beta=1.0)
  with pytest.raises(ValueError, match="share"):
    cov.coverage_problem(cov.tabular_features(2, 4), ref, rewards, data,
                         beta=1.0)
  with pytest.raises(ValueError, match="shapes must match"):
    cov.coverage_problem(cov.tabular_features(2, 3), ref, rewards[:, :2],
                         data, beta=1.0)
  with pytest.raises(ValueError, match="features must have 3 axes"):
    cov.coverage_problem(jnp.zeros((2, 3)), ref, rewards, data, beta=1.0)
  with pytest.raises(ValueError, match="beta"):
    cov.coverage_problem(cov.tabular_features(2, 3), ref, rewards, data,
                         beta=0.0)
  with pytest.raises(ValueError, match="data.chosen"):
    cov.coverage_problem(cov.tabular_features(2, 3), ref, rewards,
                         data._replace(chosen=jnp.array([3])), beta=1.0)
  with pytest.raises(ValueError, match="lam"):
    cov.hypo(lam=-0.1, lr=0.1)
  with pytest.raises(ValueError, match="n_samples"):
    cov.hypo(lam=0.1, lr=0.1, n_samples=1)
  with pytest.raises(ValueError, match="lr"):
    cov.offline_dpo(lr=0.0)
  with pytest.raises(TypeError, match="loss"):
    cov.offline_dpo("dpo", lr=0.1)
  with pytest.raises(TypeError, match="optimizer"):
    cov.offline_dpo(lr=0.1, optimizer=0.1)
  with pytest.raises(ValueError, match="reward_model"):
    cov.online_rlhf(reward_model="neural", lr=0.1)
  with pytest.raises(ValueError, match="reward_l2"):
    cov.online_rlhf(reward_model="linear", lr=0.1, reward_l2=-1.0)
  with pytest.raises(ValueError, match="reward_model"):
    cov.fit_reward_model(problem, "neural")
  with pytest.raises(ValueError, match="n_samples"):
    cov.score_function_surrogate(jax.random.key(0), ref, ref, 1)
  with pytest.raises(ValueError, match="shapes must match"):
    cov.score_function_surrogate(jax.random.key(0), ref, ref[:, :2], 2)
  with pytest.raises(ValueError, match="theta"):
    cov.policy_logprobs(jnp.zeros(5), problem)
