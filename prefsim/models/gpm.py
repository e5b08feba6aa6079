r"""General preference embeddings (GPM): skew-symmetric preference scores.

Each item ``i`` has an embedding :math:`v_i \in \mathbb{R}^{2k}` (``dim =
2k``); the preference score is a skew-symmetric bilinear form gated by
non-negative eigenvalue scales :math:`\lambda_l \ge 0`,

.. math:: s(i \succ j) = \sum_{l=0}^{k-1} \lambda_l
          \big(v_{i,2l}\, v_{j,2l+1} - v_{i,2l+1}\, v_{j,2l}\big)
          = v_i^\top R_\lambda v_j, \qquad
          R_\lambda = \mathrm{blockdiag}\Big(\lambda_l
          \begin{pmatrix} 0 & 1 \\ -1 & 0 \end{pmatrix}\Big),

and :math:`P(i \succ j) = \sigma(s(i \succ j)/\tau)`. Sign convention: with
:math:`v_i = (r_i, 1)` and :math:`\lambda = 1` the score is exactly
:math:`r_i - r_j`, so Bradley-Terry with rewards ``r`` is the special case
``k = 1``. The paper writes the score as
:math:`\langle R^{\succ} v_i, v_j\rangle` with a block-diagonal
skew-symmetric :math:`R^{\succ}` of :math:`2\times 2` rotation blocks; ours is
the same form with the blocks oriented so that the BT embedding gives
:math:`+(r_i - r_j)`.

Properties (tested): :math:`s(i\succ j) = -s(j\succ i)` and
:math:`P(i\succ j) + P(j\succ i) = 1`; any real skew-symmetric logit matrix
over ``K`` items is represented exactly with ``2k >= K`` (:func:`embed`,
from the spectral / real Schur form of a skew-symmetric matrix);
rock-paper-scissors with ``k = 1`` by :math:`v_i = (\cos 2\pi i/3,
\sin 2\pi i/3)`.

Shapes: ``K`` items, ``P`` comparisons, ``dim = 2k`` embedding size.

References:
  Zhang, Zhang, Wu, Xu, Gu. Beyond Bradley-Terry Models: A General Preference
  Model for Language Model Alignment (first version: General Preference
  Modeling with Preference Representations for Aligning Language Models),
  arXiv:2410.02197, 2024. Numbers below are those of arXiv v3 (ICML 2025),
  checked against its text; v1 may number differently: preference embeddings
  (Def. 4.1), the skew-symmetric preference operator (Def. 4.2), the
  preference score (Def. 4.3, Eq. 4.1) and P = sigma(s) (Eq. 3.1); BT as the
  case k = 1 (Sec. 4); full expressiveness for skew-symmetric preference
  matrices (Theorem 4.4; the spectral construction with eigenvalue scales is
  Theorem 4.5 and Sec. 4.2); the cross-entropy training loss (Eq. A.1).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks
from prefsim._numerics import log_sigmoid
from prefsim import _optim

__all__ = ["embed", "fit", "log_likelihood", "prob", "score",
           "score_matrix"]


def _check_dim(dim: int) -> int:
  dim = _checks.check_static_int("dim", dim, minimum=2)
  if dim % 2:
    raise ValueError(f"dim must be even (pairs of coordinates, dim = 2k), got "
                     f"{dim}")
  return dim


def _check_embedding_shapes(v_i, v_j, lambdas) -> None:
  d_i, d_j = np.shape(v_i)[-1:], np.shape(v_j)[-1:]
  if not d_i or not d_j or d_i != d_j:
    raise ValueError(f"v_i and v_j must end in the same axis of size dim, got "
                     f"shapes {np.shape(v_i)} and {np.shape(v_j)}")
  _check_dim(d_i[0])
  _checks.check_ndim("lambdas", lambdas, 1, "one scale per 2-d block, [dim/2]")
  if 2 * np.shape(lambdas)[0] != d_i[0]:
    raise ValueError(f"lambdas must have shape [dim/2] = [{d_i[0] // 2}], got "
                     f"{np.shape(lambdas)}")


def score(v_i: jax.typing.ArrayLike, v_j: jax.typing.ArrayLike,
          lambdas: jax.typing.ArrayLike) -> jax.Array:
  r"""The GPM preference score of ``i`` over ``j``.

  .. math:: s(i \succ j) = \sum_{l} \lambda_l
            \big(v_{i,2l}\, v_{j,2l+1} - v_{i,2l+1}\, v_{j,2l}\big)

  Skew-symmetric: :math:`s(i\succ j) = -s(j\succ i)`, so
  :math:`s(i \succ i) = 0`.

  Args:
    v_i: embeddings of the first items, shape [..., dim] (dim even).
    v_j: embeddings of the second items, shape [..., dim], broadcasting with
      ``v_i``.
    lambdas: the non-negative block scales, shape [dim/2] (not checked for
      sign: a negative scale swaps its block's orientation).

  Returns:
    The scores, the broadcast batch shape of ``v_i`` and ``v_j``.

  Raises:
    ValueError: ``dim`` odd, or the last axes or ``lambdas`` disagree.

  References:
    Zhang et al., arXiv:2410.02197 (2024; v3 numbering): Def. 4.3, Eq. 4.1
    (with lambda = 1); eigenvalue scales as in Sec. 4.2.
    tests/models/test_gpm.py::test_score_is_skew_symmetric.
  """
  _check_embedding_shapes(v_i, v_j, lambdas)
  v_i, v_j = jnp.asarray(v_i), jnp.asarray(v_j)
  lam = jnp.asarray(lambdas)
  cross = v_i[..., 0::2] * v_j[..., 1::2] - v_i[..., 1::2] * v_j[..., 0::2]
  return jnp.sum(lam * cross, axis=-1)


def prob(v_i: jax.typing.ArrayLike, v_j: jax.typing.ArrayLike,
         lambdas: jax.typing.ArrayLike,
         tau: float | jax.Array = 1.0) -> jax.Array:
  r"""The GPM probability that ``i`` beats ``j``.

  .. math:: P(i \succ j) = \sigma\big(s(i \succ j) / \tau\big)

  so :math:`P(i \succ j) + P(j \succ i) = 1`.

  Args:
    v_i: embeddings of the first items, shape [..., dim].
    v_j: embeddings of the second items, shape [..., dim].
    lambdas: block scales, shape [dim/2].
    tau: temperature ``tau > 0``.

  Returns:
    The probabilities, the broadcast batch shape.

  Raises:
    ValueError: as :func:`score`; (when concrete) ``tau <= 0``.

  References:
    Zhang et al., arXiv:2410.02197 (2024; v3 numbering): Eq. 3.1 (tau = 1);
    the temperature as in Eq. A.1.
    tests/models/test_gpm.py::test_probabilities_are_complementary.
  """
  _checks.check_positive("tau", tau)
  return jax.nn.sigmoid(score(v_i, v_j, lambdas) / tau)


def score_matrix(embeddings: jax.typing.ArrayLike,
                 lambdas: jax.typing.ArrayLike) -> jax.Array:
  r"""All pairwise scores :math:`S_{ij} = s(i \succ j) = v_i^\top
  R_\lambda v_j`, a skew-symmetric matrix.

  Args:
    embeddings: item embeddings, shape [K, dim].
    lambdas: block scales, shape [dim/2].

  Returns:
    The score matrix, shape [K, K]; ``sigmoid(S / tau)`` is the model's
    preference matrix.
  """
  _checks.check_ndim("embeddings", embeddings, 2, "[K, dim]")
  v = jnp.asarray(embeddings)
  return score(v[:, None, :], v[None, :, :], lambdas)


def log_likelihood(embeddings: jax.typing.ArrayLike,
                   lambdas: jax.typing.ArrayLike,
                   winners: jax.typing.ArrayLike,
                   losers: jax.typing.ArrayLike,
                   tau: float | jax.Array = 1.0) -> jax.Array:
  r"""GPM log-likelihood of a list of comparisons.

  .. math:: \ell = \sum_{p=1}^{P} \log\sigma\big(s(w_p \succ l_p)/\tau\big)

  in log-sigmoid form (finite for large scores).

  Args:
    embeddings: item embeddings, shape [K, dim].
    lambdas: block scales, shape [dim/2].
    winners: integer indices of the winners, shape [P].
    losers: integer indices of the losers, shape [P].
    tau: temperature ``tau > 0``.

  Returns:
    The log-likelihood, a scalar.

  Raises:
    ValueError: shapes disagree, or (when concrete) indices outside
      ``[0, K)`` or ``tau <= 0``. Under ``jit`` indices are clamped.
  """
  _checks.check_ndim("embeddings", embeddings, 2, "[K, dim]")
  k = np.shape(embeddings)[0]
  _checks.check_same_shape(winners=winners, losers=losers)
  _checks.check_indices("winners", winners, k)
  _checks.check_indices("losers", losers, k)
  _checks.check_positive("tau", tau)
  v = jnp.asarray(embeddings)
  s = score(v[jnp.asarray(winners)], v[jnp.asarray(losers)], lambdas)
  return jnp.sum(log_sigmoid(s / tau))


def embed(logits: jax.typing.ArrayLike, dim: int | None = None
          ) -> tuple[jax.Array, jax.Array]:
  r"""Embeddings that reproduce a skew-symmetric score matrix exactly.

  A real skew-symmetric :math:`A` (:math:`A^\top = -A`) is normal with
  eigenvalues :math:`\pm i\mu_l`, :math:`\mu_l \ge 0`; in its real Schur
  (spectral) form

  .. math:: A = \sum_l \mu_l \big(a_l b_l^\top - b_l a_l^\top\big)

  with orthonormal :math:`a_l, b_l`. Here they come from the Hermitian
  eigenproblem of :math:`iA`: an eigenvector :math:`u = x + iy` of
  eigenvalue :math:`\mu > 0` has :math:`Ax = \mu y`, :math:`Ay = -\mu x`,
  :math:`|x| = |y| = 1/\sqrt2`, :math:`x \perp y`, and
  :math:`a = \sqrt2\,y`, :math:`b = \sqrt2\,x`. Setting
  :math:`v_{i,2l} = a_{l,i}`, :math:`v_{i,2l+1} = b_{l,i}`,
  :math:`\lambda_l = \mu_l` gives :func:`score_matrix` ``= A``. The largest
  ``dim/2`` of the :math:`\mu_l` are kept, so the result is exact when
  ``dim/2`` is at least half the rank of ``A`` — always when
  ``dim >= K`` — and otherwise the best approximation of that rank in the
  Frobenius norm.

  Args:
    logits: a skew-symmetric matrix, shape [K, K] (e.g. ``tau * logit(P)``
      of a preference matrix with entries in (0, 1)).
    dim: the embedding size, even; default ``K`` rounded up to even.

  Returns:
    ``(embeddings, lambdas)``: shapes [K, dim] and [dim/2], ``lambdas >= 0``
    in decreasing order.

  Raises:
    ValueError: ``logits`` is not square, ``dim`` odd, or (when concrete)
      ``logits`` is not skew-symmetric (to 1e-5 relative to its largest
      entry).

  References:
    Zhang et al., arXiv:2410.02197 (2024; v3 numbering): full expressiveness
    of GPM for skew-symmetric preference matrices, Theorem 4.4; the spectral
    construction, Theorem 4.5.
    tests/models/test_gpm.py::test_embed_reproduces_any_skew_symmetric_matrix.
  """
  _checks.check_ndim("logits", logits, 2, "[K, K]")
  k, k2 = np.shape(logits)
  if k != k2:
    raise ValueError(f"logits must be square [K, K], got {np.shape(logits)}")
  if dim is None:
    dim = k + (k % 2)
  dim = _check_dim(dim)
  if _checks.is_concrete(logits):
    a = np.asarray(logits, np.float64)
    err = np.max(np.abs(a + a.T)) if a.size else 0.0
    if err > 1e-5 * max(1.0, np.max(np.abs(a))):
      raise ValueError(f"logits must be skew-symmetric (A.T == -A), got "
                       f"max |A + A.T| = {err}")
  return _embed_core(jnp.asarray(logits, _checks.default_float()), dim=dim)


@functools.partial(jax.jit, static_argnames=("dim",))
def _embed_core(a, *, dim):
  k = a.shape[0]
  half = dim // 2
  a = 0.5 * (a - a.T)
  mu, u = jnp.linalg.eigh(1j * a.astype(jnp.result_type(a.dtype, jnp.complex64)))
  # eigh sorts ascending; the positive eigenvalues are last.
  mu, u = mu[::-1], u[:, ::-1]
  n_pairs = min(half, k // 2)
  mu, u = jnp.clip(mu[:n_pairs], 0.0), u[:, :n_pairs]
  first = jnp.sqrt(2.0) * jnp.imag(u)    # a_l = sqrt2 y
  second = jnp.sqrt(2.0) * jnp.real(u)   # b_l = sqrt2 x
  v = jnp.zeros((k, dim), a.dtype)
  v = v.at[:, 0:2 * n_pairs:2].set(first.astype(a.dtype))
  v = v.at[:, 1:2 * n_pairs:2].set(second.astype(a.dtype))
  lam = jnp.zeros((half,), a.dtype).at[:n_pairs].set(mu.astype(a.dtype))
  return v, lam


def _softplus_inverse(x):
  return x + jnp.log(-jnp.expm1(-x))


@functools.partial(jax.jit, static_argnames=("n_items", "dim", "max_iter"))
def _fit_core(key, winners, losers, tau, l2, tol, init_scale, *, n_items,
              dim, max_iter):
  dtype = _checks.default_float()
  n = winners.shape[0]
  v0 = init_scale * jax.random.normal(key, (n_items, dim), dtype)
  rho0 = jnp.full((dim // 2,), _softplus_inverse(jnp.ones((), dtype)))

  def loss(params):
    v, rho = params
    lam = jax.nn.softplus(rho)
    s = score(v[winners], v[losers], lam)
    nll = -jnp.sum(log_sigmoid(s / tau))
    return (nll + 0.5 * l2 * (jnp.sum(v * v) + jnp.sum(lam * lam))) / n

  (v, rho), _ = _optim.minimize_lbfgs(loss, (v0, rho0), max_iter=max_iter,
                                      tol=tol)
  return v, jax.nn.softplus(rho)


def fit(key: jax.Array, winners: jax.typing.ArrayLike,
        losers: jax.typing.ArrayLike, n_items: int, *, dim: int,
        tau: float | jax.Array = 1.0, l2: float | jax.Array = 0.0,
        init_scale: float | jax.Array = 0.5, tol: float | None = None,
        max_iter: int = 1000) -> tuple[jax.Array, jax.Array]:
  r"""Maximum-likelihood (or L2-penalised MAP) GPM embeddings.

  .. math:: (\hat v, \hat\lambda) = \arg\min_{v,\ \lambda = \mathrm{softplus}(\rho)}
            \frac1P\Big[-\sum_{p=1}^{P} \log\sigma\big(s(w_p \succ l_p)/\tau\big)
            + \frac{\kappa}{2}\big(\lVert v\rVert^2 + \lVert\lambda\rVert^2\big)\Big]

  by L-BFGS (:func:`prefsim._optim.minimize_lbfgs`) from
  :math:`v \sim N(0, \text{init\_scale}^2)` drawn with ``key`` and
  :math:`\lambda = 1`; :math:`\lambda = \mathrm{softplus}(\rho) > 0` keeps
  the scales non-negative. The objective is not convex (and is invariant to
  rotations within a block and to :math:`v \to cv,\ \lambda \to
  \lambda/c^2`): the result depends on ``key``, and ``v = 0`` is a saddle,
  hence the random start. The penalty acts on both ``v`` and ``lambda`` (a
  penalty on ``v`` alone is undone by that rescaling). ``fit`` jits and
  vmaps, but under ``vmap`` the L-BFGS loop runs every lane until the
  slowest stops: looping over seeds with one jitted call each was much faster
  in the study ``cyclic_preferences``. Without a penalty,
  on data that a GPM separates perfectly (e.g. a deterministic 3-cycle)
  the scores grow until the gradient falls below ``tol``.

  Args:
    key: a ``jax.random`` key for the initial embeddings.
    winners: integer indices in ``[0, n_items)`` of the winners, shape [P].
    losers: integer indices of the losers, shape [P].
    n_items: the number of items K, a Python int.
    dim: the embedding size 2k, an even Python int >= 2.
    tau: temperature ``tau > 0``.
    l2: the penalty :math:`\kappa \ge 0`.
    init_scale: standard deviation of the initial embeddings.
    tol: stop when the largest gradient entry is at most ``tol``; default
      ``1e-6`` in float32, ``1e-10`` under x64.
    max_iter: the most L-BFGS iterations.

  Returns:
    ``(embeddings, lambdas)``: shapes [K, dim] and [dim/2].

  Raises:
    ValueError: ``dim`` odd or < 2; ``winners``/``losers`` differ in shape
      or are not 1-D; or (when concrete) indices outside ``[0, n_items)``,
      ``tau <= 0`` or ``l2 < 0``. Under ``jit`` the value checks are skipped.

  References:
    Zhang et al., arXiv:2410.02197 (2024; v3 numbering): the cross-entropy
    loss, Eq. A.1 (App. A.2).
    tests/models/test_gpm.py::test_fit_three_cycle_perfectly_where_bt_cannot.
  """
  n_items = _checks.check_static_int("n_items", n_items)
  dim = _check_dim(dim)
  _checks.check_ndim("winners", winners, 1, "one entry per comparison, [P]")
  _checks.check_same_shape(winners=winners, losers=losers)
  _checks.check_indices("winners", winners, n_items)
  _checks.check_indices("losers", losers, n_items)
  _checks.check_positive("tau", tau)
  _checks.check_nonnegative("l2", l2)
  max_iter = _checks.check_static_int("max_iter", max_iter)
  dtype = _checks.default_float()
  if tol is None:
    tol = 1e-6 if dtype == jnp.float32 else 1e-10
  return _fit_core(key, jnp.asarray(winners, jnp.int32),
                   jnp.asarray(losers, jnp.int32), jnp.asarray(tau, dtype),
                   jnp.asarray(l2, dtype), jnp.asarray(tol, dtype),
                   jnp.asarray(init_scale, dtype), n_items=n_items, dim=dim,
                   max_iter=max_iter)
