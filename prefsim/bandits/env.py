r"""Dueling-bandit environments: arms with features, a latent utility, BT duels.

A dueling bandit (Yue et al. 2012) has ``K`` arms; each round a learner picks a
pair ``(a, b)`` and observes only which one won. Here the arms carry features
(in prompt optimisation, the embeddings of ``K`` candidate prompts) and a
latent utility :math:`u`, and a duel is a Bradley-Terry coin,

.. math:: y = \mathbb{1}[a \succ b] \sim \mathrm{Bernoulli}\bigl(\sigma(u(a) - u(b))\bigr),

as in APOHF (Lin et al. 2024, and the duels of their code
``run_dbandits_po.py``; the paper's section and equation numbers are
unverified: its stored text reached only the abstract),
or noiseless: :math:`a` wins iff :math:`u(a) > u(b)`, a fair coin on a tie.

* :class:`DuelingProblem` — a pytree ``(embeddings [K, D], utilities [K],
  noisy)``, so runs vmap over seeds and over problems.
* Makers: :func:`linear_problem` (:math:`u(x) = \theta^\top x`),
  :func:`mlp_problem` (a random ReLU MLP :math:`u`) and
  :func:`from_embeddings` (your own features and utilities, validated).
  The random makers draw unit-norm embeddings, optionally confined to a
  random ``intrinsic_dim``-dimensional subspace (real sentence embeddings have
  a low effective rank: with ``K ≤ D`` generic directions, *every* utility
  is exactly linear in the features), and standardise the utility to mean 0
  and standard deviation ``scale`` over the arms.
* :func:`win_prob`, :func:`feedback` — the only channel through which an
  algorithm learns about :math:`u`.
* Regret measures (Yue et al. 2012 for weak and strong regret; Lin et al.
  2024 for the reported prompt's regret):
  :func:`reported_regret` :math:`u^* - u(\hat x_t)` of the arm an algorithm
  reports as best, and :func:`dueling_regret` of the queried pair — average
  :math:`u^* - (u_a + u_b)/2`, weak :math:`u^* - \max(u_a, u_b)` and strong
  :math:`u^* - \min(u_a, u_b)`; :func:`regret_info` bundles them into the
  ``info`` dict that every bandit Algorithm returns.
* :func:`linearity` — how far :math:`u` is from linear in the features: the
  :math:`R^2` of the best affine least-squares fit over all arms and the
  regret of that fit's argmax.

Shapes: ``K`` arms, ``D`` features.

References:
  Lin, Dai, Verma, Ng, Jaillet, Low. Prompt Optimization with Human Feedback.
  arXiv:2405.17346 (2024) (problem setting; section numbers unverified).
  Yue, Broder, Kleinberg, Joachims. The K-armed dueling bandits problem.
  J. Comput. Syst. Sci. 78(5), 2012 (weak and strong regret; section
  unverified).
"""

from __future__ import annotations

from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim.models import bradley_terry

__all__ = [
    "DuelingProblem",
    "check_problem",
    "dueling_regret",
    "feedback",
    "from_embeddings",
    "linear_problem",
    "linearity",
    "mlp",
    "mlp_problem",
    "regret_info",
    "reported_regret",
    "win_prob",
]


class DuelingProblem(NamedTuple):
  """A dueling bandit over ``K`` featured arms; a pytree of arrays.

  Every field is an array, so a batch of problems (stacked along a leading
  axis) runs under :func:`prefsim.sweep` with ``problem_axis=0``.

  Attributes:
    embeddings: arm features, shape [K, D] (e.g. prompt embeddings).
    utilities: latent utilities :math:`u`, shape [K]; algorithms never read
      them except through :func:`feedback` (and the regrets they log).
    noisy: bool scalar; True: Bradley-Terry feedback
      :math:`y \\sim \\mathrm{Bernoulli}(\\sigma(u_a - u_b))`; False:
      noiseless (the better arm wins, a fair coin on a tie).
  """

  embeddings: jax.Array
  utilities: jax.Array
  noisy: jax.Array


# --------------------------------------------------------------------------
# Checks
# --------------------------------------------------------------------------


def _check_shapes(embeddings: Any, utilities: Any) -> tuple[int, int]:
  """Static checks: embeddings [K, D] with K >= 2, D >= 1; utilities [K]."""
  _checks.check_ndim("embeddings", embeddings, 2, "[K, D]")
  n_arms, dim = np.shape(embeddings)
  if n_arms < 2:
    raise ValueError(f"a dueling bandit needs K >= 2 arms, got embeddings of "
                     f"shape {np.shape(embeddings)}")
  if dim < 1:
    raise ValueError(f"embeddings need D >= 1 features, got shape "
                     f"{np.shape(embeddings)}")
  if np.shape(utilities) != (n_arms,):
    raise ValueError(f"utilities must have shape [K] = ({n_arms},) to match "
                     f"embeddings {np.shape(embeddings)}, got "
                     f"{np.shape(utilities)}")
  return int(n_arms), int(dim)


def _check_finite(name: str, x: Any) -> None:
  """Raise ``ValueError`` if a concrete ``x`` holds NaN or infinity."""
  if _checks.is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
    bad = int(np.sum(~np.isfinite(np.asarray(x))))
    raise ValueError(f"{name} must be finite, got {bad} NaN or infinite "
                     "entries")


def check_problem(problem: Any) -> tuple[int, int]:
  """Validates a :class:`DuelingProblem` eagerly and returns ``(K, D)``.

  Shapes are checked always; finiteness of the embeddings and utilities only
  when they are concrete (a traced problem passes unchecked values through).

  Args:
    problem: a :class:`DuelingProblem`.
  Returns:
    ``(K, D)`` as Python ints.
  Raises:
    TypeError: ``problem`` is not a :class:`DuelingProblem`, or ``noisy`` is
      not a bool scalar.
    ValueError: embeddings not [K, D] with ``K >= 2``; utilities not [K];
      NaN or infinite entries.
  Tests: tests/bandits/test_env.py::test_bad_problems_raise.
  """
  if not isinstance(problem, DuelingProblem):
    raise TypeError(f"problem must be a DuelingProblem, got "
                    f"{type(problem).__name__}")
  sizes = _check_shapes(problem.embeddings, problem.utilities)
  if np.shape(problem.noisy) != () or jnp.result_type(problem.noisy) != bool:
    raise TypeError(f"problem.noisy must be a bool scalar, got "
                    f"{jnp.result_type(problem.noisy)} of shape "
                    f"{np.shape(problem.noisy)}")
  _check_finite("embeddings", problem.embeddings)
  _check_finite("utilities", problem.utilities)
  return sizes


# --------------------------------------------------------------------------
# Makers
# --------------------------------------------------------------------------


def from_embeddings(embeddings: jax.typing.ArrayLike,
                    utilities: jax.typing.ArrayLike, *,
                    noisy: bool | jax.typing.ArrayLike = True
                    ) -> DuelingProblem:
  """A :class:`DuelingProblem` from your own arm features and utilities.

  Args:
    embeddings: arm features, shape [K, D], ``K >= 2``, finite.
    utilities: latent utilities, shape [K], finite.
    noisy: Bradley-Terry feedback (True) or noiseless (False).
  Returns:
    The problem, with float arrays of the default float dtype.
  Raises:
    ValueError: ``K < 2``, mismatched shapes, NaN or infinite entries.
  Tests: tests/bandits/test_env.py::test_bad_problems_raise.
  """
  dtype = _checks.default_float()
  problem = DuelingProblem(jnp.asarray(embeddings, dtype),
                           jnp.asarray(utilities, dtype),
                           jnp.asarray(noisy, bool))
  check_problem(problem)
  return problem


def _check_maker_args(n_arms: Any, dim: Any, intrinsic_dim: Any,
                      scale: Any) -> tuple[int, int, int]:
  n_arms = _checks.check_static_int("n_arms", n_arms, 2)
  dim = _checks.check_static_int("dim", dim)
  if intrinsic_dim is None:
    intrinsic_dim = dim
  intrinsic_dim = _checks.check_static_int("intrinsic_dim", intrinsic_dim)
  if intrinsic_dim > dim:
    raise ValueError(f"intrinsic_dim must lie in [1, dim={dim}], got "
                     f"{intrinsic_dim}")
  _checks.check_positive("scale", scale)
  return n_arms, dim, intrinsic_dim


def _unit_embeddings(key: jax.Array, n_arms: int, dim: int,
                     intrinsic_dim: int) -> jax.Array:
  """``K`` uniform directions on the unit sphere of a random r-dim subspace."""
  z_key, basis_key = jax.random.split(key)
  z = jax.random.normal(z_key, (n_arms, intrinsic_dim), _checks.default_float())
  z = z / jnp.linalg.norm(z, axis=1, keepdims=True)
  if intrinsic_dim == dim:
    return z
  # Orthonormal columns: the image keeps unit norms and inner products.
  basis, _ = jnp.linalg.qr(jax.random.normal(
      basis_key, (dim, intrinsic_dim), _checks.default_float()))
  return z @ basis.T


def _standardize(u: jax.Array, scale: float) -> jax.Array:
  """``scale * (u - mean(u)) / std(u)`` over the arms."""
  centred = u - jnp.mean(u)
  return scale * centred / jnp.sqrt(jnp.mean(centred**2))


def linear_problem(key: jax.Array, n_arms: int, dim: int, *,
                   noisy: bool = True, intrinsic_dim: int | None = None,
                   scale: float = 1.0) -> DuelingProblem:
  r"""Random unit-norm arms with a linear utility :math:`u(x) = \theta^\top x`.

  .. math::
     x_k = Q z_k / \lVert z_k\rVert,\ z_k \sim \mathcal N(0, I_r),\qquad
     \theta \sim \mathcal N(0, I_D),\qquad
     u_k = s\,\frac{\theta^\top x_k - \overline{\theta^\top x}}
                  {\operatorname{sd}(\theta^\top x)},

  with :math:`Q` [D, r] a random orthonormal basis (:math:`Q = I` when
  ``intrinsic_dim`` is None) and :math:`s` = ``scale``. Standardising keeps
  :math:`u` affine in :math:`x`, and BT duels depend only on differences.

  Args:
    key: a ``jax.random`` key.
    n_arms: number of arms ``K >= 2`` (static).
    dim: feature dimension ``D >= 1`` (static).
    noisy: Bradley-Terry feedback (True) or noiseless (False).
    intrinsic_dim: the dimension ``r`` of the subspace the embeddings span,
      ``1 <= r <= D``; None for ``r = D``.
    scale: the standard deviation of ``u`` over the arms, ``> 0``.
  Returns:
    A :class:`DuelingProblem` with embeddings [K, D] and utilities [K].
  Raises:
    TypeError, ValueError: ``n_arms < 2``, ``dim < 1``, ``intrinsic_dim``
      outside ``[1, D]``, ``scale <= 0``.
  Tests: tests/bandits/test_env.py::test_makers_shapes_and_standardisation,
    tests/bandits/test_neural.py::test_linear_noiseless_finds_best_arm.
  """
  n_arms, dim, intrinsic_dim = _check_maker_args(n_arms, dim, intrinsic_dim,
                                                 scale)
  x_key, theta_key = jax.random.split(key)
  x = _unit_embeddings(x_key, n_arms, dim, intrinsic_dim)
  theta = jax.random.normal(theta_key, (dim,), x.dtype)
  return DuelingProblem(x, _standardize(x @ theta, scale),
                        jnp.asarray(noisy, bool))


def mlp_problem(key: jax.Array, n_arms: int, dim: int, *, noisy: bool = True,
                intrinsic_dim: int | None = None, hidden: Sequence[int] = (32,
                                                                          32),
                scale: float = 1.0) -> DuelingProblem:
  r"""Random unit-norm arms with a random ReLU-MLP utility.

  Embeddings as in :func:`linear_problem`; the utility is a randomly
  initialised MLP, standardised over the arms,

  .. math::
     h_0 = x,\quad h_l = \mathrm{relu}(W_l h_{l-1} + b_l),\quad
     f(x) = w^\top h_L,\qquad u_k = s\,\frac{f(x_k) - \bar f}{\operatorname{sd}(f)},

  with :math:`W_l` entries :math:`\mathcal N(0, 2/\mathrm{fan\_in})` (He),
  :math:`b_l \sim \mathcal N(0, 1/\mathrm{fan\_in})` and
  :math:`w \sim \mathcal N(0, 1/H_L)`. The biases move the ReLU kinks off
  the origin, so :math:`u` is not positively homogeneous. How nonlinear a
  given draw is varies; measure it with :func:`linearity`.

  Args:
    key: a ``jax.random`` key.
    n_arms: number of arms ``K >= 2`` (static).
    dim: feature dimension ``D >= 1`` (static).
    noisy: Bradley-Terry feedback (True) or noiseless (False).
    intrinsic_dim: the dimension ``r`` of the subspace the embeddings span,
      ``1 <= r <= D``; None for ``r = D``. With ``K <= r`` every utility is
      exactly affine in the features, so keep ``r`` well below ``K`` for a
      nonlinear problem.
    hidden: the hidden widths ``(H_1, ..., H_L)``, each ``>= 1``, ``L >= 1``.
    scale: the standard deviation of ``u`` over the arms, ``> 0``.
  Returns:
    A :class:`DuelingProblem` with embeddings [K, D] and utilities [K].
  Raises:
    TypeError, ValueError: as :func:`linear_problem`; ``hidden`` empty or
      with a width below 1.
  Tests: tests/bandits/test_env.py::test_makers_shapes_and_standardisation,
    tests/bandits/test_env.py::test_linearity.
  """
  n_arms, dim, intrinsic_dim = _check_maker_args(n_arms, dim, intrinsic_dim,
                                                 scale)
  hidden = tuple(_checks.check_static_int("hidden width", h) for h in hidden)
  if not hidden:
    raise ValueError("hidden must list at least one hidden width, got ()")
  x_key, net_key = jax.random.split(key)
  x = _unit_embeddings(x_key, n_arms, dim, intrinsic_dim)
  widths = (dim, *hidden, 1)
  keys = jax.random.split(net_key, len(widths) - 1)
  params = []
  for layer_key, fan_in, fan_out in zip(keys, widths[:-1], widths[1:]):
    w_key, b_key = jax.random.split(layer_key)
    gain = 1.0 if fan_out == 1 else 2.0  # He for ReLU layers.
    params.append(
        (jax.random.normal(w_key, (fan_in, fan_out), x.dtype)
         * jnp.sqrt(gain / fan_in),
         jax.random.normal(b_key, (fan_out,), x.dtype) / jnp.sqrt(fan_in)))
  f = mlp(tuple(params), x)
  return DuelingProblem(x, _standardize(f, scale), jnp.asarray(noisy, bool))


def mlp(params: Sequence[tuple[jax.Array, jax.Array]],
        x: jax.Array) -> jax.Array:
  r"""A ReLU multilayer perceptron with one output: the utility model.

  .. math::
     h_0 = x,\quad h_l = \mathrm{relu}(h_{l-1} W_l + b_l)\ (l < L),\qquad
     f(x) = h_{L-1} W_L + b_L,

  the latent utility of :func:`mlp_problem` and the model of
  :func:`prefsim.bandits.apohf`.

  Args:
    params: the layers ``((W_1, b_1), ..., (W_L, b_L))``, ``W_l`` of shape
      [H_{l-1}, H_l] and ``b_l`` of shape [H_l], with ``H_0 = D`` and
      ``H_L = 1``.
    x: inputs, shape [..., D].
  Returns:
    The outputs, shape [...].
  Tests: tests/bandits/test_env.py::test_makers_shapes_and_standardisation.
  """
  h = x
  for w, b in params[:-1]:
    h = jax.nn.relu(h @ w + b)
  w, b = params[-1]
  return (h @ w + b)[..., 0]


# --------------------------------------------------------------------------
# Feedback
# --------------------------------------------------------------------------


def win_prob(problem: DuelingProblem, a: jax.typing.ArrayLike,
             b: jax.typing.ArrayLike) -> jax.Array:
  r"""The probability that arm ``a`` beats arm ``b`` in one duel.

  .. math::
     \Pr(a \succ b) = \begin{cases}
       \sigma(u_a - u_b) & \text{noisy (Bradley-Terry)},\\
       \mathbb 1[u_a > u_b] + \tfrac12 \mathbb 1[u_a = u_b] & \text{noiseless.}
     \end{cases}

  Args:
    problem: a :class:`DuelingProblem`.
    a, b: arm indices in ``[0, K)`` (broadcasting int arrays).
  Returns:
    The probability, with the broadcast shape of ``a`` and ``b``.
  Raises:
    TypeError, ValueError: non-integer indices, or (eagerly) indices out of
      range. Inside ``jit`` an out-of-range index is clamped by JAX's
      gather.
  References:
    Lin et al. 2024, arXiv:2405.17346 (Bradley-Terry-Luce preference; as
    in their code, ``p = 1/(1 + exp(-(s_1 - s_2)))``).
  Tests: tests/bandits/test_env.py::test_feedback_frequencies_match_sigmoid,
    tests/bandits/test_env.py::test_noiseless_feedback.
  """
  n_arms = np.shape(problem.utilities)[-1]
  _checks.check_indices("a", a, n_arms)
  _checks.check_indices("b", b, n_arms)
  u_a, u_b = problem.utilities[a], problem.utilities[b]
  hard = jnp.where(u_a > u_b, 1.0, jnp.where(u_a < u_b, 0.0, 0.5))
  return jnp.where(problem.noisy, bradley_terry.prob(u_a, u_b),
                   hard.astype(u_a.dtype))


def feedback(key: jax.Array, problem: DuelingProblem, a: jax.typing.ArrayLike,
             b: jax.typing.ArrayLike) -> jax.Array:
  r"""One duel between arms ``a`` and ``b``: True iff ``a`` wins.

  .. math:: y \sim \mathrm{Bernoulli}(\Pr(a \succ b))

  with :math:`\Pr(a \succ b)` from :func:`win_prob` (noiseless problems give
  a deterministic answer, or a fair coin on a tie).

  Args:
    key: a ``jax.random`` key.
    problem: a :class:`DuelingProblem`.
    a, b: arm indices in ``[0, K)`` (broadcasting int arrays; one
      independent duel per element).
  Returns:
    Bool array with the broadcast shape of ``a`` and ``b``.
  References:
    Lin et al. 2024, arXiv:2405.17346 (their code draws
    ``np.random.binomial(1, p)``).
  Tests: tests/bandits/test_env.py::test_feedback_frequencies_match_sigmoid,
    tests/bandits/test_env.py::test_noiseless_feedback.
  """
  p = win_prob(problem, a, b)
  return jax.random.bernoulli(key, p)


# --------------------------------------------------------------------------
# Regrets
# --------------------------------------------------------------------------


def reported_regret(problem: DuelingProblem,
                    arm: jax.typing.ArrayLike) -> jax.Array:
  r"""The regret :math:`u^* - u(\hat x)` of a reported arm, ``>= 0``.

  Args:
    problem: a :class:`DuelingProblem`.
    arm: arm indices in ``[0, K)`` (any shape).
  Returns:
    :math:`\max_k u_k - u_{\mathrm{arm}}`, the shape of ``arm``.
  References:
    Lin et al. 2024, arXiv:2405.17346 (the regret of the prompt
    reported after each round).
  Tests: tests/bandits/test_env.py::test_regrets_nonnegative_and_ordered.
  """
  _checks.check_indices("arm", arm, np.shape(problem.utilities)[-1])
  u = problem.utilities
  return jnp.max(u) - u[arm]


def dueling_regret(problem: DuelingProblem, a: jax.typing.ArrayLike,
                   b: jax.typing.ArrayLike) -> dict[str, jax.Array]:
  r"""The average, weak and strong regret of the queried pair ``(a, b)``.

  .. math::
     r_{\mathrm{avg}} = u^* - \tfrac12(u_a + u_b),\quad
     r_{\mathrm{weak}} = u^* - \max(u_a, u_b),\quad
     r_{\mathrm{strong}} = u^* - \min(u_a, u_b),

  so :math:`0 \le r_{\mathrm{weak}} \le r_{\mathrm{avg}} \le
  r_{\mathrm{strong}}`.

  Args:
    problem: a :class:`DuelingProblem`.
    a, b: arm indices in ``[0, K)`` (broadcasting).
  Returns:
    ``{"average", "weak", "strong"}``, each with the broadcast shape.
  References:
    Yue et al. 2012, J. Comput. Syst. Sci. 78(5) (weak and strong
    regret); Lin et al. 2024, arXiv:2405.17346 (average regret).
  Tests: tests/bandits/test_env.py::test_regrets_nonnegative_and_ordered.
  """
  n_arms = np.shape(problem.utilities)[-1]
  _checks.check_indices("a", a, n_arms)
  _checks.check_indices("b", b, n_arms)
  u = problem.utilities
  best, u_a, u_b = jnp.max(u), u[a], u[b]
  return {"average": best - 0.5 * (u_a + u_b),
          "weak": best - jnp.maximum(u_a, u_b),
          "strong": best - jnp.minimum(u_a, u_b)}


def regret_info(problem: DuelingProblem, a: jax.Array, b: jax.Array,
                reported: jax.Array) -> dict[str, jax.Array]:
  """The per-round ``info`` that every bandit Algorithm returns.

  Args:
    problem: a :class:`DuelingProblem`.
    a, b: the queried arms this round (int scalars).
    reported: the arm the algorithm reports as best after this round.
  Returns:
    ``{"pair": int32 [2], "reported_regret", "average_regret",
    "weak_regret", "strong_regret"}`` (float scalars).
  Tests: tests/bandits/test_neural.py::test_info_keys_and_regrets.
  """
  duel = dueling_regret(problem, a, b)
  return {"pair": jnp.stack([a, b]).astype(jnp.int32),
          "reported_regret": reported_regret(problem, reported),
          "average_regret": duel["average"],
          "weak_regret": duel["weak"],
          "strong_regret": duel["strong"]}


# --------------------------------------------------------------------------
# Diagnostics
# --------------------------------------------------------------------------


def linearity(problem: DuelingProblem) -> dict[str, float]:
  r"""How far the utility is from linear in the features.

  Fits :math:`\hat u = X\beta + c` by least squares over all ``K`` arms
  (minimum-norm solution, singular values below :math:`\sqrt{\epsilon}`
  times the largest dropped, :math:`\epsilon` the embeddings' machine
  epsilon, so that rounding noise in embeddings confined to a subspace does
  not count as extra dimensions) and reports

  .. math::
     R^2 = 1 - \frac{\sum_k (u_k - \hat u_k)^2}{\sum_k (u_k - \bar u)^2},
     \qquad r_{\mathrm{lin}} = u^* - u\bigl(\arg\max_k \hat u_k\bigr),

  the regret of the arm a perfectly informed linear model would pick: a
  floor on what a linear dueling bandit can reach.

  Args:
    problem: a :class:`DuelingProblem` (concrete).
  Returns:
    ``{"r2": float, "argmax_regret": float}``.
  Tests: tests/bandits/test_env.py::test_linearity.
  """
  check_problem(problem)
  rcond = float(np.sqrt(np.finfo(problem.embeddings.dtype).eps))
  x = np.asarray(problem.embeddings, np.float64)
  u = np.asarray(problem.utilities, np.float64)
  design = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
  beta, *_ = np.linalg.lstsq(design, u, rcond=rcond)
  fit = design @ beta
  total = np.sum((u - u.mean())**2)
  r2 = 1.0 - np.sum((u - fit)**2) / total if total > 0 else 1.0
  return {"r2": float(r2),
          "argmax_regret": float(u.max() - u[int(np.argmax(fit))])}
