"""Drawn policies and preference matrices that are exact in the default float.

Shared by the tests of ``prefsim.games``: a policy normalised in float64 and
then cast, and a matrix with ``P + P.T == 1`` exactly in the cast dtype, so
that eager value checks accept them and tolerances measure the code under
test, not the inputs' round-off.
"""

from __future__ import annotations

import jax
import numpy as np

from prefsim.testing import strategies as pst

DTYPE = np.float64 if jax.config.jax_enable_x64 else np.float32


def exact_policy(lp):
  """A drawn ``[1, K]`` log-policy as a ``[K]`` probability vector."""
  p = np.exp(np.asarray(lp[0], np.float64))
  return (p / p.sum()).astype(DTYPE)


def exact_matrix(p):
  """A drawn matrix symmetrised so that ``P + P.T = 1`` exactly."""
  p = np.asarray(p, np.float64)
  return ((p - p.T + 1) / 2).astype(DTYPE)


def policies(k, scale=3.0):
  return pst.tabular_policies(1, k, scale).map(exact_policy)


def matrices(k, kind="general"):
  return pst.preference_matrices(k, kind).map(exact_matrix)
