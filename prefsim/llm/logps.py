r"""Exact sequence log-probabilities of completions under a language model.

The one place where a language model meets the losses of
:mod:`prefsim.losses`: a loss takes log-ratios
:math:`\log\pi_\theta(y\mid x) - \log\pi_{\rm ref}(y\mid x)`, and
:func:`sequence_logps` computes each term, :math:`\log\pi(y\mid x)`, from the
model's logits over the tokens of prompt and completion. The convention
(DESIGN.md) is explicit: the completion's log-probability is the **sum** of
its per-token log-probabilities; ``average=True`` gives the length-normalised
**mean** that SimPO uses and that TRL's IPO uses (PITFALLS: the two change
IPO's scale).

The shift: ``logits[..., t, :]`` is the model's prediction after reading
tokens ``0..t``, so ``logits[..., t - 1, :]`` predicts ``tokens[..., t]``.
The first token has no prediction and can never be part of a completion.

Shapes: ``B`` batch (any number of leading axes ``...``), ``L`` sequence
length, ``V`` vocabulary size.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks

__all__ = ["sequence_logps"]


def _check(logits: Any, tokens: Any, completion_mask: Any) -> None:
  """Static checks always; value checks when the arguments are concrete."""
  if np.ndim(logits) < 2:
    raise ValueError(f"logits must have shape [..., L, V], got shape "
                     f"{np.shape(logits)}")
  if not jnp.issubdtype(jnp.result_type(logits), jnp.floating):
    raise TypeError(f"logits must be floating point, got dtype "
                    f"{jnp.result_type(logits)}")
  if np.shape(tokens) != np.shape(logits)[:-1]:
    raise ValueError(f"tokens must have shape logits.shape[:-1] = "
                     f"{np.shape(logits)[:-1]} ([..., L]), got "
                     f"{np.shape(tokens)}")
  _checks.check_same_shape(tokens=tokens, completion_mask=completion_mask)
  vocab = np.shape(logits)[-1]
  _checks.check_indices("tokens", tokens, vocab)
  if np.shape(tokens)[-1] < 2:
    raise ValueError("sequences must have L >= 2 tokens (the first token is "
                     f"never predicted), got L = {np.shape(tokens)[-1]}")
  if _checks.is_concrete(completion_mask):
    mask = np.asarray(completion_mask)
    if mask.dtype != bool and not np.all((mask == 0) | (mask == 1)):
      raise ValueError("completion_mask must be boolean or hold only 0 and "
                       f"1, got values {np.unique(mask)[:6]}")
    mask = mask.astype(bool)
    if np.any(mask[..., 0]):
      raise ValueError(
          "completion_mask[..., 0] must be False: no logits predict the "
          "first token (logits[t - 1] predicts tokens[t]); rows "
          f"{np.argwhere(mask[..., 0]).tolist()[:6]} mark it")
    empty = ~np.any(mask, axis=-1)
    if np.any(empty):
      raise ValueError(
          "every row of completion_mask must mark at least one token; rows "
          f"{np.argwhere(empty).tolist()[:6]} are all zero (an empty "
          "completion has no log-probability to compare)")


def sequence_logps(logits: jax.Array, tokens: jax.Array,
                   completion_mask: jax.Array, *,
                   average: bool = False) -> jax.Array:
  r"""Log-probability of each completion: the sum (or mean) over its tokens.

  .. math:: \log\pi(y\mid x) = \sum_{t=1}^{L-1} m_t\,
            \log\operatorname{softmax}(z_{t-1})[s_t],
            \qquad
            \overline{\log\pi}(y\mid x) = \frac{\log\pi(y\mid x)}
            {\sum_t m_t}

  for one row, with ``s = tokens``, ``z = logits`` and ``m =
  completion_mask``: the logits at position :math:`t-1` predict the token at
  :math:`t`, and only completion tokens count. Padding (left or right) and
  the prompt are simply ``m = 0``; their logits and tokens are ignored, and
  no gradient flows to the logits of positions that predict no completion
  token, even where those logits are NaN or infinite ("double where":
  masked logits are replaced before the log-sum-exp).

  Computed as :math:`z_{t-1}[s_t] - \operatorname{logsumexp}(z_{t-1})` in
  float32 or wider (bfloat16 logits are upcast), without materialising the
  log-softmax.

  Args:
    logits: ``[..., L, V]`` next-token logits (``[B, L, V]`` from
      :class:`prefsim.llm.GPT`).
    tokens: ``[..., L]`` integer token ids in ``[0, V)``, padding included
      (pad with any in-vocabulary id).
    completion_mask: ``[..., L]`` boolean (or 0/1): ``True`` where the token
      belongs to the completion. ``completion_mask[..., 0]`` must be False.
    average: divide each row's sum by its number of completion tokens
      (length normalisation).
  Returns:
    ``[...]`` log-probabilities, in the logits' float type (at least
    float32).
  Raises:
    ValueError: ``tokens`` or ``completion_mask`` not of shape
      ``logits.shape[:-1]``, ``L < 2``; eagerly (concrete values): a token
      outside ``[0, V)``, a mask value other than 0/1, a row whose mask is
      all zero, a mask marking token 0.
    TypeError: integer ``logits`` or non-integer ``tokens``.

  Inside ``jit`` the value checks cannot raise: a completion token outside
  ``[0, V)`` gives NaN for its row (a masked one is ignored); a row with an
  all-zero mask gives 0 (sum) or 0 (mean: the count is clamped to 1), with
  zero gradient; ``completion_mask[..., 0]`` is ignored.

  References:
    Rafailov et al. Direct Preference Optimization. NeurIPS 2023,
    arXiv:2305.18290, Eq. 7 (the log-ratios of whole responses);
    Meng, Xia, Chen. SimPO: Simple Preference Optimization with a
    Reference-Free Reward. NeurIPS 2024, arXiv:2405.14734, Sec. 2 (the
    length-normalised reward, the average log-probability).
  Tests:
    tests/llm/test_logps.py::test_matches_per_token_loop_left_and_right_padding,
    tests/llm/test_logps.py::test_worked_example_fixes_the_shift,
    tests/llm/test_logps.py::test_gradient_is_onehot_minus_softmax_and_finite,
    tests/llm/test_logps.py::test_jit_matches_eager_and_documented_jit_behaviour.
  """
  _check(logits, tokens, completion_mask)
  vocab = logits.shape[-1]
  ftype = jnp.promote_types(logits.dtype, jnp.float32)
  counted = jnp.asarray(completion_mask)[..., 1:].astype(bool)   # [..., L-1]
  target = jnp.asarray(tokens)[..., 1:]
  in_vocab = (target >= 0) & (target < vocab)
  # Double where: predictions that count for nothing become 0 before the
  # log-sum-exp, so NaN/inf logits at padding cannot reach the gradient.
  z = jnp.where(counted[..., None], logits[..., :-1, :], 0).astype(ftype)
  picked = jnp.take_along_axis(z, jnp.where(in_vocab, target, 0)[..., None],
                               axis=-1)[..., 0]
  per_token = jnp.where(in_vocab, picked - jax.nn.logsumexp(z, axis=-1),
                        jnp.nan)
  total = jnp.sum(jnp.where(counted, per_token, 0), axis=-1)
  if not average:
    return total
  count = jnp.sum(counted, axis=-1)
  return total / jnp.maximum(count, 1).astype(ftype)
