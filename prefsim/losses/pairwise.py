r"""Pairwise losses of the DPO family: pure functions of two log-ratios.

Every function here has the signature
``loss(chosen_logratios, rejected_logratios, *, beta, **hyper)``: the two
log-ratios :math:`h_w = \log\pi_\theta(y_w|x) - \log\pi_{\rm ref}(y_w|x)` and
:math:`h_l` of the labelled-chosen and labelled-rejected responses, of equal
shape ``[...]`` (any leading axes, e.g. ``[B]`` or ``[S, P]``), and returns the
per-example loss of that shape, never reduced: the caller reduces.
:math:`\Delta = h_w - h_l` is the log-ratio margin and :math:`\sigma` the
logistic function. Values are computed in log-sigmoid form only, so that
values and gradients stay finite for margins up to :math:`\pm 10^4` in
float32.

Length normalisation (TRL's ``sigmoid_norm`` and any averaged variant) is
the caller's choice: pass length-averaged log-ratios in the two slots.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim.losses import _common

__all__ = [
    "aot",
    "aot_unpaired",
    "apo_down",
    "apo_zero",
    "bco_pair",
    "cdpo",
    "discopop",
    "dpo",
    "exo_pair",
    "hinge",
    "ipo",
    "nca_pair",
    "rdpo",
    "sppo_hard",
]

_ArrayLike = Any


def dpo(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
        beta: float) -> jax.Array:
  r"""Direct Preference Optimization loss (TRL ``"sigmoid"``).

  .. math:: \ell(\Delta) = -\log\sigma(\beta\Delta),
            \qquad \Delta = h_w - h_l

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature of the implicit reward, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Rafailov, Sharma, Mitchell, Ermon, Manning, Finn. Direct Preference
    Optimization: Your Language Model is Secretly a Reward Model. NeurIPS
    2023, arXiv:2305.18290, Eq. 7.
    Tests: tests/losses/test_pairwise.py::test_matches_trl_formulas,
    tests/losses/test_pairwise.py::test_soft_label_dpo_optimum_is_logit,
    tests/losses/test_pairwise.py::test_tabular_dpo_converges_to_kl_optimal.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return -log_sigmoid(beta * (hw - hl))


def cdpo(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
         beta: float, eps: float = 0.0) -> jax.Array:
  r"""Conservative DPO: DPO against labels smoothed with weight ``eps``.

  TRL's ``"sigmoid"`` loss with ``label_smoothing=eps``. Here ``eps`` is a
  *smoothing weight* (the target for the labelled-chosen response is
  :math:`1-\epsilon`), not an assumed flip rate; compare :func:`rdpo`.

  .. math:: \ell(\Delta) = -(1-\epsilon)\log\sigma(\beta\Delta)
            - \epsilon\log\sigma(-\beta\Delta)

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
    eps: label-smoothing weight in [0, 1); ``eps = 0`` is :func:`dpo`.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Mitchell. A note on DPO with noisy preferences and relationship to IPO
    (2023), the cDPO loss. Under flips at rate eps its population optimum
    shrinks twice, to eps + (1-2eps) q:
    tests/losses/test_pairwise.py::test_population_optima_under_flips.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_in_range("eps", eps, 0.0, 1.0, high_open=True)
  return _common.smoothed_logistic(beta * (hw - hl), eps)


def rdpo(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
         beta: float, eps: float = 0.0) -> jax.Array:
  r"""Robust DPO loss, unbiased under label flips at rate ``eps``.

  TRL's ``"robust"`` loss with ``label_smoothing=eps``. Here ``eps`` is the
  *assumed flip rate* of the labels, not a smoothing weight; compare
  :func:`cdpo`.

  .. math:: \ell(\Delta) = \frac{-(1-\epsilon)\log\sigma(\beta\Delta)
            + \epsilon\log\sigma(-\beta\Delta)}{1-2\epsilon}

  For every margin, :math:`(1-\epsilon)\,\ell(\Delta) + \epsilon\,\ell(-\Delta)
  = -\log\sigma(\beta\Delta)`: its expectation over flipped labels is the
  clean DPO loss. For ``eps > 0`` the per-example value is unbounded below
  (it falls like :math:`-\epsilon\beta|\Delta|/(1-2\epsilon)` for a large
  negative margin), so only its expectation is well posed: an empirical
  rDPO objective over few or noisy samples can diverge, and the paper's
  guarantee assumes a bounded parameter set (project onto it). Values and
  gradients stay finite for finite margins.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
    eps: flip rate in [0, 0.5); ``eps = 0`` is :func:`dpo`.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Chowdhury, Kini, Natarajan. Provably Robust DPO: Aligning Language
    Models with Noisy Feedback. ICML 2024, arXiv:2403.00409, Sec. 3
    (the robust loss; its equation number not checked in the paper text).
    Unbiasedness: tests/losses/test_pairwise.py::test_rdpo_unbiased_under_flips;
    population optimum sigma(beta Delta*) = p:
    tests/losses/test_pairwise.py::test_population_optima_under_flips.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_in_range("eps", eps, 0.0, 0.5, high_open=True)
  z = beta * (hw - hl)
  # = [-(1-eps) log s(z) + eps log s(-z)] / (1-2eps), using
  # log s(-z) = log s(z) - z: one log-sigmoid instead of two.
  return -log_sigmoid(z) - eps * z / (1 - 2 * eps)


def ipo(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
        beta: float) -> jax.Array:
  r"""Identity Preference Optimization loss (TRL ``"ipo"``).

  .. math:: \ell(\Delta) = \Big(\Delta - \frac{1}{2\beta}\Big)^2

  ``beta`` plays IPO's regularisation :math:`\tau`. The scale of
  :math:`\Delta` is the caller's choice: TRL passes log-ratios averaged over
  the tokens of each response, summed log-ratios give another loss. For one
  pair with win probability :math:`p` the population optimum is
  :math:`\Delta^* = (2p-1)/(2\beta)`, finite even at :math:`p = 1`.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: regularisation strength :math:`\tau`, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Azar, Rowland, Piot, Guo, Calandriello, Valko, Munos. A General
    Theoretical Paradigm to Understand Learning from Human Preferences.
    AISTATS 2024, arXiv:2310.12036, Eq. 17 (empirical IPO loss).
    Optimum: tests/losses/test_pairwise.py::test_ipo_optimum_is_finite.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return (hw - hl - 1 / (2 * beta)) ** 2


def hinge(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
          beta: float) -> jax.Array:
  r"""Hinge loss on the log-ratio margin (SLiC; TRL ``"hinge"``).

  .. math:: \ell(\Delta) = \max(0,\ 1 - \beta\Delta)

  ``beta`` is the inverse of SLiC's margin :math:`\delta = 1/\beta`. The
  gradient at the kink :math:`\beta\Delta = 1` is taken as 0.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse margin, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Zhao, Joshi, Liu, Khalman, Saleh, Liu. SLiC-HF: Sequence Likelihood
    Calibration with Human Feedback. arXiv:2305.10425 (the rank-calibration
    loss with the reference log-ratio in place of the log-likelihood).
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return jax.nn.relu(1 - beta * (hw - hl))


def exo_pair(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float, eps: float = 1e-3) -> jax.Array:
  r"""Pairwise EXO loss: reverse KL from the model's pair distribution to the
  smoothed labels (TRL ``"exo_pair"``).

  With :math:`z = \beta\Delta`, the model's distribution over the pair is
  :math:`(\sigma(z), \sigma(-z))` and the label distribution is
  :math:`(1-\epsilon, \epsilon)`:

  .. math:: \ell(\Delta) = \sigma(z)\big(\log\sigma(z) - \log(1-\epsilon)\big)
            + \sigma(-z)\big(\log\sigma(-z) - \log\epsilon\big)

  ``eps`` is a label-smoothing weight (TRL's ``label_smoothing``); the
  formula has :math:`\log\epsilon`, so ``eps = 0`` is refused. The default
  ``1e-3`` is the value older TRL versions substitute for
  ``label_smoothing = 0``. The minimum over :math:`\Delta` is 0, at
  :math:`\sigma(z) = 1-\epsilon`.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
    eps: label-smoothing weight in (0, 1).
  Returns:
    The per-example loss, ``[...]``.
  References:
    Ji, Huang, Lu, Zhou, Shi, Yu, Zhu, Zhou. Towards Efficient Exact
    Optimization of Language Model Alignment. ICML 2024, arXiv:2402.00856,
    Eq. 16 (EXO-pref with K = 2).
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_in_range("eps", eps, 0.0, 1.0, low_open=True, high_open=True)
  return _bernoulli_kl(beta * (hw - hl), eps)


def _xlogx_minus_x_plus_1(a: jax.Array) -> jax.Array:
  r""":math:`\phi(1+a) = (1+a)\log(1+a) - a \ge 0` for :math:`a > -1`,
  accurate near :math:`a = 0` (where it is :math:`a^2/2 + O(a^3)`) by its
  alternating series :math:`\sum_{n\ge2} (-a)^n / (n(n-1))`."""
  small = jnp.abs(a) < 0.1
  a_s = jnp.where(small, a, 0.0)
  a_b = jnp.where(small, 0.5, a)
  series = 0.0
  for n in range(9, 1, -1):                      # Horner, a^2 (1/2 - a/6 ...)
    series = series * a_s + (-1) ** n / (n * (n - 1))
  series = series * a_s * a_s
  return jnp.where(small, series, (1 + a_b) * jnp.log1p(a_b) - a_b)


def _bernoulli_kl(z: jax.Array, eps: Any) -> jax.Array:
  r"""Bernoulli KL, :math:`\mathrm{KL}(B(\sigma(z))\,\|\,B(1-\epsilon))`.

  Near its minimum, :math:`z \approx t = \log((1-\epsilon)/\epsilon)`, the
  KL is second order in :math:`d = z - t` while the textbook form is a
  difference of first-order terms; there it is computed as
  :math:`p\,\phi(q/p) + (1-p)\,\phi((1-q)/(1-p))`, a sum of
  non-negative terms with :math:`q/p - 1 = \mathrm{expm1}(d)\sigma(-z)` and
  :math:`(1-q)/(1-p) - 1 = \mathrm{expm1}(-d)\sigma(z)`.
  """
  log_qw, log_ql = log_sigmoid(z), log_sigmoid(-z)
  textbook = (jnp.exp(log_qw) * (log_qw - jnp.log1p(-eps))
              + jnp.exp(log_ql) * (log_ql - jnp.log(eps)))
  t = jnp.log1p(-eps) - jnp.log(eps)
  near = jnp.abs(z - t) < 1.0
  d = jnp.where(near, z - t, 0.0)
  z_near = jnp.where(near, z, t)
  accurate = ((1 - eps) * _xlogx_minus_x_plus_1(
      jnp.expm1(d) * jax.nn.sigmoid(-z_near))
              + eps * _xlogx_minus_x_plus_1(
                  jnp.expm1(-d) * jax.nn.sigmoid(z_near)))
  return jnp.where(near, accurate, textbook)


def nca_pair(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float) -> jax.Array:
  r"""Pairwise NCA loss with a hard label (TRL ``"nca_pair"``).

  .. math:: \ell = -\log\sigma(\beta h_w) - \tfrac12\log\sigma(-\beta h_w)
            - \tfrac12\log\sigma(-\beta h_l)

  It is :func:`prefsim.losses.nca` with ``K = 2`` and target
  probabilities ``(1, 0)``. Unlike DPO it depends on each log-ratio, not
  only on their difference.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Chen, Zheng, Sun, Hu, Zhu. Noise Contrastive Alignment of Language
    Models with Explicit Rewards. NeurIPS 2024, arXiv:2402.05369 (NCA loss,
    K = 2). Tests: tests/losses/test_pairwise.py::test_matches_trl_formulas,
    tests/losses/test_listwise.py::test_nca_pair_is_nca_with_hard_labels.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return (-log_sigmoid(beta * hw) - 0.5 * log_sigmoid(-beta * hw)
          - 0.5 * log_sigmoid(-beta * hl))


def bco_pair(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float, delta: _ArrayLike = 0.0) -> jax.Array:
  r"""Pairwise Binary Classifier Optimization loss (TRL ``"bco_pair"``).

  Each response is classified on its own reward :math:`\beta h` against a
  shift :math:`\delta`:

  .. math:: \ell = -\log\sigma(\beta h_w - \delta)
            - \log\sigma(-(\beta h_l - \delta))

  TRL versions that use a shift take :math:`\delta` as a running mean of
  the rewards, outside the gradient; pass it here (a scalar or an array
  broadcasting against the log-ratios), it is treated as data. Recent TRL
  versions use :math:`\delta = 0`, the default.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
    delta: reward shift, scalar or broadcasting against ``[...]``.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Jung, Han, Kim, Shin, Lee, Kim. Binary Classifier Optimization for Large
    Language Model Alignment. arXiv:2404.04656v2 (ACL 2025), Eq. 8 (the
    BCO loss with reward shift, rewards :math:`r_\theta = \beta h`) and
    Eq. 7 (:math:`\delta` the mean of the chosen and rejected rewards,
    kept as a moving average). Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  delta = jax.lax.stop_gradient(jnp.asarray(delta, hw.dtype))
  return (-log_sigmoid(beta * hw - delta)
          - log_sigmoid(-(beta * hl - delta)))


def sppo_hard(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
              beta: float) -> jax.Array:
  r"""SPPO loss with hard win probabilities (TRL ``"sppo_hard"``).

  SPPO regresses each log-ratio on :math:`(P(y \succ \pi) - \tfrac12)/\beta`;
  with the hard probabilities 1 for the winner and 0 for the loser:

  .. math:: \ell = \Big(h_w - \frac{1}{2\beta}\Big)^2
            + \Big(h_l + \frac{1}{2\beta}\Big)^2

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse of SPPO's step size :math:`\eta`, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    Wu, Sun, Yuan, Ji, Yang, Gu. Self-Play Preference Optimization for
    Language Model Alignment. arXiv:2405.00675, Eq. 4.7 (Algorithm 1) with
    P = 1 for the winner and 0 for the loser.
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return (hw - 0.5 / beta) ** 2 + (hl + 0.5 / beta) ** 2


def apo_zero(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float) -> jax.Array:
  r"""Anchored Preference Optimization, zero anchor (TRL ``"apo_zero"``).

  Raises the chosen and lowers the rejected likelihood, each against the
  reference:

  .. math:: \ell = 1 - \sigma(\beta h_w) + \sigma(\beta h_l)

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    D'Oosterlinck, Xu, Develder, Demeester, Singh, Potts, Kiela, Mehri.
    Anchored Preference Optimization and Contrastive Revisions.
    arXiv:2408.06266, Eq. 7.
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return jax.nn.sigmoid(-beta * hw) + jax.nn.sigmoid(beta * hl)


def apo_down(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float) -> jax.Array:
  r"""Anchored Preference Optimization, down anchor (TRL ``"apo_down"``).

  Lowers the chosen likelihood and the rejected one more:

  .. math:: \ell = \sigma(\beta h_w) + 1 - \sigma(\beta\Delta)

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
  Returns:
    The per-example loss, ``[...]``.
  References:
    D'Oosterlinck et al. Anchored Preference Optimization and Contrastive
    Revisions. arXiv:2408.06266, Eq. 8.
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  return jax.nn.sigmoid(beta * hw) + jax.nn.sigmoid(-beta * (hw - hl))


def discopop(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
             beta: float, tau: float = 0.05) -> jax.Array:
  r"""DiscoPOP, the log-ratio modulated loss (TRL ``"discopop"``).

  With :math:`z = \beta\Delta`, a blend of the logistic and exponential
  losses, weighted by :math:`\sigma(z/\tau)`:

  .. math:: \ell = \big(1-\sigma(z/\tau)\big)\,\big(-\log\sigma(z)\big)
            + \sigma(z/\tau)\, e^{-z}

  Computed as :math:`\sigma(-z/\tau)\,\mathrm{softplus}(-z)
  + \exp(\log\sigma(z/\tau) - z)`, finite at every margin for
  :math:`\tau < 1` (TRL's direct form gives ``0 * inf = nan`` at large
  negative margins). For :math:`\tau \ge 1` the exact value grows like
  :math:`e^{|z|(1-1/\tau)}` as :math:`z \to -\infty` and overflows.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses, ``[...]``.
    rejected_logratios: same for the labelled-rejected responses, ``[...]``.
    beta: inverse temperature, > 0.
    tau: modulation temperature, > 0 (TRL's ``discopop_tau``, default 0.05).
  Returns:
    The per-example loss, ``[...]``.
  References:
    Chris Lu, Holt, Fanconi, Chan, Foerster, van der Schaar, Lange.
    Discovering Preference Optimization Algorithms with and for Large
    Language Models. NeurIPS 2024, arXiv:2406.08414, Eq. 5.
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_positive("tau", tau)
  z = beta * (hw - hl)
  return (jax.nn.sigmoid(-z / tau) * jax.nn.softplus(-z)
          + jnp.exp(log_sigmoid(z / tau) - z))


def aot(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike, *,
        beta: float, ref_margins: _ArrayLike, eps: float = 0.0) -> jax.Array:
  r"""Alignment via Optimal Transport, paired data (TRL ``"aot"``).

  Asks the batch distribution of the policy's margins
  :math:`u = \log\pi_\theta(y_w) - \log\pi_\theta(y_l)` to dominate that of
  the reference's margins :math:`v = \log\pi_{\rm ref}(y_w) -
  \log\pi_{\rm ref}(y_l)` (first-order stochastic dominance), by matching
  sorted samples. With :math:`u = \Delta + v` and :math:`(\cdot)_{(i)}` the
  :math:`i`-th smallest over the batch axis:

  .. math:: \ell_i = -(1-\epsilon)\log\sigma(\beta(u_{(i)} - v_{(i)}))
            - \epsilon\log\sigma(-\beta(u_{(i)} - v_{(i)}))

  The log-ratios alone do not determine :math:`u` and :math:`v`, so this
  loss also takes the reference margins. Entry ``i`` of the result
  belongs to the ``i``-th quantile, not to example ``i``: only its sum or
  mean over the batch axis is meaningful.

  Args:
    chosen_logratios: log pi/pi_ref of the labelled-chosen responses,
      ``[..., B]``; the last axis is the batch that is sorted.
    rejected_logratios: same for the labelled-rejected responses, ``[..., B]``.
    beta: inverse temperature, > 0.
    ref_margins: :math:`\log\pi_{\rm ref}(y_w) - \log\pi_{\rm ref}(y_l)`,
      ``[..., B]``.
    eps: label-smoothing weight in [0, 1) (TRL's ``label_smoothing``).
  Returns:
    ``[..., B]`` losses of the sorted pairs.
  References:
    Melnyk, Mroueh, Belgodere, Rigotti, Nitsure, Yurochkin, Greenewald,
    Navratil, Ross. Distributional Preference Alignment of LLMs via Optimal
    Transport. NeurIPS 2024, arXiv:2406.05882 (AOT, paired).
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_same_shape(chosen_logratios=hw, ref_margins=ref_margins)
  _checks.check_in_range("eps", eps, 0.0, 1.0, high_open=True)
  if hw.ndim < 1:
    raise ValueError("aot sorts over the batch axis: chosen_logratios must "
                     f"have at least 1 axis, got shape {hw.shape}")
  v = jnp.asarray(ref_margins, hw.dtype)
  u = hw - hl + v
  delta = jnp.sort(u, axis=-1) - jnp.sort(v, axis=-1)
  return _common.smoothed_logistic(beta * delta, eps)


def aot_unpaired(chosen_logratios: _ArrayLike, rejected_logratios: _ArrayLike,
                 *, beta: float, eps: float = 0.0) -> jax.Array:
  r"""Alignment via Optimal Transport, unpaired data (TRL ``"aot_pair"`` in
  older versions, ``"aot_unpaired"`` in newer ones).

  Asks the batch distribution of chosen log-ratios to dominate that of the
  rejected ones, by matching sorted samples; chosen and rejected responses
  need not come in pairs. With :math:`(\cdot)_{(i)}` the :math:`i`-th
  smallest over the batch axis:

  .. math:: \ell_i = -(1-\epsilon)\log\sigma(\beta(h_{w,(i)} - h_{l,(i)}))
            - \epsilon\log\sigma(-\beta(h_{w,(i)} - h_{l,(i)}))

  Entry ``i`` of the result belongs to the ``i``-th quantile, not to
  example ``i``: only its sum or mean over the batch axis is meaningful.

  Args:
    chosen_logratios: log pi/pi_ref of chosen responses, ``[..., B]``; the last
      axis is the batch that is sorted.
    rejected_logratios: same for rejected responses, ``[..., B]``.
    beta: inverse temperature, > 0.
    eps: label-smoothing weight in [0, 1) (TRL's ``label_smoothing``).
  Returns:
    ``[..., B]`` losses of the sorted pairs.
  References:
    Melnyk et al. Distributional Preference Alignment of LLMs via Optimal
    Transport. NeurIPS 2024, arXiv:2406.05882 (AOT, unpaired).
    Test: tests/losses/test_pairwise.py::test_matches_trl_formulas.
  """
  hw, hl = _common.pair(chosen_logratios, rejected_logratios, beta)
  _checks.check_in_range("eps", eps, 0.0, 1.0, high_open=True)
  if hw.ndim < 1:
    raise ValueError("aot_unpaired sorts over the batch axis: "
                     "chosen_logratios must have at least 1 axis, got shape "
                     f"{hw.shape}")
  delta = jnp.sort(hw, axis=-1) - jnp.sort(hl, axis=-1)
  return _common.smoothed_logistic(beta * delta, eps)
