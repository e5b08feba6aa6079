r"""Coverage coefficients and ranking accuracy.

Coverage measures how well a data distribution :math:`\mu` (the reference or
behaviour policy that generated the pairs) covers a policy :math:`\pi`:

.. math:: C(\pi, \mu) = \max_{x, y}\ \frac{\pi(y\mid x)}{\mu(y\mid x)},

``+inf`` where :math:`\pi` puts mass outside :math:`\mu`'s support. Offline
contrastive methods (DPO) need it bounded over the whole policy class (global
coverage); online RLHF needs it only near :math:`\pi_{\rm ref}` (Song et al.
2024). Policies are log-probabilities ``[X, K]``, as in
:mod:`prefsim.policies`; a policy class is a stack ``[N, X, K]``.

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

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim.data import PreferenceData
from prefsim.policies import kl

__all__ = [
    "check_reference_support",
    "chi2_coverage",
    "coverage",
    "dpo_loss_threshold",
    "dpo_ranks_correctly",
    "global_coverage",
    "idealized_ranking_accuracy",
    "local_coverage",
    "optimal_log_ratio",
    "out_of_support_mass",
    "ranking_accuracy",
    "support_mask",
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
  _checks.check_same_shape(logp_w=logp_w, logp_l=logp_l)
  if np.ndim(logp_w) < 1:
    raise ValueError("logp_w and logp_l must have a pair axis [..., P], got "
                     "scalars")
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
  _checks.check_same_shape(ref_logp_w=ref_logp_w, ref_logp_l=ref_logp_l)
  if np.ndim(ref_logp_w) < 1:
    raise ValueError("ref_logp_w and ref_logp_l must have a pair axis "
                     "[..., P], got scalars")
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
  return -jax.nn.log_sigmoid(beta * c)


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
