"""Tests for prefsim.models.gpm (general preference embeddings).

Reference values by hand (the 2-d score is a cross product; BT and
rock-paper-scissors embeddings), the expressiveness results of Zhang et al.
(2024) as properties on drawn values, and the transformation invariants.
"""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from prefsim import testing as pt
from prefsim.models import bradley_terry as bt
from prefsim.models import general
from prefsim.models import gpm
from prefsim.testing import strategies as pst

DIM = 4
K = 6


def _logit(p):
  p = np.asarray(p, np.float64)
  return np.log(p) - np.log1p(-p)


# ---------------------------------------------------------------- reference


def test_score_by_hand():
  v_i = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
  v_j = np.array([-1.0, 0.5, 2.0, -3.0], np.float32)
  lam = np.array([2.0, 0.5], np.float32)
  # Block 0: 1*0.5 - 2*(-1) = 2.5; block 1: 3*(-3) - 4*2 = -17.
  assert float(gpm.score(v_i, v_j, lam)) == pytest.approx(2 * 2.5 + 0.5 * -17)
  assert float(gpm.prob(v_i, v_j, lam, 2.0)) == pytest.approx(
      1 / (1 + np.exp(-(5.0 - 8.5) / 2.0)), rel=1e-6)


@hypothesis.given(r=pst.utilities(K))
def test_bradley_terry_is_the_embedding_r_comma_one(r):
  v = np.stack([r, np.ones_like(r)], axis=1)
  lam = np.ones(1, np.float32)
  s = np.asarray(gpm.score_matrix(v, lam))
  np.testing.assert_allclose(s, r[:, None] - r[None, :], atol=1e-5)
  np.testing.assert_allclose(gpm.prob(v[:, None], v[None], lam),
                             bt.prob(r[:, None], r[None]), atol=1e-6)


@hypothesis.given(strength=pst.flip_rates().map(lambda e: 1.0 - e))
def test_rock_paper_scissors_with_one_block(strength):
  hypothesis.assume(strength < 0.999)  # finite logits
  angles = 2 * np.pi * np.arange(3) / 3
  v = np.stack([np.cos(angles), np.sin(angles)], axis=1).astype(np.float32)
  # score(i, i+1) = sin(2 pi / 3) = sqrt(3)/2 for lambda = 1.
  lam = np.array([2 / np.sqrt(3) * _logit(strength)], np.float32)
  p = jax.nn.sigmoid(gpm.score_matrix(v, lam))
  np.testing.assert_allclose(p, general.rock_paper_scissors(strength),
                             atol=2e-5)
  assert bool(general.has_cycle(p))


# ---------------------------------------------------------------- theorems


@hypothesis.given(v=pst.vectors(2 * DIM), lam=pst.vectors(DIM // 2, 0.0, 3.0))
def test_score_is_skew_symmetric(v, lam):
  v_i, v_j = v[:DIM], v[DIM:]
  s_ij = float(gpm.score(v_i, v_j, lam))
  s_ji = float(gpm.score(v_j, v_i, lam))
  assert s_ij == pytest.approx(-s_ji, abs=1e-5)
  assert float(gpm.score(v_i, v_i, lam)) == pytest.approx(0.0, abs=1e-5)


@hypothesis.given(v=pst.vectors(2 * DIM), lam=pst.vectors(DIM // 2, 0.0, 3.0),
                  tau=pst.betas(0.1, 10.0))
def test_probabilities_are_complementary(v, lam, tau):
  v_i, v_j = v[:DIM], v[DIM:]
  total = gpm.prob(v_i, v_j, lam, tau) + gpm.prob(v_j, v_i, lam, tau)
  assert float(total) == pytest.approx(1.0, abs=1e-6)


@hypothesis.given(p=pst.preference_matrices(K, "general"))
def test_embed_reproduces_any_skew_symmetric_matrix(p):
  logits = _logit(p).astype(np.float32)
  v, lam = gpm.embed(logits)  # dim = K
  assert v.shape == (K, K) and lam.shape == (K // 2,)
  assert np.all(np.asarray(lam) >= 0)
  np.testing.assert_allclose(gpm.score_matrix(v, lam), logits, atol=2e-5 * (
      1 + np.abs(logits).max()))


@hypothesis.given(p=pst.preference_matrices(5, "cyclic"))
def test_embed_odd_number_of_items(p):
  logits = _logit(p).astype(np.float32)
  v, lam = gpm.embed(logits)  # dim = 6 >= 5
  np.testing.assert_allclose(gpm.score_matrix(v, lam), logits, atol=1e-4)
  # A larger dim pads with zero scales and still reproduces it.
  v8, lam8 = gpm.embed(logits, dim=8)
  np.testing.assert_allclose(gpm.score_matrix(v8, lam8), logits, atol=1e-4)


def test_bt_cannot_represent_a_cycle_but_one_block_can():
  # A rank-2 skew-symmetric matrix r 1^T - 1 r^T is BT; a 3-cycle is not of
  # that form, yet embed represents it with a single block.
  logits = _logit(general.rock_paper_scissors(0.8))
  v, lam = gpm.embed(logits.astype(np.float32), dim=2)
  np.testing.assert_allclose(gpm.score_matrix(v, lam), logits, atol=1e-5)
  # The best BT approximation (row means) misses the cycle entirely.
  r = logits.mean(axis=1)
  np.testing.assert_allclose(r, 0.0, atol=1e-7)


def test_fit_three_cycle_perfectly_where_bt_cannot():
  # 30 comparisons of each pair from a strong rock-paper-scissors.
  p_true = general.rock_paper_scissors(0.9)
  key = jax.random.key(0)
  i = np.repeat(np.array([0, 1, 2]), 30)
  j = (i + 1) % 3
  i_wins = np.asarray(jax.random.bernoulli(key, np.asarray(p_true)[i, j]))
  w, l = np.where(i_wins, i, j), np.where(i_wins, j, i)
  v, lam = gpm.fit(jax.random.key(1), w, l, 3, dim=2, l2=1e-3)
  p_gpm = jax.nn.sigmoid(gpm.score_matrix(v, lam))
  assert float(general.majority_agreement(p_true, p_gpm)) == 1.0
  # Close to the truth, not just on the right side.
  np.testing.assert_allclose(p_gpm[0, 1], np.mean(i_wins[:30]), atol=0.1)
  u = bt.fit(w, l, 3, l2=1e-2)
  acc_bt = float(general.majority_agreement(p_true,
                                            general.from_utilities(u)))
  assert acc_bt <= 2 / 3 + 1e-6  # float32 division


def test_fit_recovers_a_random_tournament():
  p_true = general.random_tournament(jax.random.key(4), K)
  i, j = np.triu_indices(K, 1)
  i, j = np.repeat(i, 5), np.repeat(j, 5)
  i_wins = np.asarray(p_true)[i, j] > 0.5
  w, l = np.where(i_wins, i, j), np.where(i_wins, j, i)
  v, lam = gpm.fit(jax.random.key(2), w, l, K, dim=K, l2=1e-3)
  p_gpm = jax.nn.sigmoid(gpm.score_matrix(v, lam))
  assert float(general.majority_agreement(p_true, p_gpm)) == 1.0


def test_fit_first_order_optimality():
  w = np.array([0, 1, 2, 0, 1, 2, 1, 0])
  l = np.array([1, 2, 0, 2, 0, 1, 0, 1])
  l2 = 0.1
  v, lam = gpm.fit(jax.random.key(0), w, l, 3, dim=2, l2=l2)
  rho = lam + jnp.log(-jnp.expm1(-lam))  # softplus inverse

  def objective(v, rho):
    lam = jax.nn.softplus(rho)
    nll = -gpm.log_likelihood(v, lam, w, l)
    return (nll + 0.5 * l2 * (jnp.sum(v * v) + jnp.sum(lam * lam))) / w.size

  g_v, g_rho = jax.grad(objective, argnums=(0, 1))(v, rho)
  assert float(jnp.max(jnp.abs(g_v))) < 1e-4
  assert float(jnp.max(jnp.abs(g_rho))) < 1e-4
  assert np.all(np.asarray(lam) > 0)


def test_fit_vmapped_over_seeds_matches_per_seed_fits():
  """``fit`` under ``vmap`` (over keys and data sets) gives each seed's own fit:
  the L-BFGS loop keeps every lane's iterate once it has converged."""
  p_true = general.rock_paper_scissors(0.8)
  i = np.tile(np.repeat(np.array([0, 1, 2]), 10), (3, 1))
  j = (i + 1) % 3
  wins = np.asarray(jax.random.bernoulli(jax.random.key(7),
                                         np.asarray(p_true)[i, j]))
  w, l = np.where(wins, i, j), np.where(wins, j, i)
  keys = jax.random.split(jax.random.key(3), 3)
  fit = lambda k, a, b: gpm.fit(k, a, b, 3, dim=2, l2=1e-2)
  v_b, lam_b = jax.vmap(fit)(keys, w, l)
  for s in range(3):
    v_s, lam_s = fit(keys[s], w[s], l[s])
    # Compare what is identifiable: the score matrix (the embeddings are
    # defined up to a rotation within the block).
    np.testing.assert_allclose(gpm.score_matrix(v_b[s], lam_b[s]),
                               gpm.score_matrix(v_s, lam_s), atol=1e-4)


# ------------------------------------------------------------------ errors


def test_odd_dim_and_shape_errors():
  w, l = np.array([0, 1]), np.array([1, 0])
  with pytest.raises(ValueError, match="dim must be even"):
    gpm.fit(jax.random.key(0), w, l, 2, dim=3)
  with pytest.raises(ValueError, match="dim must be even"):
    gpm.score(np.ones(3), np.ones(3), np.ones(1))
  with pytest.raises(ValueError, match="same axis"):
    gpm.score(np.ones(4), np.ones(2), np.ones(2))
  with pytest.raises(ValueError, match=r"lambdas must have shape \[dim/2\]"):
    gpm.score(np.ones(4), np.ones(4), np.ones(1))
  with pytest.raises(ValueError, match="shapes must match"):
    gpm.fit(jax.random.key(0), w, l[:1], 2, dim=2)
  with pytest.raises(ValueError, match="winners must lie"):
    gpm.fit(jax.random.key(0), np.array([0, 5]), l, 2, dim=2)
  with pytest.raises(ValueError, match="tau"):
    gpm.prob(np.ones(2), np.ones(2), np.ones(1), tau=0.0)
  with pytest.raises(ValueError, match="skew-symmetric"):
    gpm.embed(np.ones((3, 3)))
  with pytest.raises(ValueError, match="square"):
    gpm.embed(np.zeros((3, 2)))


# -------------------------------------------------------------- invariants


def test_jit_vmap_grad_invariants():
  rng = np.random.default_rng(0)
  v = rng.normal(size=(5, 2, DIM)).astype(np.float32)
  lam = np.array([0.7, 1.3], np.float32)
  f = lambda a, b: gpm.prob(a, b, lam, 0.5)
  pt.assert_jit_matches_eager(f, v[0, 0], v[0, 1])
  pt.assert_vmap_matches_loop(f, v[:, 0], v[:, 1])
  pt.assert_traced_once(f, [(v[s, 0], v[s, 1]) for s in range(3)])
  check_grads(lambda a, b, lm: gpm.score(a, b, lm),
              (v[0, 0].astype(np.float64), v[0, 1].astype(np.float64),
               lam.astype(np.float64)), order=2, atol=1e-2, rtol=1e-2)
  logits = rng.normal(size=(4, 4)).astype(np.float32)
  logits = logits - logits.T
  pt.assert_jit_matches_eager(lambda a: gpm.score_matrix(*gpm._embed_core(
      a, dim=4)), logits, atol=1e-5)


def test_large_scores_stay_finite_in_float32():
  v = np.array([[1e4, 1.0], [0.0, 1.0]], np.float32)
  lam = np.ones(1, np.float32)
  ll, g = jax.value_and_grad(gpm.log_likelihood)(v, lam, np.array([1]),
                                                 np.array([0]))
  pt.assert_finite((ll, g))
