"""Theorem tests of the regret and partial-return preference models
(Knox et al. 2022; THEORY.md §4)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefsim import mdp as M
from prefsim.models import regret as R
from prefsim.testing import strategies as pst

S, A, T, N = 6, 2, 3, 64
TOL = 1e-4


def _random_mdp(seed, gamma=0.9):
  return M.random_mdp(jax.random.key(seed), S, A, gamma=gamma, p_terminal=0.2)


def _pairs(seed, mdp, n=N, length=T):
  k1, k2 = jax.random.split(jax.random.key(seed))
  return (R.sample_segments(k1, mdp, n, length),
          R.sample_segments(k2, mdp, n, length))


@given(seed=pst.seeds(), gamma=st.floats(0.3, 0.95))
def test_regret_nonnegative_and_zero_iff_optimal(seed, gamma):
  """Regret(σ) = -Σ γ^t A*(s_t, a_t) ≥ 0, and = 0 iff every action of σ is
  optimal (A* = 0), on random stochastic MDPs with terminal states; two
  optimal segments tie at ½ under the regret model whatever their partial
  returns."""
  mdp = _random_mdp(seed, gamma)
  # Half the segments follow a greedy policy at every step, half act at
  # random.
  _, q = M.value_iteration(mdp, tol=TOL)
  greedy = jax.nn.one_hot(jnp.argmax(q, -1), A)
  k1, k2 = jax.random.split(jax.random.key(seed))
  seg_g = R.sample_segments(k1, mdp, N // 2, T, policy=greedy)
  seg_u = R.sample_segments(k2, mdp, N // 2, T)
  states, actions = (jnp.concatenate([x, y]) for x, y in zip(seg_g, seg_u))
  reg = np.asarray(R.regret(mdp, states, actions, tol=TOL))
  # The optimal set from the Q* gaps (every suboptimal gap exceeds 1e-3 on
  # these continuous draws; ties are measure-zero).
  qn = np.asarray(q)
  gaps = qn.max(-1, keepdims=True) - qn
  live = ~np.asarray(mdp.terminal)
  st_, ac = np.asarray(states)[:, :-1], np.asarray(actions)
  optimal_steps = (gaps[st_, ac] <= 1e-6) | ~live[st_]
  all_optimal = optimal_steps.all(-1)
  scale = max(1.0, np.abs(qn).max())
  assert np.all(reg >= -1e-5 * scale)
  assert np.all(reg[all_optimal] <= 1e-5 * scale)
  assert np.all(reg[~all_optimal] > 1e-4)
  assert all_optimal[:N // 2].all() and (~all_optimal).sum() >= 4
  # Optimal segments tie at 1/2 whatever their partial returns.
  rev = jax.tree_util.tree_map(lambda x: x[::-1], seg_g)
  np.testing.assert_allclose(R.prob(mdp, seg_g, rev, "regret"), 0.5,
                             atol=1e-5 * scale)
  pr = R.partial_return(mdp, *seg_g)
  assert np.ptp(np.asarray(pr)) > 1e-2


@given(seed=pst.seeds(), gamma=st.floats(0.5, 0.99))
def test_deterministic_and_advantage_forms_agree(seed, gamma):
  """On deterministic MDPs, -Σ γ^t A*(s_t, a_t) = V*(s_0) - [PR(σ) +
  γ^T V*(s_T)] (telescoping), on random gridworlds with terminal cells."""
  grid = M.random_gridworld(jax.random.key(seed), 3, 4, 3, p_terminal=0.2,
                            gamma=gamma)
  seg = R.sample_segments(jax.random.key(seed), grid.mdp, N, T)
  adv = np.asarray(R.regret(grid.mdp, *seg, form="advantage"))
  det = np.asarray(R.regret(grid.mdp, *seg, form="deterministic"))
  v, _ = M.value_iteration(grid.mdp)
  scale = max(1.0, float(jnp.abs(v).max()))
  np.testing.assert_allclose(adv, det, atol=1e-5 * scale)
  assert np.ptp(adv) > 1e-3  # not all zero


def test_deterministic_form_rejects_stochastic_steps():
  """form="deterministic" refuses segments through stochastic transitions."""
  mdp = _random_mdp(0)
  seg = R.sample_segments(jax.random.key(0), mdp, 4, T)
  with pytest.raises(ValueError, match="deterministic"):
    R.regret(mdp, *seg, form="deterministic")


@given(seed=pst.seeds(), scale=st.floats(0.5, 5.0))
def test_shaping_keeps_regret_preferences_changes_partial_return(seed, scale):
  """Potential shaping r + γΦ(s') - Φ(s) (Φ = 0 on terminal states) leaves
  A*, hence every regret preference, unchanged (Ng et al. 1999), while
  partial returns move by γ^T Φ(s_T) - Φ(s_0) (segments without terminal
  states), changing partial-return preferences."""
  mdp = _random_mdp(seed)
  seg_1, seg_2 = _pairs(seed, mdp)
  phi = scale * jax.random.normal(jax.random.key(seed + 2), (S,))
  shaped = M.shape(mdp, phi)
  p_reg = R.prob(mdp, seg_1, seg_2, "regret")
  p_reg_shaped = R.prob(shaped, seg_1, seg_2, "regret")
  np.testing.assert_allclose(p_reg_shaped, p_reg, atol=2e-5)
  # Partial returns move by the telescoped potential.
  phi0 = np.where(np.asarray(mdp.terminal), 0.0, np.asarray(phi))
  gamma = float(mdp.gamma)
  for states, actions in (seg_1, seg_2):
    st_ = np.asarray(states)
    no_term = ~np.asarray(mdp.terminal)[st_[:, :-1]].any(1)
    shift = gamma ** T * phi0[st_[:, -1]] - phi0[st_[:, 0]]
    moved = np.asarray(R.partial_return(shaped, states, actions)
                       - R.partial_return(mdp, states, actions))
    np.testing.assert_allclose(moved[no_term], shift[no_term],
                               atol=1e-5 * max(1.0, scale))
  p_pr = np.asarray(R.prob(mdp, seg_1, seg_2, "partial_return"))
  p_pr_shaped = np.asarray(R.prob(shaped, seg_1, seg_2, "partial_return"))
  assert np.max(np.abs(p_pr_shaped - p_pr)) > 0.05


@given(seed=pst.seeds())
def test_constant_reward_shift_keeps_partial_return_preferences_changes_policy(
    seed):
  """Adding a constant c to every reward shifts the partial return of every
  length-T segment that meets no terminal state by c Σ_{t<T} γ^t, so
  partial-return preferences between such segments are unchanged; yet in an
  episodic task (delivery domain) a large enough c makes never reaching a
  terminal cell optimal, changing the optimal policy: partial return does
  not identify the reward (Knox et al. 2022)."""
  grid = M.delivery(jax.random.key(seed), gamma=0.95)
  mdp = grid.mdp
  c = 60.0  # step -1 + 60 > 0: living forever beats the +50 goal
  shifted = mdp._replace(rewards=mdp.rewards + c)
  seg_1, seg_2 = _pairs(seed, mdp, n=256)
  term = np.asarray(mdp.terminal)
  keep = ~(term[np.asarray(seg_1[0])[:, :-1]].any(1)
           | term[np.asarray(seg_2[0])[:, :-1]].any(1))
  assert keep.sum() >= 128
  np.testing.assert_allclose(
      np.asarray(R.prob(shifted, seg_1, seg_2, "partial_return"))[keep],
      np.asarray(R.prob(mdp, seg_1, seg_2, "partial_return"))[keep],
      atol=1e-5)
  # The optimal policies differ: some state's new greedy action is
  # suboptimal by more than 1 under the original reward.
  v, q = M.value_iteration(mdp)
  _, q_shift = M.value_iteration(shifted)
  new = np.asarray(jnp.argmax(q_shift, -1))
  loss = np.asarray(v) - np.asarray(q)[np.arange(q.shape[0]), new]
  assert loss.max() > 1.0
  # ... and the regret-model preferences change with them.
  p_reg = np.asarray(R.prob(mdp, seg_1, seg_2, "regret"))
  p_reg_shifted = np.asarray(R.prob(shifted, seg_1, seg_2, "regret"))
  assert np.max(np.abs(p_reg_shifted - p_reg)) > 0.05


@given(seed=pst.seeds())
def test_regret_fit_recovers_the_optimal_policy(seed):
  """Maximum likelihood under the regret model, from noiseless (exact
  probability) labels on plentiful segment pairs generated by the regret
  model, recovers a reward whose optimal policy is optimal for the true
  reward, on random 3x4 gridworlds with linear rewards."""
  grid = M.random_gridworld(jax.random.key(seed), 3, 4, 3, p_terminal=0.15,
                            gamma=0.9)
  mdp = grid.mdp
  seg_1, seg_2 = _pairs(seed, mdp, n=256)
  labels = R.prob(mdp, seg_1, seg_2, "regret")
  w = R.fit_reward(jax.random.key(seed), grid.features, (seg_1, seg_2),
                   labels, "regret", mdp=mdp)
  learned = mdp._replace(rewards=grid.features @ w)
  _, q_learned = M.value_iteration(learned)
  v, q = M.value_iteration(mdp)
  pi = np.asarray(jnp.argmax(q_learned, -1))
  live = ~np.asarray(mdp.terminal)
  loss = (np.asarray(v) - np.asarray(q)[np.arange(q.shape[0]), pi])[live]
  assert loss.max() <= 1e-3 * max(1.0, float(jnp.abs(v).max()))


def test_fit_weights_equal_fitting_the_subset():
  """pair_weights c_p enter the loss as -Σ c_p log-lik_p / Σ c_p: weights
  1 on the first half of the pairs and 0 on the rest give the fit of the
  first half alone (here: the first half twice over, one shape, one
  compilation), and scaling every weight changes nothing — the penalised
  PR loss (l2 > 0) is strictly convex, so it has one minimiser. Bad
  weights, and a segment not connected by the transitions, raise
  ValueError."""
  grid = M.random_gridworld(jax.random.key(1), 3, 4, 3, p_terminal=0.15,
                            gamma=0.9)
  mdp = grid.mdp
  seg_1, seg_2 = _pairs(1, mdp, n=32)
  y = np.asarray(R.sample_labels(jax.random.key(2), mdp, seg_1, seg_2,
                                 "regret"), np.float32)
  fit = lambda segs, labels, c: np.asarray(R.fit_reward(  # noqa: E731
      jax.random.key(0), grid.features, segs, labels, "partial_return",
      mdp=mdp, pair_weights=c, l2=0.1))
  twice = lambda x: jnp.concatenate([x[:16], x[:16]])  # noqa: E731
  w_half = fit(jax.tree_util.tree_map(twice, (seg_1, seg_2)), twice(y),
               None)
  mask = (np.arange(32) < 16).astype(np.float32)
  np.testing.assert_allclose(fit((seg_1, seg_2), y, mask), w_half, atol=1e-4)
  np.testing.assert_allclose(fit((seg_1, seg_2), y, 3.0 * mask), w_half,
                             atol=1e-4)
  w_all = fit((seg_1, seg_2), y, None)
  assert np.max(np.abs(w_all - w_half)) > 1e-2  # the mask did something
  for bad, match in ((np.zeros(32), "must not all be 0"),
                     (-mask, "pair_weights must lie in"),
                     (mask[:16], "pair_weights must have shape")):
    with pytest.raises(ValueError, match=match):
      fit((seg_1, seg_2), y, bad)
  states, actions = (np.array(x) for x in seg_1)
  states[0, :] = [0, 5, 0, 5]  # 0 -> 5 is not a move of a 3x4 grid
  with pytest.raises(ValueError, match="probability 0"):
    fit(((states, actions), seg_2), y, None)


def test_sampled_segments_follow_the_transitions():
  """Sampled segments start from the initial distribution and every step
  has positive probability; next-state frequencies match P(.|s, a) within
  a 5-sigma binomial bound."""
  mdp = _random_mdp(3)
  states, actions = R.sample_segments(jax.random.key(1), mdp, 4000, T)
  st_, ac = np.asarray(states), np.asarray(actions)
  p = np.asarray(mdp.transitions)
  assert np.all(p[st_[:, :-1], ac, st_[:, 1:]] > 0)
  assert np.all(np.asarray(mdp.initial)[st_[:, 0]] > 0)
  first = (st_[:, 0] == 0) & (ac[:, 0] == 0)  # state 0 is never terminal
  assert first.sum() > 200
  freq = np.bincount(st_[first, 1], minlength=S) / first.sum()
  sd = np.sqrt(p[0, 0] * (1 - p[0, 0]) / first.sum())
  assert np.all(np.abs(freq - p[0, 0]) <= 5 * sd + 1e-9)


def test_sample_labels_frequencies_match_prob():
  """Sampled labels are Bernoulli(P(σ1 ≻ σ2)) under either model: the mean
  over 2000 label draws of each pair lies within 5 sigma."""
  mdp = _random_mdp(4)
  seg_1, seg_2 = _pairs(4, mdp, n=8)
  tile = lambda seg: jax.tree_util.tree_map(  # noqa: E731
      lambda x: jnp.tile(x, (2000, 1)), seg)
  for model in R.MODELS:
    p = np.asarray(R.prob(mdp, seg_1, seg_2, model))
    y = R.sample_labels(jax.random.key(5), mdp, tile(seg_1), tile(seg_2),
                        model)
    freq = np.asarray(y).reshape(2000, 8).mean(0)
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / 2000) + 1e-9)


def test_prob_complement_and_bad_inputs():
  """P(σ1 ≻ σ2) + P(σ2 ≻ σ1) = 1; segments outside [0, S), with actions
  outside [0, A), with mismatched lengths, or not connected by the
  transitions, and unknown models, raise ValueError naming the problem."""
  grid = M.random_gridworld(jax.random.key(0), 3, 4, 3, p_terminal=0.0)
  mdp = grid.mdp
  seg_1, seg_2 = _pairs(0, mdp, n=16)
  for model in R.MODELS:
    np.testing.assert_allclose(R.prob(mdp, seg_1, seg_2, model)
                               + R.prob(mdp, seg_2, seg_1, model), 1.0,
                               atol=1e-6)
  states = np.array([0, 1, 2, 3])
  actions = np.array([3, 3, 3])  # right, right, right: 0 -> 1 -> 2 -> 3
  R.partial_return(mdp, states, actions)
  with pytest.raises(ValueError, match="states must lie in"):
    R.partial_return(mdp, np.array([0, 1, 2, 12]), actions)
  with pytest.raises(ValueError, match="actions must lie in"):
    R.regret(mdp, states, np.array([3, 3, 4]))
  with pytest.raises(ValueError, match="probability 0"):
    R.regret(mdp, np.array([0, 1, 5, 6]), actions)  # 1 -> 5 is not a move
  with pytest.raises(ValueError, match="T\\+1"):
    R.partial_return(mdp, states, actions[:2])
  with pytest.raises(TypeError, match="integer"):
    R.partial_return(mdp, states.astype(float), actions)
  with pytest.raises(ValueError, match="model"):
    R.prob(mdp, seg_1, seg_2, "return")
  with pytest.raises(ValueError, match="labels"):
    R.fit_reward(jax.random.key(0), grid.features, (seg_1, seg_2),
                 np.full(16, 1.5), "regret", mdp=mdp)


def test_prob_matches_hand_computed_gridworld():
  """On a 2x3 grid (step -1, goal +10 at the terminal cell (1, 2),
  γ = 1/2) the values are known by hand: from (1, 1) the goal is one step
  away, V* = 9. σ1 = right into the goal then stay: PR = 9, regret 0.
  σ2 = left, right: PR = -1 + ½(-1) = -1.5, regret = V*(s_0) - [PR +
  γ² V*(s_2)] = 9 - (-1.5 + 9/4) = 8.25. So P_regret(σ1 ≻ σ2) = σ(8.25)
  and P_PR(σ1 ≻ σ2) = σ(10.5)."""
  phi = np.zeros((2, 3, 2))
  phi[..., 0] = 1.0
  phi[1, 2, 1] = 1.0
  terminal = np.zeros((2, 3), bool)
  terminal[1, 2] = True
  mdp = M.gridworld(phi, [-1.0, 10.0], terminal=terminal, gamma=0.5).mdp
  seg_1 = (np.array([4, 5, 5]), np.array([3, 0]))
  seg_2 = (np.array([4, 3, 4]), np.array([2, 3]))
  np.testing.assert_allclose(R.partial_return(mdp, *seg_1), 9.0, atol=1e-6)
  np.testing.assert_allclose(R.partial_return(mdp, *seg_2), -1.5, atol=1e-6)
  np.testing.assert_allclose(R.regret(mdp, *seg_1), 0.0, atol=1e-5)
  np.testing.assert_allclose(R.regret(mdp, *seg_2), 8.25, atol=1e-5)
  sig = lambda x: 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(R.prob(mdp, seg_1, seg_2, "regret"), sig(8.25),
                             rtol=1e-5)
  np.testing.assert_allclose(R.prob(mdp, seg_1, seg_2, "partial_return"),
                             sig(10.5), rtol=1e-5)


def test_prob_under_jit_and_vmap_equals_eager():
  """prob, regret and partial_return give the same values under jit and
  under vmap over a stack of MDPs as eager calls, for both models."""
  # No terminal states: every transition has positive probability, so the
  # segments are valid in every MDP of the stack.
  mdps = [M.random_mdp(jax.random.key(seed), S, A, gamma=0.9)
          for seed in range(3)]
  seg_1, seg_2 = _pairs(0, mdps[0], n=8)
  stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *mdps)
  for model in R.MODELS:
    f = lambda m: R.prob(m, seg_1, seg_2, model)  # noqa: E731
    batched = jax.vmap(f)(stacked)
    for i, m in enumerate(mdps):
      eager = np.asarray(f(m))
      np.testing.assert_allclose(jax.jit(f)(m), eager, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(batched[i], eager, rtol=1e-5, atol=1e-6)
  reg = jax.jit(lambda m, s, a: R.regret(m, s, a))(mdps[1], *seg_1)
  np.testing.assert_allclose(reg, R.regret(mdps[1], *seg_1), rtol=1e-5,
                             atol=1e-6)
