"""Tests for prefsim.games.losses: online IPO (EGPO) and INPO.

The theorems are the bridges from losses to mirror steps: one SGD step on the
tabular online-IPO loss is the OMD step with eta = 4 lr / (K tau); the
tabular INPO loss's minimiser is the OMD step; sampled targets and sampled
pairs give the exact gradient in expectation. The OMD step is computed
independently in float64 NumPy; the sampled checks use fixed keys and
explicit (5 sigma) bounds.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from scipy import special

from prefsim import testing as pt
from prefsim.games import losses
from prefsim.testing import strategies as pst

import game_strategies as gs

K = 4
X64 = jax.config.jax_enable_x64
DTYPE = gs.DTYPE
# Machine epsilon; tolerances below scale it by each computation's condition.
EPS = float(np.finfo(DTYPE).eps)


def _policy(scale=2.0):
  return gs.policies(K, scale)


def _matrices():
  return gs.matrices(K)


def _omd64(prev, ref, P, opponent, eta, tau):
  """log of pi_t^(1-eta tau) mu^(eta tau) exp(eta P pi_s), normalised."""
  f = lambda x: np.asarray(x, np.float64)
  z = ((1 - eta * tau) * np.log(f(prev)) + eta * tau * np.log(f(ref))
       + eta * f(P) @ f(opponent))
  return z - special.logsumexp(z)


@jax.jit
def _sgd_step(theta, P, ref, opp, tau, lr):
  """log softmax of one SGD step on the tabular online-IPO loss."""
  grad = jax.grad(losses.online_ipo_tabular)(theta, P, ref, opp, tau=tau)
  return jax.nn.log_softmax(theta - lr * grad)


@jax.jit
def _newton_minimiser(P, ref, prev, eta, tau):
  """One Newton step (pseudo-inverse Hessian) from 0 on the tabular INPO loss,
  and the gradient at the result."""
  loss = lambda th: losses.inpo_tabular(th, P, ref, prev, eta=eta, tau=tau)
  theta0 = jnp.zeros(K, P.dtype)
  hess = jax.hessian(loss)(theta0)
  theta = theta0 - jnp.linalg.pinv(hess, hermitian=True) @ jax.grad(loss)(
      theta0)
  return theta, jax.grad(loss)(theta)


# ------------------------------------------------------------------ theorems


@given(P=_matrices(), ref=_policy(), prev=_policy(), opp=_policy(),
       tau=pst.betas(0.05, 5.0), lr_frac=pst.betas(0.01, 1.0),
       shift=pst.betas(0.1, 10.0))
def test_online_ipo_sgd_step_is_the_omd_step(P, ref, prev, opp, tau, lr_frac,
                                             shift):
  """Theorem (online IPO = OMD): on tabular logits theta = log pi_t + c, one
  SGD step with learning rate lr on the online-IPO loss averaged over all K^2
  ordered pairs, with targets (P pi_s)(y) - (P pi_s)(y'), gives exactly
  pi_t^(1-eta tau) mu^(eta tau) exp(eta P pi_s) with eta = 4 lr / (K tau).
  Checked with lr up to K/4 (eta tau <= 1) and an arbitrary shift c; the
  step with eta = 4 lr / ((K - 1) tau) is told apart."""
  lr = lr_frac * K / 4
  got = np.asarray(_sgd_step(jnp.log(prev) + shift, P, ref, opp, tau, lr),
                   np.float64)
  eta = 4 * lr / (K * tau)
  want = _omd64(prev, ref, P, opp, eta, tau)
  # Round-off: logits of size shift + |log pi_t| moved by a step of size ~eta.
  tol = 10 * EPS * (1 + eta) * (1 + shift + np.abs(np.log(prev)).max())
  np.testing.assert_allclose(got, want, rtol=0, atol=tol)
  wrong = _omd64(prev, ref, P, opp, 4 * lr / ((K - 1) * tau), tau)
  if np.abs(wrong - want).max() > 100 * tol:
    assert np.abs(got - wrong).max() > 10 * tol


@given(P=_matrices(), ref=_policy(), prev=_policy(),
       eta=pst.betas(0.1, 5.0), tau_frac=pst.betas(0.01, 1.0))
def test_inpo_minimiser_is_the_omd_step(P, ref, prev, eta, tau_frac):
  """Theorem (INPO): the expected INPO loss over y, y' ~ pi_t (labels from P)
  is minimised over tabular logits by the OMD step
  pi_t^(1-eta tau) mu^(eta tau) exp(eta P pi_t). The loss is quadratic in the
  logits, so one Newton step with the autodiff Hessian (pseudo-inverse: the
  constant direction is flat) from theta = 0 reaches its minimiser; the
  gradient there vanishes."""
  tau = tau_frac / eta
  losses.inpo(0.0, 0.0, 0.0, 0.0, eta=eta, tau=tau)  # eager argument checks
  theta, grad = _newton_minimiser(P, ref, prev, eta, tau)
  grad_norm = float(jnp.abs(grad).max())
  assert grad_norm <= 100 * EPS * (1 + eta) ** 2
  got = np.asarray(jax.nn.log_softmax(theta), np.float64)
  want = _omd64(prev, ref, P, prev, eta, tau)
  # Round-off of a linear solve whose Hessian weights pairs by pi_t(y):
  # condition ~ 1 / min pi_t, right-hand side ~ 1 + eta.
  np.testing.assert_allclose(got, want, rtol=0,
                             atol=10 * EPS * (1 + eta) / prev.min())


def test_online_ipo_sampled_targets_give_the_exact_gradient():
  """With the target (P pi_s)(y) - (P pi_s)(y') replaced by the unbiased
  estimate o(y > y'') - o(y' > y''), y'' ~ pi_s and o ~ Bernoulli(P), the mean
  gradient over M = 1e5 draws per ordered pair equals the exact gradient
  (fixed key). Bound: each component's error is a sum of 2K independent
  means with variance <= 1/M, weighted 2/(K^2 tau): 5 sigma =
  5 (2/(K^2 tau)) sqrt(2K/M)."""
  m, tau = 100_000, 0.5
  rng = np.random.default_rng(0)
  logits = rng.normal(0.0, 3.0, (K, K))
  P = jnp.asarray(special.expit(logits - logits.T), DTYPE)
  ref = jnp.asarray(special.softmax(rng.normal(size=K)), DTYPE)
  opp = jnp.asarray(special.softmax(rng.normal(size=K)), DTYPE)
  theta = jnp.asarray(rng.normal(size=K), DTYPE)
  y = jnp.repeat(jnp.arange(K), K)           # all K^2 ordered pairs
  y2 = jnp.tile(jnp.arange(K), K)

  @jax.jit
  def sampled_grad(key, th):
    k1, k2, k3 = jax.random.split(key, 3)
    third = jax.random.choice(k1, K, (m, K * K), p=opp)
    o1 = jax.random.bernoulli(k2, P[y, third]).astype(th.dtype)
    o2 = jax.random.bernoulli(k3, P[y2, third]).astype(th.dtype)

    def sampled(th):
      h = jax.nn.log_softmax(th) - jnp.log(ref)
      first = jnp.broadcast_to(h[y], (m, K * K))
      second = jnp.broadcast_to(h[y2], (m, K * K))
      return jnp.mean(losses.online_ipo(first, second, o1 - o2, tau=tau))

    return jax.grad(sampled)(th)

  got = sampled_grad(jax.random.key(0), theta)
  want = jax.grad(losses.online_ipo_tabular)(theta, P, ref, opp, tau=tau)
  bound = 5 * 2 / (K**2 * tau) * np.sqrt(2 * K / m)
  np.testing.assert_allclose(got, want, rtol=0, atol=bound)
  # The check has power: the gradient is far larger than the bound.
  assert np.abs(np.asarray(want)).max() > 10 * bound


def test_inpo_sampled_pairs_give_the_exact_gradient():
  """Pairs y, y' ~ pi_t with the winner drawn from P: the mean gradient of
  the per-example INPO loss over N = 1e6 draws equals the gradient of
  inpo_tabular (its expectation), fixed key. Bound: each per-example
  gradient component is 2 (h_t - eta/2) times 0 or +-1, so at most
  B = 2 max |h_t - eta/2|; 5 sigma = 5 B / sqrt(N)."""
  n, eta, tau = 1_000_000, 0.8, 0.5
  rng = np.random.default_rng(1)
  logits = rng.normal(0.0, 3.0, (K, K))
  P = jnp.asarray(special.expit(logits - logits.T), DTYPE)
  ref = jnp.asarray(special.softmax(rng.normal(size=K)), DTYPE)
  prev = jnp.asarray(special.softmax(rng.normal(size=K)), DTYPE)
  theta = jnp.asarray(rng.normal(size=K), DTYPE)
  prev_lr = jnp.log(prev) - jnp.log(ref)

  @jax.jit
  def sampled_grad(key, th):
    k1, k2, k3 = jax.random.split(key, 3)
    y = jax.random.choice(k1, K, (n,), p=prev)
    y2 = jax.random.choice(k2, K, (n,), p=prev)
    first_wins = jax.random.bernoulli(k3, P[y, y2])
    w, l = jnp.where(first_wins, y, y2), jnp.where(first_wins, y2, y)

    def sampled(th):
      h = jax.nn.log_softmax(th) - jnp.log(ref)
      return jnp.mean(losses.inpo(h[w], h[l], prev_lr[w], prev_lr[l],
                                  eta=eta, tau=tau))

    return jax.grad(sampled)(th)

  got = sampled_grad(jax.random.key(1), theta)
  want = jax.grad(losses.inpo_tabular)(theta, P, ref, prev, eta=eta, tau=tau)
  h = jax.nn.log_softmax(theta) - jnp.log(ref)
  h_t = (h[:, None] - h[None, :]) - (1 - eta * tau) * (
      prev_lr[:, None] - prev_lr[None, :])
  bound = 5 * 2 * float(jnp.abs(h_t - eta / 2).max()) / np.sqrt(n)
  np.testing.assert_allclose(got, want, rtol=0, atol=bound)
  assert np.abs(np.asarray(want)).max() > 10 * bound


# ---------------------------------------------------------------- reference


def test_losses_match_their_formulas():
  """Values by hand: online IPO (1 - 0.5 - 0.2/0.5)^2 = 0.01; INPO with
  h_t = (1 - 0.2) - (1 - 0.5*0.4)(0.3 - 0.1) = 0.64, (0.64 - 0.25)^2."""
  np.testing.assert_allclose(losses.online_ipo(1.0, 0.5, 0.2, tau=0.5), 0.01,
                             rtol=1e-6)
  got = losses.inpo(1.0, 0.2, 0.3, 0.1, eta=0.5, tau=0.4)
  np.testing.assert_allclose(got, (0.64 - 0.25) ** 2, rtol=1e-6)
  # Antisymmetry: swapping both pairs flips h_t (INPO) and the residual sign.
  np.testing.assert_allclose(losses.inpo(0.2, 1.0, 0.1, 0.3, eta=0.5, tau=0.4),
                             (-0.64 - 0.25) ** 2, rtol=1e-6)
  np.testing.assert_allclose(losses.online_ipo(0.5, 1.0, -0.2, tau=0.5), 0.01,
                             rtol=1e-6)


def test_losses_finite_and_broadcast():
  """Per-example [3, 4] in, [3, 4] out; values and gradients finite for
  log-ratio margins of 1e4 in float32; jit equals eager; vmap equals a loop."""
  rng = np.random.default_rng(2)
  a, b, c, d = (jnp.asarray(rng.normal(size=(3, 4)) * 1e4, jnp.float32)
                for _ in range(4))
  t = jnp.asarray(rng.uniform(-1, 1, (3, 4)), jnp.float32)
  ipo = lambda a, b, t: losses.online_ipo(a, b, t, tau=0.1)
  inpo = lambda a, b, c, d: losses.inpo(a, b, c, d, eta=0.5, tau=0.1)
  assert ipo(a, b, t).shape == (3, 4) and inpo(a, b, c, d).shape == (3, 4)
  for fn, args in ((ipo, (a, b, t)), (inpo, (a, b, c, d))):
    pt.assert_finite(fn(*args))
    pt.assert_finite(jax.grad(lambda *x: fn(*x).sum(), argnums=(0, 1))(*args))
    pt.assert_jit_matches_eager(fn, *args, rtol=1e-6)
    pt.assert_vmap_matches_loop(fn, *args, rtol=1e-6)


@pytest.mark.parametrize("call, match", [
    (lambda: losses.online_ipo(np.zeros(3), np.zeros(2), np.zeros(3), tau=1.0),
     "other_logratios"),
    (lambda: losses.online_ipo(np.zeros(3), np.zeros(3), np.zeros(2), tau=1.0),
     "win_rate_diff"),
    (lambda: losses.online_ipo(0.0, 0.0, 0.0, tau=0.0), "tau"),
    (lambda: losses.inpo(np.zeros(3), np.zeros(3), np.zeros(2), np.zeros(2),
                         eta=0.1, tau=0.1), "chosen_prev_logratios"),
    (lambda: losses.inpo(0.0, 0.0, 0.0, 0.0, eta=0.0, tau=0.1), "eta"),
    (lambda: losses.inpo(0.0, 0.0, 0.0, 0.0, eta=0.1, tau=-0.1), "tau"),
    (lambda: losses.inpo(0.0, 0.0, 0.0, 0.0, eta=2.0, tau=1.0), "eta \\* tau"),
    (lambda: losses.online_ipo_tabular(np.zeros(3), np.full((3, 3), 0.5),
                                       np.full(3, 0.5), np.full(3, 1 / 3),
                                       tau=1.0), "ref"),
    (lambda: losses.inpo_tabular(np.zeros(3), np.full((3, 3), 0.5),
                                 np.full(3, 1 / 3), np.full(2, 0.5),
                                 eta=0.1, tau=1.0), "prev"),
])
def test_losses_reject_bad_input(call, match):
  """Mismatched shapes, tau <= 0 (online IPO) or < 0 (INPO), eta <= 0,
  eta tau > 1 and bad tabular arguments raise ValueError naming them."""
  with pytest.raises(ValueError, match=match):
    call()
