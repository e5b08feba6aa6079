r"""Sample-based losses of the preference game: online IPO (EGPO) and INPO.

The mirror-descent solvers of :mod:`prefsim.games.solvers` step on exact win
rates :math:`(P\pi)(y)`; a language model sees only sampled responses and
their comparisons. These losses are the bridge: squared losses on the log-ratio
margin whose (stochastic) gradient steps, or exact minimisers, are the solvers'
mirror steps. Like :mod:`prefsim.losses` they are pure functions of per-example
log-ratios :math:`h(y) = \log\pi_\theta(y) - \log\mu(y)` (summed over the
tokens of the response by the LLM layer), broadcast over any leading axes
``[...]`` and return the per-example loss, never reduced. They are not in
``prefsim.losses``' registry: each needs a target besides the two log-ratios.

The OMD step of THEORY.md §6, against an opponent :math:`\pi_s`, is

.. math:: \pi_{t+1}(y) \propto \pi_t(y)^{1-\eta\tau}\,\mu(y)^{\eta\tau}
          \exp\bigl(\eta\,(P\pi_s)(y)\bigr),

with :math:`\pi_s = \pi_t` for OMD / INPO and :math:`\pi_s = \pi_{t+1/2}`
for the extragradient (EGPO) full step.

Tabular helpers (:func:`online_ipo_tabular`, :func:`inpo_tabular`) evaluate
each loss in expectation over the ``K`` responses of a tabular policy with
exact win rates: they state precisely which step each loss takes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim.games import core
from prefsim.losses import _common

__all__ = ["inpo", "inpo_tabular", "online_ipo", "online_ipo_tabular"]

_ArrayLike = Any


def online_ipo(logratios: _ArrayLike, other_logratios: _ArrayLike,
               win_rate_diff: _ArrayLike, *, tau: float) -> jax.Array:
  r"""Online IPO loss of EGPO: regress the log-ratio margin on win rates.

  .. math:: \ell = \Bigl(h(y) - h(y') - \frac{(P\pi_s)(y) - (P\pi_s)(y')}{\tau}
            \Bigr)^2, \qquad h(y) = \log\frac{\pi_\theta(y)}{\mu(y)}

  for a pair of responses :math:`(y, y')` and an opponent :math:`\pi_s` whose
  win rates :math:`(P\pi_s)(y) = \Pr(y \succ \pi_s)` set the target. The
  gradient is linear in the target, so an unbiased estimate of the win-rate
  difference (e.g. :math:`o(y \succ y'') - o(y' \succ y'')` for a third
  response :math:`y'' \sim \pi_s` and sampled comparison outcomes
  :math:`o \in \{0, 1\}`) gives an unbiased gradient.

  **SGD step = OMD step.** On tabular logits :math:`\theta \in \mathbb R^K`
  (:math:`\pi_\theta = \mathrm{softmax}(\theta)`) with the loss averaged over
  all :math:`K^2` ordered pairs (:func:`online_ipo_tabular`), write
  :math:`g = \theta - \log\mu - P\pi_s/\tau` (so the residual is
  :math:`g_y - g_{y'}`): then
  :math:`L = K^{-2}\sum_{y,y'}(g_y - g_{y'})^2
  = \tfrac2K\sum_y (g_y - \bar g)^2` and :math:`\nabla_\theta L = \tfrac4K(g - \bar g)`. One SGD step with
  learning rate ``lr`` from :math:`\theta = \log\pi_t` (up to a constant) gives
  :math:`\theta' = (1 - \tfrac{4\,lr}{K})\log\pi_t + \tfrac{4\,lr}{K}\log\mu
  + \tfrac{4\,lr}{K\tau}P\pi_s + \mathrm{const}`, exactly the OMD step with

  .. math:: \eta = \frac{4\,lr}{K\,\tau}\qquad(\eta\tau = 4\,lr/K).

  It is exact, not first order (the loss is quadratic in :math:`\theta`).
  Averaging over the :math:`K(K-1)` pairs with :math:`y \ne y'` instead
  gives :math:`\eta = 4\,lr/((K-1)\tau)`; pairs drawn from a non-uniform
  :math:`q \otimes q` give the preconditioned step
  :math:`\nabla_y = 4q_y(g_y - q^\top g)`, not an OMD step.

  Args:
    logratios: :math:`h(y) = \log\pi_\theta(y) - \log\mu(y)` of the first
      responses, ``[...]``.
    other_logratios: :math:`h(y')` of the second responses, ``[...]``.
    win_rate_diff: :math:`(P\pi_s)(y) - (P\pi_s)(y')` or an unbiased
      estimate of it, ``[...]``; held fixed (no gradient flows into it here,
      pass a stopped value if it depends on the parameters).
    tau: KL strength :math:`\tau`, > 0.
  Returns:
    The per-example loss, ``[...]``.
  Raises:
    ValueError: the three arrays differ in shape, or (eagerly) ``tau <= 0``.
  References:
    Zhou, Fazel, Du. Extragradient Preference Optimization (EGPO): Beyond
    Last-Iterate Convergence for Nash Learning from Human Feedback.
    arXiv:2503.08942 (the online IPO loss; equation numbers not checked).
  Tests:
    tests/games/test_losses.py::test_online_ipo_sgd_step_is_the_omd_step,
    tests/games/test_losses.py::test_online_ipo_sampled_targets_give_the_exact_gradient,
    tests/games/test_losses.py::test_losses_match_their_formulas,
    tests/games/test_losses.py::test_losses_finite_and_broadcast,
    tests/games/test_losses.py::test_losses_reject_bad_input.
  """
  _checks.check_positive("tau", tau)
  h, h_other, target = _common.same_shape_floats(
      logratios=logratios, other_logratios=other_logratios,
      win_rate_diff=win_rate_diff)
  return (h - h_other - target / tau) ** 2


def inpo(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike,
         chosen_prev_logratios: _ArrayLike,
         rejected_prev_logratios: _ArrayLike, *, eta: float,
         tau: float) -> jax.Array:
  r"""INPO loss: its minimiser over pairs from :math:`\pi_t` is the OMD step.

  .. math:: \ell = \bigl(h_t(y_w, y_l) - \tfrac{\eta}{2}\bigr)^2, \qquad
            h_t(y, y') = \log\frac{\pi_\theta(y)}{\pi_\theta(y')}
            - (1 - \eta\tau)\log\frac{\pi_t(y)}{\pi_t(y')}
            - \eta\tau\log\frac{\mu(y)}{\mu(y')},

  computed from log-ratios to the reference as
  :math:`h_t = (h_w - h_l) - (1-\eta\tau)(h^t_w - h^t_l)` with
  :math:`h = \log\pi_\theta/\mu` and :math:`h^t = \log\pi_t/\mu`.

  **Minimiser = OMD step.** For :math:`y, y' \sim \pi_t` independently and a
  label drawn from :math:`P`, the expected loss is
  :math:`\mathbb E_{y,y'}\bigl[(h_t(y,y') - \eta(P_{yy'} - \tfrac12))^2\bigr]`
  plus a constant (:math:`h_t` is antisymmetric). Over tabular logits,
  :math:`h_t(y,y') = a_y - a_{y'}`; the normal equations
  :math:`\sum_{y'}\pi_t(y')\,[a_y - a_{y'} - \eta(P_{yy'} - \tfrac12)] = 0`
  give :math:`a = \eta P\pi_t + \mathrm{const}`, i.e.
  :math:`\pi_\theta \propto \pi_t^{1-\eta\tau}\mu^{\eta\tau}e^{\eta P\pi_t}`:
  the minimiser is the OMD step with the same :math:`\eta` (a minimiser, not a
  single SGD step; and only with both responses drawn from :math:`\pi_t`).

  Args:
    chosen_logratios: :math:`\log\pi_\theta(y_w) - \log\mu(y_w)` of the
      preferred responses, ``[...]``.
    rejected_logratios: same for the dispreferred responses, ``[...]``.
    chosen_prev_logratios: :math:`\log\pi_t(y_w) - \log\mu(y_w)` under the
      previous iterate :math:`\pi_t` (fixed), ``[...]``.
    rejected_prev_logratios: same for the dispreferred responses, ``[...]``.
    eta: OMD step size :math:`\eta`, > 0.
    tau: KL strength :math:`\tau \ge 0`, with :math:`\eta\tau \le 1`.
  Returns:
    The per-example loss, ``[...]``.
  Raises:
    ValueError: the four arrays differ in shape, or (eagerly) ``eta <= 0``,
      ``tau < 0`` or ``eta * tau > 1``.
  References:
    Zhang, Yu, Peng, Song, Tian, Huo, Jiang, Mi, Yu. Iterative Nash Policy
    Optimization: Aligning LLMs with General Preferences via No-Regret
    Learning. ICLR 2025, arXiv:2407.00617 (the INPO loss; equation numbers
    not checked).
  Tests:
    tests/games/test_losses.py::test_inpo_minimiser_is_the_omd_step,
    tests/games/test_losses.py::test_inpo_sampled_pairs_give_the_exact_gradient,
    tests/games/test_losses.py::test_losses_match_their_formulas,
    tests/games/test_losses.py::test_losses_finite_and_broadcast,
    tests/games/test_losses.py::test_losses_reject_bad_input.
  """
  _checks.check_positive("eta", eta)
  _checks.check_nonnegative("tau", tau)
  hw, hl, pw, pl = _common.same_shape_floats(
      chosen_logratios=chosen_logratios, rejected_logratios=rejected_logratios,
      chosen_prev_logratios=chosen_prev_logratios,
      rejected_prev_logratios=rejected_prev_logratios)
  _checks.check_in_range("eta * tau", eta * tau, 0.0, 1.0)
  h = (hw - hl) - (1 - eta * tau) * (pw - pl)
  return (h - eta / 2) ** 2


def _pair_grid(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``x[..., K]`` as the first and second entries of all ``K^2`` pairs."""
  k = x.shape[-1]
  shape = x.shape[:-1] + (k, k)
  return (jnp.broadcast_to(x[..., :, None], shape),
          jnp.broadcast_to(x[..., None, :], shape))


def online_ipo_tabular(logits: _ArrayLike, P: _ArrayLike, ref: _ArrayLike,
                       opponent: _ArrayLike, *, tau: float) -> jax.Array:
  r""":func:`online_ipo` averaged over all ``K^2`` ordered pairs, exact targets.

  .. math:: L(\theta) = \frac1{K^2}\sum_{y,y'}\Bigl(h_\theta(y) - h_\theta(y')
            - \frac{(P\pi_s)(y) - (P\pi_s)(y')}{\tau}\Bigr)^2

  One SGD step with learning rate ``lr`` on ``logits`` (from
  :math:`\log\pi_t`) is the OMD step against ``opponent`` with
  :math:`\eta = 4\,lr/(K\tau)` (derivation in :func:`online_ipo`).

  Args:
    logits: ``[..., K]`` logits of :math:`\pi_\theta`.
    P: ``[..., K, K]`` preference matrix.
    ref: ``[..., K]`` reference policy :math:`\mu` (full support).
    opponent: ``[..., K]`` the policy :math:`\pi_s` whose win rates are the
      target (:math:`\pi_t`, or :math:`\pi_{t+1/2}` for EGPO's full step).
    tau: KL strength, > 0.
  Returns:
    ``[...]`` the mean loss.
  Tests:
    tests/games/test_losses.py::test_online_ipo_sgd_step_is_the_omd_step.
  """
  core.check_game(P, ref, tau, opponent, pi_name="opponent")
  logits = _common.as_float(logits)
  logratios = jax.nn.log_softmax(logits, axis=-1) - jnp.log(ref)
  win = jnp.einsum("...jk,...k->...j", jnp.asarray(P) - 0.5, opponent)
  first, second = _pair_grid(logratios)
  win_first, win_second = _pair_grid(win)
  loss = online_ipo(first, second, win_first - win_second, tau=tau)
  return jnp.mean(loss, axis=(-2, -1))


def inpo_tabular(logits: _ArrayLike, P: _ArrayLike, ref: _ArrayLike,
                 prev: _ArrayLike, *, eta: float, tau: float) -> jax.Array:
  r"""The expected :func:`inpo` loss over pairs from ``prev``, exact labels.

  .. math:: L(\theta) = \sum_{w,l}2\,\pi_t(w)\,\pi_t(l)\,P_{wl}\,
            \bigl(h_t(w, l) - \tfrac{\eta}{2}\bigr)^2,

  the expected per-example loss when both responses are drawn from
  :math:`\pi_t` independently and the winner from :math:`P`
  (:math:`\Pr[(y_w, y_l) = (w, l)] = 2\pi_t(w)\pi_t(l)P_{wl}`). Its
  minimiser over ``logits`` is the OMD step
  :math:`\pi_t^{1-\eta\tau}\mu^{\eta\tau}e^{\eta P\pi_t}` (derivation in
  :func:`inpo`).

  Args:
    logits: ``[..., K]`` logits of :math:`\pi_\theta`.
    P: ``[..., K, K]`` preference matrix.
    ref: ``[..., K]`` reference policy :math:`\mu` (full support).
    prev: ``[..., K]`` the previous iterate :math:`\pi_t` (full support).
    eta: OMD step size, > 0.
    tau: KL strength, ``>= 0``, with ``eta * tau <= 1``.
  Returns:
    ``[...]`` the expected loss.
  Tests:
    tests/games/test_losses.py::test_inpo_minimiser_is_the_omd_step,
    tests/games/test_losses.py::test_inpo_sampled_pairs_give_the_exact_gradient.
  """
  core.check_game(P, ref, tau, prev, pi_name="prev")
  logits = _common.as_float(logits)
  log_ref = jnp.log(ref)
  logratios = jax.nn.log_softmax(logits, axis=-1) - log_ref
  prev = jnp.asarray(prev)
  w, l = _pair_grid(logratios)
  pw, pl = _pair_grid(jnp.log(prev) - log_ref)
  loss = inpo(w, l, pw, pl, eta=eta, tau=tau)
  weight = 2.0 * prev[..., :, None] * prev[..., None, :] * jnp.asarray(P)
  return jnp.sum(weight * loss, axis=(-2, -1))
