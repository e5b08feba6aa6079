"""Tests of prefsim.mdp: value iteration, shaping inputs, gridworld builders."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from prefsim import mdp as M
from prefsim.testing import strategies as pst

S, A = 6, 3
TOL = 1e-4


def _numpy_value_iteration(mdp):
  """Independent float64 reference: Bellman backups to 1e-12 in a loop."""
  p = np.asarray(mdp.transitions, np.float64)
  r = np.asarray(mdp.rewards, np.float64)
  if r.ndim == 2:
    r = np.repeat(r[:, :, None], p.shape[0], 2)
  live = ~np.asarray(mdp.terminal)
  gamma = float(mdp.gamma)
  v = np.zeros(p.shape[0])
  for _ in range(100_000):
    q = np.where(live[:, None], np.sum(p * (r + gamma * v), -1), 0.0)
    v_new = q.max(1)
    if np.max(np.abs(v_new - v)) < 1e-12:
      return v_new, q
    v = v_new
  raise AssertionError("reference value iteration did not converge")


def _mdp(seed, gamma):
  return M.random_mdp(jax.random.key(seed), S, A, gamma=gamma, p_terminal=0.3)


@given(seed=pst.seeds(), gamma=st.floats(0.0, 0.95))
def test_value_iteration_matches_numpy_loop(seed, gamma):
  """V and Q match an independent float64 loop of Bellman backups: the
  returned V is the value of a tol-optimal policy, V* - tol <= V <= V*."""
  mdp = _mdp(seed, gamma)
  v, q = M.value_iteration(mdp, tol=TOL)
  v_ref, q_ref = _numpy_value_iteration(mdp)
  slack = 1e-5 * max(1.0, np.abs(v_ref).max())  # float32 rounding
  assert np.all(np.asarray(v) <= v_ref + slack)
  assert np.all(np.asarray(v) >= v_ref - TOL - slack)
  np.testing.assert_allclose(q, q_ref, atol=TOL + slack)
  assert np.all(np.asarray(v)[np.asarray(mdp.terminal)] == 0)


@given(seed=pst.seeds(), gamma=st.floats(0.5, 0.99))
def test_value_iteration_bellman_residual_within_tol(seed, gamma):
  """Bellman optimality residual ||max_a (r + gamma P V) - V||_inf <= tol
  (Puterman 1994, Theorem 6.3.1 stopping rule), on random MDPs and random
  gridworlds."""
  slack = 2e-6
  mdp = _mdp(seed, gamma)
  v, _ = M.value_iteration(mdp, tol=TOL)
  assert M.bellman_residual(mdp, v) <= TOL + slack * max(1, np.abs(v).max())
  grid = M.random_gridworld(jax.random.key(seed), 3, 4, 3, gamma=gamma).mdp
  v, _ = M.value_iteration(grid, tol=TOL)
  assert M.bellman_residual(grid, v) <= TOL + slack * max(1, np.abs(v).max())


def test_value_iteration_jit_and_vmap_equal_eager():
  """jit(value_iteration) and vmap over a stack of MDPs equal eager calls."""
  mdps = [_mdp(seed, 0.9) for seed in range(4)]
  eager = [M.value_iteration(m) for m in mdps]
  jitted = [jax.jit(M.value_iteration)(m) for m in mdps]
  stacked = jax.tree_util.tree_map(lambda *x: jnp.stack(x), *mdps)
  batched = jax.vmap(M.value_iteration)(stacked)
  batched_keys = jax.vmap(lambda k: M.value_iteration(
      M.random_mdp(k, S, A, gamma=0.9, p_terminal=0.3)))(
          jax.vmap(jax.random.key)(jnp.arange(4)))
  for i, (v, q) in enumerate(eager):
    np.testing.assert_allclose(jitted[i][0], v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jitted[i][1], q, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[0][i], v, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched[1][i], q, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(batched_keys[0][i], v, rtol=1e-6, atol=1e-6)


def test_value_iteration_gradients_match_finite_differences():
  """d(V*, Q*)/dr from jacrev and jacfwd equal central finite differences.

  Where the optimal policy is unique, V* is linear in the rewards near r
  (V* = (I - gamma P_pi)^-1 r_pi), so central differences with a step that
  keeps the policy are exact up to rounding."""
  mdp = M.random_mdp(jax.random.key(7), S, A, gamma=0.8, p_terminal=0.3)
  r = mdp.rewards

  def f(rewards):
    v, q = M.value_iteration(mdp._replace(rewards=rewards))
    return jnp.concatenate([v, q.ravel()])

  f_jit = jax.jit(f)
  rev = np.asarray(jax.jacrev(f)(r)).reshape(-1, r.size)
  fwd = np.asarray(jax.jacfwd(f)(r)).reshape(-1, r.size)
  h = 1e-2
  fd = np.empty_like(rev)
  for i in range(r.size):
    e = jnp.zeros(r.size, r.dtype).at[i].set(h).reshape(r.shape)
    fd[:, i] = (np.asarray(f_jit(r + e)) - np.asarray(f_jit(r - e))) / (2 * h)
  np.testing.assert_allclose(rev, fd, atol=2e-3)
  np.testing.assert_allclose(fwd, fd, atol=2e-3)
  # The derivative is not trivially zero: every live state's value moves.
  assert np.all(np.abs(rev[:S]).sum(1)[~np.asarray(mdp.terminal)] > 0.5)


def _numpy_policy_value(mdp, policy):
  """Independent float64 reference: iterate V <- r_pi + gamma P_pi V."""
  p = np.asarray(mdp.transitions, np.float64)
  r = np.asarray(mdp.rewards, np.float64)
  if r.ndim == 2:
    r = np.repeat(r[:, :, None], p.shape[0], 2)
  live = ~np.asarray(mdp.terminal)
  pi = np.asarray(policy, np.float64)
  gamma = float(mdp.gamma)
  v = np.zeros(p.shape[0])
  for _ in range(100_000):
    q = np.where(live[:, None], np.sum(p * (r + gamma * v), -1), 0.0)
    v_new = np.sum(pi * q, 1)
    if np.max(np.abs(v_new - v)) < 1e-12:
      return v_new
    v = v_new
  raise AssertionError("reference policy evaluation did not converge")


@given(seed=pst.seeds(), gamma=st.floats(0.0, 0.95))
def test_policy_value_solves_the_bellman_expectation_equation(seed, gamma):
  """V^pi = (I - gamma P_pi)^-1 r_pi (Puterman 1994, Theorem 6.1.1) matches
  an independent float64 loop of Bellman expectation backups for a random
  stochastic policy, and the value of the greedy policy of Q* is V*."""
  mdp = _mdp(seed, gamma)
  logits = jax.random.normal(jax.random.key(seed), (S, A))
  policy = jax.nn.softmax(3.0 * logits, -1)
  v_ref = _numpy_policy_value(mdp, policy)
  slack = 1e-5 * max(1.0, np.abs(v_ref).max())
  np.testing.assert_allclose(M.policy_value(mdp, policy), v_ref, atol=slack)
  v_star, q_star = M.value_iteration(mdp, tol=TOL)
  np.testing.assert_allclose(M.policy_value(mdp, M.greedy_policy(q_star)),
                             v_star, atol=slack)


def test_greedy_policy_spreads_over_ties():
  """The greedy policy puts mass 1/k on each of the k best actions (ties
  within atol), so constant values give the uniform policy."""
  q = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 0.0], [5.0, 4.95, 1.0]],
               np.float32)
  np.testing.assert_allclose(M.greedy_policy(q), [[0, 1, 0], [1 / 3] * 3,
                                                  [1, 0, 0]], atol=1e-7)
  np.testing.assert_allclose(M.greedy_policy(q, atol=0.1)[2], [0.5, 0.5, 0])
  with pytest.raises(ValueError, match="atol"):
    M.greedy_policy(q, atol=-1.0)
  with pytest.raises(ValueError, match="action axis"):
    M.greedy_policy(np.float32(1.0))


@given(seed=pst.seeds())
def test_scaled_return_is_one_for_optimal_zero_for_uniform(seed):
  """Mean scaled return (J(pi) - J(uniform)) / (J(pi*) - J(uniform)) with
  J(pi) = rho_0 . V^pi (Knox et al. 2022): 1 for the greedy policy of Q*,
  0 for the uniform random policy, at most 1 (+ tolerance) for every
  policy, and equal to the same ratio from the independent float64 loop,
  on random delivery gridworlds."""
  grid = M.delivery(jax.random.key(seed), height=4, width=4, n_sheep=1,
                    n_coin=2, n_roadblock=2, n_mud=3, gamma=0.9)
  mdp = grid.mdp
  _, q = M.value_iteration(mdp, tol=TOL)
  uniform = np.full((16, 4), 0.25)
  np.testing.assert_allclose(M.scaled_return(mdp, M.greedy_policy(q)), 1.0,
                             atol=1e-3)
  np.testing.assert_allclose(M.scaled_return(mdp, uniform), 0.0, atol=1e-5)
  logits = jax.random.normal(jax.random.key(seed + 1), (10, 16, 4))
  rho = np.asarray(mdp.initial, np.float64)
  j_star = rho @ _numpy_value_iteration(mdp)[0]
  j_u = rho @ _numpy_policy_value(mdp, uniform)
  for pol in (jax.nn.softmax(2.0 * logits, -1),
              M.greedy_policy(logits)):  # stochastic and deterministic
    got = np.asarray(jax.vmap(lambda p: M.scaled_return(mdp, p))(pol))
    want = [(rho @ _numpy_policy_value(mdp, p) - j_u) / (j_star - j_u)
            for p in np.asarray(pol)]
    np.testing.assert_allclose(got, want, atol=1e-3)
    assert np.all(got <= 1.0 + 1e-3)


def test_policy_functions_reject_bad_input():
  """policy_value and scaled_return refuse a policy of the wrong shape or
  with rows that are not distributions, naming the argument."""
  mdp = M.make_mdp(np.full((3, 2, 3), 1 / 3), np.zeros((3, 2)), 0.9)
  for fn in (M.policy_value, M.scaled_return):
    with pytest.raises(ValueError, match="policy must have shape"):
      fn(mdp, np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="policy rows must sum to 1"):
      fn(mdp, np.full((3, 2), 0.4))
    with pytest.raises(ValueError, match="policy must lie in"):
      fn(mdp, np.array([[1.5, -0.5]] * 3))


def test_make_mdp_rejects_bad_input():
  """Bad transitions, rewards, gamma, initial or terminal give a ValueError
  (or TypeError) that names the argument."""
  p = np.full((3, 2, 3), 1 / 3)
  r = np.zeros((3, 2))
  M.make_mdp(p, r, 0.9)  # the good MDP builds
  bad_row = p.copy()
  bad_row[1, 0] = [0.5, 0.4, 0.0]
  with pytest.raises(ValueError, match="transitions"):
    M.make_mdp(bad_row, r, 0.9)
  with pytest.raises(ValueError, match="transitions"):
    M.make_mdp(p[:, :, :2], r, 0.9)
  neg = p.copy()
  neg[0, 0] = [1.5, -0.5, 0.0]
  with pytest.raises(ValueError, match="transitions"):
    M.make_mdp(neg, r, 0.9)
  for gamma in (1.0, -0.1, 1.5):
    with pytest.raises(ValueError, match="gamma"):
      M.make_mdp(p, r, gamma)
  with pytest.raises(ValueError, match="rewards"):
    M.make_mdp(p, np.zeros((3, 3)), 0.9)
  with pytest.raises(ValueError, match="initial"):
    M.make_mdp(p, r, 0.9, initial=[0.5, 0.2, 0.2])
  with pytest.raises(ValueError, match="initial"):
    M.make_mdp(p, r, 0.9, initial=[0.5, 0.5])
  with pytest.raises(ValueError, match="terminal"):
    M.make_mdp(p, r, 0.9, terminal=[True, False, False])  # not absorbing
  with pytest.raises(TypeError, match="terminal"):
    M.make_mdp(p, r, 0.9, terminal=[1, 0, 0])
  with pytest.raises(ValueError, match="potential"):
    M.shape(M.make_mdp(p, r, 0.9), np.zeros(2))


def test_gridworld_moves_and_rewards():
  """Actions up/down/left/right move one cell, bumping walls stays put,
  terminal cells absorb, and r(s, a) = w . phi(cell entered)."""
  phi = np.zeros((2, 3, 2))
  phi[..., 0] = 1.0           # step
  phi[1, 2, 1] = 1.0          # a terminal goal at (1, 2)
  terminal = np.zeros((2, 3), bool)
  terminal[1, 2] = True
  grid = M.gridworld(phi, [-1.0, 10.0], terminal=terminal, gamma=0.5)
  p = np.asarray(grid.mdp.transitions)
  nxt = p.argmax(-1)
  assert np.all(p.max(-1) == 1)
  # state 0 = (0, 0): up and left bump the walls, down -> (1, 0) = 3,
  # right -> (0, 1) = 1.
  np.testing.assert_array_equal(nxt[0], [0, 3, 0, 1])
  np.testing.assert_array_equal(nxt[4], [1, 4, 3, 5])   # (1, 1)
  np.testing.assert_array_equal(nxt[5], [5, 5, 5, 5])   # terminal
  r = np.asarray(grid.mdp.rewards)
  assert r[4, 3] == 9.0 and r[2, 1] == 9.0 and r[0, 0] == -1.0
  np.testing.assert_array_equal(grid.features[2, 1], [1.0, 1.0])
  # V*: from (1, 1) or (0, 2), one step to the goal: 9; from (0, 1): -1 + .5*9.
  v, _ = M.value_iteration(grid.mdp)
  np.testing.assert_allclose(v, [-1 + 0.5 * 3.5, 3.5, 9, 3.5, 9, 0],
                             atol=1e-5)
  np.testing.assert_allclose(grid.mdp.initial, [0.2] * 5 + [0])


def test_delivery_layout_and_features():
  """The delivery domain: 10x10, 4 deterministic actions, features
  (step, goal, sheep, coin, roadblock, mud) weighted (-1, 50, -50, 1, -1, -2)
  on the cell entered, goal and sheep cells terminal, the drawn counts."""
  grid = M.delivery(jax.random.key(3))
  mdp, feats = grid
  assert mdp.transitions.shape == (100, 4, 100)
  assert np.all(np.asarray(mdp.transitions).max(-1) == 1)
  assert M.DELIVERY_WEIGHTS == (-1.0, 50.0, -50.0, 1.0, -1.0, -2.0)
  # The feature of each cell, read from the moves into it.
  p = np.asarray(mdp.transitions)
  cell = np.zeros((100, 6))
  cell[p.argmax(-1).ravel()] = np.asarray(feats).reshape(-1, 6)
  assert np.all(cell[:, 0] == 1)
  np.testing.assert_array_equal(cell[:, 1:].sum(0), [1, 2, 4, 8, 12])
  assert np.all(cell[:, 1:].sum(1) <= 1)
  np.testing.assert_array_equal(np.asarray(mdp.terminal),
                                (cell[:, 1] + cell[:, 2]) > 0)
  np.testing.assert_allclose(mdp.rewards,
                             np.asarray(feats) @ np.array(M.DELIVERY_WEIGHTS),
                             atol=1e-6)
  # A different key gives a different layout.
  other = M.delivery(jax.random.key(4)).mdp
  assert not np.array_equal(np.asarray(other.terminal),
                            np.asarray(mdp.terminal))
