r"""Offline preference optimisation on a log-linear problem, as an Algorithm.

:func:`offline_po` turns any pairwise loss of the DPO family
(``loss(chosen_logratios, rejected_logratios, *, beta, **hyper)``, per
example, e.g. :func:`prefsim.losses.dpo`) into an
:class:`prefsim.Algorithm` on a :class:`prefsim.loglinear.LogLinearProblem`:

* ``init(key, problem)`` draws a fixed data set of ``P`` noisy comparisons
  (:func:`prefsim.loglinear.sample_dataset`) and starts at
  :math:`\theta = 0` (:math:`\pi_\theta = \pi_{\rm ref}`);
* ``step(key, state, problem)`` takes one full-batch step on the empirical
  loss and, when a radius :math:`B` is set, projects onto the ball
  :math:`\Theta_B = \{\theta : \|\theta\|_2 \le B\}`:

.. math:: \hat L(\theta) = \frac1P\sum_{p=1}^P
          \ell\bigl(h_\theta(x_p, y_{w,p}),\, h_\theta(x_p, y_{l,p})\bigr),
          \qquad h_\theta = \log\pi_\theta - \log\pi_{\rm ref},
.. math:: \theta_{t+1} = \Pi_{\Theta_B}\bigl(\theta_t - \eta\,
          \nabla\hat L(\theta_t)\bigr)

(with ``optimizer=optax.sgd``, the default; any optax optimiser may replace
the gradient step). The data enter :math:`\hat L` only through the
comparison counts :math:`N[x, i, j]` (pairs at prompt :math:`x` with
:math:`i` chosen over :math:`j`), so the state keeps that ``[X, K, K]`` table
and a step costs :math:`O(X K (K + D))` whatever ``P``:
:math:`\hat L(\theta) = \frac1P\sum_{x,i,j} N[x,i,j]\,
\ell(h_\theta(x,i), h_\theta(x,j))`.

Why the ball: robust DPO's per-sample loss is unbounded below, and on a
small or noisy sample so is its empirical mean — the unconstrained minimiser
runs off to :math:`\|\theta\| \to \infty` (THEORY.md §2). The analysis of
Chowdhury, Kini and Natarajan (2024) is over a bounded parameter
set :math:`\|\theta\| \le B`, and projected gradient descent computes the
empirical minimiser over that set. On a log-linear policy DPO, cDPO and rDPO
are convex in :math:`\theta` (logistic regressions with soft targets
:math:`1`, :math:`1-\epsilon` and :math:`(1-\epsilon)/(1-2\epsilon)` on the
features :math:`\beta(\phi_w - \phi_l)`), so projected gradient descent with
:math:`\eta \le 1/L` converges to it.

Shapes: ``X`` prompts, ``K`` responses, ``D`` features, ``P`` pairs.

References:
  Chowdhury, Kini, Natarajan. Provably Robust DPO: Aligning Language Models
  with Noisy Feedback. ICML 2024, arXiv:2403.00409.
  Rafailov et al. Direct Preference Optimization. NeurIPS 2023.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from prefsim import _checks
from prefsim import data as data_lib
from prefsim import loglinear
from prefsim.run import Algorithm

PairwiseLoss = Callable[..., jax.Array]
LossKwargs = Callable[[loglinear.LogLinearProblem], dict[str, Any]]


class OfflineState(NamedTuple):
  """The state of :func:`offline_po`.

  Attributes:
    theta: ``[D]`` current parameters.
    opt_state: the optax optimiser's state.
    counts: ``[X, K, K]`` comparison counts of the data set (float), summing
      to ``P``.
  """

  theta: jax.Array
  opt_state: Any
  counts: jax.Array


def known_flip_rate(problem: loglinear.LogLinearProblem) -> dict[str, Any]:
  """``{"eps": problem.eps}``: tell cDPO or rDPO the data's true flip rate.

  Pass as ``loss_kwargs`` to :func:`offline_po`; since ``eps`` is then read
  from the problem, one sweep over a batch of flip rates
  (:func:`prefsim.loglinear.with_flip_rates`, ``problem_axis=0``) trains each
  problem with its own rate.
  """
  return {"eps": problem.eps}


def comparison_counts(data: data_lib.PreferenceData, n_prompts: int,
                      n_responses: int) -> jax.Array:
  """The table ``N[x, i, j]``: how many pairs at prompt ``x`` chose ``i`` over ``j``.

  Args:
    data: ``P`` comparisons.
    n_prompts: ``X`` (static).
    n_responses: ``K`` (static).
  Returns:
    ``[X, K, K]`` float counts summing to ``P``.
  """
  counts = jnp.zeros((n_prompts, n_responses, n_responses))
  return counts.at[data.prompt, data.chosen, data.rejected].add(1.0)


def _pair_tables(h: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(h[x, i], h[x, j])`` as two ``[X, K, K]`` tables, from ``h[X, K]``.

  Written as exact products with the identity rather than broadcasts: XLA:CPU
  then differentiates them as matrix products, which made a vmapped step
  about 5x faster than ``jnp.broadcast_to`` (jax 0.10, 2 cores). HIGHEST
  precision keeps the copy exact on accelerators that default to TF32.
  """
  eye = jnp.eye(h.shape[-1], dtype=h.dtype)
  ones = jnp.ones(h.shape[-1], h.dtype)
  exact = jax.lax.Precision.HIGHEST
  chosen = jnp.einsum("xk,ki,j->xij", h, eye, ones, precision=exact)
  rejected = jnp.einsum("xk,kj,i->xij", h, eye, ones, precision=exact)
  return chosen, rejected


def mean_loss(loss: PairwiseLoss, theta: jax.Array, counts: jax.Array,
              problem: loglinear.LogLinearProblem, **hyper: Any) -> jax.Array:
  r"""The empirical loss :math:`\hat L(\theta)`, the mean of ``loss`` over the pairs.

  .. math:: \hat L(\theta) = \frac{\sum_{x,i,j} N[x,i,j]\,
            \ell(h_\theta(x,i), h_\theta(x,j); \beta)}{\sum_{x,i,j} N[x,i,j]}

  equal to the mean over the ``P`` pairs of ``loss(h[x_p, y_w], h[x_p, y_l])``
  (``tests/test_offline.py::test_mean_loss_on_counts_equals_mean_over_pairs``).

  Args:
    loss: a pairwise loss ``loss(chosen, rejected, *, beta, **hyper)``.
    theta: ``[D]`` parameters.
    counts: ``[X, K, K]`` comparison counts (:func:`comparison_counts`).
    problem: the :class:`~prefsim.loglinear.LogLinearProblem`; supplies
      ``beta``.
    **hyper: further keyword arguments of ``loss`` (e.g. ``eps``).
  Returns:
    A scalar.
  """
  h = loglinear.logratios(theta, problem)                      # [X, K]
  chosen, rejected = _pair_tables(h)                           # [X, K, K]
  per_pair = loss(chosen, rejected, beta=problem.beta, **hyper)
  # An infinite loss at a zero-count entry must not give inf * 0 = NaN.
  per_pair = jnp.where(counts > 0, per_pair, 0.0)
  return jnp.sum(counts * per_pair) / jnp.maximum(jnp.sum(counts), 1.0)


def project_to_ball(theta: jax.Array, radius: float) -> jax.Array:
  r"""Euclidean projection onto :math:`\{\theta : \|\theta\|_2 \le B\}`:
  :math:`\theta\,\min(1, B/\|\theta\|)`."""
  sq_norm = jnp.sum(theta**2)
  outside = sq_norm > radius**2
  # Double where: the gradient of the unselected branch must stay finite.
  safe = jnp.where(outside, sq_norm, 1.0)
  return theta * jnp.where(outside, radius / jnp.sqrt(safe), 1.0)


def offline_po(loss: PairwiseLoss, *, n_pairs: int, lr: float,
               radius: float | None = None,
               optimizer: Callable[[float], optax.GradientTransformation] = (
                   optax.sgd),
               loss_kwargs: LossKwargs | None = None,
               log_metrics: bool = True) -> Algorithm:
  r"""Offline preference optimisation with a pairwise loss, as an Algorithm.

  Args:
    loss: a pairwise loss of :mod:`prefsim.losses` (or any function
      ``loss(chosen_logratios, rejected_logratios, *, beta, **hyper)``
      returning the per-example loss); fixed hyperparameters via
      ``functools.partial(losses.rdpo, eps=0.2)``.
    n_pairs: ``P``, comparisons in the data set ``init`` draws (static).
    lr: step size :math:`\eta > 0` given to ``optimizer``. For plain gradient
      descent take :math:`\eta \le 1/L`; on a log-linear problem DPO, cDPO and
      rDPO have :math:`L \le \beta^2\lambda_{\max}(\hat\Sigma)/4`, IPO
      :math:`L = 2\lambda_{\max}(\hat\Sigma)`, where :math:`\hat\Sigma` is the
      second moment of the pairs' feature differences :math:`\phi_w-\phi_l`.
    radius: :math:`B`: project onto :math:`\|\theta\|_2 \le B` after every
      step, or None for no constraint.
    optimizer: an optax optimiser factory called as ``optimizer(lr)``
      (default ``optax.sgd``: gradient descent).
    loss_kwargs: a function of the problem returning further keyword
      arguments of ``loss``, e.g. :func:`known_flip_rate` to pass
      ``eps=problem.eps``; None for none.
    log_metrics: also record :func:`prefsim.loglinear.metrics` of the new
      iterate at every step (four ``O(XKD)`` evaluations per step).
  Returns:
    An :class:`prefsim.Algorithm` whose state is :class:`OfflineState` and
    whose ``info`` per step holds ``loss`` and ``grad_norm``
    (:math:`\|\nabla\hat L\|` at :math:`\theta_t`, before the step),
    ``step_norm`` (:math:`\|\theta_{t+1}-\theta_t\|`), ``theta_norm``
    (:math:`\|\theta_{t+1}\|`), and with ``log_metrics`` ``reward``,
    ``suboptimality``, ``kl_gap``, ``param_error`` at :math:`\theta_{t+1}`.
  Raises:
    TypeError, ValueError: for a non-callable ``loss``, ``n_pairs`` that is
      not a positive int, ``lr <= 0`` or ``radius <= 0``.
  """
  if not callable(loss):
    raise TypeError(f"loss must be a pairwise loss function, got "
                    f"{type(loss).__name__}")
  n_pairs = _checks.check_static_int("n_pairs", n_pairs)
  _checks.check_positive("lr", lr)
  if radius is not None:
    _checks.check_positive("radius", radius)
  opt = optimizer(lr)
  hyper_of = loss_kwargs if loss_kwargs is not None else (lambda problem: {})

  def init(key: jax.Array, problem: loglinear.LogLinearProblem
           ) -> OfflineState:
    dataset = loglinear.sample_dataset(key, problem, n_pairs)
    n_prompts, n_responses, _ = problem.features.shape
    theta = jnp.zeros_like(problem.theta_star)
    return OfflineState(theta=theta, opt_state=opt.init(theta),
                        counts=comparison_counts(dataset, n_prompts,
                                                 n_responses))

  def step(key: jax.Array, state: OfflineState,
           problem: loglinear.LogLinearProblem
           ) -> tuple[OfflineState, dict[str, jax.Array]]:
    del key  # Full-batch steps are deterministic.
    hyper = hyper_of(problem)
    value, grad = jax.value_and_grad(
        lambda theta: mean_loss(loss, theta, state.counts, problem, **hyper)
    )(state.theta)
    updates, opt_state = opt.update(grad, state.opt_state, state.theta)
    theta = optax.apply_updates(state.theta, updates)
    if radius is not None:
      theta = project_to_ball(theta, radius)
    info = {"loss": value, "grad_norm": jnp.linalg.norm(grad),
            "step_norm": jnp.linalg.norm(theta - state.theta),
            "theta_norm": jnp.linalg.norm(theta)}
    if log_metrics:
      info.update(loglinear.metrics(theta, problem))
    return state._replace(theta=theta, opt_state=opt_state), info

  return Algorithm(init, step)
