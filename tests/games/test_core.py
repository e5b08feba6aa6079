"""Tests for prefsim.games.core: payoff, exploitability, best response, gap.

Reference values are by hand (rock-paper-scissors) or computed independently
in float64 NumPy/SciPy from the definitions; properties are drawn with the
registered hypothesis profile at fixed shapes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special

from prefsim import games
from prefsim import testing as pt
from prefsim.games import core
from prefsim.models import general
from prefsim.testing import strategies as pst

import game_strategies as gs

K = 5
X64 = jax.config.jax_enable_x64
# Round-off of the float32 (float64) computation relative to values of order 1.
EPS = 1e-12 if X64 else 1e-6


DTYPE = gs.DTYPE


def _policy():
  return gs.policies(K)


def _matrices(kind="general"):
  return gs.matrices(K, kind)


def _kl(p, q):
  p, q = np.asarray(p, np.float64), np.asarray(q, np.float64)
  return float(np.sum(special.rel_entr(p, q)))


def _J(P, p1, p2, ref, tau):
  """The regularised payoff J(p1, p2), from its definition, float64."""
  P = np.asarray(P, np.float64)
  return float(p1 @ P @ p2) - tau * _kl(p1, ref) + tau * _kl(p2, ref)


def _softmax(x):
  return special.softmax(np.asarray(x, np.float64))


# ---------------------------------------------------------------- reference


@given(P=_matrices(), pi=_policy())
def test_exploitability_nonnegative_and_zero_at_uniform_rps(P, pi):
  """expl(pi) = max_j (P pi)_j - 1/2 >= 0 (since pi^T P pi = 1/2); on
  rock-paper-scissors it is 0 at uniform and 0.3 at pure rock (by hand)."""
  assert float(games.exploitability(P, pi)) >= -EPS
  rps = general.rock_paper_scissors(0.8)
  uniform = jnp.full(3, 1 / 3)
  assert abs(float(games.exploitability(rps, uniform))) <= EPS
  # Against pure rock, column 0 of P is (0.5, 0.2, 0.8): paper wins 0.8.
  rock = jnp.array([1.0, 0.0, 0.0])
  np.testing.assert_allclose(float(games.exploitability(rps, rock)), 0.3,
                             atol=EPS)


@given(P=_matrices(), pi=_policy(), ref=_policy(),
       tau=pst.betas(0.01, 10.0), seed=pst.seeds())
def test_best_response_maximises_regularised_payoff(P, pi, ref, tau, seed):
  """BR(pi) = argmax_pi' pi'^T P pi - tau KL(pi'||mu): its objective (float64)
  is at least that of 256 drawn alternatives, mu, pi and every vertex."""
  br = np.asarray(games.best_response(P, pi, ref, tau), np.float64)
  np.testing.assert_allclose(br.sum(), 1.0, atol=EPS)

  def objective(q):  # q [..., K], float64
    kl = np.sum(special.rel_entr(q, np.asarray(ref, np.float64)), axis=-1)
    return q @ np.asarray(P, np.float64) @ pi - tau * kl

  alts = np.random.default_rng(seed).dirichlet(np.full(K, 0.5), 256)
  alts = np.concatenate([alts, [ref, pi], np.eye(K)])
  assert np.all(objective(br) >= objective(alts) - EPS)
  # tau = 0: the pure best response, one-hot on argmax_j (P pi)_j.
  pure = np.asarray(games.best_response(P, pi, ref, 0.0))
  np.testing.assert_array_equal(pure, np.eye(K)[np.argmax(P @ pi)])


@given(P=_matrices(), pi=_policy(), ref=_policy(),
       tau=st.one_of(st.just(0.0), pst.betas(1e-3, 10.0)))
def test_duality_gap_nonnegative(P, pi, ref, tau):
  """gap(pi) = max_pi' J(pi', pi) - min_pi' J(pi, pi') >= 0 for every pi."""
  assert float(games.duality_gap(P, pi, ref, tau)) >= 0.0


@given(P=_matrices(), pi=_policy(), ref=_policy(),
       tau=pst.betas(0.01, 10.0))
def test_duality_gap_matches_its_definition(P, pi, ref, tau):
  """gap(pi) = J(BR(pi), pi) - J(pi, BR'(pi)), both players' optimal replies
  computed in float64 (player 1 maximises pi'^T P pi - tau KL(pi'||mu),
  player 2 minimises pi^T P pi' + tau KL(pi'||mu)); checked to float32
  (float64) round-off relative to the J values. At tau = 0 it is
  max_j (P pi)_j - min_j (P^T pi)_j."""
  P64 = np.asarray(P, np.float64)
  reply1 = _softmax(np.log(ref) + P64 @ pi / tau)
  reply2 = _softmax(np.log(ref) - P64.T @ pi / tau)
  expected = _J(P, reply1, pi, ref, tau) - _J(P, pi, reply2, ref, tau)
  scale = 1.0 + tau * (_kl(pi, ref) + _kl(reply1, ref) + _kl(reply2, ref))
  got = float(games.duality_gap(P, pi, ref, tau))
  np.testing.assert_allclose(got, expected, atol=10 * EPS * scale)
  hard = float(games.duality_gap(P, pi, ref, 0.0))
  np.testing.assert_allclose(hard, np.max(P64 @ pi) - np.min(P64.T @ pi),
                             atol=EPS)


@given(P=_matrices(), pi=_policy(), ref=_policy())
def test_gap_tends_to_twice_exploitability_as_tau_vanishes(P, pi, ref):
  """For full-support mu, gap_tau(pi) - 2 expl(pi) lies in
  [2 tau log(min mu), 2 tau KL(pi||mu)] (from tau log sum_k mu_k e^{v_k/tau}
  in [max v + tau log mu_argmax, max v]), so it tends to 2 expl(pi)."""
  expl = float(games.exploitability(P, pi))
  for tau in (1e-1, 1e-2, 1e-3):
    diff = float(games.duality_gap(P, pi, ref, tau)) - 2 * expl
    assert 2 * tau * np.log(ref.min()) - 10 * EPS <= diff
    assert diff <= 2 * tau * _kl(pi, ref) + 10 * EPS


@given(P=_matrices(), pi=_policy(), pi2=_policy())
def test_payoff_is_half_against_itself(P, pi, pi2):
  """pi^T P pi = 1/2 and P(pi > pi') + P(pi' > pi) = 1 (P + P^T = 1)."""
  np.testing.assert_allclose(float(games.payoff(P, pi, pi)), 0.5, atol=EPS)
  both = games.payoff(P, pi, pi2) + games.payoff(P, pi2, pi)
  np.testing.assert_allclose(float(both), 1.0, atol=EPS)


def test_gap_selects_duality_gap_or_exploitability():
  """gap(game, pi) is duality_gap where tau > 0 and exploitability at 0."""
  P = jnp.stack([general.rock_paper_scissors(0.8)] * 2)
  ref = jnp.array([[0.2, 0.3, 0.5]] * 2)
  pi = jnp.array([[0.6, 0.3, 0.1]] * 2)
  game = games.make_game(P, ref, jnp.array([0.0, 0.5]))
  got = np.asarray(games.gap(game, pi))
  np.testing.assert_allclose(got[0], games.exploitability(P[0], pi[0]),
                             rtol=1e-6)
  np.testing.assert_allclose(got[1], games.duality_gap(P[1], pi[1], ref[1],
                                                       0.5), rtol=1e-6)


# ----------------------------------------------------------------- bad input


@pytest.mark.parametrize("make, match", [
    (lambda: games.make_game([[0.5, 0.9], [0.3, 0.5]]), "preference matrix"),
    (lambda: games.make_game([[0.5, 1.2], [-0.2, 0.5]]), "preference matrix"),
    (lambda: games.make_game(np.ones(3)), "P must be"),
    (lambda: games.make_game(np.full((2, 3), 0.5)), "P must be"),
    (lambda: games.make_game(np.full((2, 2), 0.5), [0.7, 0.7]), "ref"),
    (lambda: games.make_game(np.full((2, 2), 0.5), [1.5, -0.5]), "ref"),
    (lambda: games.make_game(np.full((2, 2), 0.5), [1 / 3] * 3), "ref"),
    (lambda: games.make_game(np.full((2, 2), 0.5), None, -0.1), "tau"),
    (lambda: games.duality_gap(np.full((2, 2), 0.5), [0.5, 0.5, 0.0],
                               [0.5, 0.5], 1.0), "pi"),
    (lambda: games.exploitability(np.full((2, 2), 0.5), [0.9, 0.9]), "pi"),
    (lambda: games.best_response(np.full((2, 2), 0.5), [0.5, 0.5],
                                 [0.5, 0.5], -1.0), "tau"),
])
def test_make_game_and_check_game_reject_bad_input(make, match):
  """A non-preference matrix, a ref or pi that is not a distribution over K,
  tau < 0 and mismatched shapes each raise ValueError naming the argument."""
  with pytest.raises(ValueError, match=match):
    make()


# ----------------------------------------------------------- transformations


def _random_games(n, seed=0):
  """``n`` general preference matrices, sigmoid of skew logits (NumPy)."""
  a = np.random.default_rng(seed).normal(0.0, 2.0, (n, K, K))
  a = a - np.swapaxes(a, -1, -2)
  return (1 / (1 + np.exp(-a))).astype(np.float32)


def test_jit_and_vmap_match():
  """jit equals eager, vmap over games equals a loop, batched inputs equal a
  loop without vmap."""
  P = _random_games(4)
  pi = jax.nn.softmax(jax.random.normal(jax.random.key(1), (4, K)))
  ref = jax.nn.softmax(jax.random.normal(jax.random.key(2), (4, K)))
  tau = jnp.array([0.0, 0.01, 0.3, 2.0])
  tol = dict(rtol=1e-5, atol=1e-7)
  game = games.make_game(P, ref, tau)
  eager = games.gap(game, pi)
  np.testing.assert_allclose(jax.jit(games.gap)(game, pi), eager, **tol)
  pt.assert_vmap_matches_loop(games.best_response, P, pi, ref, tau, **tol)
  looped = np.stack([games.duality_gap(P[i], pi[i], ref[i], tau[i])
                     for i in range(4)])
  np.testing.assert_allclose(games.duality_gap(P, pi, ref, tau), looped, **tol)
  np.testing.assert_allclose(jax.vmap(games.gap)(game, pi), eager, **tol)
  assert isinstance(game, core.Game)
