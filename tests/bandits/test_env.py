"""Tests of prefsim.bandits.env: problems, BT duels, regrets, linearity.

Theorem tests state the property in their docstring and check it on drawn
inputs (hypothesis, values not shapes); Monte Carlo checks use fixed keys,
vmapped, with the bound stated next to them.
"""

from __future__ import annotations

import math

import hypothesis
from hypothesis import given
from hypothesis import strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefsim import bandits
from prefsim.testing import strategies as pst

FEW = hypothesis.settings(max_examples=4)
K, D = 6, 4


def _problem(utilities, noisy=True):
  emb = np.eye(K, D) + 0.1 * np.arange(K * D).reshape(K, D) / (K * D)
  return bandits.from_embeddings(emb, utilities, noisy=noisy)


# --------------------------------------------------------------------------
# Makers and validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("maker", [bandits.linear_problem,
                                   bandits.mlp_problem])
def test_makers_shapes_and_standardisation(maker):
  """Makers return unit-norm embeddings [K, D] in a subspace of the asked
  dimension and utilities with mean 0 and standard deviation ``scale``."""
  p = maker(jax.random.key(0), 50, 12, intrinsic_dim=3, scale=2.5)
  assert bandits.check_problem(p) == (50, 12)
  emb = np.asarray(p.embeddings, np.float64)
  np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
  sv = np.linalg.svd(emb, compute_uv=False)
  assert sv[3] < 1e-5 * sv[0] and sv[2] > 1e-2 * sv[0]   # rank 3
  u = np.asarray(p.utilities, np.float64)
  assert abs(u.mean()) < 1e-5 and abs(u.std() - 2.5) < 1e-4
  assert bool(p.noisy)


def test_bad_problems_raise():
  """NaN/inf embeddings, K < 2, mismatched shapes and bad maker arguments
  raise clear errors."""
  emb = np.ones((3, 2))
  bad = emb.copy()
  bad[1, 0] = np.nan
  with pytest.raises(ValueError, match="embeddings must be finite"):
    bandits.from_embeddings(bad, np.zeros(3))
  with pytest.raises(ValueError, match="utilities must be finite"):
    bandits.from_embeddings(emb, np.array([0.0, np.inf, 1.0]))
  with pytest.raises(ValueError, match="K >= 2"):
    bandits.from_embeddings(np.ones((1, 2)), np.zeros(1))
  with pytest.raises(ValueError, match="utilities must have shape"):
    bandits.from_embeddings(emb, np.zeros(4))
  with pytest.raises(ValueError, match="2 axes"):
    bandits.from_embeddings(np.ones(3), np.zeros(3))
  with pytest.raises(ValueError, match="n_arms must be >= 2"):
    bandits.linear_problem(jax.random.key(0), 1, 3)
  with pytest.raises(ValueError, match="intrinsic_dim"):
    bandits.mlp_problem(jax.random.key(0), 5, 3, intrinsic_dim=4)
  with pytest.raises(ValueError, match="scale"):
    bandits.mlp_problem(jax.random.key(0), 5, 3, scale=0.0)
  with pytest.raises(TypeError, match="DuelingProblem"):
    bandits.check_problem((emb, np.zeros(3), True))


# --------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------


N_DUELS = 4000


@FEW
@given(u=pst.utilities(K), seed=pst.seeds())
def test_feedback_frequencies_match_sigmoid(u, seed):
  """BT feedback: the frequency of "a beats b" over n independent duels is
  within 5 binomial standard deviations of sigma(u_a - u_b), for every pair
  (a, b) at once."""
  p = _problem(u)
  a, b = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
  a, b = np.tile(a.ravel(), N_DUELS), np.tile(b.ravel(), N_DUELS)
  wins = np.asarray(bandits.feedback(jax.random.key(seed), p, a, b))
  freq = wins.reshape(N_DUELS, K, K).mean(axis=0)
  u64 = np.asarray(p.utilities, np.float64)
  prob = 1.0 / (1.0 + np.exp(-(u64[:, None] - u64[None, :])))
  bound = 5 * np.sqrt(prob * (1 - prob) / N_DUELS) + 1e-12
  assert np.all(np.abs(freq - prob) <= bound)
  np.testing.assert_allclose(np.asarray(bandits.win_prob(p, a[:K * K],
                                                         b[:K * K])),
                             prob.ravel(), rtol=1e-5, atol=1e-6)


@FEW
@given(u=pst.utilities(K), seed=pst.seeds())
def test_noiseless_feedback(u, seed):
  """Noiseless duels: the arm with the higher utility always wins; a tie
  (an arm against itself) is a fair coin, within 5 binomial sd."""
  p = _problem(u, noisy=False)
  a, b = np.meshgrid(np.arange(K), np.arange(K), indexing="ij")
  a, b = a.ravel(), b.ravel()
  keys = jax.random.split(jax.random.key(seed), 2000)
  wins = np.asarray(jax.vmap(bandits.feedback, in_axes=(0, None, None, None))(
      keys, p, a, b))
  ua, ub = np.asarray(p.utilities)[a], np.asarray(p.utilities)[b]
  assert np.all(wins[:, ua > ub]) and not np.any(wins[:, ua < ub])
  tie_freq = wins[:, a == b].mean(axis=0)
  assert np.all(np.abs(tie_freq - 0.5) <= 5 * 0.5 / math.sqrt(2000))


def test_indices_checked():
  p = _problem(np.arange(K, dtype=float))
  with pytest.raises(ValueError, match=r"a must lie in \[0, 6\)"):
    bandits.win_prob(p, np.array([6]), np.array([0]))
  with pytest.raises(TypeError, match="integer"):
    bandits.reported_regret(p, np.array([0.5]))


# --------------------------------------------------------------------------
# Regrets
# --------------------------------------------------------------------------


@FEW
@given(u=pst.utilities(K), a=st.integers(0, K - 1), b=st.integers(0, K - 1))
def test_regrets_nonnegative_and_ordered(u, a, b):
  """0 <= weak <= average <= strong dueling regret, reported regret >= 0 and
  zero exactly at the best arm; values equal the definitions."""
  p = _problem(u)
  u64 = np.asarray(p.utilities, np.float64)
  best = u64.max()
  duel = bandits.dueling_regret(p, a, b)
  weak, avg, strong = (float(duel[k]) for k in ("weak", "average", "strong"))
  assert 0 <= weak <= avg + 1e-6 and avg <= strong + 1e-6
  np.testing.assert_allclose([weak, avg, strong],
                             [best - max(u64[a], u64[b]),
                              best - (u64[a] + u64[b]) / 2,
                              best - min(u64[a], u64[b])], atol=1e-5)
  reg = np.asarray(bandits.reported_regret(p, np.arange(K)))
  assert np.all(reg >= 0) and reg[np.argmax(u64)] == 0
  info = bandits.regret_info(p, jnp.asarray(a), jnp.asarray(b),
                             jnp.asarray(a))
  assert info["pair"].tolist() == [a, b]
  np.testing.assert_allclose(float(info["reported_regret"]), best - u64[a],
                             atol=1e-5)


# --------------------------------------------------------------------------
# Linearity
# --------------------------------------------------------------------------


def test_linearity():
  """A linear utility has R^2 = 1 and zero argmax regret, also with
  embeddings confined to a subspace (rounding noise is not fitted). On
  arms x = (t, 1), t on a symmetric grid of [-1, 1], u = -(t - 0.2)^2 has
  the least-squares fit 0.4 t + c (t and t^2 are uncorrelated there), so
  R^2 = var(0.4 t) / var(u) and the fit's argmax t = 1 has regret
  u(0.2) - u(1) = 0.64."""
  lin = bandits.linear_problem(jax.random.key(1), 60, 20, intrinsic_dim=4)
  out = bandits.linearity(lin)
  assert out["r2"] > 1 - 1e-6 and out["argmax_regret"] == 0.0
  t = np.linspace(-1, 1, 41)
  u = -(t - 0.2)**2
  out = bandits.linearity(bandits.from_embeddings(
      np.stack([t, np.ones_like(t)], axis=1), u))
  np.testing.assert_allclose(out["r2"], np.var(0.4 * t) / np.var(u),
                             rtol=1e-5)
  np.testing.assert_allclose(out["argmax_regret"], 0.64, rtol=1e-5)
