r"""General (possibly intransitive) preference matrices.

A preference matrix over ``K`` items holds :math:`P_{ij} = \Pr(i \succ j)`
with :math:`P + P^\top = 1` (so the diagonal is :math:`\tfrac12`) and entries
in :math:`[0, 1]`. Its *majority relation* has an edge :math:`i \to j` when
:math:`P_{ij} > \tfrac12`; a tie :math:`P_{ij} = \tfrac12` gives no edge
either way. Bradley-Terry matrices (:func:`from_utilities`) have a transitive
majority relation; general ones may cycle (rock-paper-scissors), and so may a
population of Bradley-Terry users (:func:`mixture_bt`, Condorcet's paradox).

Shapes use the glossary: ``K`` items, ``M`` users.

Functions: :func:`validate` (eager check), :func:`from_utilities`,
:func:`rock_paper_scissors`, :func:`random_tournament`,
:func:`random_cyclic`, :func:`mixture_bt`, :func:`condorcet_winner`,
:func:`has_cycle` and :func:`majority_agreement` (the accuracy of a model's
majority relation against a true one).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from prefsim import _checks

__all__ = [
    "condorcet_winner",
    "from_utilities",
    "has_cycle",
    "majority_agreement",
    "mixture_bt",
    "random_cyclic",
    "random_tournament",
    "rock_paper_scissors",
    "validate",
]


def _check_square(name: str, p) -> int:
  _checks.check_ndim(name, p, 2, "a [K, K] preference matrix")
  k, k2 = np.shape(p)
  if k != k2:
    raise ValueError(f"{name} must be square [K, K], got shape {np.shape(p)}")
  return int(k)


def validate(p: jax.typing.ArrayLike, *, atol: float = 1e-6) -> jax.Array:
  r"""Check that ``p`` is a preference matrix and return it as an array.

  A preference matrix satisfies, to absolute tolerance ``atol``,

  .. math:: P + P^\top = \mathbf 1\mathbf 1^\top, \qquad
            P_{ii} = \tfrac12, \qquad 0 \le P_{ij} \le 1 .

  Args:
    p: the candidate matrix, shape [K, K].
    atol: absolute tolerance of each check (float32 round-off of
      ``1 - p`` is about 6e-8).

  Returns:
    ``p`` as a float array, shape [K, K].

  Raises:
    ValueError: ``p`` is not square 2-D (always, a static check); or, when
      ``p`` is concrete, an entry lies outside [0, 1], the diagonal is not
      1/2, or ``P + P.T != 1``: the message names the failing condition, the
      worst entry and its index. Under ``jit`` the value checks are skipped
      (never faked) and ``p`` is returned unchecked.

  Tests:
    tests/models/test_general.py::test_validate_rejects_each_violation.
  """
  _check_square("p", p)
  _checks.check_nonnegative("atol", atol)
  if _checks.is_concrete(p):
    a = np.asarray(p, np.float64)
    if np.any(np.isnan(a)):
      raise ValueError("p is not a preference matrix: it holds NaN entries")
    out = np.maximum(-a, a - 1.0)
    if out.size and out.max() > atol:
      i, j = np.unravel_index(np.argmax(out), a.shape)
      raise ValueError(
          "p is not a preference matrix: entries must lie in [0, 1], got "
          f"p[{i}, {j}] = {a[i, j]}")
    diag = np.abs(np.diag(a) - 0.5)
    if diag.size and diag.max() > atol:
      i = int(np.argmax(diag))
      raise ValueError(
          "p is not a preference matrix: the diagonal must be 1/2, got "
          f"p[{i}, {i}] = {a[i, i]}")
    sym = np.abs(a + a.T - 1.0)
    if sym.size and sym.max() > atol:
      i, j = np.unravel_index(np.argmax(sym), a.shape)
      raise ValueError(
          "p is not a preference matrix: p + p.T must equal 1, got "
          f"p[{i}, {j}] + p[{j}, {i}] = {a[i, j] + a[j, i]}")
  return jnp.asarray(p, _checks.default_float())


def from_utilities(utilities: jax.typing.ArrayLike) -> jax.Array:
  r"""The Bradley-Terry preference matrix of a utility vector.

  .. math:: P_{ij} = \sigma(u_i - u_j)

  Its majority relation is transitive: :math:`i \to j` iff
  :math:`u_i > u_j`.

  Args:
    utilities: item utilities, shape [K].

  Returns:
    The preference matrix, shape [K, K].

  References:
    Bradley and Terry (1952), Biometrika 39(3/4):324-345.
    tests/models/test_general.py::test_bt_matrices_are_transitive.
  """
  _checks.check_ndim("utilities", utilities, 1, "one utility per item, [K]")
  u = jnp.asarray(utilities)
  return jax.nn.sigmoid(u[:, None] - u[None, :])


def rock_paper_scissors(strength: float | jax.Array = 1.0) -> jax.Array:
  r"""Rock-paper-scissors as a 3x3 preference matrix.

  Items are ``0`` rock, ``1`` scissors, ``2`` paper, so that item ``i``
  beats item ``i + 1 (mod 3)`` with probability ``s``:

  .. math:: P_{i,\,i+1 \bmod 3} = s, \qquad P_{i+1 \bmod 3,\, i} = 1 - s .

  Args:
    strength: ``s`` in [0, 1]; the default 1 is the deterministic game,
      ``s > 1/2`` a cyclic majority relation, ``s = 1/2`` all ties.

  Returns:
    The preference matrix, shape [3, 3].

  Raises:
    ValueError: (when concrete) ``strength`` outside [0, 1].
  """
  _checks.check_in_range("strength", strength, 0.0, 1.0)
  s = jnp.asarray(strength, _checks.default_float())
  nxt = jnp.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], _checks.default_float())
  return 0.5 * jnp.eye(3, dtype=s.dtype) + s * nxt + (1 - s) * nxt.T


def _from_upper(upper: jax.Array) -> jax.Array:
  """A preference matrix from its strict upper triangle (rest ignored)."""
  k = upper.shape[0]
  mask = jnp.triu(jnp.ones((k, k), bool), 1)
  up = jnp.where(mask, upper, 0.0)
  return up + jnp.where(mask.T, 1.0 - up.T, 0.0) + 0.5 * jnp.eye(k)


def random_tournament(key: jax.Array, n: int) -> jax.Array:
  r"""A uniformly random tournament as a 0/1 preference matrix.

  Each unordered pair :math:`i < j` is decided independently by a fair coin:
  :math:`P_{ij} \sim \mathrm{Bernoulli}(\tfrac12)`, :math:`P_{ji} = 1 -
  P_{ij}`, diagonal 1/2.

  Args:
    key: a ``jax.random`` key.
    n: the number of items K, a Python int >= 1.

  Returns:
    The preference matrix, shape [K, K], entries 0, 1 and 1/2 (diagonal).
  """
  n = _checks.check_static_int("n", n)
  bits = jax.random.bernoulli(key, 0.5, (n, n))
  bits = bits.astype(_checks.default_float())
  return _from_upper(bits)


def random_cyclic(key: jax.Array, n: int, *, scale: float = 3.0,
                  min_logit: float = 0.1) -> jax.Array:
  r"""A random preference matrix whose majority relation has a Hamiltonian cycle.

  Draws skew-symmetric logits :math:`A_{ij} \sim U(-c, c)` (``c = scale``)
  and a uniformly random order :math:`\pi` of the items, then forces the
  cycle :math:`\pi_0 \succ \pi_1 \succ \dots \succ \pi_{K-1} \succ \pi_0`
  by setting :math:`A_{\pi_k \pi_{k+1}} = \max(|A_{\pi_k \pi_{k+1}}|,
  m)` (``m = min_logit``); :math:`P = \sigma(A)`. Every item loses to its
  predecessor on the cycle, so there is no Condorcet winner and
  :func:`has_cycle` is true.

  Args:
    key: a ``jax.random`` key.
    n: the number of items K, a Python int >= 3.
    scale: the logits' range ``c > 0``.
    min_logit: the least logit ``m > 0`` of a cycle edge.

  Returns:
    The preference matrix, shape [K, K].

  Raises:
    ValueError: ``n < 3``, or (when concrete) ``scale`` or ``min_logit`` not
      positive.
  """
  n = _checks.check_static_int("n", n, minimum=3)
  _checks.check_positive("scale", scale)
  _checks.check_positive("min_logit", min_logit)
  k_a, k_p = jax.random.split(key)
  a = jax.random.uniform(k_a, (n, n), _checks.default_float(), -scale, scale)
  a = jnp.triu(a, 1)
  a = a - a.T
  perm = jax.random.permutation(k_p, n)
  src, dst = perm, jnp.roll(perm, -1)
  edge = jnp.maximum(jnp.abs(a[src, dst]), min_logit)
  a = a.at[src, dst].set(edge).at[dst, src].set(-edge)
  return _from_upper(jax.nn.sigmoid(a))


def mixture_bt(weights: jax.typing.ArrayLike,
               utilities: jax.typing.ArrayLike) -> jax.Array:
  r"""The population preference matrix of a mixture of Bradley-Terry users.

  .. math:: P_{ij} = \sum_{m=1}^{M} w_m\, \sigma(u_{m,i} - u_{m,j})

  Each user is transitive, but the population need not be: three users with
  the rankings a > b > c, b > c > a and c > a > b and equal weights give a
  cyclic majority relation (Condorcet's paradox).

  Args:
    weights: user weights on the simplex, shape [M].
    utilities: each user's item utilities, shape [M, K].

  Returns:
    The preference matrix, shape [K, K].

  Raises:
    ValueError: ``weights`` is not [M] or ``utilities`` not [M, K] with the
      same M; or (when concrete) a weight outside [0, 1] or weights not
      summing to 1 (to 1e-5).

  References:
    Condorcet, Essai sur l'application de l'analyse a la probabilite des
    decisions rendues a la pluralite des voix, 1785 (the paradox).
    tests/models/test_general.py::test_condorcet_paradox_mixture_is_cyclic.
  """
  _checks.check_ndim("weights", weights, 1, "one weight per user, [M]")
  _checks.check_ndim("utilities", utilities, 2, "[M, K]")
  if np.shape(weights)[0] != np.shape(utilities)[0]:
    raise ValueError(
        f"weights [M] and utilities [M, K] must agree on M, got shapes "
        f"{np.shape(weights)} and {np.shape(utilities)}")
  _checks.check_in_range("weights", weights, 0.0, 1.0)
  if _checks.is_concrete(weights):
    total = float(np.sum(np.asarray(weights, np.float64)))
    if abs(total - 1.0) > 1e-5:
      raise ValueError(f"weights must sum to 1 (a distribution over users), "
                       f"got sum {total}")
  w = jnp.asarray(weights, _checks.default_float())
  u = jnp.asarray(utilities, _checks.default_float())
  per_user = jax.nn.sigmoid(u[:, :, None] - u[:, None, :])  # [M, K, K]
  return jnp.einsum("m,mij->ij", w, per_user)


def _majority(p: jax.Array) -> jax.Array:
  """The strict majority relation ``P > 1/2`` as a boolean [K, K] matrix."""
  return jnp.asarray(p) > 0.5


def condorcet_winner(p: jax.typing.ArrayLike) -> jax.Array:
  r"""The Condorcet winner: the item that beats every other item, or -1.

  .. math:: i^\star \text{ such that } P_{i^\star j} > \tfrac12
            \ \ \forall j \ne i^\star

  There is at most one (two winners would each beat the other). A tie
  :math:`P_{ij} = \tfrac12` is not a win. Jittable; the matrix is not
  validated (use :func:`validate`).

  Args:
    p: a preference matrix, shape [K, K].

  Returns:
    The winner's index, or -1 when there is none; an int32 scalar.

  References:
    tests/models/test_general.py::test_condorcet_winner_of_bt_is_the_best_item.
  """
  k = _check_square("p", p)
  beats = _majority(p) | jnp.eye(k, dtype=bool)
  wins_all = jnp.all(beats, axis=1)
  return jnp.where(jnp.any(wins_all), jnp.argmax(wins_all), -1).astype(
      jnp.int32)


def has_cycle(p: jax.typing.ArrayLike) -> jax.Array:
  r"""Whether the majority relation of ``p`` has a directed cycle.

  The relation has an edge :math:`i \to j` iff :math:`P_{ij} > \tfrac12`;
  ties (:math:`P_{ij} = \tfrac12`) add no edge. The transitive closure
  :math:`C` is computed by :math:`\lceil\log_2 K\rceil` squarings,
  :math:`C \leftarrow C \lor (C C > 0)`, and a cycle exists iff some
  :math:`C_{ii}` is true. For a tournament (no ties off the diagonal) "no
  cycle" is the same as "transitive" (a strict total order); with ties, a
  cycle-free relation need not be a weak order (e.g. a > b with a ~ c ~ b).
  Jittable; ``p`` is not validated.

  Args:
    p: a preference matrix, shape [K, K].

  Returns:
    A boolean scalar.

  References:
    tests/models/test_general.py::test_has_cycle_matches_brute_force.
  """
  k = _check_square("p", p)
  reach = _majority(p)
  for _ in range(max(1, math.ceil(math.log2(max(k, 2))))):
    r = reach.astype(jnp.float32)
    reach = reach | ((r @ r) > 0)
  return jnp.any(jnp.diagonal(reach))


def majority_agreement(p_true: jax.typing.ArrayLike,
                       p_model: jax.typing.ArrayLike) -> jax.Array:
  r"""Fraction of item pairs whose majority direction a model predicts.

  Over the pairs :math:`i < j` with :math:`P_{ij} \ne \tfrac12` (the true
  matrix has a majority), the fraction with
  :math:`(\hat P_{ij} > \tfrac12) = (P_{ij} > \tfrac12)`; a model tie
  :math:`\hat P_{ij} = \tfrac12` counts as wrong. This is the accuracy of
  the study ``cyclic_preferences``. A transitive model (Bradley-Terry)
  scores at most 2/3 on a 3-cycle. NaN when no pair has a majority.

  Args:
    p_true: the true preference matrix, shape [K, K].
    p_model: the model's preference matrix, shape [K, K].

  Returns:
    The agreement in [0, 1], a scalar.

  Raises:
    ValueError: the shapes differ or are not square.
  """
  k = _check_square("p_true", p_true)
  _check_square("p_model", p_model)
  _checks.check_same_shape(p_true=p_true, p_model=p_model)
  p, q = jnp.asarray(p_true), jnp.asarray(p_model)
  upper = jnp.triu(jnp.ones((k, k), bool), 1)
  decided = upper & (p != 0.5)
  right = decided & (q != 0.5) & ((q > 0.5) == (p > 0.5))
  return jnp.sum(right) / jnp.sum(decided)
