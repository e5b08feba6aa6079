"""Tests for prefsim.games.minimax: exact minimax winners, batched over games.

References: rock-paper-scissors by hand (uniform), the Condorcet winner (a
pure winner, by the argument in the test), and scipy's HiGHS solving the
same linear program in float64. Theorem properties are drawn with the
registered hypothesis profile at one fixed shape, so each compiles once.
Exploitabilities of the answers are measured in float64 NumPy from the
definition, independently of the code under test.
"""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from scipy import optimize

from prefsim import games
from prefsim import testing as pt
from prefsim.models import general
from prefsim.testing import strategies as pst

K = 7
B = 16
X64 = jax.config.jax_enable_x64
DTYPE = np.float64 if X64 else np.float32
EPS = np.finfo(DTYPE).eps
# The stated accuracy of minimax_winner: exploitability at most 1e-6 in
# float32 and 1e-10 in float64.
TOL = 1e-10 if X64 else 1e-6


def _exact_matrix(p):
  """A matrix with P + P.T = 1 exactly, in the default float dtype and in
  float64: the entry a >= 1/2 of each pair is rounded, its partner is 1 - a
  (exact in floating point for a in [1/2, 1], Sterbenz's lemma)."""
  p = np.asarray(p, np.float64)
  p = (p - np.swapaxes(p, -1, -2) + 1) / 2
  a = np.maximum(p, np.swapaxes(p, -1, -2)).astype(DTYPE)
  return np.where(p >= np.swapaxes(p, -1, -2), a, DTYPE(1) - a)


def _matrices(kind):
  return pst.preference_matrices(K, kind).map(_exact_matrix)


def _exploitability64(P, pi):
  """max_j ((P - 1/2) pi)_j in float64 NumPy, from the definition."""
  P = np.asarray(P, np.float64)
  pi = np.asarray(pi, np.float64)
  return np.max(np.einsum("...jk,...k->...j", P - 0.5, pi), axis=-1)


def _assert_minimax_winner(P, pi):
  pi = np.asarray(pi, np.float64)
  assert pi.shape == np.shape(P)[:-1]
  assert np.all(pi >= 0.0)
  np.testing.assert_allclose(pi.sum(-1), 1.0, atol=10 * K * EPS)
  e = _exploitability64(P, pi)
  assert np.all(e <= TOL), f"exploitability {np.max(e)} > {TOL}"


def _lower_triangle_games(seed, n):
  """EGPO's random games: P_ij ~ U(0, 1) below the diagonal, 1 - P_ji above."""
  lower = np.tril(np.random.default_rng(seed).uniform(size=(n, K, K)), -1)
  return _exact_matrix(lower + np.triu(1.0 - np.swapaxes(lower, -1, -2), 1)
                       + 0.5 * np.eye(K))


def _linprog_winner(P):
  """min t s.t. (P - 1/2) pi <= t, sum(pi) = 1, pi >= 0, by HiGHS (float64,
  feasibility tolerances 1e-10)."""
  A = np.asarray(P, np.float64) - 0.5
  res = optimize.linprog(
      np.r_[np.zeros(K), 1.0], A_ub=np.c_[A, -np.ones(K)], b_ub=np.zeros(K),
      A_eq=np.r_[np.ones(K), 0.0][None], b_eq=[1.0],
      bounds=[(0, None)] * K + [(None, None)], method="highs",
      options={"primal_feasibility_tolerance": 1e-10,
               "dual_feasibility_tolerance": 1e-10})
  assert res.status == 0, res.message
  return res.x[:K], res.x[K]


# ---------------------------------------------------------------- theorems


@pytest.mark.parametrize("kind", ["general", "cyclic", "bt"])
@given(data=hypothesis.strategies.data())
def test_minimax_winner_has_zero_exploitability(kind, data):
  """von Neumann's minimax theorem: the symmetric game has value 1/2, so a
  minimax winner pi* exists with max_j (P pi*)_j - 1/2 = 0; the LP solution
  attains it (to 1e-6 in float32, 1e-10 in float64) and is a distribution."""
  P = np.stack([data.draw(_matrices(kind)) for _ in range(2)])
  _assert_minimax_winner(P, games.minimax_winner(P))


@given(seed=pst.seeds())
def test_minimax_winner_of_random_tournaments(seed):
  """The minimax theorem on random tournaments (0/1 preferences, where
  exact arithmetic matters most): zero exploitability, B games at once."""
  keys = jax.random.split(jax.random.key(seed), B)
  P = jax.vmap(lambda k: general.random_tournament(k, K))(keys)
  _assert_minimax_winner(P, games.minimax_winner(P))


@given(data=hypothesis.strategies.data())
def test_minimax_winner_is_the_condorcet_winner(data):
  """If item c beats every other item (P_cj > 1/2 for j != c), the one-hot
  policy on c is the unique minimax winner: for any pi,
  (P pi)_c = pi_c / 2 + sum_{j != c} P_cj pi_j >= 1/2 with equality only at
  pi = e_c. Checked on Bradley-Terry matrices (transitive) and on general
  matrices with a planted winner."""
  u = data.draw(pst.utilities(K))
  top = np.sort(u)
  hypothesis.assume(top[-1] - top[-2] > 1e-3)
  bt = _exact_matrix(general.from_utilities(jnp.asarray(u, DTYPE)))
  p = data.draw(_matrices("general")).astype(np.float64)
  c = data.draw(hypothesis.strategies.integers(0, K - 1))
  row = np.maximum(p[c], 1.0 - p[c])
  row = np.where(row > 0.5, row, 0.75)
  p[c], p[:, c] = row, 1.0 - row
  p[c, c] = 0.5
  planted = _exact_matrix(p)
  P = np.stack([bt, planted])
  winners = np.array([int(general.condorcet_winner(q)) for q in P])
  assert winners[0] == int(np.argmax(u)) and winners[1] == c
  pi = games.minimax_winner(P)
  np.testing.assert_allclose(np.asarray(pi, np.float64),
                             np.eye(K)[winners], atol=10 * EPS)


@pytest.mark.parametrize("strength", [1.0, 0.8, 0.55])
def test_minimax_winner_of_rock_paper_scissors_is_uniform(strength):
  """Rock-paper-scissors (any strength s > 1/2) has the unique minimax
  winner (1/3, 1/3, 1/3): by hand, (P u)_i = (1/2 + s + 1 - s)/3 = 1/2."""
  pi = games.minimax_winner(general.rock_paper_scissors(strength))
  np.testing.assert_allclose(np.asarray(pi, np.float64), np.full(3, 1 / 3),
                             atol=10 * EPS)


def test_minimax_winner_matches_scipy_linprog():
  """Against HiGHS on the same LP (float64): both answers have zero
  exploitability, HiGHS's optimal value is 0 (the game's value is 1/2), and
  the winners, unique on these continuous random games, agree to within
  10 cond(S) eps, where cond(S) is the condition number of the equalising
  system on the winner's support (the forward-error bound of a backward
  stable solve), plus HiGHS's tolerance."""
  P = _lower_triangle_games(0, B)
  pi = np.asarray(games.minimax_winner(P), np.float64)
  _assert_minimax_winner(P, pi)
  for p, ours in zip(P.astype(np.float64), pi):
    theirs, value = _linprog_winner(p)
    assert abs(value) <= 1e-9
    assert _exploitability64(p, theirs) <= 1e-9
    support = theirs > 1e-9
    system = np.zeros((K + 1, K + 1))
    system[:K, :K] = np.where(support[:, None], p - 0.5, np.eye(K))
    system[:K, K] = np.where(support, -1.0, 0.0)
    system[K, :K] = 1.0
    atol = 10 * np.linalg.cond(system) * EPS + 1e-9
    np.testing.assert_allclose(ours, theirs, atol=atol)


def test_minimax_winner_of_degenerate_games():
  """K = 1 (the only policy), K = 2 (the majority item; any policy when tied),
  all ties (every policy is a winner) and two tied co-winners that beat a
  third item: each answer is a distribution with zero exploitability, and
  exact where the winner is unique; with two tied co-winners, every winner
  puts no weight on the item both beat ((P pi)_0 = 1/2 + pi_2 / 2), so the
  answer's weight there is at most twice its exploitability."""
  np.testing.assert_allclose(games.minimax_winner(jnp.full((1, 1), 0.5)),
                             [1.0])
  two = np.array([[[0.5, 0.3], [0.7, 0.5]], [[0.5, 0.9], [0.1, 0.5]],
                  [[0.5, 0.5], [0.5, 0.5]]], DTYPE)
  pi = games.minimax_winner(two)
  _assert_minimax_winner(two, pi)
  np.testing.assert_allclose(pi[:2], [[0.0, 1.0], [1.0, 0.0]], atol=10 * EPS)
  ties = np.stack([np.full((3, 3), 0.5),
                   [[0.5, 0.5, 1.0], [0.5, 0.5, 1.0], [0.0, 0.0, 0.5]]])
  ties = ties.astype(DTYPE)
  pi = games.minimax_winner(ties)
  _assert_minimax_winner(ties, pi)
  assert float(pi[1, 2]) <= 2 * TOL


# ---------------------------------------------------------------- invariants


def test_minimax_winner_batch_equals_loop():
  """Batching over any leading axes gives each game's own answer."""
  P = _lower_triangle_games(1, 6)
  batched = np.asarray(games.minimax_winner(P.reshape(2, 3, K, K)))
  looped = np.stack([games.minimax_winner(p) for p in P]).reshape(2, 3, K)
  np.testing.assert_allclose(batched, looped, rtol=0, atol=10 * EPS)


def test_minimax_winner_jit_matches_eager_and_traces_once():
  P = _lower_triangle_games(2, 1)
  pt.assert_jit_matches_eager(games.minimax_winner, P, rtol=0,
                              atol=10 * EPS)
  pt.assert_traced_once(games.minimax_winner,
                        [(P,), (_lower_triangle_games(3, 1),)])


def test_minimax_winner_bad_input_raises():
  with pytest.raises(ValueError, match="P must be a"):
    games.minimax_winner(np.full((3, 4), 0.5))
  with pytest.raises(ValueError, match="P must be a"):
    games.minimax_winner(np.full((3,), 0.5))
  not_complementary = np.full((3, 3), 0.5)
  not_complementary[0, 1] = 0.9
  with pytest.raises(ValueError, match="not a preference matrix"):
    games.minimax_winner(not_complementary)
  with pytest.raises(ValueError, match="not a preference matrix"):
    games.minimax_winner(np.stack([np.full((3, 3), 0.5),
                                   np.full((3, 3), 0.2)]))
