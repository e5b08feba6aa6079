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
\ell(h_\theta(x,i), h_\theta(x,j))`. The step computes :math:`\hat L`
and its gradient with :func:`mean_loss_and_grad`, written out for the
vmapped sweep on XLA:CPU (it equals ``jax.value_and_grad`` of
:func:`mean_loss`).

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
from prefsim import losses as losses_lib
from prefsim.run import Algorithm

__all__ = [
    "OfflineState",
    "comparison_counts",
    "known_flip_rate",
    "mean_loss",
    "mean_loss_and_grad",
    "offline_po",
    "project_to_ball",
]

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


def _row_sums(table: jax.Array) -> jax.Array:
  """``table.sum(-1)``, as a product with a vector of ones.

  XLA:CPU runs the product as one matrix-vector product over all the rows of
  a vmapped batch, several times faster than its reduction over a minor axis
  of length ``K = 8`` (jax 0.10, 2 cores). HIGHEST precision keeps the sum
  in float32 on accelerators that default to TF32.
  """
  ones = jnp.ones(table.shape[-1], table.dtype)
  return jnp.einsum("...j,j->...", table, ones,
                    precision=jax.lax.Precision.HIGHEST)


def _logratios_and_pullback(
    theta: jax.Array, problem: loglinear.LogLinearProblem
) -> tuple[jax.Array, Callable[[jax.Array], jax.Array]]:
  r""":func:`prefsim.loglinear.logratios` and its pullback, written out.

  .. math:: \nabla_\theta \textstyle\sum_{x,k} g[x,k]\,h[x,k]
            = \sum_{x,k}\bigl(g[x,k] - \pi_\theta(k\mid x)
              \textstyle\sum_{k'} g[x,k']\bigr)\,\phi(x,k)

  The log-ratios come from :func:`prefsim.loglinear.logprobs`; the
  pullback is the log-softmax Jacobian's transpose, the same values as
  ``jax.vjp`` of :func:`~prefsim.loglinear.logratios`, with the prompt and
  response axes merged in the product with the features and the sum over
  responses a product with ones, a form whose vmapped batch XLA:CPU lays
  out without transposing it.

  Args:
    theta: ``[D]`` parameters.
    problem: a :class:`~prefsim.loglinear.LogLinearProblem`.
  Returns:
    ``(h, pullback)``: the ``[X, K]`` log-ratios and the function taking a
    cotangent ``g`` of shape ``[X, K]`` to the ``[D]`` vector
    :math:`J_h(\theta)^\top g`.
  Raises:
    ValueError: when ``theta`` is not of shape ``[D]``.
  """
  logp = loglinear.logprobs(theta, problem)                       # [X, K]
  probs = jnp.exp(logp)

  def pullback(g: jax.Array) -> jax.Array:
    centred = (g - probs * _row_sums(g)[..., None]).reshape(-1)   # [X K]
    features = problem.features.reshape(centred.shape[0], -1)     # [X K, D]
    return jnp.einsum("n,nd->d", centred, features,
                      precision=jax.lax.Precision.HIGHEST)

  return logp - problem.ref_logprobs, pullback


def mean_loss_and_grad(loss: PairwiseLoss, theta: jax.Array,
                       counts: jax.Array, problem: loglinear.LogLinearProblem,
                       **hyper: Any) -> tuple[jax.Array, jax.Array]:
  r""":func:`mean_loss` and its gradient in :math:`\theta`: the values of
  ``jax.value_and_grad(mean_loss, 1)``, computed with row sums only.

  With :math:`g = \nabla_h \hat L` (``[X, K]``),
  :math:`\nabla_\theta\hat L = J_h(\theta)^\top g` and

  .. math:: \Bigl(\sum_{x,i,j} N[x,i,j]\Bigr)\, g[x,k]
            = \sum_j N[x,k,j]\,\partial_1\ell(h_k, h_j)
            + \sum_j N[x,j,k]\,\partial_2\ell(h_j, h_k),

  a sum over row :math:`k` of the table of :math:`\partial_1\ell` and one
  over *column* :math:`k` of the table of :math:`\partial_2\ell`. Reverse
  mode through :func:`mean_loss` forms the column sum by transposing
  ``[X, K, K]`` tables, which took about half of the vmapped step on
  XLA:CPU. Here it is a row sum too: the loss is evaluated a second time on
  the swapped pair tables (:math:`\ell(h_j, h_k)` at entry ``[x, k, j]``)
  and its second-slot derivative weighted by the transposed counts
  :math:`N[x,j,k]` — one more derivative evaluation per entry instead of a
  transposition. With the log-ratios' pullback written out
  (:func:`_logratios_and_pullback`), the rDPO step of
  ``benchmarks/rdpo_sweep.py`` (640 problems of ``X = 100``, ``K = 8``) ran
  about 1.8x faster than with ``jax.value_and_grad(mean_loss)`` (jax 0.10,
  2-core CPU; the numbers are in that benchmark's docstring).

  This relies on ``loss`` being per example (entry ``[x, k, j]`` of its
  output depends on entry ``[x, k, j]`` of its inputs only), as the
  contract of :func:`offline_po` requires and as every pairwise loss of
  :mod:`prefsim.losses` but the batch-sorting ``aot`` and ``aot_unpaired``
  is.

  Args:
    loss: a per-example pairwise loss ``loss(chosen, rejected, *, beta,
      **hyper)``.
    theta: ``[D]`` parameters.
    counts: ``[X, K, K]`` comparison counts (:func:`comparison_counts`).
    problem: the :class:`~prefsim.loglinear.LogLinearProblem`; supplies
      ``beta``.
    **hyper: further keyword arguments of ``loss`` (e.g. ``eps``).
  Returns:
    ``(value, grad)``: the scalar :math:`\hat L(\theta)` and its ``[D]``
    gradient, equal to ``jax.value_and_grad(mean_loss, 1)`` up to rounding.
    As there, a loss that is infinite at a zero-count entry does not reach
    the value, and a derivative that is not finite there makes the gradient
    NaN.
  Raises:
    ValueError: when ``theta`` is not of shape ``[D]``.

  Tests: ``tests/test_offline.py::test_mean_loss_and_grad_equals_autodiff``,
  ``tests/test_offline.py::test_mean_loss_and_grad_under_jit_and_vmap``.
  """
  total = jnp.maximum(jnp.sum(counts), 1.0)
  counts_t = jnp.swapaxes(counts, -1, -2)
  # An identity. In a scan over steps it makes the counts look step-dependent
  # to XLA, which otherwise hoists four products of them with the problem's
  # constants out of the loop as [X, K, K] tables that every step then reads
  # (the vmapped rDPO step took 6.9 ms per step without them, 7.4 ms with).
  theta, counts, counts_t = jax.lax.optimization_barrier(
      (theta, counts, counts_t))
  h, pullback = _logratios_and_pullback(theta, problem)            # [X, K]
  chosen, rejected = _pair_tables(h)                               # [X, K, K]

  def per_pair(chosen, rejected):
    return loss(chosen, rejected, beta=problem.beta, **hyper)

  values, rows_vjp = jax.vjp(per_pair, chosen, rejected)
  # An infinite loss at a zero-count entry must not give inf * 0 = NaN.
  weighted = counts * jnp.where(counts > 0, values, 0.0)
  value = jnp.sum(_row_sums(weighted)) / total
  # [x, k, j]: N[x,k,j] d1 l(h_k, h_j).
  as_chosen, _ = rows_vjp(counts)
  # [x, k, j]: N[x,j,k] d2 l(h_j, h_k), from the loss on the swapped tables.
  _, swapped_vjp = jax.vjp(per_pair, rejected, chosen)
  _, as_rejected = swapped_vjp(counts_t)
  grad_h = _row_sums(as_chosen + as_rejected) / total             # [X, K]
  return value, pullback(grad_h)


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
      returning the per-example loss, on which :func:`mean_loss_and_grad`
      relies); fixed hyperparameters via
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
    TypeError, ValueError: for a non-callable ``loss``, a loss that is not
      per example (``aot``, ``aot_unpaired`` sort the batch), ``n_pairs``
      that is not a positive int, ``lr <= 0`` or ``radius <= 0``.
  """
  if not callable(loss):
    raise TypeError(f"loss must be a pairwise loss function, got "
                    f"{type(loss).__name__}")
  if loss in (losses_lib.aot, losses_lib.aot_unpaired):
    raise ValueError(f"offline_po needs a per-example loss; "
                     f"{loss.__name__} sorts the batch")
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
    value, grad = mean_loss_and_grad(loss, state.theta, state.counts,
                                     problem, **hyper)
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
