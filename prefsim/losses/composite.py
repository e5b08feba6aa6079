r"""Composite losses: a preference loss plus an SFT term."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim.losses import _common

__all__ = ["with_sft"]


def with_sft(loss: Any, chosen_logps: Any, alpha: float) -> jax.Array:
  r"""Adds the SFT (negative log-likelihood) term of RPO to per-example losses.

  .. math:: \ell_{\rm RPO} = \ell + \alpha\,\big(-\log\pi_\theta(y_w\mid x)\big)

  ``loss`` holds per-example values already computed (for RPO, those of
  :func:`prefsim.losses.dpo`); the result has the same shape, so any loss
  of the family can be regularised the same way:
  ``with_sft(dpo(hw, hl, beta=0.1), logp_w, 1.0)``. Passing a loss
  *function* instead of its values raises ``TypeError``.

  Pang et al. normalise the NLL by the response length; TRL's ``rpo_alpha``
  adds ``rpo_alpha`` times the token-averaged cross-entropy of the chosen
  responses. Pass length-averaged log-probs to match either (with equal
  lengths in the batch the batch mean equals TRL's loss), or summed ones
  for the unnormalised NLL.

  Args:
    loss: per-example loss values, ``[...]``.
    chosen_logps: log pi_theta(y_w|x) of the chosen responses (length-averaged
      or summed, the caller's choice), ``[...]``.
    alpha: weight of the SFT term, >= 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Pang, Yuan, Cho, He, Sukhbaatar, Weston. Iterative Reasoning Preference
    Optimization. NeurIPS 2024, arXiv:2404.19733, Sec. 2, Eq. 1 (the DPO+NLL
    loss).
    Test: tests/losses/test_pairwise.py::test_with_sft_adds_the_nll_term.
  """
  if callable(loss):
    raise TypeError("with_sft takes per-example loss values, not a loss "
                    "function: call the loss first, e.g. "
                    "with_sft(dpo(hw, hl, beta=0.1), chosen_logps, alpha)")
  _checks.check_same_shape(loss=loss, chosen_logps=chosen_logps)
  _checks.check_nonnegative("alpha", alpha)
  loss = _common.as_float(loss)
  return loss - alpha * jnp.asarray(chosen_logps, loss.dtype)
