r"""Coverage coefficients, offline/online/hybrid training, ranking accuracy.

Coverage measures how well a data distribution :math:`\mu` (the reference or
behaviour policy that generated the pairs) covers a policy :math:`\pi`:

.. math:: C(\pi, \mu) = \max_{x, y}\ \frac{\pi(y\mid x)}{\mu(y\mid x)},

``+inf`` where :math:`\pi` puts mass outside :math:`\mu`'s support. Offline
contrastive methods (DPO) need it bounded over the whole policy class (global
coverage); online RLHF needs it only near :math:`\pi_{\rm ref}` (Song et al.
2024). Policies are log-probabilities ``[X, K]``, as in
:mod:`prefsim.policies`; a policy class is a stack ``[N, X, K]``.

Training without global coverage: on a :class:`CoverageProblem` (a
log-linear contextual bandit with a fixed offline data set; one-hot
features make it tabular) :func:`offline_dpo` trains on the data alone,
:func:`online_rlhf` fits a Bradley-Terry reward model on it and then
optimises on-policy, and :func:`hypo` adds to DPO a reverse-KL penalty
estimated from on-policy samples (Song et al. 2024). Each is an
:class:`prefsim.Algorithm` whose ``info`` records the true reward, the KL
to :math:`\pi_{\rm ref}` and the mass outside the data's support.

Ranking accuracy (Chen et al. 2024) asks whether a policy gives the chosen
response at least the probability of the rejected one, and compares it with
the accuracy of the exact DPO/RLHF optimum, the idealized accuracy.

References:
  Song, Swamy, Singh, Bagnell, Sun. The Importance of Online Data:
  Understanding Preference Fine-tuning via Coverage. NeurIPS 2024,
  arXiv:2406.01462.
  Chen, Malladi, Zhang, Chen, Zhang, Ranganath, Cho. Preference Learning
  Algorithms Do Not Learn Preference Rankings. arXiv:2405.19534, 2024.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim import _optim
from prefsim import loglinear
from prefsim import losses
from prefsim import offline
from prefsim import policies
from prefsim.data import PreferenceData
from prefsim.policies import kl
from prefsim.run import Algorithm

__all__ = [
    "CoverageProblem",
    "RLHFState",
    "TrainerState",
    "check_reference_support",
    "chi2_coverage",
    "coverage",
    "coverage_problem",
    "dpo_loss_threshold",
    "dpo_ranks_correctly",
    "fit_reward_model",
    "global_coverage",
    "hypo",
    "idealized_ranking_accuracy",
    "kl_regularised_reward",
    "local_coverage",
    "offline_dpo",
    "online_rlhf",
    "optimal_log_ratio",
    "out_of_support_mass",
    "policy_logprobs",
    "ranking_accuracy",
    "score_function_surrogate",
    "support_mask",
    "tabular_features",
]

# Chen et al. 2024 (footnote 5, App. C.4): where every rater agrees
# (alpha = 1), the losing share gets 0.001, so the odds are 1 / 0.001.
_UNANIMOUS_ODDS = 1000.0


def _check_pair(pi: jax.Array, mu: jax.Array) -> None:
  _checks.check_ndim("pi", pi, 2, "[X, K] log-probabilities")
  _checks.check_ndim("mu", mu, 2, "[X, K] log-probabilities")
  _checks.check_same_shape(pi=pi, mu=mu)


def _check_class(policies: jax.Array, mu: jax.Array, name: str) -> None:
  _checks.check_ndim("policies", policies, 3, "[N, X, K] log-probabilities")
  _checks.check_ndim(name, mu, 2, "[X, K] log-probabilities")
  if policies.shape[1:] != mu.shape:
    raise ValueError(f"policies [N, X, K] and {name} [X, K] must share "
                     f"[X, K], got policies {policies.shape} and {name} "
                     f"{mu.shape}")


def _log_ratios(pi: jax.Array, mu: jax.Array) -> jax.Array:
  """log pi - log mu where pi > 0 (+inf where mu = 0), -inf where pi = 0."""
  inside = pi > -jnp.inf
  safe_mu = jnp.where(inside, mu, 0.0)
  return jnp.where(inside, jnp.where(inside, pi, 0.0) - safe_mu, -jnp.inf)


def coverage(pi: jax.Array, mu: jax.Array) -> jax.Array:
  r"""The coverage coefficient of ``pi`` by ``mu`` (a density-ratio bound).

  .. math:: C(\pi, \mu) = \max_{x,\,y:\ \pi(y\mid x) > 0}
            \frac{\pi(y\mid x)}{\mu(y\mid x)}

  over every prompt ``x`` (all prompts count: pass only the prompts in the
  support of the prompt distribution). :math:`C \ge 1` for normalised
  policies, with equality iff :math:`\pi = \mu`; :math:`C = +\infty` where
  :math:`\pi` puts mass on a response that :math:`\mu` never generates. Song
  et al. 2024 (The Importance of Online Data) bound this ratio, with
  :math:`\mu = \pi_{\rm ref}`, over a policy class: see
  :func:`global_coverage`.

  Args:
    pi: ``[X, K]`` log-probabilities of :math:`\pi`.
    mu: ``[X, K]`` log-probabilities of :math:`\mu` (``-inf`` off its
      support).
  Returns:
    The scalar coefficient, ``>= 1`` (``+inf`` without coverage).
  Raises:
    ValueError: if ``pi`` or ``mu`` is not ``[X, K]`` or their shapes differ.
  Tests:
    tests/test_coverage.py::test_coverage_is_at_least_one_and_one_iff_equal,
    tests/test_coverage.py::test_coverage_is_infinite_outside_the_support,
    tests/test_coverage.py::test_rlhf_optimum_ratio_is_bounded_by_reward_range.
  """
  _check_pair(pi, mu)
  return jnp.exp(jnp.max(_log_ratios(pi, mu)))


def chi2_coverage(pi: jax.Array, mu: jax.Array,
                  prompt_logprobs: jax.Array | None = None) -> jax.Array:
  r"""The :math:`L_2(\mu)` (chi-squared) coverage of ``pi`` by ``mu``.

  .. math:: C_{\chi^2}(\pi, \mu)
            = \mathbb{E}_{x\sim\rho}\,\mathbb{E}_{y\sim\mu(\cdot\mid x)}
              \Big[\Big(\frac{\pi(y\mid x)}{\mu(y\mid x)}\Big)^2\Big]
            = \mathbb{E}_{x\sim\rho}\,\mathbb{E}_{y\sim\pi(\cdot\mid x)}
              \Big[\frac{\pi(y\mid x)}{\mu(y\mid x)}\Big]
            = 1 + \mathbb{E}_{x\sim\rho}\,\chi^2(\pi\|\mu)

  The average, not the worst case, of the density ratio under :math:`\pi`:
  :math:`1 \le C_{\chi^2} \le C` (:func:`coverage`), with equality on the
  left iff :math:`\pi = \mu` on the support of :math:`\rho`, and
  :math:`+\infty` where :math:`\pi` leaves :math:`\mu`'s support. This is
  prefsim's definition (the squared :math:`L_2(\mu)` norm of the density
  ratio, i.e. one plus the chi-squared divergence); Song et al. 2024 state
  their conditions with the sup-ratio of :func:`coverage`.

  Args:
    pi: ``[X, K]`` log-probabilities of :math:`\pi`.
    mu: ``[X, K]`` log-probabilities of :math:`\mu`.
    prompt_logprobs: ``[X]`` log-probabilities of the prompt distribution
      :math:`\rho`; uniform when None.
  Returns:
    The scalar coefficient, ``>= 1``.
  Raises:
    ValueError: on shapes as in :func:`coverage`, or a ``prompt_logprobs``
      that is not ``[X]``.
  Tests:
    tests/test_coverage.py::test_chi2_coverage_lies_between_one_and_coverage.
  """
  _check_pair(pi, mu)
  if prompt_logprobs is not None and prompt_logprobs.shape != pi.shape[:1]:
    raise ValueError(f"prompt_logprobs must have shape [X] = {pi.shape[:1]}, "
                     f"got {prompt_logprobs.shape}")
  # E_pi[pi / mu] per prompt, in log space: logsumexp(2 log pi - log mu).
  per_prompt = jnp.exp(jax.nn.logsumexp(pi + _log_ratios(pi, mu), axis=-1))
  if prompt_logprobs is None:
    return jnp.mean(per_prompt)
  return jnp.sum(jnp.exp(prompt_logprobs) * per_prompt)


def global_coverage(policies: jax.Array, mu: jax.Array) -> jax.Array:
  r"""The global coverage coefficient of a policy class.

  .. math:: C_{\rm glo} = \max_{\pi\in\Pi}\ \max_{x,y}
            \frac{\pi(y\mid x)}{\mu(y\mid x)}

  The global coverage condition of Song et al. 2024 (The Importance of
  Online Data) bounds this quantity with :math:`\mu = \pi_{\rm ref}`; offline
  contrastive methods need it, online RLHF only the same bound over policies
  in a KL ball around :math:`\pi_{\rm ref}` (pass that subset of the class).

  Args:
    policies: ``[N, X, K]`` log-probabilities of the ``N`` policies of the
      class.
    mu: ``[X, K]`` log-probabilities of :math:`\mu`.
  Returns:
    The scalar coefficient (``+inf`` if any policy leaves :math:`\mu`'s
    support).
  Raises:
    ValueError: if ``policies`` is not ``[N, X, K]`` with ``[X, K]`` the
      shape of ``mu``.
  Tests:
    tests/test_coverage.py::test_global_coverage_is_the_max_over_the_class.
  """
  _check_class(policies, mu, "mu")
  return jnp.exp(jnp.max(_log_ratios(policies, mu[None])))


def local_coverage(policies: jax.Array, ref: jax.Array, radius: float
                   ) -> jax.Array:
  r"""The coverage coefficient of the policies of a class in a KL ball.

  .. math:: C_{\rm loc}(\epsilon) = \max_{\pi\in\Pi:\
            \mathbb{E}_x\mathrm{KL}(\pi\|\pi_{\rm ref}) \le \epsilon}\
            \max_{x,y} \frac{\pi(y\mid x)}{\pi_{\rm ref}(y\mid x)}

  with :math:`\mathbb{E}_x` uniform over the ``X`` prompts. Song et al. 2024
  contrast global coverage (:func:`global_coverage`) with this partial,
  KL-ball coverage, which online RLHF needs (prefsim's reading of their
  condition: the ball is in the prompt-averaged reverse KL). It is at most
  the global coefficient, and equal to it once the ball holds the class.

  Args:
    policies: ``[N, X, K]`` log-probabilities of the class.
    ref: ``[X, K]`` log-probabilities of :math:`\pi_{\rm ref}`.
    radius: :math:`\epsilon \ge 0`.
  Returns:
    The scalar coefficient, ``0`` if no policy of the class lies in the
    ball (a maximum over the empty set).
  Raises:
    ValueError: on shapes as in :func:`global_coverage`, or ``radius < 0``.
  Tests:
    tests/test_coverage.py::test_local_coverage_is_the_max_over_the_kl_ball.
  """
  _checks.check_nonnegative("radius", radius)
  _check_class(policies, ref, "ref")
  inside = jnp.mean(kl(policies, ref[None]), axis=-1) <= radius     # [N]
  per_policy = jnp.max(_log_ratios(policies, ref[None]), axis=(1, 2))
  return jnp.exp(jnp.max(jnp.where(inside, per_policy, -jnp.inf)))


def support_mask(data: PreferenceData, n_prompts: int, n_responses: int
                 ) -> jax.Array:
  r"""Which (prompt, response) cells appear in some pair of a data set.

  .. math:: M_{x,y} = \mathbb{1}\big[\exists p:\ x_p = x,\
            y \in \{y_{w,p}, y_{l,p}\}\big]

  A response with :math:`M_{x,y} = 0` appears in no pair of prompt ``x``:
  the DPO loss on ``data`` does not depend on its log-probability except
  through the normaliser, which cancels in every log-ratio margin.

  Args:
    data: a :class:`~prefsim.data.PreferenceData` of ``P`` comparisons.
    n_prompts: ``X`` (static).
    n_responses: ``K`` (static).
  Returns:
    bool ``[X, K]`` mask.
  Raises:
    ValueError / TypeError: if the indices are out of range or not integers.
  Tests:
    tests/test_coverage.py::test_support_mask_and_out_of_support_mass_by_hand,
    tests/test_coverage.py::test_unseen_logit_moves_kl_not_dpo_loss.
  """
  n_prompts = _checks.check_static_int("n_prompts", n_prompts)
  n_responses = _checks.check_static_int("n_responses", n_responses)
  _checks.check_same_shape(prompt=data.prompt, chosen=data.chosen,
                           rejected=data.rejected)
  _checks.check_indices("data.prompt", data.prompt, n_prompts)
  _checks.check_indices("data.chosen", data.chosen, n_responses)
  _checks.check_indices("data.rejected", data.rejected, n_responses)
  mask = jnp.zeros((n_prompts, n_responses), bool)
  mask = mask.at[data.prompt, data.chosen].set(True)
  return mask.at[data.prompt, data.rejected].set(True)


def out_of_support_mass(logprobs: jax.Array, mask: jax.Array) -> jax.Array:
  r"""The probability a policy puts outside a support mask, per prompt.

  .. math:: m(x) = \sum_{y:\ M_{x,y} = 0} \pi(y\mid x)

  Args:
    logprobs: ``[X, K]`` log-probabilities of :math:`\pi` (or ``[..., X,
      K]``).
    mask: bool ``[X, K]``, e.g. from :func:`support_mask`.
  Returns:
    ``[X]`` (or ``[..., X]``) masses in [0, 1].
  Raises:
    ValueError: if ``mask`` is not ``[X, K]`` with the trailing shape of
      ``logprobs``; TypeError if it is not boolean.
  Tests:
    tests/test_coverage.py::test_support_mask_and_out_of_support_mass_by_hand,
    tests/test_coverage.py::test_unseen_logit_moves_kl_not_dpo_loss.
  """
  _checks.check_ndim("mask", mask, 2, "[X, K]")
  if np.shape(logprobs)[-2:] != np.shape(mask):
    raise ValueError(f"logprobs [..., X, K] and mask [X, K] must share "
                     f"[X, K], got logprobs {np.shape(logprobs)} and mask "
                     f"{np.shape(mask)}")
  if jnp.asarray(mask).dtype != jnp.bool_:
    raise TypeError(
        f"mask must be boolean, got dtype {jnp.asarray(mask).dtype}")
  return jnp.sum(jnp.where(mask, 0.0, jnp.exp(logprobs)), axis=-1)


def check_reference_support(ref_logprobs: jax.Array, data: PreferenceData
                            ) -> None:
  r"""Raise unless the reference gives every response in the data mass.

  DPO's log-ratios :math:`\log\pi(y\mid x) - \log\pi_{\rm ref}(y\mid x)` are
  undefined where :math:`\pi_{\rm ref}(y\mid x) = 0`: a data set whose pairs
  use such a response cannot be trained on against that reference. Values are
  checked eagerly (skipped, not faked, on tracers).

  Args:
    ref_logprobs: ``[X, K]`` log-probabilities of :math:`\pi_{\rm ref}`.
    data: a :class:`~prefsim.data.PreferenceData`.
  Raises:
    ValueError: if ``ref_logprobs`` is not ``[X, K]``, or is ``-inf`` (zero
      probability) at a (prompt, response) cell used by some pair, naming the
      first such cell.
  Tests:
    tests/test_coverage.py::test_bad_inputs_raise.
  """
  _checks.check_ndim("ref_logprobs", ref_logprobs, 2, "[X, K]")
  mask = support_mask(data, *ref_logprobs.shape)
  if not _checks.is_concrete(ref_logprobs, mask):
    return
  bad = np.argwhere(np.asarray(mask) & ~(np.asarray(ref_logprobs) > -np.inf))
  if bad.size:
    x, y = bad[0]
    raise ValueError(f"ref_logprobs gives zero probability to response {y} at "
                     f"prompt {x}, which appears in the data ({len(bad)} such "
                     f"cells): the DPO log-ratio is undefined there")


def _check_pair_axis(**arrays: jax.typing.ArrayLike) -> None:
  """Raises ``ValueError`` unless the arrays share one shape ``[..., P]``."""
  _checks.check_same_shape(**arrays)
  if np.ndim(next(iter(arrays.values()))) < 1:
    raise ValueError(f"{' and '.join(arrays)} must have a pair axis "
                     "[..., P], got scalars")


def ranking_accuracy(logp_w: jax.Array, logp_l: jax.Array) -> jax.Array:
  r"""Ranking accuracy: how often the chosen response is at least as likely.

  .. math:: R = \frac{1}{P}\sum_{p=1}^{P}
            \mathbb{1}\big[\pi(y_{w,p}\mid x_p) \ge \pi(y_{l,p}\mid x_p)\big]

  (ties count as ranked right, Chen et al. 2024, Preference Learning
  Algorithms Do Not Learn Preference Rankings). The mean is over the last
  axis: pass ``[..., P, 1]`` for the per-example indicators.

  Args:
    logp_w: ``[..., P]`` log-probabilities (or sequence log-likelihoods) of
      the chosen responses.
    logp_l: ``[..., P]`` same for the rejected responses.
  Returns:
    ``[...]`` accuracies in [0, 1], in the default float dtype.
  Raises:
    ValueError: if the shapes differ or are scalars.
  Tests:
    tests/test_coverage.py::test_accuracies_by_hand,
    tests/test_coverage.py::test_idealized_accuracy_matches_fitted_dpo.
  """
  _check_pair_axis(logp_w=logp_w, logp_l=logp_l)
  right = jnp.asarray(logp_w) >= jnp.asarray(logp_l)
  return jnp.mean(right.astype(_checks.default_float()), axis=-1)


def _log_odds(alpha: jax.Array, unanimous: jax.Array) -> jax.Array:
  """log(alpha / (1 - alpha)), with `unanimous` where alpha = 1."""
  alpha = jnp.asarray(alpha, _checks.default_float())
  one = alpha == 1
  safe = jnp.where(one, 0.5, alpha)
  return jnp.where(one, unanimous, jnp.log(safe) - jnp.log1p(-safe))


def _check_alpha_beta(alpha: jax.Array, beta: float) -> None:
  _checks.check_in_range("alpha", alpha, 0.0, 1.0, low_open=True)
  _checks.check_positive("beta", beta)


def optimal_log_ratio(ref_logp_w: jax.Array, ref_logp_l: jax.Array,
                      alpha: jax.Array, beta: float) -> jax.Array:
  r"""The log-odds of chosen over rejected under the DPO/RLHF optimum.

  Chen et al. 2024, Thm 3.1: with rater agreement :math:`\alpha` (the share
  of raters who prefer :math:`y_w`), the optimal policy has

  .. math:: \frac{\pi^*(y_w\mid x)}{\pi^*(y_l\mid x)}
            = \frac{\pi_{\rm ref}(y_w\mid x)}{\pi_{\rm ref}(y_l\mid x)}
              \Big(\frac{\alpha}{1-\alpha}\Big)^{1/\beta},

  returned as its logarithm, exact (``+inf`` at :math:`\alpha = 1`).

  Args:
    ref_logp_w: ``[...]`` reference log-probabilities of the chosen responses.
    ref_logp_l: ``[...]`` same for the rejected responses.
    alpha: rater agreement in (0, 1], broadcastable (checked eagerly).
    beta: KL strength, ``> 0``.
  Returns:
    ``[...]`` values of :math:`\log\pi^*(y_w\mid x) - \log\pi^*(y_l\mid x)`.
  Raises:
    ValueError: if the shapes differ, ``alpha`` is outside (0, 1] or
      ``beta <= 0``.
  Tests:
    tests/test_coverage.py::test_thm31_ratio_matches_population_dpo_minimiser.
  """
  _checks.check_same_shape(ref_logp_w=ref_logp_w, ref_logp_l=ref_logp_l)
  _check_alpha_beta(alpha, beta)
  return (jnp.asarray(ref_logp_w) - jnp.asarray(ref_logp_l)
          + _log_odds(alpha, jnp.inf) / beta)


def idealized_ranking_accuracy(ref_logp_w: jax.Array, ref_logp_l: jax.Array,
                               alpha: jax.Array, beta: float) -> jax.Array:
  r"""The ranking accuracy of the exact DPO/RLHF optimum.

  Chen et al. 2024, Cor. 3.3:

  .. math:: R^* = \frac{1}{P}\sum_{p=1}^{P} \mathbb{1}\Big[
            \frac{\pi_{\rm ref}(y_{w,p}\mid x_p)}
                 {\pi_{\rm ref}(y_{l,p}\mid x_p)}
            \Big(\frac{\alpha_p}{1-\alpha_p}\Big)^{1/\beta} > 1\Big]

  with a strict inequality (a tie at the optimum is not counted right, unlike
  :func:`ranking_accuracy`). Where :math:`\alpha = 1` the paper adds 0.001
  to the losing share, so the odds are :math:`1/0.001 = 1000` (footnote 5,
  App. C.4), not 0.999/0.001.

  Args:
    ref_logp_w: ``[..., P]`` reference log-probabilities of the chosen
      responses.
    ref_logp_l: ``[..., P]`` same for the rejected responses.
    alpha: rater agreement in (0, 1], broadcastable to ``[..., P]``.
    beta: KL strength, ``> 0``.
  Returns:
    ``[...]`` idealized accuracies in [0, 1].
  Raises:
    ValueError: as :func:`optimal_log_ratio`.
  Tests:
    tests/test_coverage.py::test_accuracies_by_hand,
    tests/test_coverage.py::test_idealized_accuracy_matches_fitted_dpo.
  """
  _check_pair_axis(ref_logp_w=ref_logp_w, ref_logp_l=ref_logp_l)
  _check_alpha_beta(alpha, beta)
  margin = (jnp.asarray(ref_logp_w) - jnp.asarray(ref_logp_l)
            + _log_odds(alpha, jnp.log(_UNANIMOUS_ODDS)) / beta)
  return jnp.mean((margin > 0).astype(_checks.default_float()), axis=-1)


def dpo_loss_threshold(ref_logp_w: jax.Array, ref_logp_l: jax.Array,
                       beta: float) -> jax.Array:
  r"""The DPO loss at which a pair's ranking flips (Chen et al. 2024, Thm 4.1).

  .. math:: \ell^\dagger = -\log\sigma(\beta c),\qquad
            c = \log\frac{\pi_{\rm ref}(y_l\mid x)}{\pi_{\rm ref}(y_w\mid x)}

  Args:
    ref_logp_w: ``[...]`` reference log-probabilities of the chosen responses.
    ref_logp_l: ``[...]`` same for the rejected responses.
    beta: KL strength, ``> 0``.
  Returns:
    ``[...]`` thresholds; see :func:`dpo_ranks_correctly`.
  Tests:
    tests/test_coverage.py::test_thm41_ranked_right_iff_loss_below_threshold.
  """
  _checks.check_same_shape(ref_logp_w=ref_logp_w, ref_logp_l=ref_logp_l)
  _checks.check_positive("beta", beta)
  c = jnp.asarray(ref_logp_l) - jnp.asarray(ref_logp_w)
  return -log_sigmoid(beta * c)


def dpo_ranks_correctly(loss: jax.Array, ref_logp_w: jax.Array,
                        ref_logp_l: jax.Array, beta: float) -> jax.Array:
  r"""Whether a pair is ranked right, read off its DPO loss alone.

  Chen et al. 2024, Thm 4.1: with :math:`c = \log\pi_{\rm ref}(y_l\mid x) -
  \log\pi_{\rm ref}(y_w\mid x)`,

  .. math:: \pi(y_w\mid x) \ge \pi(y_l\mid x) \iff
            \mathcal{L}_{\rm DPO}(\pi; x, y_w, y_l) \le -\log\sigma(\beta c).

  Since :math:`\mathcal{L}_{\rm DPO} = -\log\sigma(\beta(\log\pi(y_w) -
  \log\pi(y_l) + c))` decreases in the policy's own log-odds, a pair that
  :math:`\pi_{\rm ref}` ranks badly (large :math:`c`) needs a small loss.

  Args:
    loss: ``[...]`` per-example DPO losses (:func:`prefsim.losses.dpo`).
    ref_logp_w: ``[...]`` reference log-probabilities of the chosen responses.
    ref_logp_l: ``[...]`` same for the rejected responses.
    beta: the loss's ``beta``, ``> 0``.
  Returns:
    bool ``[...]``: True where the pair is ranked right.
  Raises:
    ValueError: if the shapes differ or ``beta <= 0``.
  Tests:
    tests/test_coverage.py::test_thm41_ranked_right_iff_loss_below_threshold.
  """
  _checks.check_same_shape(loss=loss, ref_logp_w=ref_logp_w)
  return jnp.asarray(loss) <= dpo_loss_threshold(ref_logp_w, ref_logp_l, beta)


# --------------------------------------------------------------------------
# Offline, online and hybrid training (Song et al. 2024)
# --------------------------------------------------------------------------


class CoverageProblem(NamedTuple):
  r"""A log-linear contextual bandit with a fixed offline data set.

  The policy class is log-linear around the reference,
  :math:`\pi_\theta(y\mid x) \propto \pi_{\rm ref}(y\mid x)\,
  e^{\theta^\top\phi(x,y)}`, as in :mod:`prefsim.loglinear`, but the true
  reward :math:`r^*` is any table: it need not be linear in the features,
  which is what lets a data set without global coverage hide a reward hack.
  A tabular softmax is the special case of one-hot features
  (:func:`tabular_features`), so one trainer serves both.

  Attributes:
    features: ``[X, K, D]`` features :math:`\phi(x, y)`.
    ref_logprobs: ``[X, K]`` log-probabilities of :math:`\pi_{\rm ref}`.
    rewards: ``[X, K]`` true rewards :math:`r^*(x, y)`, used only to score
      policies (``info["reward"]``), never by a trainer.
    counts: ``[X, K, K]`` comparison counts of the offline data,
      ``counts[x, i, j]`` pairs at prompt ``x`` with ``i`` chosen over ``j``
      (:func:`prefsim.offline.comparison_counts`).
    mask: bool ``[X, K]`` support of the data (:func:`support_mask`).
    beta: scalar KL strength :math:`\beta > 0`.

  Build it with :func:`coverage_problem`, which checks it. Every field is an
  array, so a batch of problems sweeps with ``problem_axis=0``.
  """

  features: jax.Array
  ref_logprobs: jax.Array
  rewards: jax.Array
  counts: jax.Array
  mask: jax.Array
  beta: jax.Array


def tabular_features(n_prompts: int, n_responses: int) -> jax.Array:
  r"""One-hot features ``[X, K, X*K]``: :math:`\phi(x, y) = e_{xK + y}`.

  With them :math:`\theta` is a table of logits and :math:`\pi_\theta` a
  tabular softmax around :math:`\pi_{\rm ref}`.

  Args:
    n_prompts: ``X`` (static).
    n_responses: ``K`` (static).
  Returns:
    ``[X, K, X*K]`` features in the default float dtype.
  """
  n_prompts = _checks.check_static_int("n_prompts", n_prompts)
  n_responses = _checks.check_static_int("n_responses", n_responses)
  eye = jnp.eye(n_prompts * n_responses, dtype=_checks.default_float())
  return eye.reshape(n_prompts, n_responses, n_prompts * n_responses)


def coverage_problem(features: jax.Array, ref_logprobs: jax.Array,
                     rewards: jax.Array, data: PreferenceData, *,
                     beta: float) -> CoverageProblem:
  r"""A checked :class:`CoverageProblem` from features and a data set.

  Args:
    features: ``[X, K, D]`` features.
    ref_logprobs: ``[X, K]`` log-probabilities of :math:`\pi_{\rm ref}`
      (``-inf`` allowed off the data's support).
    rewards: ``[X, K]`` true rewards.
    data: the offline :class:`~prefsim.data.PreferenceData`, ``P`` pairs.
    beta: KL strength, ``> 0``.
  Returns:
    The :class:`CoverageProblem`, in the dtype of ``features``.
  Raises:
    ValueError: if ``features`` is not ``[X, K, D]``, ``ref_logprobs`` or
      ``rewards`` is not ``[X, K]``, an index of ``data`` is out of range,
      ``beta <= 0``, or :math:`\pi_{\rm ref}` gives zero probability to a
      response some pair uses (:func:`check_reference_support`).
  Tests:
    tests/test_coverage.py::test_trainer_bad_inputs_raise.
  """
  _checks.check_ndim("features", features, 3, "[X, K, D]")
  _checks.check_ndim("ref_logprobs", ref_logprobs, 2, "[X, K]")
  if np.shape(ref_logprobs) != np.shape(features)[:2]:
    raise ValueError(f"ref_logprobs [X, K] and features [X, K, D] must share "
                     f"[X, K], got ref_logprobs {np.shape(ref_logprobs)} and "
                     f"features {np.shape(features)}")
  _checks.check_same_shape(ref_logprobs=ref_logprobs, rewards=rewards)
  _checks.check_positive("beta", beta)
  check_reference_support(ref_logprobs, data)
  n_prompts, n_responses, _ = np.shape(features)
  dtype = jnp.asarray(features).dtype
  return CoverageProblem(
      features=jnp.asarray(features),
      ref_logprobs=jnp.asarray(ref_logprobs, dtype),
      rewards=jnp.asarray(rewards, dtype),
      counts=offline.comparison_counts(data, n_prompts,
                                       n_responses).astype(dtype),
      mask=support_mask(data, n_prompts, n_responses),
      beta=jnp.asarray(beta, dtype))


def _policy_class(problem: CoverageProblem, beta: jax.Array | None = None
                  ) -> loglinear.LogLinearProblem:
  """The log-linear policy class of ``problem`` as a LogLinearProblem, for
  :func:`prefsim.offline.mean_loss` (its theta_star only fixes the shape of
  theta: a coverage problem's true reward is ``problem.rewards``)."""
  dim = problem.features.shape[-1]
  return loglinear.LogLinearProblem(
      features=problem.features, ref_logprobs=problem.ref_logprobs,
      theta_star=jnp.zeros(dim, problem.features.dtype),
      beta=problem.beta if beta is None else beta,
      eps=jnp.zeros((), problem.features.dtype))


def policy_logprobs(theta: jax.Array, problem: CoverageProblem) -> jax.Array:
  r"""Log-probabilities ``[X, K]`` of :math:`\pi_\theta`,
  :func:`prefsim.loglinear.logprobs` on the problem's policy class."""
  return loglinear.logprobs(theta, _policy_class(problem))


def score_function_surrogate(key: jax.Array, logprobs: jax.Array,
                             values: jax.Array, n_samples: int) -> jax.Array:
  r"""A surrogate whose value and gradient estimate :math:`\mathbb{E}_x
  \mathbb{E}_{y\sim\pi}[v(x,y)]` from on-policy samples.

  Draws :math:`y_1..y_n \sim \pi(\cdot\mid x)` at every prompt and returns

  .. math:: S = \frac{1}{nX}\sum_{x,s} \Big[\bar v_{x,s}
            + \big(\log\pi(y_s\mid x) - \overline{\log\pi(y_s\mid x)}\big)
              \big(\bar v_{x,s} - b_{x,s}\big)\Big],\qquad
            b_{x,s} = \frac{1}{n-1}\sum_{s'\ne s}\bar v_{x,s'}

  where the bar stops the gradient and :math:`\bar v_{x,s} = v(x, y_s)`. Its
  value is the sample mean of :math:`v` (unbiased for
  :math:`\mathbb{E}_x\mathbb{E}_\pi v`), and its gradient the REINFORCE
  (score-function) estimate with the leave-one-out baseline,
  :math:`\frac{1}{nX}\sum \nabla\log\pi(y_s\mid x)(v_s - b_s)`, unbiased for
  :math:`\mathbb{E}_x\mathbb{E}_\pi[\nabla\log\pi\, v]` because
  :math:`b_{x,s}` does not depend on :math:`y_s`. With
  :math:`v = \log\pi - \log\pi_{\rm ref}` (stopped) that is
  :math:`\nabla\mathbb{E}_x\mathrm{KL}(\pi\|\pi_{\rm ref})`, since
  :math:`\mathbb{E}_\pi\nabla\log\pi = 0`; with
  :math:`v = \hat r - \beta(\log\pi - \log\pi_{\rm ref})` it is the gradient
  of the KL-regularised reward.

  Args:
    key: a ``jax.random`` key.
    logprobs: ``[X, K]`` log-probabilities of :math:`\pi` (differentiable).
    values: ``[X, K]`` values :math:`v(x, y)`; their gradient is stopped.
      Values where :math:`\pi(y\mid x) = 0` are never used (they may be
      NaN).
    n_samples: samples per prompt, ``n >= 2`` (static).
  Returns:
    The scalar surrogate.
  Raises:
    ValueError: if ``n_samples < 2`` or the shapes differ.
  Tests:
    tests/test_coverage.py::test_score_function_gradient_is_unbiased.
  """
  n_samples = _checks.check_static_int("n_samples", n_samples, 2)
  _checks.check_same_shape(logprobs=logprobs, values=values)
  # Responses with pi = 0 are never sampled; their values may be undefined
  # (-inf - (-inf) for a log-ratio): select, never multiply by a zero weight.
  inside = logprobs > -jnp.inf
  values = jax.lax.stop_gradient(jnp.where(inside, values, 0.0))
  samples = policies.sample(key, jax.lax.stop_gradient(logprobs),
                            n_samples)                          # [n, X]
  logprobs = jnp.where(inside, logprobs, 0.0)
  # A one-hot selection rather than a gather, whose gradient is a scatter.
  onehot = samples[..., None] == jnp.arange(logprobs.shape[-1])  # [n, X, K]
  logp = jnp.sum(jnp.where(onehot, logprobs, 0.0), axis=-1)     # [n, X]
  v = jnp.sum(jnp.where(onehot, values, 0.0), axis=-1)          # [n, X]
  baseline = (jnp.sum(v, 0, keepdims=True) - v) / (n_samples - 1)
  score = logp - jax.lax.stop_gradient(logp)                    # 0, with grad
  return jnp.mean(v + score * (v - baseline))


def kl_regularised_reward(logprobs: jax.Array, ref_logprobs: jax.Array,
                          rewards: jax.Array, beta: jax.Array) -> jax.Array:
  r"""The KL-regularised reward :math:`\mathbb{E}_x[\mathbb{E}_\pi r -
  \beta\,\mathrm{KL}(\pi\|\pi_{\rm ref})]`, prompts uniform, a scalar
  (maximised by :func:`prefsim.policies.kl_optimal`)."""
  return jnp.mean(policies.expected_reward(logprobs, rewards)
                  - beta * kl(logprobs, ref_logprobs))


def _metrics(theta: jax.Array, problem: CoverageProblem
             ) -> dict[str, jax.Array]:
  """The true reward J, E_x KL(pi || pi_ref) and the out-of-support mass."""
  logp = policy_logprobs(theta, problem)
  return {"reward": jnp.mean(policies.expected_reward(logp, problem.rewards)),
          "kl": jnp.mean(kl(logp, problem.ref_logprobs)),
          "out_of_support_mass": jnp.mean(out_of_support_mass(logp,
                                                              problem.mask))}


class TrainerState(NamedTuple):
  """The state of :func:`offline_dpo` and :func:`hypo`.

  Attributes:
    theta: ``[D]`` parameters.
    opt_state: the optax optimiser's state.
  """

  theta: jax.Array
  opt_state: Any


class RLHFState(NamedTuple):
  """The state of :func:`online_rlhf`.

  Attributes:
    theta: ``[D]`` policy parameters.
    opt_state: the optax optimiser's state.
    reward_model: ``[X, K]`` the reward model :math:`\\hat r` fitted on the
      offline data at ``init``.
  """

  theta: jax.Array
  opt_state: Any
  reward_model: jax.Array


Optimizer = Callable[[float], optax.GradientTransformation]


def _check_trainer_args(lr: float, optimizer: Any
                        ) -> optax.GradientTransformation:
  """Checks ``lr`` and ``optimizer``; returns ``optimizer(lr)``."""
  _checks.check_positive("lr", lr)
  if not callable(optimizer):
    raise TypeError(f"optimizer must be an optax optimiser factory such as "
                    f"optax.sgd, got {type(optimizer).__name__}")
  return optimizer(lr)


def _update(opt, state, grad):
  """One optax step: the new parameters and optimiser state."""
  updates, opt_state = opt.update(grad, state.opt_state, state.theta)
  return optax.apply_updates(state.theta, updates), opt_state


def _dpo_loss(loss: Callable[..., jax.Array], theta: jax.Array,
              problem: CoverageProblem) -> jax.Array:
  """The empirical pairwise loss on the offline data (offline.mean_loss)."""
  return offline.mean_loss(loss, theta, problem.counts,
                           _policy_class(problem))


def offline_dpo(loss: Callable[..., jax.Array] = losses.dpo, *, lr: float,
                optimizer: Optimizer = optax.sgd) -> Algorithm:
  r"""Offline DPO (or IPO, or any pairwise loss) on a fixed data set.

  Full-batch steps on the empirical loss of the problem's data,

  .. math:: \hat L(\theta) = \frac1P\sum_{x,i,j} N[x,i,j]\,
            \ell\big(h_\theta(x,i), h_\theta(x,j)\big),\qquad
            h_\theta = \log\pi_\theta - \log\pi_{\rm ref},

  (:func:`prefsim.offline.mean_loss`), from :math:`\theta = 0`
  (:math:`\pi_\theta = \pi_{\rm ref}`). No sample of the current policy is
  ever drawn: responses in no pair enter only through the normaliser, which
  cancels in every margin, so in a log-linear class they move only as their
  features drag them — the failure without global coverage that Song et
  al. 2024 analyse.

  Args:
    loss: a pairwise loss ``loss(chosen, rejected, *, beta)`` of
      :mod:`prefsim.losses` (``losses.dpo``, ``losses.ipo``, or a
      ``functools.partial`` with fixed hyperparameters).
    lr: step size, ``> 0``.
    optimizer: an optax optimiser factory, ``optimizer(lr)`` (default
      ``optax.sgd``).
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`TrainerState`; each
    step's ``info`` holds ``loss`` (:math:`\hat L(\theta_t)`) and, at
    :math:`\theta_{t+1}`, ``reward`` (:math:`J(\pi) = \mathbb{E}_x
    \mathbb{E}_{y\sim\pi} r^*(x,y)`), ``kl`` (:math:`\mathbb{E}_x
    \mathrm{KL}(\pi\|\pi_{\rm ref})`) and ``out_of_support_mass`` (mean over
    prompts of the mass off ``problem.mask``).
  Raises:
    TypeError, ValueError: for a non-callable ``loss`` or ``optimizer``, or
      ``lr <= 0``.
  References:
    Rafailov et al. Direct Preference Optimization. NeurIPS 2023.
    Song et al. The Importance of Online Data. NeurIPS 2024,
    arXiv:2406.01462 (offline contrastive methods need global coverage).
  Tests:
    tests/test_coverage.py::test_trainer_infos_by_hand,
    tests/test_coverage.py::test_trainers_jit_and_vmap.
  """
  if not callable(loss):
    raise TypeError(f"loss must be a pairwise loss function, got "
                    f"{type(loss).__name__}")
  opt = _check_trainer_args(lr, optimizer)

  def init(key: jax.Array, problem: CoverageProblem) -> TrainerState:
    del key
    theta = jnp.zeros(problem.features.shape[-1], problem.features.dtype)
    return TrainerState(theta, opt.init(theta))

  def step(key: jax.Array, state: TrainerState, problem: CoverageProblem
           ) -> tuple[TrainerState, dict[str, jax.Array]]:
    del key  # Full-batch steps are deterministic.
    value, grad = jax.value_and_grad(_dpo_loss, 1)(loss, state.theta, problem)
    theta, opt_state = _update(opt, state, grad)
    return TrainerState(theta, opt_state), {"loss": value,
                                            **_metrics(theta, problem)}

  return Algorithm(init, step)


def hypo(loss: Callable[..., jax.Array] = losses.dpo, *, lam: float,
         lr: float, n_samples: int = 8, exact_kl: bool = False,
         optimizer: Optimizer = optax.sgd) -> Algorithm:
  r"""HyPO: offline DPO plus a reverse-KL penalty from on-policy samples.

  Minimises

  .. math:: L(\theta) = \hat L_{\rm DPO}(\theta)
            + \lambda\,\mathbb{E}_x\mathrm{KL}\big(\pi_\theta(\cdot\mid x)
              \,\|\,\pi_{\rm ref}(\cdot\mid x)\big)

  with :math:`\hat L_{\rm DPO}` the full-batch loss of :func:`offline_dpo`
  on the offline data (labelled) and the KL term estimated from
  ``n_samples`` unlabelled responses :math:`y \sim \pi_{\theta_t}(\cdot\mid
  x)` per prompt: :func:`score_function_surrogate` with
  :math:`v = \log\pi_\theta - \log\pi_{\rm ref}`, an unbiased REINFORCE
  gradient with a leave-one-out baseline (``exact_kl=True``: the exact
  gradient instead). The KL term is :math:`\ge 0`, zero iff
  :math:`\pi_\theta = \pi_{\rm ref}` at every prompt, and it sees every
  response the policy samples, seen in the data or not: it is what stops
  the mass drifting onto responses that appear in no pair.

  Args:
    loss: the pairwise loss of the offline part (default ``losses.dpo``).
    lam: the KL weight :math:`\lambda \ge 0` (0 gives :func:`offline_dpo`).
    lr: step size, ``> 0``.
    n_samples: on-policy samples per prompt per step, ``>= 2`` (static).
    exact_kl: use the exact gradient of the KL term, not the sample estimate.
    optimizer: an optax optimiser factory (default ``optax.sgd``).
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`TrainerState` and the
    ``info`` of :func:`offline_dpo`, ``loss`` being
    :math:`\hat L_{\rm DPO}(\theta_t) + \lambda\,\mathbb{E}_x
    \mathrm{KL}(\pi_{\theta_t}\|\pi_{\rm ref})` with the exact KL.
  Raises:
    TypeError, ValueError: as :func:`offline_dpo`, or for ``lam < 0`` or
      ``n_samples < 2``.
  References:
    Song, Swamy, Singh, Bagnell, Sun. The Importance of Online Data:
    Understanding Preference Fine-tuning via Coverage. NeurIPS 2024,
    arXiv:2406.01462: HyPO — DPO on the offline data plus
    :math:`\lambda` times the reverse KL to :math:`\pi_{\rm ref}` on
    online samples. The structure follows the paper's abstract and
    THEORY.md §7; the algorithm number (Algorithm 1), its equation and the
    exact weighting of its KL term are unverified against the paper's text.
  Tests:
    tests/test_coverage.py::test_hypo_kl_term_is_nonnegative_zero_iff_ref,
    tests/test_coverage.py::test_score_function_gradient_is_unbiased,
    tests/test_coverage.py::test_trainer_infos_by_hand,
    tests/test_coverage.py::test_trainers_jit_and_vmap.
  """
  if not callable(loss):
    raise TypeError(f"loss must be a pairwise loss function, got "
                    f"{type(loss).__name__}")
  _checks.check_nonnegative("lam", lam)
  n_samples = _checks.check_static_int("n_samples", n_samples, 2)
  opt = _check_trainer_args(lr, optimizer)

  def init(key: jax.Array, problem: CoverageProblem) -> TrainerState:
    del key
    theta = jnp.zeros(problem.features.shape[-1], problem.features.dtype)
    return TrainerState(theta, opt.init(theta))

  def kl_term(key, theta, problem):
    logp = policy_logprobs(theta, problem)
    if exact_kl:
      return jnp.mean(kl(logp, problem.ref_logprobs))
    return score_function_surrogate(key, logp, logp - problem.ref_logprobs,
                                    n_samples)

  def step(key: jax.Array, state: TrainerState, problem: CoverageProblem
           ) -> tuple[TrainerState, dict[str, jax.Array]]:
    dpo_value, dpo_grad = jax.value_and_grad(_dpo_loss, 1)(loss, state.theta,
                                                           problem)
    kl_grad = jax.grad(kl_term, 1)(key, state.theta, problem)
    theta, opt_state = _update(opt, state, dpo_grad + lam * kl_grad)
    exact = jnp.mean(kl(policy_logprobs(state.theta, problem),
                        problem.ref_logprobs))
    return TrainerState(theta, opt_state), {"loss": dpo_value + lam * exact,
                                            **_metrics(theta, problem)}

  return Algorithm(init, step)


def fit_reward_model(problem: CoverageProblem, reward_model: str, *,
                     l2: float = 0.0, max_iter: int = 200) -> jax.Array:
  r"""The Bradley-Terry reward model of the offline data, ``[X, K]``.

  Maximum likelihood (MAP with ``l2 > 0``) over a reward class:

  .. math:: \hat w = \arg\min_w\ \sum_{x,i,j} N[x,i,j]\,
            \big(-\log\sigma(w^\top(\psi(x,i) - \psi(x,j)))\big)
            + \frac{\ell_2}{2}\|w\|^2,\qquad \hat r = \psi\,\hat w

  (the DPO loss at :math:`\beta = 1` on the margins, by
  :func:`prefsim.offline.mean_loss`, minimised by L-BFGS):

  * ``"linear"``: :math:`\psi = \phi`, the problem's features — the same
    class as the policy's, so :math:`\pi_{\hat r}^* \propto \pi_{\rm ref}
    e^{\hat r/\beta}` is :math:`\pi_\theta` with :math:`\theta = \hat w/\beta`,
    DPO's own optimum on the same data (with ``l2 = 0``): RLHF with this
    reward extrapolates exactly as DPO does.
  * ``"tabular"``: :math:`\psi` one-hot (:func:`tabular_features`), a free
    reward per (prompt, response) fitted on the responses seen in the data;
    a response in no pair gets no extrapolation: the lowest fitted reward
    of the seen responses at its prompt (a pessimistic choice; with an
    ``l2`` penalty it would otherwise sit at 0, an arbitrary level).
    Comparison graphs that are not strongly connected need ``l2 > 0``.

  Args:
    problem: the :class:`CoverageProblem` (its ``counts`` are the data).
    reward_model: ``"linear"`` or ``"tabular"`` (static).
    l2: penalty :math:`\ell_2 \ge 0` (on the summed, not averaged, loss).
    max_iter: the most L-BFGS iterations (static).
  Returns:
    ``[X, K]`` rewards :math:`\hat r`.
  Raises:
    ValueError: for an unknown ``reward_model`` or ``l2 < 0``. Inside jit
      no value is checked; without an MLE (``l2 = 0``, separable data) the
      fit stops after ``max_iter`` iterations with large rewards.
  Tests:
    tests/test_coverage.py::test_linear_reward_model_recovers_dpo_optimum,
    tests/test_coverage.py::test_online_rlhf_exact_converges_to_kl_optimal.
  """
  if reward_model not in ("linear", "tabular"):
    raise ValueError(f"reward_model must be 'linear' or 'tabular', got "
                     f"{reward_model!r}")
  _checks.check_nonnegative("l2", l2)
  max_iter = _checks.check_static_int("max_iter", max_iter)
  n_prompts, n_responses, _ = problem.features.shape
  features = (problem.features if reward_model == "linear"
              else tabular_features(n_prompts, n_responses).astype(
                  problem.features.dtype))
  reward_class = _policy_class(problem._replace(features=features),
                               beta=jnp.ones((), features.dtype))
  n_pairs = jnp.sum(problem.counts)

  def objective(w):
    nll = offline.mean_loss(losses.dpo, w, problem.counts, reward_class)
    return n_pairs * nll + 0.5 * l2 * jnp.sum(w ** 2)

  w, _ = _optim.minimize_lbfgs(objective,
                               jnp.zeros(features.shape[-1], features.dtype),
                               max_iter=max_iter)
  rewards = features @ w
  if reward_model == "tabular":
    lowest = jnp.min(jnp.where(problem.mask, rewards, jnp.inf), axis=-1,
                     keepdims=True)
    rewards = jnp.where(problem.mask, rewards, lowest)
  return rewards


def online_rlhf(*, reward_model: str, lr: float, n_samples: int = 8,
                exact: bool = False, reward_l2: float = 0.0,
                reward_iters: int = 200,
                optimizer: Optimizer = optax.sgd) -> Algorithm:
  r"""Online RLHF: a reward model fitted offline, then on-policy optimisation.

  ``init`` fits :math:`\hat r` on the offline data
  (:func:`fit_reward_model`) and starts at :math:`\theta = 0`; each step
  ascends the KL-regularised reward of :math:`\hat r`,

  .. math:: J_\beta(\theta) = \mathbb{E}_x\Big[\mathbb{E}_{y\sim\pi_\theta}
            \hat r(x,y) - \beta\,\mathrm{KL}(\pi_\theta\|\pi_{\rm ref})\Big],

  with the REINFORCE estimate from ``n_samples`` responses of the current
  policy per prompt (:func:`score_function_surrogate` with :math:`v = \hat r
  - \beta(\log\pi_\theta - \log\pi_{\rm ref})`, unbiased), or its exact
  gradient with ``exact=True``. Its maximiser over all policies is
  :math:`\pi^* \propto \pi_{\rm ref}e^{\hat r/\beta}`
  (:func:`prefsim.policies.kl_optimal`), whose density ratio to
  :math:`\pi_{\rm ref}` the range of :math:`\hat r` bounds — the partial
  coverage that online RLHF needs.

  Args:
    reward_model: ``"linear"`` or ``"tabular"`` (see
      :func:`fit_reward_model`).
    lr: step size, ``> 0``.
    n_samples: on-policy samples per prompt per step, ``>= 2`` (static).
    exact: use the exact gradient of :math:`J_\beta` (no sampling).
    reward_l2: the reward model's L2 penalty, ``>= 0``.
    reward_iters: the most L-BFGS iterations of the reward fit.
    optimizer: an optax optimiser factory (default ``optax.sgd``).
  Returns:
    An :class:`prefsim.Algorithm` with state :class:`RLHFState`; ``info``
    as :func:`offline_dpo`, ``loss`` being :math:`-J_\beta(\theta_t)` under
    :math:`\hat r` (exact).
  Raises:
    TypeError, ValueError: for an unknown ``reward_model``, ``lr <= 0``,
      ``n_samples < 2`` or ``reward_l2 < 0``.
  References:
    Song et al. 2024, arXiv:2406.01462 (online RL needs only partial
    coverage). Ouyang et al. Training language models to follow
    instructions with human feedback. NeurIPS 2022 (the RLHF pipeline).
  Tests:
    tests/test_coverage.py::test_online_rlhf_exact_converges_to_kl_optimal,
    tests/test_coverage.py::test_trainer_infos_by_hand,
    tests/test_coverage.py::test_trainers_jit_and_vmap.
  """
  if reward_model not in ("linear", "tabular"):
    raise ValueError(f"reward_model must be 'linear' or 'tabular', got "
                     f"{reward_model!r}")
  n_samples = _checks.check_static_int("n_samples", n_samples, 2)
  _checks.check_nonnegative("reward_l2", reward_l2)
  reward_iters = _checks.check_static_int("reward_iters", reward_iters)
  opt = _check_trainer_args(lr, optimizer)

  def init(key: jax.Array, problem: CoverageProblem) -> RLHFState:
    del key
    theta = jnp.zeros(problem.features.shape[-1], problem.features.dtype)
    rewards = fit_reward_model(problem, reward_model, l2=reward_l2,
                               max_iter=reward_iters)
    return RLHFState(theta, opt.init(theta), rewards)

  def surrogate(key, theta, problem, rewards):
    logp = policy_logprobs(theta, problem)
    if exact:
      return kl_regularised_reward(logp, problem.ref_logprobs, rewards,
                                   problem.beta)
    values = rewards - problem.beta * (logp - problem.ref_logprobs)
    return score_function_surrogate(key, logp, values, n_samples)

  def step(key: jax.Array, state: RLHFState, problem: CoverageProblem
           ) -> tuple[RLHFState, dict[str, jax.Array]]:
    grad = jax.grad(surrogate, 1)(key, state.theta, problem,
                                  state.reward_model)
    theta, opt_state = _update(opt, state, -grad)
    value = kl_regularised_reward(policy_logprobs(state.theta, problem),
                                  problem.ref_logprobs, state.reward_model,
                                  problem.beta)
    return (RLHFState(theta, opt_state, state.reward_model),
            {"loss": -value, **_metrics(theta, problem)})

  return Algorithm(init, step)
