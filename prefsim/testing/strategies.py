r"""Hypothesis strategies for preference-learning tests.

Each strategy draws *values* for a shape fixed by its arguments, so a JAX
function under test compiles once per shape, however many examples run
(PITFALLS.md). Arrays come back as NumPy ``float32`` (or ``int``) arrays.

Example::

  from hypothesis import given
  from prefsim.testing import strategies as pst

  @given(u=pst.utilities(5), key=pst.keys())
  def test_something(u, key): ...
"""

from __future__ import annotations

import jax
import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

_SEED_MAX = 2**31 - 1


def seeds() -> st.SearchStrategy[int]:
  """Integer seeds in ``[0, 2**31)``."""
  return st.integers(0, _SEED_MAX)


def keys() -> st.SearchStrategy[jax.Array]:
  """``jax.random.key`` keys from drawn seeds."""
  return seeds().map(jax.random.key)


def _floats(low: float, high: float) -> st.SearchStrategy[float]:
  """float32 values in ``[low, high]``, bounds rounded inwards to float32."""
  low32, high32 = np.float32(low), np.float32(high)
  low32 = low32 if low32 >= low else np.nextafter(low32, np.float32(np.inf))
  high32 = high32 if high32 <= high else np.nextafter(high32,
                                                     np.float32(-np.inf))
  return st.floats(float(low32), float(high32), width=32, allow_nan=False,
                   allow_infinity=False)


def vectors(n: int, low: float = -3.0, high: float = 3.0
            ) -> st.SearchStrategy[np.ndarray]:
  """``float32 [n]`` vectors with entries in ``[low, high]``."""
  return hnp.arrays(np.float32, (n,), elements=_floats(low, high))


def utilities(n_items: int, scale: float = 3.0) -> st.SearchStrategy[np.ndarray]:
  """Mean-zero utilities ``float32 [K]`` with entries drawn in ``[-scale, scale]``."""
  return vectors(n_items, -scale, scale).map(
      lambda u: (u - u.mean()).astype(np.float32))


def flip_rates(max_rate: float = 0.5, include_max: bool = False
               ) -> st.SearchStrategy[float]:
  """Label-flip rates in ``[0, max_rate)`` (or ``[0, max_rate]``)."""
  return st.floats(0.0, max_rate, exclude_max=not include_max)


def betas(low: float = 0.01, high: float = 10.0) -> st.SearchStrategy[float]:
  """Positive inverse temperatures, log-uniform-ish in ``[low, high]``."""
  return st.floats(np.log(low), np.log(high)).map(lambda t: float(np.exp(t)))


def tabular_policies(n_prompts: int, n_responses: int, scale: float = 3.0
                     ) -> st.SearchStrategy[np.ndarray]:
  """Log-probabilities ``float32 [X, K]`` of full-support softmax policies."""
  logits = hnp.arrays(np.float32, (n_prompts, n_responses),
                      elements=_floats(-scale, scale))
  return logits.map(_log_softmax)


def _log_softmax(z: np.ndarray) -> np.ndarray:
  z = z.astype(np.float64)
  z = z - z.max(axis=-1, keepdims=True)
  return (z - np.log(np.exp(z).sum(axis=-1, keepdims=True))).astype(np.float32)


def _matrix_from_logits(logits: np.ndarray) -> np.ndarray:
  """``P = sigmoid(A)`` with A skew-symmetric; exactly ``P + P.T == 1`` above
  the diagonal's mirror (the lower triangle is ``1 - upper``)."""
  upper = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
  n = logits.shape[0]
  iu = np.triu_indices(n, 1)
  p = np.full((n, n), 0.5)
  p[iu] = upper[iu]
  p.T[iu] = 1.0 - upper[iu]
  return p.astype(np.float32)


def preference_matrices(n_items: int, kind: str = "general",
                        scale: float = 3.0) -> st.SearchStrategy[np.ndarray]:
  """Preference matrices ``P[i, j] = Pr(i beats j)``, ``float32 [K, K]``.

  Args:
    n_items: ``K``.
    kind: ``"bt"``: Bradley-Terry, ``P = sigmoid(u_i - u_j)`` (transitive);
      ``"general"``: ``sigmoid`` of drawn skew-symmetric logits (may or may not
      be transitive); ``"cyclic"``: general, with the Hamiltonian cycle
      ``0 > 1 > ... > K-1 > 0`` forced (needs ``K >= 3``): the majority
      relation has a cycle and no Condorcet winner (every item loses to its
      predecessor).
    scale: logits (or utilities) drawn in ``[-scale, scale]``.
  """
  if kind == "bt":
    return utilities(n_items, scale).map(
        lambda u: _matrix_from_logits(u[:, None] - u[None, :]))
  if kind not in ("general", "cyclic"):
    raise ValueError(f"kind must be 'bt', 'general' or 'cyclic', got {kind!r}")
  if kind == "cyclic" and n_items < 3:
    raise ValueError(f"a cyclic matrix needs n_items >= 3, got {n_items}")
  logits = hnp.arrays(np.float32, (n_items, n_items),
                      elements=_floats(-scale, scale))
  if kind == "general":
    return logits.map(_matrix_from_logits)
  cycle = hnp.arrays(np.float32, (n_items,), elements=_floats(0.1, scale))

  def force_cycle(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    a = a.copy()
    i = np.arange(n_items)
    j = (i + 1) % n_items
    a[i, j], a[j, i] = c, -c   # i beats i + 1 (mod K) with logit c_i > 0
    return _matrix_from_logits(a)

  return st.builds(force_cycle, logits, cycle)
