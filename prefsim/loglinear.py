r"""The log-linear contextual bandit of preference-optimisation theory.

``X`` prompts, ``K`` responses per prompt, features
:math:`\phi(x, y) \in \mathbb{R}^D`, a reference policy
:math:`\pi_{\rm ref}`, and the policy class

.. math:: \pi_\theta(y\mid x) = \frac{\pi_{\rm ref}(y\mid x)\,
          e^{\theta^\top\phi(x,y)}}{\sum_{y'}\pi_{\rm ref}(y'\mid x)\,
          e^{\theta^\top\phi(x,y')}} .

The true reward is linear in the same features,
:math:`r^*(x,y) = \beta\,\theta^{*\top}\phi(x,y)`, so the KL-regularised
optimum :math:`\pi^* \propto \pi_{\rm ref}\,e^{r^*/\beta}`
(:func:`prefsim.policies.kl_optimal`) is :math:`\pi_{\theta^*}`: the class is
realisable and DPO's implicit reward :math:`\beta\log\pi_\theta/\pi_{\rm ref}`
is the true one, up to a per-prompt constant, at :math:`\theta = \theta^*`.
This is the setting of the analysis of Chowdhury, Kini and Natarajan (2024):
log-linear policies, a bounded parameter set
:math:`\lVert\theta\rVert \le B`, feature coverage of the SFT policy, and
Bradley-Terry labels on :math:`r^*` flipped at rate :math:`\epsilon`.

Prompts are uniform: every expectation :math:`\mathbb{E}_x` below is the mean
over the ``X`` prompts, the same distribution :func:`sample_dataset` draws
from. Two objectives: the unregularised true reward
:math:`J(\pi) = \mathbb{E}_x\mathbb{E}_{y\sim\pi}\,r^*(x,y)`
(:func:`reward`) and the KL-regularised one
:math:`J_\beta(\pi) = J(\pi) - \beta\,\mathbb{E}_x\mathrm{KL}(\pi\|\pi_{\rm ref})`
(:func:`regularised_reward`), whose maximiser is :math:`\pi^*`.

Shapes: ``X`` prompts, ``K`` responses, ``D`` features, ``P`` pairs, ``C``
problems in a batch.

References:
  Chowdhury, Kini, Natarajan. Provably Robust DPO: Aligning Language Models
  with Noisy Feedback. ICML 2024, arXiv:2403.00409.
  Rafailov et al. Direct Preference Optimization. NeurIPS 2023, eq. (4).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim import data
from prefsim import policies


class LogLinearProblem(NamedTuple):
  r"""A log-linear preference-optimisation problem (a pytree of arrays).

  Attributes:
    features: ``[X, K, D]`` features :math:`\phi(x, y)`.
    ref_logprobs: ``[X, K]`` log-probabilities of :math:`\pi_{\rm ref}`, the
      policy that generates the compared responses (the SFT policy).
    theta_star: ``[D]`` true parameter; :math:`\pi^* = \pi_{\theta^*}`.
    beta: scalar KL strength :math:`\beta > 0`; :math:`r^* = \beta\,
      \theta^{*\top}\phi`.
    eps: scalar label-flip rate :math:`\epsilon \in [0, 1/2)` of the data.

  Every field is an array, so a batch of problems (e.g. over ``eps``, see
  :func:`with_flip_rates`) vmaps and sweeps with ``problem_axis=0``.
  """

  features: jax.Array
  ref_logprobs: jax.Array
  theta_star: jax.Array
  beta: jax.Array
  eps: jax.Array


def make_problem(key: jax.Array, n_prompts: int, n_responses: int, dim: int,
                 *, beta: float, theta_norm: float, eps: float = 0.0,
                 ref_scale: float = 0.0) -> LogLinearProblem:
  r"""Draws a log-linear problem with Gaussian features.

  .. math:: \phi(x, y) \sim N(0, I_D)\ \text{i.i.d.},\qquad
            \theta^* = \texttt{theta\_norm}\cdot u,\ u \sim
            \mathrm{Unif}(S^{D-1}),\qquad
            \log\pi_{\rm ref}(\cdot\mid x) = \log\mathrm{softmax}(s\,g_x),\
            g_x \sim N(0, I_K)

  with :math:`s` = ``ref_scale`` (0: uniform :math:`\pi_{\rm ref}`). Why
  Gaussian features: two distinct responses of a prompt have independent
  features, so :math:`\phi(x,y_1)-\phi(x,y_2)` has covariance :math:`2I_D`
  under any :math:`\pi_{\rm ref}` — the feature-coverage assumption of
  robust DPO's analysis holds with :math:`\lambda_{\min} \approx 2` (for
  :math:`XK \gg D`) — and the reward margins
  :math:`\beta\theta^{*\top}(\phi_1-\phi_2) \sim N(0, 2\,\|\beta\theta^*\|^2)`
  have a scale set by one number, :math:`\|\beta\theta^*\|`.

  Args:
    key: a ``jax.random`` key.
    n_prompts: ``X`` (static).
    n_responses: ``K >= 2`` (static).
    dim: ``D`` (static).
    beta: KL strength, ``> 0``.
    theta_norm: :math:`\|\theta^*\|`, ``>= 0`` (the reward scale is
      :math:`\|\beta\theta^*\|` = ``beta * theta_norm``).
    eps: label-flip rate of the data, in ``[0, 0.5)``.
    ref_scale: standard deviation of the reference policy's logits, ``>= 0``.
  Returns:
    A :class:`LogLinearProblem` in the default float dtype.
  """
  n_prompts = _checks.check_static_int("n_prompts", n_prompts)
  n_responses = _checks.check_static_int("n_responses", n_responses, 2)
  dim = _checks.check_static_int("dim", dim)
  _checks.check_positive("beta", beta)
  _checks.check_nonnegative("theta_norm", theta_norm)
  _checks.check_in_range("eps", eps, 0.0, 0.5, high_open=True)
  _checks.check_nonnegative("ref_scale", ref_scale)
  k_phi, k_theta, k_ref = jax.random.split(key, 3)
  features = jax.random.normal(k_phi, (n_prompts, n_responses, dim))
  direction = jax.random.normal(k_theta, (dim,))
  direction = direction / jnp.linalg.norm(direction)
  ref_logits = ref_scale * jax.random.normal(k_ref, (n_prompts, n_responses))
  dtype = features.dtype
  return LogLinearProblem(
      features=features,
      ref_logprobs=policies.softmax_logprobs(ref_logits),
      theta_star=jnp.asarray(theta_norm, dtype) * direction,
      beta=jnp.asarray(beta, dtype),
      eps=jnp.asarray(eps, dtype))


def with_flip_rates(problem: LogLinearProblem, eps: jax.typing.ArrayLike
                    ) -> LogLinearProblem:
  """The same problem at ``C`` flip rates: every leaf gets a leading axis ``C``.

  For ``prefsim.sweep(..., problem_axis=0)``: one compilation runs every
  flip rate, and every rate sees the same seeds (common random numbers; with
  :func:`sample_dataset` the pairs flipped at a lower rate are a subset of
  those flipped at a higher one).

  Args:
    problem: one :class:`LogLinearProblem` (scalar ``eps``).
    eps: ``[C]`` flip rates, each in ``[0, 0.5)`` (checked eagerly).
  Returns:
    A :class:`LogLinearProblem` whose leaves have shape ``[C, ...]``.
  """
  eps = jnp.asarray(eps, problem.features.dtype)
  _checks.check_ndim("eps", eps, 1, "[C] flip rates")
  _checks.check_in_range("eps", eps, 0.0, 0.5, high_open=True)
  n = eps.shape[0]
  stacked = jax.tree_util.tree_map(
      lambda leaf: jnp.broadcast_to(leaf, (n,) + jnp.shape(leaf)), problem)
  return stacked._replace(eps=eps)


def _check_theta(theta: jax.Array, problem: LogLinearProblem) -> None:
  if jnp.shape(theta) != jnp.shape(problem.theta_star):
    raise ValueError(f"theta must have shape [D] = "
                     f"{jnp.shape(problem.theta_star)}, got {jnp.shape(theta)}")


def true_rewards(problem: LogLinearProblem) -> jax.Array:
  r"""The true rewards :math:`r^*(x,y) = \beta\,\theta^{*\top}\phi(x,y)`,
  ``[X, K]``."""
  return problem.beta * (problem.features @ problem.theta_star)


def logprobs(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""Log-probabilities of :math:`\pi_\theta`, ``[X, K]``.

  .. math:: \log\pi_\theta(y\mid x) = \log\pi_{\rm ref}(y\mid x)
            + \theta^\top\phi(x,y) - \log\sum_{y'}\pi_{\rm ref}(y'\mid x)\,
            e^{\theta^\top\phi(x,y')}

  Args:
    theta: ``[D]`` parameters.
    problem: a :class:`LogLinearProblem`.
  Returns:
    ``[X, K]`` log-probabilities; :math:`\theta = 0` gives
    :math:`\pi_{\rm ref}`.
  """
  _check_theta(theta, problem)
  return policies.softmax_logprobs(problem.ref_logprobs
                                   + problem.features @ theta)


def logratios(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""The log-ratios :math:`h_\theta = \log\pi_\theta - \log\pi_{\rm ref}`,
  ``[X, K]`` — what every loss of :mod:`prefsim.losses` takes.

  Equals :math:`\theta^\top\phi(x,y) - \log\mathbb{E}_{y'\sim\pi_{\rm ref}}
  e^{\theta^\top\phi(x,y')}`; the normaliser cancels in a pair's margin,
  :math:`\Delta = \theta^\top(\phi(x,y_w) - \phi(x,y_l))`.

  Args:
    theta: ``[D]`` parameters.
    problem: a :class:`LogLinearProblem`.
  Returns:
    ``[X, K]`` log-ratios.
  """
  return logprobs(theta, problem) - problem.ref_logprobs


def optimal_logprobs(problem: LogLinearProblem) -> jax.Array:
  r"""Log-probabilities of the KL-regularised optimum :math:`\pi^*`, ``[X, K]``.

  :func:`prefsim.policies.kl_optimal` of :math:`(\pi_{\rm ref}, r^*, \beta)`;
  by construction it equals :math:`\pi_{\theta^*}`
  (``tests/test_loglinear.py::test_theta_star_policy_is_kl_optimal``).
  """
  return policies.kl_optimal(problem.ref_logprobs, true_rewards(problem),
                             problem.beta)


def sample_dataset(key: jax.Array, problem: LogLinearProblem, n_pairs: int
                   ) -> data.PreferenceData:
  r"""``P`` noisy comparisons: pairs from :math:`\pi_{\rm ref}`, BT labels on
  :math:`r^*`, each label flipped with probability ``problem.eps``.

  .. math:: x \sim \mathrm{Unif}[X],\quad y_1 \ne y_2 \sim \pi_{\rm ref}(\cdot
            \mid x),\quad \Pr(y_1 \succ y_2) = \sigma(r^*(x,y_1) - r^*(x,y_2)),
            \quad \text{then flip w.p. } \epsilon

  (the random-flip noise model of Chowdhury et al. 2024), built from
  :func:`prefsim.data.sample_pairs`, :func:`prefsim.data.label_bt` and
  :func:`prefsim.data.flip`.

  Args:
    key: a ``jax.random`` key.
    problem: a :class:`LogLinearProblem`.
    n_pairs: ``P`` (static).
  Returns:
    A :class:`prefsim.data.PreferenceData` of ``P`` comparisons.
  """
  k_pairs, k_label, k_flip = jax.random.split(key, 3)
  pairs = data.sample_pairs(k_pairs, problem.ref_logprobs, n_pairs)
  clean = data.label_bt(k_label, true_rewards(problem), *pairs)
  return data.flip(k_flip, clean, problem.eps)


def reward(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""The unregularised true reward :math:`J(\pi_\theta) =
  \mathbb{E}_x\mathbb{E}_{y\sim\pi_\theta}\,r^*(x,y)`, a scalar."""
  return jnp.mean(policies.expected_reward(logprobs(theta, problem),
                                           true_rewards(problem)))


def regularised_reward(theta: jax.Array, problem: LogLinearProblem
                       ) -> jax.Array:
  r"""The KL-regularised objective :math:`J_\beta(\pi_\theta) = J(\pi_\theta)
  - \beta\,\mathbb{E}_x\mathrm{KL}(\pi_\theta\|\pi_{\rm ref})`, a scalar;
  maximised at :math:`\theta^*`."""
  lp = logprobs(theta, problem)
  return jnp.mean(policies.expected_reward(lp, true_rewards(problem))
                  - problem.beta * policies.kl(lp, problem.ref_logprobs))


def suboptimality(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""The sub-optimality gap in true reward, :math:`J(\pi^*) - J(\pi_\theta)`.

  :math:`J` is unregularised while :math:`\pi^*` maximises the regularised
  :math:`J_\beta`, so the gap can be negative: a policy greedier than
  :math:`\pi^*` (e.g. :math:`\theta = 2\theta^*`) earns more true reward.
  Near :math:`\theta^*` the gap is linear in :math:`\theta - \theta^*`; see
  :func:`kl_gap` for the gap of the regularised objective.

  Args:
    theta: ``[D]`` parameters.
    problem: a :class:`LogLinearProblem`.
  Returns:
    A scalar.
  """
  return reward(problem.theta_star, problem) - reward(theta, problem)


def kl_gap(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""The regularised sub-optimality gap, :math:`\beta\,\mathbb{E}_x
  \mathrm{KL}(\pi_\theta\|\pi^*) = J_\beta(\pi^*) - J_\beta(\pi_\theta)`.

  The identity holds for every policy :math:`\pi`: since
  :math:`r^* = \beta\log(\pi^*/\pi_{\rm ref}) + \beta\log Z(x)`,
  :math:`\mathbb{E}_\pi r^* - \beta\mathrm{KL}(\pi\|\pi_{\rm ref}) =
  \beta\log Z(x) - \beta\mathrm{KL}(\pi\|\pi^*)`, and
  :math:`J_\beta(\pi^*) = \beta\,\mathbb{E}_x\log Z(x)`. It is non-negative,
  zero only at :math:`\pi^*`, and quadratic in :math:`\theta - \theta^*` near
  it. Test: ``tests/test_loglinear.py::test_kl_gap_is_the_regularised_gap``.

  Args:
    theta: ``[D]`` parameters.
    problem: a :class:`LogLinearProblem`.
  Returns:
    A scalar ``>= 0``.
  """
  return problem.beta * jnp.mean(policies.kl(logprobs(theta, problem),
                                             optimal_logprobs(problem)))


def param_error(theta: jax.Array, problem: LogLinearProblem) -> jax.Array:
  r"""The estimation error :math:`\|\theta - \theta^*\|_2`, a scalar."""
  _check_theta(theta, problem)
  return jnp.linalg.norm(theta - problem.theta_star)


def metrics(theta: jax.Array, problem: LogLinearProblem
            ) -> dict[str, jax.Array]:
  """:func:`reward`, :func:`suboptimality`, :func:`kl_gap` and
  :func:`param_error` of ``theta``, as a dict of scalars (vmap it over seeds)."""
  return {"reward": reward(theta, problem),
          "suboptimality": suboptimality(theta, problem),
          "kl_gap": kl_gap(theta, problem),
          "param_error": param_error(theta, problem)}
