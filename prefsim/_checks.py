"""Argument checks shared by every prefsim module.

Checks run at trace time where they are static (shapes, dtypes, Python
scalars) and eagerly where they need values (index ranges, probabilities):
a value check is skipped, never faked, when its argument is a tracer, and the
calling function documents what happens inside ``jit`` instead.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def default_float() -> Any:
  """The default float dtype: float32, or float64 under ``jax_enable_x64``."""
  return jax.dtypes.canonicalize_dtype(np.float64)


def is_concrete(*xs: Any) -> bool:
  """True when every argument has a value now (no tracer among its leaves)."""
  return not any(
      isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(xs)
  )


def check_integer(name: str, x: Any) -> None:
  """Raise ``TypeError`` unless ``x`` has an integer dtype."""
  if not np.issubdtype(np.asarray(x).dtype if is_concrete(x) else x.dtype,
                       np.integer):
    raise TypeError(f"{name} must hold integer indices, got dtype "
                    f"{getattr(x, 'dtype', type(x).__name__)}")


def check_same_shape(**arrays: Any) -> None:
  """Raise ``ValueError`` unless every keyword argument has the same shape."""
  shapes = {name: np.shape(a) for name, a in arrays.items()}
  if len(set(shapes.values())) > 1:
    listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
    raise ValueError(f"shapes must match: {listed}")


def check_ndim(name: str, x: Any, ndim: int, what: str = "") -> None:
  """Raise ``ValueError`` unless ``x`` has exactly ``ndim`` axes."""
  if np.ndim(x) != ndim:
    extra = f" ({what})" if what else ""
    raise ValueError(f"{name} must have {ndim} axes{extra}, got shape "
                     f"{np.shape(x)}")


def check_indices(name: str, idx: Any, n: int) -> None:
  """Raise unless ``idx`` holds integers in ``[0, n)``; values checked eagerly."""
  check_integer(name, idx)
  if is_concrete(idx) and np.size(idx):
    idx = np.asarray(idx)
    lo, hi = idx.min(), idx.max()
    if lo < 0 or hi >= n:
      raise ValueError(f"{name} must lie in [0, {n}), got values in "
                       f"[{lo}, {hi}]")


def check_in_range(name: str, x: Any, low: float, high: float, *,
                   low_open: bool = False, high_open: bool = False) -> None:
  """Raise ``ValueError`` unless ``low (<|<=) x (<|<=) high``; eager only."""
  if not is_concrete(x):
    return
  arr = np.asarray(x)
  bad_low = (arr <= low) if low_open else (arr < low)
  bad_high = (arr >= high) if high_open else (arr > high)
  if np.any(bad_low | bad_high) or np.any(np.isnan(arr)):
    interval = ("(" if low_open else "[") + f"{low}, {high}" + (
        ")" if high_open else "]")
    shown = arr if arr.ndim == 0 else f"values in [{arr.min()}, {arr.max()}]"
    raise ValueError(f"{name} must lie in {interval}, got {shown}")


def check_positive(name: str, x: Any) -> None:
  """Raise ``ValueError`` unless ``x > 0`` (eager only)."""
  check_in_range(name, x, 0.0, np.inf, low_open=True, high_open=True)


def check_nonnegative(name: str, x: Any) -> None:
  """Raise ``ValueError`` unless ``x >= 0`` (eager only)."""
  check_in_range(name, x, 0.0, np.inf, high_open=True)


def check_static_int(name: str, x: Any, minimum: int = 1) -> int:
  """Return ``x`` as a Python int, raising unless it is one and ``>= minimum``."""
  if isinstance(x, bool) or not isinstance(x, (int, np.integer)):
    raise TypeError(f"{name} must be a Python int (it fixes a shape), got "
                    f"{type(x).__name__}")
  if x < minimum:
    raise ValueError(f"{name} must be >= {minimum}, got {x}")
  return int(x)
