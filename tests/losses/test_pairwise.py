"""Tests of the pairwise and reference-free losses of prefsim.losses."""

from __future__ import annotations

import functools

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
import scipy.special
from hypothesis import strategies as st
from jax.test_util import check_grads

from prefsim import losses
from prefsim import policies
from prefsim import testing as pt
from prefsim.testing import strategies as pst

_FLOAT = jax.dtypes.canonicalize_dtype(jnp.float64)


# --- an independent float64 implementation of TRL's formulas ---------------
# Written from the loss_type branches of TRL's DPOTrainer.dpo_loss (and
# CPOTrainer's "simpo", ORPOTrainer's odds_ratio_loss), in TRL's own inputs:
# policy and reference log-probs of the chosen and rejected responses.


def _logsig(x):
  return -np.logaddexp(0.0, -x)


def _sig(x):
  return scipy.special.expit(x)


def _trl(loss_type, pc, pr, rc, rr, *, beta, label_smoothing=0.0,
         discopop_tau=0.05, delta=0.0):
  """TRL's per-example loss for policy/ref chosen/rejected log-probs."""
  ls = label_smoothing
  logits = (pc - pr) - (rc - rr)
  cr, rj = pc - rc, pr - rr
  if loss_type == "sigmoid":
    return -_logsig(beta * logits) * (1 - ls) - _logsig(-beta * logits) * ls
  if loss_type == "robust":
    return ((-_logsig(beta * logits) * (1 - ls)
             + _logsig(-beta * logits) * ls) / (1 - 2 * ls))
  if loss_type == "exo_pair":
    ls = 1e-3 if ls == 0 else ls
    return (_sig(beta * logits) * (_logsig(beta * logits) - np.log(1 - ls))
            + _sig(-beta * logits) * (_logsig(-beta * logits) - np.log(ls)))
  if loss_type == "hinge":
    return np.maximum(0.0, 1 - beta * logits)
  if loss_type == "ipo":
    return (logits - 1 / (2 * beta)) ** 2
  if loss_type == "bco_pair":
    return (-_logsig(beta * cr - delta) - _logsig(-(beta * rj - delta)))
  if loss_type == "sppo_hard":
    return (cr - 0.5 / beta) ** 2 + (rj + 0.5 / beta) ** 2
  if loss_type == "nca_pair":
    return (-_logsig(beta * cr) - 0.5 * _logsig(-beta * cr)
            - 0.5 * _logsig(-beta * rj))
  if loss_type in ("aot_pair", "aot_unpaired"):
    d = np.sort(cr, axis=0) - np.sort(rj, axis=0)
    return -_logsig(beta * d) * (1 - ls) - _logsig(-beta * d) * ls
  if loss_type == "aot":
    d = np.sort(pc - pr, axis=0) - np.sort(rc - rr, axis=0)
    return -_logsig(beta * d) * (1 - ls) - _logsig(-beta * d) * ls
  if loss_type == "apo_zero":
    return (1 - _sig(beta * cr)) + _sig(beta * rj)
  if loss_type == "apo_down":
    return _sig(beta * cr) + (1 - _sig(beta * logits))
  if loss_type == "discopop":
    z = beta * logits
    m = _sig(z / discopop_tau)
    return -_logsig(z) * (1 - m) + np.exp(-z) * m
  raise ValueError(loss_type)


def _trl_simpo(pc, pr, *, beta, gamma, label_smoothing):
  logits = (pc - pr) - gamma / beta
  return (-_logsig(beta * logits) * (1 - label_smoothing)
          - _logsig(-beta * logits) * label_smoothing)


def _trl_orpo(pc, pr, *, beta):
  log_odds = (pc - pr) - (np.log1p(-np.exp(pc)) - np.log1p(-np.exp(pr)))
  return -pc - beta * _logsig(log_odds)


def _dyadic(rng, shape, low, high, step=1 / 64):
  """Random multiples of ``step`` in [low, high]: exact in float32, so that
  differences of inputs carry no rounding and the comparison measures the
  loss's own arithmetic."""
  return (rng.integers(int(low / step), int(high / step) + 1, size=shape)
          * step).astype(np.float32)


_TRL_CONFIGS = [
    ("sigmoid", {}), ("sigmoid", {"label_smoothing": 0.125}),
    ("robust", {"label_smoothing": 0.25}), ("hinge", {}), ("ipo", {}),
    ("exo_pair", {}), ("exo_pair", {"label_smoothing": 0.125}),
    ("nca_pair", {}), ("bco_pair", {}), ("sppo_hard", {}),
    ("aot", {"label_smoothing": 0.125}), ("aot_pair", {"label_smoothing": 0.1}),
    ("aot_unpaired", {}), ("apo_zero", {}), ("apo_down", {}),
    ("discopop", {}), ("discopop", {"discopop_tau": 0.5}),
]


@pytest.mark.parametrize("beta", [0.125, 0.5, 2.0])
@pytest.mark.parametrize("loss_type,options", _TRL_CONFIGS,
                         ids=[f"{n}-{o}" for n, o in _TRL_CONFIGS])
def test_matches_trl_formulas(loss_type, options, beta):
  """For every TRL loss_type, prefsim (through from_trl, so TRL's options
  must reach the function) equals TRL's formula, max relative error 1e-5."""
  rng = np.random.default_rng(0)
  hw, hl, v = (_dyadic(rng, 64, -8, 8) for _ in range(3))
  # TRL's inputs with the same log-ratios: ref (v, 0), policy (hw + v, hl).
  pc, pr, rc, rr = (hw.astype(np.float64) + v, hl.astype(np.float64),
                    v.astype(np.float64), np.zeros(64))
  expected = _trl(loss_type, pc, pr, rc, rr, beta=beta, **options)
  fn = losses.from_trl(loss_type, **options)
  extra = {"ref_margins": v} if loss_type == "aot" else {}
  actual = fn(hw, hl, beta=beta, **extra)
  np.testing.assert_allclose(np.asarray(actual, np.float64), expected,
                             rtol=1e-5, atol=0)


def test_bco_pair_with_a_reward_shift_matches_trl():
  """Older TRL's bco_pair subtracts a running mean of the rewards, delta."""
  rng = np.random.default_rng(1)
  hw, hl = _dyadic(rng, 64, -8, 8), _dyadic(rng, 64, -8, 8)
  expected = _trl("bco_pair", hw.astype(np.float64), hl.astype(np.float64),
                  0.0, 0.0, beta=0.5, delta=0.75)
  np.testing.assert_allclose(losses.bco_pair(hw, hl, beta=0.5, delta=0.75),
                             expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("beta,gamma,ls", [(2.0, 0.5, 0.0), (0.5, 1.25, 0.125)])
def test_simpo_matches_trl_cpo(beta, gamma, ls):
  rng = np.random.default_rng(2)
  lw, ll = _dyadic(rng, 64, -4, -1 / 64), _dyadic(rng, 64, -4, -1 / 64)
  expected = _trl_simpo(lw.astype(np.float64), ll.astype(np.float64),
                        beta=beta, gamma=gamma, label_smoothing=ls)
  actual = losses.from_trl("simpo", label_smoothing=ls, simpo_gamma=gamma)(
      lw, ll, beta=beta)
  np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=0)


@pytest.mark.parametrize("beta", [0.125, 1.0])
def test_orpo_matches_trl(beta):
  rng = np.random.default_rng(3)
  lw, ll = _dyadic(rng, 64, -4, -1 / 64), _dyadic(rng, 64, -4, -1 / 64)
  expected = _trl_orpo(lw.astype(np.float64), ll.astype(np.float64),
                       beta=beta)
  np.testing.assert_allclose(losses.orpo(lw, ll, beta=beta), expected,
                             rtol=1e-5, atol=0)


# --- theorems ----------------------------------------------------------------


@hypothesis.given(margin=st.floats(-50, 50, width=32),
                  eps=pst.flip_rates(0.45), beta=pst.betas(0.1, 10.0))
def test_rdpo_unbiased_under_flips(margin, eps, beta):
  """Chowdhury et al. 2024, Sec. 3: for every margin and flip rate,
  (1 - eps) rdpo(D) + eps rdpo(-D) = dpo(D): the rDPO loss of a label that
  is flipped with probability eps is, in expectation, the clean DPO loss."""
  d = jnp.asarray([margin], _FLOAT)
  zero = jnp.zeros_like(d)
  mixed = ((1 - eps) * losses.rdpo(d, zero, beta=beta, eps=eps)
           + eps * losses.rdpo(-d, zero, beta=beta, eps=eps))
  clean = losses.dpo(d, zero, beta=beta)
  # the two rDPO terms are O(beta |D| / (1 - 2 eps)) and cancel down to dpo
  tol = 4 * jnp.finfo(_FLOAT).eps * (1 + beta * abs(margin)) / (1 - 2 * eps)
  np.testing.assert_allclose(mixed, clean, rtol=0, atol=float(tol))


@functools.partial(jax.jit, static_argnums=0)
def _expected_loss_grad(loss, margin, q, beta, eps):
  """d/dD of q loss(D) + (1 - q) loss(-D): one pair whose labelled-chosen
  response is the first with probability q."""

  def expected(d):
    zero = jnp.zeros_like(d)
    return (q * loss(d, zero, beta=beta, eps=eps)
            + (1 - q) * loss(-d, zero, beta=beta, eps=eps))

  return jax.grad(expected)(margin)


def _minimiser(loss, q, beta, eps):
  """The minimiser of a convex expected loss: the root of its derivative,
  found by Brent's method on a bracket where the derivative changes sign."""
  g = lambda d: float(_expected_loss_grad(loss, jnp.asarray(d, _FLOAT),
                                          q, beta, eps))
  return scipy.optimize.brentq(g, -20 / beta, 20 / beta, xtol=1e-12,
                               rtol=4 * np.finfo(np.float32).eps)


def _dpo_eps(chosen, rejected, *, beta, eps):
  del eps
  return losses.dpo(chosen, rejected, beta=beta)


@hypothesis.given(p=st.floats(0.55, 0.95), eps=st.floats(0.0, 0.4),
                  beta=st.floats(0.5, 4.0))
def test_population_optima_under_flips(p, eps, beta):
  """One pair, clean win probability p, labels flipped at rate eps, so the
  labelled-chosen response wins with q = eps + (1 - 2 eps) p. Minimising
  each expected loss numerically: rDPO recovers sigma(beta D*) = p; DPO
  learns the noisy q; cDPO (smoothing weight eps) shrinks twice, to
  eps + (1 - 2 eps) q (Chowdhury et al. 2024, Sec. 3-4)."""
  q = eps + (1 - 2 * eps) * p
  found = {name: scipy.special.expit(beta * _minimiser(fn, q, beta, eps))
           for name, fn in [("rdpo", losses.rdpo), ("dpo", _dpo_eps),
                            ("cdpo", losses.cdpo)]}
  np.testing.assert_allclose(found["rdpo"], p, atol=2e-5)
  np.testing.assert_allclose(found["dpo"], q, atol=2e-5)
  np.testing.assert_allclose(found["cdpo"], eps + (1 - 2 * eps) * q,
                             atol=2e-5)


@hypothesis.given(alpha=st.floats(0.03, 0.97), beta=st.floats(0.25, 4.0))
def test_soft_label_dpo_optimum_is_logit(alpha, beta):
  """Minimising -[alpha log sigma(beta D) + (1 - alpha) log sigma(-beta D)]
  numerically gives beta D* = logit(alpha)."""
  d = _minimiser(_dpo_eps, alpha, beta, 0.0)
  np.testing.assert_allclose(beta * d, scipy.special.logit(alpha), atol=1e-4)


def _ipo_eps(chosen, rejected, *, beta, eps):
  del eps
  return losses.ipo(chosen, rejected, beta=beta)


@hypothesis.given(p=st.one_of(st.just(1.0), st.floats(0.0, 1.0)),
                  beta=st.floats(0.1, 10.0))
def test_ipo_optimum_is_finite(p, beta):
  """Azar et al. 2024, Sec. 5: for one pair with win probability p the
  expected IPO loss is minimised at D* = (2p - 1) / (2 beta), finite even at
  p = 1, where the expected DPO loss has no minimiser (its derivative stays
  negative)."""
  d = _minimiser(_ipo_eps, p, beta, 0.0)
  np.testing.assert_allclose(d, (2 * p - 1) / (2 * beta),
                             atol=1e-5 * (1 + 1 / beta))
  if p == 1.0:
    for margin in (1.0, 10.0, 40.0):
      g = _expected_loss_grad(_dpo_eps, jnp.asarray(margin / beta, _FLOAT),
                              1.0, beta, 0.0)
      assert g < 0


@jax.jit
def _fit_tabular_dpo(ref, rewards, beta):
  """Gradient descent on tabular logits for the exact expected DPO loss over
  every pair of responses of every prompt, with Bradley-Terry soft labels
  sigma(r_i - r_j)."""
  k = ref.shape[-1]
  win = jax.nn.sigmoid(rewards[:, :, None] - rewards[:, None, :])  # [X,K,K]
  off_diagonal = 1.0 - jnp.eye(k)

  def objective(logits):
    h = policies.softmax_logprobs(logits) - ref                     # [X, K]
    per_pair = losses.dpo(h[:, :, None] * jnp.ones((1, 1, k)),
                          h[:, None, :] * jnp.ones((1, k, 1)), beta=beta)
    return jnp.sum(off_diagonal * win * per_pair)

  lr = 0.5 / (beta ** 2 * k)

  def step(logits, _):
    return logits - lr * jax.grad(objective)(logits), None

  logits, _ = jax.lax.scan(step, jnp.zeros_like(ref), None, length=4000)
  return policies.softmax_logprobs(logits)


@hypothesis.given(ref=pst.tabular_policies(2, 4, scale=1.0),
                  rewards=pst.vectors(8, -2.0, 2.0), beta=st.floats(0.5, 2.0))
def test_tabular_dpo_converges_to_kl_optimal(ref, rewards, beta):
  """Rafailov et al. 2023, Sec. 4-5: with full coverage and exact BT soft
  labels, minimising the expected DPO loss over a tabular policy yields the
  KL-optimal policy pi* ∝ pi_ref exp(r / beta)."""
  rewards = rewards.reshape(2, 4)
  fitted = _fit_tabular_dpo(jnp.asarray(ref), jnp.asarray(rewards), beta)
  target = policies.kl_optimal(jnp.asarray(ref), jnp.asarray(rewards), beta)
  np.testing.assert_allclose(jnp.exp(fitted), jnp.exp(target), atol=2e-4)


# --- composites and the registry ------------------------------------------


def test_with_sft_adds_the_nll_term():
  """RPO (Pang et al. 2024; TRL's rpo_alpha): DPO + alpha * (-log pi(y_w))."""
  rng = np.random.default_rng(4)
  hw, hl = _dyadic(rng, 16, -4, 4), _dyadic(rng, 16, -4, 4)
  logp_w = _dyadic(rng, 16, -4, -1 / 64)
  expected = (_trl("sigmoid", hw.astype(np.float64), hl.astype(np.float64),
                   0.0, 0.0, beta=0.5) - 0.75 * logp_w.astype(np.float64))
  got = losses.with_sft(losses.dpo(hw, hl, beta=0.5), logp_w, 0.75)
  np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


def test_mix_is_the_weighted_sum():
  """mix({...}) is sum_k w_k loss_k; each keyword reaches every component
  that takes it, and per-component values go through functools.partial."""
  rng = np.random.default_rng(5)
  hw, hl = _dyadic(rng, 16, -4, 4), _dyadic(rng, 16, -4, 4)
  got = losses.mix({"sigmoid": 1.0, "ipo": 0.5, "robust": 2.0})(
      hw, hl, beta=0.5, eps=0.25)
  want = (losses.dpo(hw, hl, beta=0.5) + 0.5 * losses.ipo(hw, hl, beta=0.5)
          + 2.0 * losses.rdpo(hw, hl, beta=0.5, eps=0.25))
  np.testing.assert_allclose(got, want, rtol=1e-6)
  two_eps = losses.mix({functools.partial(losses.rdpo, eps=0.25): 1.0,
                        functools.partial(losses.cdpo, eps=0.125): 1.0})
  np.testing.assert_allclose(
      two_eps(hw, hl, beta=0.5),
      losses.rdpo(hw, hl, beta=0.5, eps=0.25)
      + losses.cdpo(hw, hl, beta=0.5, eps=0.125), rtol=1e-6)


def test_get_resolves_prefsim_and_trl_names():
  assert losses.get("sigmoid") is losses.dpo
  assert losses.get("sigmoid_norm") is losses.dpo
  assert losses.get("robust") is losses.rdpo
  assert losses.get("aot_pair") is losses.aot_unpaired
  assert losses.get("aot_unpaired") is losses.aot_unpaired
  assert losses.get("aot") is losses.aot
  for name in losses.names():
    assert callable(losses.get(name))
  public = {n for n in losses.__all__
            if n not in ("from_trl", "get", "mix", "names", "with_sft")}
  assert public <= set(losses.names())


def test_from_trl_names_label_smoothing_apart():
  """TRL's label_smoothing is cDPO's smoothing weight for "sigmoid" and
  rDPO's flip rate for "robust"; both land in the right loss."""
  hw, hl = jnp.asarray([1.5, -0.5]), jnp.asarray([0.0, 0.25])
  np.testing.assert_allclose(
      losses.from_trl("sigmoid", label_smoothing=0.2)(hw, hl, beta=1.0),
      losses.cdpo(hw, hl, beta=1.0, eps=0.2), rtol=1e-6)
  np.testing.assert_allclose(
      losses.from_trl("robust", label_smoothing=0.2)(hw, hl, beta=1.0),
      losses.rdpo(hw, hl, beta=1.0, eps=0.2), rtol=1e-6)
  assert losses.from_trl("sigmoid") is losses.dpo


# --- numerics and transformations ---------------------------------------


def _neg(x):
  """Maps reals to valid log-probs (< 0) for the reference-free losses; 0
  goes to -1e-8, where exp rounds to 1 in float32 (ORPO's log(1 - p))."""
  return -jnp.abs(x) - 1e-8


_B = 0.5
# name -> loss of (chosen, rejected, ref_margins); every public pairwise loss.
_CASES = {
    "dpo": lambda w, l, v: losses.dpo(w, l, beta=_B),
    "cdpo": lambda w, l, v: losses.cdpo(w, l, beta=_B, eps=0.1),
    "rdpo": lambda w, l, v: losses.rdpo(w, l, beta=_B, eps=0.2),
    "ipo": lambda w, l, v: losses.ipo(w, l, beta=_B),
    "hinge": lambda w, l, v: losses.hinge(w, l, beta=_B),
    "exo_pair": lambda w, l, v: losses.exo_pair(w, l, beta=_B, eps=0.1),
    "nca_pair": lambda w, l, v: losses.nca_pair(w, l, beta=_B),
    "bco_pair": lambda w, l, v: losses.bco_pair(w, l, beta=_B, delta=0.3),
    "sppo_hard": lambda w, l, v: losses.sppo_hard(w, l, beta=_B),
    "apo_zero": lambda w, l, v: losses.apo_zero(w, l, beta=_B),
    "apo_down": lambda w, l, v: losses.apo_down(w, l, beta=_B),
    "discopop": lambda w, l, v: losses.discopop(w, l, beta=_B),
    "aot": lambda w, l, v: losses.aot(w, l, beta=_B, ref_margins=v, eps=0.1),
    "aot_unpaired": lambda w, l, v: losses.aot_unpaired(w, l, beta=_B),
    "simpo": lambda w, l, v: losses.simpo(_neg(w), _neg(l), beta=_B),
    "orpo": lambda w, l, v: losses.orpo(_neg(w), _neg(l), beta=_B),
    "rpo": lambda w, l, v: losses.with_sft(losses.dpo(w, l, beta=_B),
                                           _neg(w), 0.5),
    "mix": lambda w, l, v: losses.mix({"sigmoid": 1.0, "ipo": 0.25})(
        w, l, beta=_B),
}


def _inputs(seed, shape=(8,)):
  k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
  return tuple(jax.random.normal(k, shape, _FLOAT)
               for k in (k1, k2, k3))


@pytest.mark.parametrize("name", sorted(_CASES))
def test_large_margins_stay_finite(name):
  """Values and gradients stay finite for log-ratios and margins of +-1e4 in
  float32 (rDPO's value is then very negative, but finite)."""
  fn = _CASES[name]
  w = jnp.asarray([1e4, -1e4, 0.0, 1e4, -1e4, 5e3], _FLOAT)
  l = jnp.asarray([0.0, 0.0, 1e4, -1e4, 1e4, -5e3], _FLOAT)
  v = jnp.asarray([1e4, -1e4, 1e4, 0.0, 0.0, 3.0], _FLOAT)
  value = fn(w, l, v)
  grads = jax.grad(lambda a, b: jnp.sum(fn(a, b, v)), argnums=(0, 1))(w, l)
  pt.assert_finite(value, "value")
  pt.assert_finite(grads, "gradient")


@pytest.mark.parametrize("name", sorted(_CASES))
def test_gradients_match_finite_differences(name):
  fn = _CASES[name]
  w, l, v = _inputs(0)
  check_grads(lambda a, b: fn(a, b, v), (w, l), order=1, modes=("fwd", "rev"))


@pytest.mark.parametrize("name", sorted(_CASES))
def test_jit_vmap_and_single_trace(name):
  fn = _CASES[name]
  w, l, v = _inputs(1, (3, 8))
  pt.assert_jit_matches_eager(fn, w, l, v, rtol=1e-6)
  pt.assert_vmap_matches_loop(fn, w, l, v, rtol=1e-6)
  pt.assert_traced_once(fn, [(w, l, v), _inputs(2, (3, 8))])


# --- bad input -------------------------------------------------------------


_ONE = jnp.ones(3)


@pytest.mark.parametrize("fn,eps,interval", [
    (losses.rdpo, 0.5, r"\[0.0, 0.5\)"), (losses.rdpo, -0.1, r"\[0.0, 0.5\)"),
    (losses.cdpo, 1.0, r"\[0.0, 1.0\)"),
    (losses.exo_pair, 0.0, r"\(0.0, 1.0\)"),
    (losses.exo_pair, 1.0, r"\(0.0, 1.0\)"),
])
def test_flip_rate_out_of_range_raises(fn, eps, interval):
  with pytest.raises(ValueError, match="eps must lie in " + interval):
    fn(_ONE, _ONE, beta=1.0, eps=eps)


_NAMED = sorted(n for n in _CASES if n in losses.names())


@pytest.mark.parametrize("name", _NAMED)
@pytest.mark.parametrize("beta", [0.0, -1.0])
def test_non_positive_beta_raises(name, beta):
  extra = {"ref_margins": _ONE} if name == "aot" else {}
  with pytest.raises(ValueError, match="beta must lie in"):
    losses.get(name)(-_ONE, -_ONE, beta=beta, **extra)


@pytest.mark.parametrize("name", _NAMED)
def test_mismatched_shapes_raise(name):
  extra = {"ref_margins": -jnp.ones(3)} if name == "aot" else {}
  with pytest.raises(ValueError, match="shapes must match"):
    losses.get(name)(-jnp.ones(3), -jnp.ones(4), beta=1.0, **extra)


def test_other_bad_input_raises():
  with pytest.raises(ValueError, match="ref_margins"):
    losses.aot(_ONE, _ONE, beta=1.0, ref_margins=jnp.ones(2))
  with pytest.raises(ValueError, match="chosen_logps must lie in"):
    losses.orpo(jnp.asarray([-1.0, 0.5]), -jnp.ones(2), beta=1.0)
  with pytest.raises(ValueError, match="tau must lie in"):
    losses.discopop(_ONE, _ONE, beta=1.0, tau=0.0)
  with pytest.raises(TypeError, match="per-example loss values"):
    losses.with_sft(losses.dpo, _ONE, 1.0)
  with pytest.raises(ValueError, match="alpha must lie in"):
    losses.with_sft(_ONE, _ONE, -1.0)
  with pytest.raises(ValueError, match="unknown loss name 'sigmoidd'"):
    losses.get("sigmoidd")
  with pytest.raises(ValueError, match="does not read label_smoothing"):
    losses.from_trl("hinge", label_smoothing=0.1)
  with pytest.raises(TypeError, match=r"takes \['eps'\]"):
    losses.mix({"sigmoid": 1.0})(_ONE, _ONE, beta=1.0, eps=0.1)
