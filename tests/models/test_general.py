"""Tests for prefsim.models.general (preference matrices, cycles, Condorcet).

Reference values are by hand (rock-paper-scissors, Condorcet's three voters)
and from brute force (cycle detection by depth-first search in NumPy);
properties are drawn with the registered hypothesis profile.
"""

from __future__ import annotations

import itertools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from prefsim import testing as pt
from prefsim.models import general
from prefsim.testing import strategies as pst

K = 5


def _brute_force_cycle(p):
  """Does the strict majority relation have a cycle? (DFS, host-side)."""
  adj = np.asarray(p) > 0.5
  n = adj.shape[0]
  color = [0] * n

  def visit(i):
    color[i] = 1
    for j in range(n):
      if adj[i, j]:
        if color[j] == 1 or (color[j] == 0 and visit(j)):
          return True
    color[i] = 2
    return False

  return any(color[i] == 0 and visit(i) for i in range(n))


def _brute_force_winner(p):
  p = np.asarray(p)
  n = p.shape[0]
  for i in range(n):
    if all(p[i, j] > 0.5 for j in range(n) if j != i):
      return i
  return -1


# ---------------------------------------------------------------- reference


def test_rock_paper_scissors_by_hand():
  p = np.asarray(general.rock_paper_scissors(0.8))
  # 0 rock beats 1 scissors beats 2 paper beats 0 rock.
  expected = np.array([[0.5, 0.8, 0.2], [0.2, 0.5, 0.8], [0.8, 0.2, 0.5]])
  np.testing.assert_allclose(p, expected, atol=1e-7)
  assert bool(general.has_cycle(p))
  assert int(general.condorcet_winner(p)) == -1
  # All ties: no edges, no cycle, no winner.
  half = general.rock_paper_scissors(0.5)
  assert not bool(general.has_cycle(half))
  assert int(general.condorcet_winner(half)) == -1


def test_condorcet_paradox_mixture_is_cyclic():
  # Three voters a>b>c, b>c>a, c>a>b (utilities 2, 1, 0 by rank), weight 1/3.
  scale = 5.0
  utilities = scale * np.array([[2, 1, 0], [0, 2, 1], [1, 0, 2]], np.float32)
  p = general.mixture_bt(np.full(3, 1 / 3, np.float32), utilities)
  general.validate(p)
  # a beats b for voters 1 and 3: P[a, b] = (2 s(5) + s(-10)) / 3 by hand.
  s = lambda x: 1 / (1 + np.exp(-x))
  np.testing.assert_allclose(p[0, 1], (2 * s(5.0) + s(-10.0)) / 3, rtol=1e-6)
  assert bool(general.has_cycle(p))
  assert int(general.condorcet_winner(p)) == -1
  # One voter alone is transitive, with its top item the Condorcet winner.
  p1 = general.mixture_bt(np.array([0.0, 1.0, 0.0]), utilities)
  assert not bool(general.has_cycle(p1))
  assert int(general.condorcet_winner(p1)) == 1


def test_has_cycle_on_hand_made_relations():
  # 4-cycle 0>1>2>3>0 with the diagonals tied: a cycle with no 3-cycle.
  p = np.full((4, 4), 0.5, np.float32)
  for i in range(4):
    p[i, (i + 1) % 4], p[(i + 1) % 4, i] = 0.7, 0.3
  assert bool(general.has_cycle(p))
  # Reverse one edge: 0>1>2>3 and 0>3: acyclic, with 0 beating 1 and 3 only.
  p[3, 0], p[0, 3] = 0.3, 0.7
  assert not bool(general.has_cycle(p))
  assert int(general.condorcet_winner(p)) == -1  # 0 ties with 2


def test_majority_agreement_by_hand():
  rps = general.rock_paper_scissors()
  bt_p = general.from_utilities(jnp.array([2.0, 1.0, 0.0]))  # 0 > 1 > 2
  # Agrees on 0>1 and 1>2, not on 2>0.
  assert float(general.majority_agreement(rps, bt_p)) == pytest.approx(2 / 3)
  assert float(general.majority_agreement(rps, rps)) == 1.0
  ties = general.from_utilities(jnp.zeros(3))
  assert float(general.majority_agreement(rps, ties)) == 0.0


# ------------------------------------------------------------------ errors


@pytest.mark.parametrize("bad, words", [
    (np.array([[0.5, 1.2], [-0.2, 0.5]]), "entries must lie in [0, 1]"),
    (np.array([[0.4, 0.7], [0.3, 0.6]]), "diagonal must be 1/2"),
    (np.array([[0.5, 0.7], [0.4, 0.5]]), "p + p.T must equal 1"),
    (np.array([[0.5, np.nan], [0.5, 0.5]]), "NaN"),
])
def test_validate_rejects_each_violation(bad, words):
  with pytest.raises(ValueError, match=words.replace("[", r"\[").replace(
      "]", r"\]").replace("+", r"\+").replace(".", r"\.")):
    general.validate(bad)


def test_bad_shapes_raise():
  with pytest.raises(ValueError, match="square"):
    general.validate(np.full((2, 3), 0.5))
  with pytest.raises(ValueError, match="2 axes"):
    general.has_cycle(np.full(3, 0.5))
  with pytest.raises(ValueError, match="agree on M"):
    general.mixture_bt(np.array([0.5, 0.5]), np.zeros((3, 4)))
  with pytest.raises(ValueError, match="sum to 1"):
    general.mixture_bt(np.array([0.5, 0.6]), np.zeros((2, 4)))
  with pytest.raises(ValueError, match="shapes must match"):
    general.majority_agreement(np.full((3, 3), 0.5), np.full((4, 4), 0.5))
  with pytest.raises(ValueError, match=">= 3"):
    general.random_cyclic(jax.random.key(0), 2)
  with pytest.raises(ValueError, match="strength"):
    general.rock_paper_scissors(1.5)


def test_validate_skips_value_checks_under_jit():
  bad = jnp.array([[0.5, 0.9], [0.9, 0.5]])
  out = jax.jit(general.validate)(bad)  # Documented: unchecked under jit.
  np.testing.assert_array_equal(out, bad)


# -------------------------------------------------------------- invariants


def test_jit_and_vmap_match():
  keys = jax.random.split(jax.random.key(3), 4)
  mats = jax.vmap(lambda k: general.random_cyclic(k, K))(keys)
  for fn in (general.has_cycle, general.condorcet_winner):
    pt.assert_jit_matches_eager(fn, mats[0])
    pt.assert_vmap_matches_loop(fn, mats)
  pt.assert_vmap_matches_loop(lambda k: general.random_tournament(k, K), keys)
  pt.assert_traced_once(general.has_cycle, [(m,) for m in mats])


def test_mixture_gradient_matches_finite_differences():
  u = jnp.array([[0.3, -1.0, 2.0], [1.0, 0.5, -0.5]])
  w = jnp.array([0.25, 0.75])
  # Weights held fixed: a perturbation off the simplex is (rightly) refused.
  check_grads(lambda u: general.mixture_bt(w, u)[0, 1] ** 2, (u,),
              order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


# -------------------------------------------------------------- properties


@hypothesis.given(p=pst.preference_matrices(K, "general"))
def test_has_cycle_matches_brute_force(p):
  assert bool(general.has_cycle(p)) == _brute_force_cycle(p)
  assert int(general.condorcet_winner(p)) == _brute_force_winner(p)


@hypothesis.given(u=pst.utilities(K))
def test_bt_matrices_are_transitive(u):
  p = general.from_utilities(u)
  general.validate(p)
  assert not bool(general.has_cycle(p))


@hypothesis.given(u=pst.utilities(K, scale=3.0))
def test_condorcet_winner_of_bt_is_the_best_item(u):
  hypothesis.assume(np.sort(u)[-1] - np.sort(u)[-2] > 1e-3)
  assert int(general.condorcet_winner(general.from_utilities(u))) == int(
      np.argmax(u))


@hypothesis.given(p=pst.preference_matrices(K, "cyclic"))
def test_cyclic_strategy_has_cycle_and_no_winner(p):
  assert bool(general.has_cycle(p))
  assert int(general.condorcet_winner(p)) == -1


@hypothesis.given(key=pst.keys())
def test_generators_make_preference_matrices(key):
  k1, k2 = jax.random.split(key)
  t = general.random_tournament(k1, K)
  general.validate(t)
  off = ~np.eye(K, dtype=bool)
  assert set(np.unique(np.asarray(t)[off])) <= {0.0, 1.0}
  assert bool(general.has_cycle(t)) == _brute_force_cycle(t)
  c = general.random_cyclic(k2, K)
  general.validate(c)
  assert bool(general.has_cycle(c)) and int(general.condorcet_winner(c)) == -1


@hypothesis.given(w=pst.vectors(3, 0.0, 1.0), u=pst.tabular_policies(3, K))
def test_mixture_is_a_preference_matrix(w, u):
  # Positive weights normalised to the simplex; log-probabilities as utilities.
  w = (w + 0.01) / (w + 0.01).sum()
  p = general.mixture_bt(w, u)
  general.validate(p, atol=1e-5)


def test_tournaments_without_cycles_are_total_orders():
  # Every tournament on 4 items: acyclic iff its score sequence is 0,1,2,3.
  pairs = list(itertools.combinations(range(4), 2))
  for bits in itertools.product([0.0, 1.0], repeat=len(pairs)):
    p = np.full((4, 4), 0.5, np.float32)
    for (i, j), b in zip(pairs, bits):
      p[i, j], p[j, i] = b, 1 - b
    wins = sorted((p > 0.5).sum(1))
    assert bool(general.has_cycle(p)) == (wins != [0, 1, 2, 3])
