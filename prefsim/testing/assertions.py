"""Numeric assertions for JAX code: finiteness, pytree closeness, and the
transformation invariants (jit equals eager, vmap equals a loop, one trace).
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np


def assert_finite(tree: Any, what: str = "value") -> None:
  """Assert every leaf of ``tree`` is finite (no NaN, no inf)."""
  for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
    leaf = np.asarray(leaf)
    if not np.all(np.isfinite(leaf)):
      bad = np.size(leaf) - np.count_nonzero(np.isfinite(leaf))
      raise AssertionError(f"{what}{jax.tree_util.keystr(path)} has {bad} "
                           f"non-finite entries of {np.size(leaf)}")


def assert_trees_allclose(actual: Any, expected: Any, *, rtol: float = 1e-6,
                          atol: float = 0.0) -> None:
  """Assert two pytrees have the same structure and close leaves."""
  a_leaves, a_def = jax.tree_util.tree_flatten(actual)
  e_leaves, e_def = jax.tree_util.tree_flatten(expected)
  if a_def != e_def:
    raise AssertionError(f"tree structures differ: {a_def} vs {e_def}")
  for a, e in zip(a_leaves, e_leaves):
    np.testing.assert_allclose(np.asarray(a), np.asarray(e), rtol=rtol,
                               atol=atol)


def assert_jit_matches_eager(fn: Callable[..., Any], *args: Any,
                             rtol: float = 1e-6, atol: float = 0.0) -> None:
  """Assert ``jax.jit(fn)(*args)`` equals ``fn(*args)`` run eagerly."""
  with jax.disable_jit():
    eager = fn(*args)
  assert_trees_allclose(jax.jit(fn)(*args), eager, rtol=rtol, atol=atol)


def assert_vmap_matches_loop(fn: Callable[..., Any], *batched: Any,
                             rtol: float = 1e-6, atol: float = 0.0) -> None:
  """Assert ``jax.vmap(fn)`` over the leading axis equals a Python loop."""
  n = jax.tree_util.tree_leaves(batched)[0].shape[0]
  mapped = jax.vmap(fn)(*batched)
  looped = [fn(*jax.tree_util.tree_map(lambda x: x[i], batched))
            for i in range(n)]
  stacked = jax.tree_util.tree_map(lambda *xs: jnp.stack(xs), *looped)
  assert_trees_allclose(mapped, stacked, rtol=rtol, atol=atol)


def assert_traced_once(fn: Callable[..., Any],
                       calls: Sequence[Sequence[Any]]) -> None:
  """Assert ``jax.jit(fn)`` traces once over calls whose shapes agree.

  Args:
    fn: the function to jit.
    calls: argument tuples with equal shapes and dtypes but other values.
  """
  traces = []

  def counted(*args):
    traces.append(None)
    return fn(*args)

  jitted = jax.jit(counted)
  for args in calls:
    jax.block_until_ready(jitted(*args))
  if len(traces) != 1:
    raise AssertionError(f"traced {len(traces)} times over {len(calls)} "
                         "calls with equal shapes; expected once")
