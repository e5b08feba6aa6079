r"""Policies over a finite set of responses: tabular softmax and log-linear.

A policy is represented by its log-probabilities ``logprobs[X, K]``: row ``x``
is :math:`\log\pi(\cdot\mid x)` over ``K`` responses. Tabular policies come
from free logits, log-linear ones from features,
:math:`\pi_\theta(y\mid x) \propto \exp(\phi(x, y)^\top\theta)`.

The KL-regularised RLHF objective
:math:`J(\pi) = \mathbb{E}_{y\sim\pi}[r(x,y)] - \beta\,\mathrm{KL}(\pi\|\pi_{\rm ref})`
is maximised by :func:`kl_optimal`,
:math:`\pi^*(y\mid x) \propto \pi_{\rm ref}(y\mid x)\exp(r(x,y)/\beta)`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from prefsim import _checks


def softmax_logprobs(logits: jax.Array) -> jax.Array:
  r"""Log-probabilities of a tabular softmax policy.

  .. math:: \log\pi(y\mid x) = z_{x,y} - \log\sum_{y'} e^{z_{x,y'}}

  Args:
    logits: ``[..., K]`` logits (``-inf`` marks a response outside the support).
  Returns:
    ``[..., K]`` log-probabilities.
  """
  return jax.nn.log_softmax(logits, axis=-1)


def loglinear_logprobs(features: jax.Array, theta: jax.Array) -> jax.Array:
  r"""Log-probabilities of a log-linear policy.

  .. math:: \log\pi_\theta(y\mid x) = \phi(x,y)^\top\theta
            - \log\sum_{y'} e^{\phi(x,y')^\top\theta}

  Args:
    features: ``[X, K, D]`` features :math:`\phi(x, y)`.
    theta: ``[D]`` parameters.
  Returns:
    ``[X, K]`` log-probabilities.
  """
  if features.shape[-1:] != theta.shape[-1:]:
    raise ValueError(f"features [..., D] and theta [D] must share D, got "
                     f"features {features.shape} and theta {theta.shape}")
  return softmax_logprobs(features @ theta)


def sample(key: jax.Array, logprobs: jax.Array, n: int | None = None
           ) -> jax.Array:
  """Samples one response per prompt (or ``n`` per prompt).

  Args:
    key: a ``jax.random`` key.
    logprobs: ``[X, K]`` (or ``[..., K]``) log-probabilities.
    n: number of samples per prompt, or None for one.
  Returns:
    int ``[X]`` responses, or ``[n, X]`` when ``n`` is given.
  """
  shape = logprobs.shape[:-1] if n is None else (
      _checks.check_static_int("n", n),) + logprobs.shape[:-1]
  return jax.random.categorical(key, logprobs, axis=-1, shape=shape)


def kl(logp: jax.Array, logq: jax.Array) -> jax.Array:
  r"""KL divergence between two policies, per prompt.

  .. math:: \mathrm{KL}(p\|q) = \sum_y p(y)\,(\log p(y) - \log q(y))

  computed in the form, exact for normalised :math:`p` and :math:`q`,

  .. math:: \mathrm{KL}(p\|q) = \sum_{y:\,p(y)>0} p(y)\,\bigl(e^{d_y} - 1 - d_y\bigr)
            + \sum_{y:\,p(y)=0} q(y), \qquad d_y = \log q(y) - \log p(y),

  whose terms are all :math:`\ge 0` (no cancellation): for nearby policies
  it stays accurate down to :math:`\mathrm{KL} \approx |d|^2/2` with
  :math:`|d|` the round-off of the log-probabilities (about 1e-7 in float32),
  where the textbook sum bottoms out at the round-off itself. Terms with
  :math:`p(y) = 0` contribute no gradient through :math:`\log p`; the result
  is ``+inf`` where :math:`p` puts mass outside :math:`q`'s support.

  Args:
    logp: ``[..., K]`` log-probabilities of :math:`p` (normalised).
    logq: ``[..., K]`` log-probabilities of :math:`q` (normalised).
  Returns:
    ``[...]`` divergences, each ``>= 0``.
  Tests:
    tests/test_policies.py::test_kl_matches_textbook_sum,
    tests/test_policies.py::test_kl_resolves_nearby_policies_in_float32,
    tests/test_policies.py::test_kl_of_far_apart_policies_is_finite.
  """
  support = logp > -jnp.inf
  # Double where: the unselected branches must stay finite for the gradient.
  safe_logp = jnp.where(support, logp, 0.0)
  safe_logq = jnp.where(support, logq, 0.0)
  p = jnp.exp(safe_logp)
  d = safe_logq - safe_logp
  # For d >= 1, p (e^d - 1 - d) = q - p - p d: no overflow of e^d where q >> p
  # (p e^d would be 0 * inf) and no harmful cancellation (q >= e p).
  small = d < 1.0
  safe_d = jnp.where(small, d, 0.0)
  inside = jnp.where(small, p * (jnp.expm1(safe_d) - safe_d),
                     jnp.exp(safe_logq) - p - p * d)
  terms = jnp.where(support, inside, jnp.exp(logq))
  return jnp.sum(terms, axis=-1)


def expected_reward(logprobs: jax.Array, rewards: jax.Array) -> jax.Array:
  r"""Expected reward :math:`\sum_y \pi(y\mid x)\,r(x,y)` per prompt.

  Args:
    logprobs: ``[..., K]`` log-probabilities.
    rewards: ``[..., K]`` rewards.
  Returns:
    ``[...]`` expected rewards.
  """
  return jnp.sum(jnp.exp(logprobs) * rewards, axis=-1)


def kl_optimal(ref_logprobs: jax.Array, rewards: jax.Array, beta: float
               ) -> jax.Array:
  r"""The maximiser of the KL-regularised reward, as log-probabilities.

  .. math::
     \pi^* = \arg\max_\pi\ \mathbb{E}_{y\sim\pi}[r(x,y)]
             - \beta\,\mathrm{KL}(\pi\|\pi_{\rm ref}),\qquad
     \pi^*(y\mid x) = \frac{\pi_{\rm ref}(y\mid x)\,e^{r(x,y)/\beta}}
                           {\sum_{y'}\pi_{\rm ref}(y'\mid x)\,e^{r(x,y')/\beta}}

  Equivalently :math:`r(x,y) = \beta\log\frac{\pi^*(y\mid x)}{\pi_{\rm ref}(y\mid x)}
  + \beta\log Z(x)`, the reparameterisation behind DPO.

  Args:
    ref_logprobs: ``[..., K]`` log-probabilities of :math:`\pi_{\rm ref}`.
    rewards: ``[..., K]`` rewards, broadcastable against ``ref_logprobs``.
    beta: KL strength, ``> 0``.
  Returns:
    ``[..., K]`` log-probabilities of :math:`\pi^*`.
  References:
    Rafailov et al. Direct Preference Optimization. NeurIPS 2023, eq. (4).
    Test: tests/test_policies.py::test_kl_optimal_maximises_the_regularised_reward.
  """
  _checks.check_positive("beta", beta)
  return jax.nn.log_softmax(ref_logprobs + rewards / beta, axis=-1)
