r"""Listwise losses over ``m`` (or ``K``) responses to one prompt.

Each takes ``logratios[..., m]`` (log pi/pi_ref of every response, any
leading axes) and returns the per-list loss ``[...]``, never reduced.
:math:`s_i = \beta\,h_i` is the implicit reward of response ``i``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim.losses import _common

__all__ = ["infonca", "lipo_lambda", "nca", "pl_dpo"]


def _list(logratios: Any, beta: Any, name: str = "logratios") -> jax.Array:
  h = _common.as_float(logratios)
  if h.ndim < 1 or h.shape[-1] < 2:
    raise ValueError(f"{name} must have shape [..., m] with m >= 2 responses, "
                     f"got shape {h.shape}")
  _checks.check_positive("beta", beta)
  return h


def pl_dpo(logratios: Any, *, beta: float) -> jax.Array:
  r"""DPO under the Plackett-Luce model, for a ranked list (best first).

  .. math:: \ell = -\sum_{k=1}^{m}\log\frac{e^{s_k}}{\sum_{j=k}^{m} e^{s_j}}
            = \sum_{k=1}^{m-1}\log\Big(1 + \sum_{j>k} e^{s_j - s_k}\Big)

  With ``m = 2`` it is :func:`prefsim.losses.dpo`.

  Args:
    logratios: log pi/pi_ref of the ranked responses, ``[..., m]``, index 0
      the best.
    beta: inverse temperature, > 0.
  Returns:
    The per-list loss, ``[...]``.
  References:
    Rafailov et al. Direct Preference Optimization. NeurIPS 2023,
    arXiv:2305.18290, Sec. 5 and App. A.3 (the Plackett-Luce objective; the
    Plackett-Luce model is its Eq. 18).
    Tests:
    tests/losses/test_listwise.py::test_pl_dpo_and_lipo_reduce_to_dpo_at_k2,
    tests/losses/test_listwise.py::test_pl_dpo_is_the_plackett_luce_likelihood.
  """
  s = beta * _list(logratios, beta)
  # Stage k costs log(1 + sum_{j>k} e^{s_j - s_k}) = softplus(L_{k+1} - s_k)
  # with L_{k+1} the log-sum-exp of the later rewards: no cancellation when
  # the loss is small; the last stage costs 0.
  later = jax.lax.cumlogsumexp(s, axis=s.ndim - 1, reverse=True)[..., 1:]
  return jnp.sum(jax.nn.softplus(later - s[..., :-1]), axis=-1)


def lipo_lambda(logratios: Any, labels: Any, *, beta: float) -> jax.Array:
  r"""LiPO-:math:`\lambda`: a LambdaLoss-weighted pairwise logistic loss.

  .. math:: \ell = -\sum_{i,j:\ \psi_i > \psi_j}\Delta_{ij}\,
            \log\sigma(s_i - s_j), \qquad
            \Delta_{ij} = |G_i - G_j|\,\Big|\frac{1}{D(\tau_i)}
            - \frac{1}{D(\tau_j)}\Big|

  with gains :math:`G_i = 2^{\psi_i} - 1`, discounts
  :math:`D(\tau) = \log_2(1 + \tau)` and :math:`\tau_i` the rank (1 = top)
  of response ``i`` under the current rewards :math:`s`. The weights are
  treated as constants (no gradient), as in LambdaLoss. The paper writes
  :math:`\log(1+\tau)`; the base-2 logarithm of NDCG/LambdaLoss only
  rescales the loss by a constant. With ``m = 2`` and labels ``(1, 0)`` it
  is :math:`(1 - 1/\log_2 3)` times :func:`prefsim.losses.dpo`.

  Args:
    logratios: log pi/pi_ref of the responses, ``[..., m]`` (any order).
    labels: graded relevance labels :math:`\psi`, ``[..., m]``; pairs with
      equal labels do not count.
    beta: inverse temperature, > 0.
  Returns:
    The per-list loss, ``[...]``.
  References:
    Liu, Qin, Wu, Shen, Khalman, Joshi, Zhao, Saleh, Baumgartner, Liu, Liu,
    Wang. LiPO: Listwise Preference Optimization through Learning-to-Rank.
    arXiv:2402.01878 (v3: Sec. 3, Eq. 8, LiPO-lambda, with G_i = 2^psi_i - 1
    and D(tau) = log(1 + tau)); Wang, Li, Golbandi, Bendersky,
    Najork. The LambdaLoss Framework for Ranking Metric Optimization.
    CIKM 2018. Tests:
    tests/losses/test_listwise.py::test_pl_dpo_and_lipo_reduce_to_dpo_at_k2,
    tests/losses/test_listwise.py::test_lipo_lambda_matches_a_pair_loop.
  """
  h = _list(logratios, beta)
  _checks.check_same_shape(logratios=h, labels=labels)
  psi = jnp.asarray(labels, h.dtype)
  s = beta * h
  # Rank 1 = top: one plus the responses scored higher, ties broken by
  # position (a stable descending sort), from K x K comparisons.
  m = s.shape[-1]
  before = jnp.arange(m)[None, :] < jnp.arange(m)[:, None]        # j < i
  higher = ((s[..., None, :] > s[..., :, None])
            | ((s[..., None, :] == s[..., :, None]) & before))
  rank = 1 + jnp.sum(higher, axis=-1)
  inv_discount = 1.0 / jnp.log2(1.0 + rank.astype(h.dtype))
  gain = jnp.exp2(psi) - 1.0
  weight = (jnp.abs(gain[..., :, None] - gain[..., None, :])
            * jnp.abs(inv_discount[..., :, None] - inv_discount[..., None, :]))
  better = psi[..., :, None] > psi[..., None, :]
  weight = jax.lax.stop_gradient(jnp.where(better, weight, 0.0))
  pair = -log_sigmoid(s[..., :, None] - s[..., None, :])
  return jnp.sum(weight * pair, axis=(-2, -1))


def _log_softmax(s: jax.Array) -> jax.Array:
  r"""``log_softmax`` over the last axis, accurate for the top entry.

  :math:`\log\mathrm{softmax}(s)_i = (s_i - s_{\max}) - \mathrm{log1p}(R)`
  with :math:`R = \sum_{j \ne j^*} e^{s_j - s_{\max}}`, the sum leaving out
  one maximal entry :math:`j^*`: when one response dominates, its
  log-probability (a loss near 0) keeps full relative precision.
  """
  # The identity holds for any pivot j*; the argmax keeps every exponent <= 0.
  # The pivot is s[j*] itself (not jnp.max) so that gradients are exact.
  pivot = jnp.argmax(s, axis=-1)
  top = jnp.take_along_axis(s, pivot[..., None], axis=-1)
  shifted = s - top
  is_top = jax.nn.one_hot(pivot, s.shape[-1], dtype=s.dtype)
  rest = jnp.sum(jnp.exp(shifted) * (1 - is_top), axis=-1, keepdims=True)
  return shifted - jnp.log1p(rest)


def _targets(h: jax.Array, rewards: Any, alpha: Any) -> jax.Array:
  _checks.check_same_shape(logratios=h, rewards=rewards)
  _checks.check_positive("alpha", alpha)
  return jax.nn.softmax(jnp.asarray(rewards, h.dtype) / alpha, axis=-1)


def infonca(logratios: Any, rewards: Any, *, beta: float, alpha: float
            ) -> jax.Array:
  r"""InfoNCA: cross-entropy from reward-softmax targets to the model's
  softmax over ``K`` responses.

  .. math:: p = \mathrm{softmax}(r/\alpha), \qquad
            \ell = -\sum_{i=1}^{K} p_i \log\mathrm{softmax}(s)_i

  Fixes only reward differences: its minimisers satisfy
  :math:`s_i - s_j = \log(p_i/p_j)`. With ``K = 2`` and hard targets it is
  :func:`prefsim.losses.dpo`.

  Args:
    logratios: log pi/pi_ref of the K responses, ``[..., K]``.
    rewards: explicit rewards of the responses, ``[..., K]``.
    beta: inverse temperature of the implicit reward, > 0.
    alpha: temperature of the target distribution, > 0.
  Returns:
    The per-prompt loss, ``[...]``.
  References:
    Chen, Zheng, Sun, Hu, Zhu. Noise Contrastive Alignment of Language
    Models with Explicit Rewards. NeurIPS 2024, arXiv:2402.05369, Sec. 3
    (InfoNCA). Test:
    tests/losses/test_listwise.py::test_infonca_fixes_only_relative_rewards.
  """
  h = _list(logratios, beta)
  p = _targets(h, rewards, alpha)
  return -jnp.sum(p * _log_softmax(beta * h), axis=-1)


def nca(logratios: Any, rewards: Any, *, beta: float, alpha: float
        ) -> jax.Array:
  r"""NCA: a binary classification of each response against noise, with
  reward-softmax targets.

  .. math:: p = \mathrm{softmax}(r/\alpha), \qquad
            \ell = -\sum_{i=1}^{K}\Big(p_i\log\sigma(s_i)
            + \frac{1}{K}\log\sigma(-s_i)\Big)

  Its optimum is absolute, :math:`s_i^* = \log(K p_i)`. With ``K = 2``
  and targets ``(1, 0)`` it is :func:`prefsim.losses.nca_pair`.

  Args:
    logratios: log pi/pi_ref of the K responses, ``[..., K]``.
    rewards: explicit rewards of the responses, ``[..., K]``.
    beta: inverse temperature of the implicit reward, > 0.
    alpha: temperature of the target distribution, > 0.
  Returns:
    The per-prompt loss, ``[...]``.
  References:
    Chen et al. Noise Contrastive Alignment of Language Models with Explicit
    Rewards. NeurIPS 2024, arXiv:2402.05369, Sec. 3 (NCA). Tests:
    tests/losses/test_listwise.py::test_nca_optimum_is_absolute,
    tests/losses/test_listwise.py::test_nca_pair_is_nca_with_hard_labels.
  """
  h = _list(logratios, beta)
  p = _targets(h, rewards, alpha)
  s = beta * h
  k = h.shape[-1]
  return -jnp.sum(p * log_sigmoid(s) + log_sigmoid(-s) / k,
                  axis=-1)
