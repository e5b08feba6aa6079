r"""Reference-free pairwise losses: SimPO and ORPO.

They take the policy's log-probabilities of the two responses in the slots
where the other losses take log-ratios, with the same signature
``loss(chosen_logps, rejected_logps, *, beta, **hyper)``, shapes ``[...]``,
and return the per-example loss. Both papers (and TRL) use log-probs
averaged over the tokens of each response; the caller averages.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim.losses import _common

__all__ = ["orpo", "simpo"]

_NAMES = ("chosen_logps", "rejected_logps")


def simpo(chosen_logps: Any, rejected_logps: Any, *, beta: float,
          gamma: float = 0.5, eps: float = 0.0) -> jax.Array:
  r"""Simple Preference Optimization, a reference-free margin loss.

  With :math:`\bar\ell_w, \bar\ell_l` the length-averaged log-probabilities
  :math:`\frac{1}{|y|}\log\pi_\theta(y\mid x)` and :math:`z = \beta(\bar\ell_w
  - \bar\ell_l) - \gamma`:

  .. math:: \ell = -(1-\epsilon)\log\sigma(z) - \epsilon\log\sigma(-z)

  ``eps = 0`` (the default) is the paper's loss; ``eps > 0`` is TRL's
  label smoothing (a smoothing weight, as in :func:`cdpo`). TRL's
  CPOTrainer with ``loss_type="simpo"`` computes the same value with
  ``simpo_gamma = gamma`` (default 0.5) and ``label_smoothing = eps``.

  Args:
    chosen_logps: length-averaged log pi(y_w|x), ``[...]``.
    rejected_logps: length-averaged log pi(y_l|x), ``[...]``.
    beta: reward scale, > 0.
    gamma: target reward margin.
    eps: label-smoothing weight in [0, 1).
  Returns:
    The per-example loss, ``[...]``.
  References:
    Meng, Xia, Chen. SimPO: Simple Preference Optimization with a
    Reference-Free Reward. NeurIPS 2024, arXiv:2405.14734, Sec. 2, Eq. 6 (the
    SimPO objective). Test:
    tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  lw, ll = _common.pair(chosen_logps, rejected_logps, beta, names=_NAMES)
  _checks.check_in_range("eps", eps, 0.0, 1.0, high_open=True)
  return _common.smoothed_logistic(beta * (lw - ll) - gamma, eps)


def _log1mexp(x: jax.Array) -> jax.Array:
  r""":math:`\log(1 - e^x)` for :math:`x < 0`, accurate at both ends.

  Uses ``log1p(-exp(x))`` below :math:`-\log 2` and ``log(-expm1(x))``
  above (Maechler 2012), with each branch fed a safe argument where it is
  not selected so that neither sends NaN gradients through ``where``.
  """
  cut = -np.log(2.0)
  far = x < cut
  x_far = jnp.where(far, x, -1.0)
  x_near = jnp.where(far, -0.5, x)
  return jnp.where(far, jnp.log1p(-jnp.exp(x_far)),
                   jnp.log(-jnp.expm1(x_near)))


def orpo(chosen_logps: Any, rejected_logps: Any, *, beta: float
         ) -> jax.Array:
  r"""Odds Ratio Preference Optimization: SFT plus an odds-ratio penalty.

  With :math:`\bar\ell` the length-averaged log-probabilities and
  :math:`\mathrm{odds}(y) = p/(1-p)` for :math:`p = e^{\bar\ell}`,

  .. math:: \ell = -\bar\ell_w - \beta\,\log\sigma\Big(
            \log\frac{\mathrm{odds}(y_w)}{\mathrm{odds}(y_l)}\Big),
            \qquad \log\frac{\mathrm{odds}(y_w)}{\mathrm{odds}(y_l)}
            = \bar\ell_w - \bar\ell_l - \log(1-e^{\bar\ell_w})
            + \log(1-e^{\bar\ell_l})

  ``beta`` is the paper's :math:`\lambda` (TRL's ``beta``). The mean of
  this loss over a batch is TRL's ORPOTrainer loss when every chosen
  response has the same number of tokens (TRL averages the SFT term over
  all chosen tokens of the batch). :math:`\log(1 - e^{\bar\ell})` is
  computed without cancellation; log-probs must be strictly negative
  (checked eagerly; inside ``jit`` a log-prob of 0 gives ``inf``).

  Args:
    chosen_logps: length-averaged log pi(y_w|x) < 0, ``[...]``.
    rejected_logps: length-averaged log pi(y_l|x) < 0, ``[...]``.
    beta: weight :math:`\lambda` of the odds-ratio term, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Hong, Lee, Thorne. ORPO: Monolithic Preference Optimization without
    Reference Model. EMNLP 2024, arXiv:2403.07691, Eqs. 4, 6 and 7.
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  lw, ll = _common.pair(chosen_logps, rejected_logps, beta, names=_NAMES)
  for name, x in zip(_NAMES, (chosen_logps, rejected_logps)):
    _checks.check_in_range(name, x, -np.inf, 0.0, high_open=True)
  log_odds = (lw - ll) - (_log1mexp(lw) - _log1mexp(ll))
  return -lw - beta * log_sigmoid(log_odds)
