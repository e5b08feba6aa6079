"""Tests of prefsim.llm.sequence_logps: the completion's exact log-probability.

References are independent: a float64 per-token loop written from the
definition (logits[t - 1] predicts tokens[t]), a worked example by hand, and
the analytic gradient onehot - softmax.
"""

from __future__ import annotations

import functools

from hypothesis import given
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefsim import llm
from prefsim import testing as pt
from prefsim.testing import strategies as pst

V = 40
L = 12
# Rows: right padding, left padding, no padding, left padding again.
#   prompt | completion | padding, as (left pad, prompt, completion).
LAYOUT = [(0, 3, 5), (4, 2, 6), (0, 1, 11), (7, 2, 3)]


def _batch(seed):
  """Random logits [4, L, V] (scale 3), tokens and the completion mask."""
  rng = np.random.default_rng(seed)
  logits = (3.0 * rng.standard_normal((len(LAYOUT), L, V))).astype(np.float32)
  tokens = rng.integers(0, V, (len(LAYOUT), L))
  mask = np.zeros((len(LAYOUT), L), bool)
  for b, (pad, prompt, completion) in enumerate(LAYOUT):
    mask[b, pad + prompt:pad + prompt + completion] = True
  return logits, tokens, mask


_logps = jax.jit(llm.sequence_logps, static_argnames="average")


def _loop(logits, tokens, mask, average):
  """The definition, one token at a time, in float64."""
  logits = np.asarray(logits, np.float64)
  out = []
  for b in range(tokens.shape[0]):
    total, count = 0.0, 0
    for t in range(1, tokens.shape[1]):
      if mask[b, t]:
        z = logits[b, t - 1]
        lse = np.log(np.sum(np.exp(z - z.max()))) + z.max()
        total += z[tokens[b, t]] - lse
        count += 1
    out.append(total / count if average else total)
  return np.array(out)


@given(seed=pst.seeds())
def test_matches_per_token_loop_left_and_right_padding(seed):
  """Sum and mean of log softmax(logits[t-1])[tokens[t]] over the completion
  equal a per-token loop, for right-, left- and un-padded rows."""
  logits, tokens, mask = _batch(seed)
  for average in (False, True):
    got = _logps(logits, tokens, mask, average=average)
    np.testing.assert_allclose(got, _loop(logits, tokens, mask, average),
                               rtol=2e-6, atol=2e-5)


def test_worked_example_fixes_the_shift():
  """docs/llm.md's example: V = 2, tokens [1, 1, 0], completion the last two.

  logits[0] = (0, 0) gives tokens[1] = 1 probability 1/2; logits[1] =
  (log 3, 0) gives tokens[2] = 0 probability 3/4; logits[2] predicts
  nothing. So log pi = log(1/2) + log(3/4), the mean is half of it.
  """
  logits = np.array([[[0.0, 0.0], [np.log(3.0), 0.0], [5.0, -5.0]]],
                    np.float32)
  tokens = np.array([[1, 1, 0]])
  mask = np.array([[False, True, True]])
  expected = np.log(0.5) + np.log(0.75)
  np.testing.assert_allclose(llm.sequence_logps(logits, tokens, mask),
                             [expected], rtol=1e-6)
  np.testing.assert_allclose(
      llm.sequence_logps(logits, tokens, mask, average=True), [expected / 2],
      rtol=1e-6)
  moved = logits.copy()
  moved[0, 2] = [-7.0, 9.0]   # the last position's logits predict no token
  np.testing.assert_allclose(llm.sequence_logps(moved, tokens, mask),
                             [expected], rtol=1e-6)


@jax.jit
def _grad_mean(logits, tokens, mask):
  return jax.grad(lambda z: jnp.sum(
      llm.sequence_logps(z, tokens, mask, average=True)))(logits)


def test_gradient_is_onehot_minus_softmax_and_finite():
  """d(mean log pi)/d logits[t-1] = (onehot(tokens[t]) - softmax(logits[t-1]))
  / count at completion tokens, exactly 0 elsewhere; finite even with NaN
  and inf logits at padding and a row with an empty mask (inside jit)."""
  logits, tokens, mask = _batch(3)
  mask[3] = False                      # inside jit an empty row is allowed
  poisoned = logits.copy()
  predicts_nothing = ~np.concatenate([mask[:, 1:], np.zeros((4, 1), bool)], 1)
  poisoned[predicts_nothing] = np.nan
  poisoned[0, -1, 0] = np.inf
  grad = np.asarray(_grad_mean(poisoned, tokens, mask))
  pt.assert_finite(grad, "gradient")
  expected = np.zeros_like(logits, dtype=np.float64)
  for b in range(4):
    count = mask[b].sum()
    for t in range(1, L):
      if mask[b, t]:
        z = logits[b, t - 1].astype(np.float64)
        p = np.exp(z - z.max())
        p /= p.sum()
        expected[b, t - 1] = (np.eye(V)[tokens[b, t]] - p) / count
  np.testing.assert_allclose(grad, expected, rtol=1e-5, atol=1e-6)
  assert not np.any(grad[3])


def test_jit_matches_eager_and_documented_jit_behaviour():
  """jit equals eager; inside jit an empty row gives 0, an out-of-vocabulary
  completion token gives NaN for its row only, and an out-of-vocabulary
  token outside the completion is ignored."""
  logits, tokens, mask = _batch(5)
  pt.assert_jit_matches_eager(
      functools.partial(llm.sequence_logps, average=True), logits, tokens,
      mask, rtol=1e-6)
  jitted = _logps
  empty = mask.copy()
  empty[1] = False
  for average in (False, True):
    assert float(jitted(logits, tokens, empty, average=average)[1]) == 0.0
  bad = tokens.copy()
  first_completion = LAYOUT[2][0] + LAYOUT[2][1]
  bad[2, first_completion] = V + 3
  bad[0, -1] = -1                      # padding position of row 0
  got = np.asarray(jitted(logits, bad, mask, average=False))
  assert np.isnan(got[2]) and np.all(np.isfinite(got[[0, 1, 3]]))
  np.testing.assert_allclose(got[[0, 1, 3]],
                             _loop(logits, tokens, mask, False)[[0, 1, 3]],
                             rtol=2e-6, atol=2e-5)


def test_leading_axes_and_bfloat16_logits():
  """Any leading axes (vmap over a batch axis equals a loop); bfloat16
  logits are upcast: the result is float32 and equals the loop on the same
  (rounded) values."""
  logits, tokens, mask = _batch(7)
  pt.assert_vmap_matches_loop(_logps, logits[None].repeat(2, 0),
                              tokens[None].repeat(2, 0),
                              mask[None].repeat(2, 0), rtol=1e-6)
  half = jnp.asarray(logits, jnp.bfloat16)
  got = _logps(half, tokens, mask)
  assert got.dtype == jnp.promote_types(jnp.bfloat16, jnp.float32)
  np.testing.assert_allclose(
      got, _loop(np.asarray(half, np.float32), tokens, mask, False),
      rtol=2e-6, atol=2e-5)


@pytest.mark.parametrize("change, error, match", [
    (lambda z, s, m: (z, s.at[0, 4].set(V), m), ValueError,
     r"tokens must lie in \[0, 40\)"),
    (lambda z, s, m: (z, s.at[1, 0].set(-1), m), ValueError,
     r"tokens must lie in \[0, 40\)"),
    (lambda z, s, m: (z, s, m.at[2].set(False)), ValueError,
     r"rows \[\[2\]\] are all zero"),
    (lambda z, s, m: (z, s, m.at[0, 0].set(True)), ValueError,
     r"completion_mask\[\.\.\., 0\] must be False"),
    (lambda z, s, m: (z, s[:, :-1], m), ValueError,
     r"tokens must have shape logits.shape\[:-1\]"),
    (lambda z, s, m: (z, s, m[:, :-1]), ValueError, "shapes must match"),
    (lambda z, s, m: (z, s, m.astype(jnp.int32) * 2), ValueError,
     "only 0 and 1"),
    (lambda z, s, m: (z, s.astype(jnp.float32), m), TypeError,
     "integer indices"),
    (lambda z, s, m: (z.astype(jnp.int32), s, m), TypeError,
     "floating point"),
    (lambda z, s, m: (z[:, :1], s[:, :1], m[:, :1]), ValueError,
     "L >= 2"),
])
def test_bad_input_raises(change, error, match):
  """Each bad input raises a clear error naming the argument (eagerly)."""
  logits, tokens, mask = (jnp.asarray(a) for a in _batch(0))
  with pytest.raises(error, match=match):
    llm.sequence_logps(*change(logits, tokens, mask))
