"""Tests for prefsim.games.kl_nash, the KL-regularised Nash equilibrium.

The equilibrium is checked against its definition (the fixed point and a
zero duality gap, evaluated in float64 NumPy), against an independent solver
(a long mirror-descent run written here in NumPy), and against its limits in
tau. Shapes are fixed (K = 5, or a batch of 4) so each compiles once.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from scipy import special

from prefsim import games
from prefsim.models import general
from prefsim.testing import strategies as pst

import game_strategies as gs

K = 5
X64 = jax.config.jax_enable_x64
# Duality gap reached, checked in float64 from the returned policy: 1e-10 is
# the library's float64 target; float32 measured about 1e-12 at most.
GAP_TOL = 1e-10
# Machine epsilon: the round-off of a probability of order 1.
EPS = float(np.finfo(np.float64 if X64 else np.float32).eps)


DTYPE = gs.DTYPE


def _policy():
  return gs.policies(K)


def _matrices(kind="general"):
  return gs.matrices(K, kind)


def _taus(low, high):
  return pst.betas(low, high)


def _br64(P, pi, ref, tau):
  """The best response softmax(log mu + P pi / tau), float64 NumPy, batched
  over leading axes."""
  P, pi = np.asarray(P, np.float64), np.asarray(pi, np.float64)
  v = np.einsum("...jk,...k->...j", P, pi)
  return special.softmax(np.log(np.asarray(ref, np.float64)) + v / tau,
                         axis=-1)


def _gap64(P, pi, ref, tau):
  """Duality gap 2 tau KL(pi || BR(pi)) in float64 NumPy, of ``pi``
  renormalised in float64 (a float32 policy sums to 1 only to ~1e-7, which
  would shift this KL by as much)."""
  pi = np.asarray(pi, np.float64)
  pi = pi / pi.sum()
  return 2 * tau * float(np.sum(special.rel_entr(pi, _br64(P, pi, ref, tau))))


def _omd64(P, ref, tau, eta, steps):
  """OMD pi <- pi^(1-eta tau) mu^(eta tau) exp(eta P pi), from mu, float64."""
  P = np.asarray(P, np.float64)
  log_ref = np.log(np.asarray(ref, np.float64))
  z = log_ref.copy()
  for _ in range(steps):
    z = (1 - eta * tau) * z + eta * tau * log_ref + eta * (P @ np.exp(z))
    z = z - special.logsumexp(z)
  return np.exp(z)


@given(P=_matrices(), ref=_policy(), tau=_taus(0.01, 10.0))
def test_kl_nash_is_the_fixed_point_with_zero_gap(P, ref, tau):
  """pi*_tau = softmax(log mu + P pi*_tau / tau) and gap(pi*_tau) = 0
  (Munos et al. 2023; THEORY.md §6): the fixed-point residual (float64, from
  the returned policy) is at the round-off of the policy amplified by the
  best response's Lipschitz constant 1 + 1/tau, and the gap is <= 1e-10 in
  float32 and float64."""
  pi = games.kl_nash(P, ref, tau)
  assert pi.dtype == jnp.zeros(()).dtype
  pi = np.asarray(pi, np.float64)
  np.testing.assert_allclose(pi.sum(), 1.0, atol=EPS)
  np.testing.assert_allclose(_br64(P, pi, ref, tau), pi, rtol=0,
                             atol=10 * EPS * (1 + 1 / tau))
  assert _gap64(P, pi, ref, tau) <= GAP_TOL
  assert float(games.duality_gap(P, pi.astype(P.dtype), ref, tau)) <= GAP_TOL


@given(P=_matrices(), ref=_policy(), tau=_taus(0.2, 1.0))
def test_kl_nash_is_the_limit_of_omd(P, ref, tau):
  """The last iterate of mirror descent (OMD, eta = 1, 400 steps, float64
  NumPy here) converges to the regularised Nash equilibrium: after checking
  that the run has converged (its own gap <= 1e-12), it equals kl_nash."""
  omd = _omd64(P, ref, tau, eta=1.0, steps=400)
  assert _gap64(P, omd, ref, tau) <= 1e-12
  np.testing.assert_allclose(games.kl_nash(P, ref, tau), omd, rtol=0,
                             atol=10 * EPS * (1 + 1 / tau))


@given(P=_matrices(), ref=_policy())
def test_kl_nash_tends_to_ref_as_tau_grows(P, ref):
  """|log pi*_tau - log mu| <= 1/tau (the payoffs P pi - 1/2 lie in
  [-1/2, 1/2], and so does the log-normaliser's shift): pi*_tau -> mu."""
  for tau in (10.0, 1e3):
    pi = np.asarray(games.kl_nash(P, ref, tau), np.float64)
    dev = np.abs(np.log(pi) - np.log(np.asarray(ref, np.float64)))
    assert dev.max() <= 1 / tau + 10 * EPS / ref.min()


@given(P=_matrices("cyclic"), ref=_policy())
def test_kl_nash_tends_to_a_minimax_winner_as_tau_shrinks(P, ref):
  """expl(pi*_tau) <= tau log(1 / min mu): pi*_tau best-responds to itself,
  so (P pi*)_j - 1/2 - tau KL(e_j||mu) <= -tau KL(pi*||mu) <= 0 for every j.
  The exploitability therefore tends to 0 (a minimax winner) as tau -> 0;
  checked at tau = 0.1, 0.01, 0.001."""
  bound = np.log(1 / np.asarray(ref, np.float64).min())
  for tau in (1e-1, 1e-2, 1e-3):
    pi = games.kl_nash(P, ref, tau)
    expl = float(games.exploitability(P, pi))
    assert expl <= tau * bound + 10 * EPS


@pytest.mark.parametrize("tau", [1e-3, 1e-4])
def test_kl_nash_small_tau(tau):
  """At small tau, where the best-response iteration pi <- BR(pi) is no
  contraction (P/tau has norm ~1/tau), kl_nash still reaches gap <= 1e-10
  on random 0/1 tournaments and on general games (fixed keys), checked in
  float64; the best-response iteration does not."""
  keys = jax.random.split(jax.random.key(3), 4)
  tournaments = [general.random_tournament(k, K) for k in keys]
  rng = np.random.default_rng(0)
  logits = rng.normal(0.0, 3.0, (4, K, K))
  logits = logits - np.swapaxes(logits, -1, -2)
  P = np.concatenate([np.stack(tournaments), special.expit(logits)])
  P = P.astype(jnp.zeros(()).dtype)
  ref = special.softmax(rng.normal(size=(8, K)), axis=-1).astype(P.dtype)
  pi = games.kl_nash(P, ref, tau)
  gaps = [_gap64(P[i], pi[i], ref[i], tau) for i in range(8)]
  assert max(gaps) <= GAP_TOL, gaps
  # Fixed-point iteration from mu, 200 steps: far from converged.
  it = ref.astype(np.float64)
  for _ in range(200):
    it = _br64(P, it, ref, tau)
  assert max(_gap64(P[i], it[i], ref[i], tau) for i in range(8)) > 1e-3


def test_kl_nash_batched_equals_loop():
  """A batch of games (with a [B] tau and a shared ref broadcast) gives the
  per-game answers; vmap (which traces it under jit) gives the same."""
  rng = np.random.default_rng(1)
  logits = rng.normal(0.0, 2.0, (4, K, K))
  P = special.expit(logits - np.swapaxes(logits, -1, -2))
  dtype = jnp.zeros(()).dtype
  P = jnp.asarray(P, dtype)
  ref = jnp.asarray(special.softmax(rng.normal(size=K)), dtype)
  tau = jnp.asarray([0.003, 0.05, 0.5, 5.0], dtype)
  batched = games.kl_nash(P, ref, tau)
  assert batched.shape == (4, K)
  looped = jnp.stack([games.kl_nash(P[i], ref, tau[i]) for i in range(4)])
  tol = dict(rtol=0, atol=10 * EPS)
  np.testing.assert_allclose(batched, looped, **tol)
  vmapped = jax.vmap(games.kl_nash, in_axes=(0, None, 0))(P, ref, tau)
  np.testing.assert_allclose(vmapped, batched, **tol)
  # A scalar tau broadcasts over the batch.
  np.testing.assert_allclose(
      games.kl_nash(P, ref, 0.5)[2], batched[2], **tol)


@pytest.mark.parametrize("tau", [1e-3, 0.1, 10.0])
def test_kl_nash_uniform_on_rock_paper_scissors(tau):
  """With uniform mu, rock-paper-scissors' regularised Nash is uniform (by
  symmetry: uniform is a fixed point, and the equilibrium is unique)."""
  P = general.rock_paper_scissors(0.9)
  pi = games.kl_nash(P, jnp.full(3, 1 / 3), tau)
  np.testing.assert_allclose(pi, np.full(3, 1 / 3), rtol=0, atol=10 * EPS)


@pytest.mark.parametrize("args, match", [
    ((np.full((2, 2), 0.5), [0.5, 0.5], 0.0), "tau"),
    ((np.full((2, 2), 0.5), [0.5, 0.5], -1.0), "tau"),
    ((np.array([[0.5, 0.9], [0.3, 0.5]]), [0.5, 0.5], 1.0),
     "preference matrix"),
    ((np.full((2, 2), 0.5), [0.2, 0.2], 1.0), "ref"),
    ((np.full((2, 2), 0.5), [1 / 3] * 3, 1.0), "ref"),
    ((np.full((2, 3), 0.5), [0.5, 0.5], 1.0), "P must be"),
])
def test_kl_nash_rejects_bad_input(args, match):
  """tau <= 0, a non-preference matrix, a ref that is not a distribution
  over K, and a non-square P raise ValueError naming the argument."""
  with pytest.raises(ValueError, match=match):
    games.kl_nash(*args)
