"""Helpers shared by the loss modules: argument checks and safe primitives."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from prefsim import _checks
from prefsim._numerics import log_sigmoid


def as_float(x: Any) -> jax.Array:
  """``x`` as a JAX array with a floating dtype (the default float for ints)."""
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.inexact):
    x = x.astype(_checks.default_float())
  return x


def pair(chosen: Any, rejected: Any, beta: Any, *,
         names: tuple[str, str] = ("chosen_logratios", "rejected_logratios")
         ) -> tuple[jax.Array, jax.Array]:
  """Checks a pairwise loss's arguments; returns them as float arrays.

  Raises ``ValueError`` naming the argument when the two slots differ in
  shape or when a concrete ``beta`` is not positive. Inside ``jit`` a traced
  ``beta`` cannot be checked; a non-positive one gives a meaningless loss.
  """
  chosen, rejected = same_shape_floats(**{names[0]: chosen,
                                          names[1]: rejected})
  _checks.check_positive("beta", beta)
  return chosen, rejected


def same_shape_floats(**arrays: Any) -> list[jax.Array]:
  """The keyword arguments as float arrays of one (promoted) dtype.

  Raises ``ValueError`` naming them unless their shapes agree.
  """
  _checks.check_same_shape(**arrays)
  xs = [as_float(x) for x in arrays.values()]
  dtype = jnp.result_type(*xs)
  return [x.astype(dtype) for x in xs]


def smoothed_logistic(z: jax.Array, eps: Any) -> jax.Array:
  r""":math:`-(1-\epsilon)\log\sigma(z) - \epsilon\log\sigma(-z)`, the
  logistic loss against the soft target :math:`1-\epsilon`.

  Computed as :math:`-\log\sigma(z) + \epsilon z` (from
  :math:`\log\sigma(-z) = \log\sigma(z) - z`): one log-sigmoid instead of
  two, the same value, and no cancellation (for :math:`z \to -\infty` both
  terms of the sum carry the same sign). A literal ``eps == 0`` skips the
  linear term."""
  if isinstance(eps, (int, float)) and eps == 0:
    return -log_sigmoid(z)
  return -log_sigmoid(z) + eps * z
