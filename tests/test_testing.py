"""Tests of prefsim.testing: the strategies draw what they promise and the
assertions fail when they should."""

from __future__ import annotations

import hypothesis
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from prefsim import testing as pt
from prefsim.testing import strategies as pst


def _check_preference_matrix(p):
  np.testing.assert_allclose(p + p.T, 1.0, atol=1e-6)
  np.testing.assert_array_equal(np.diag(p), 0.5)
  assert np.all((p >= 0) & (p <= 1))


@hypothesis.given(p=pst.preference_matrices(5, "bt"))
def test_bt_matrices_are_transitive_preference_matrices(p):
  _check_preference_matrix(p)
  # Transitive: ordering by row sums (Copeland/Borda) ranks every pair right.
  order = np.argsort(-p.sum(1))
  for a in range(5):
    for b in range(a + 1, 5):
      assert p[order[a], order[b]] >= 0.5 - 1e-6


@hypothesis.given(p=pst.preference_matrices(4, "cyclic"))
def test_cyclic_matrices_have_the_forced_cycle(p):
  _check_preference_matrix(p)
  assert p[0, 1] > 0.5 and p[1, 2] > 0.5 and p[2, 3] > 0.5 and p[3, 0] > 0.5


@hypothesis.given(logp=pst.tabular_policies(2, 3), u=pst.utilities(4),
                  eps=pst.flip_rates(), beta=pst.betas())
def test_scalar_and_policy_strategies_respect_their_ranges(logp, u, eps, beta):
  np.testing.assert_allclose(np.exp(logp).sum(-1), 1.0, rtol=1e-5)
  assert abs(float(u.mean())) < 1e-5 and u.dtype == np.float32
  assert 0.0 <= eps < 0.5 and 0.01 <= beta <= 10.0 + 1e-9


def test_assertions_fail_when_they_should():
  with pytest.raises(AssertionError, match="non-finite"):
    pt.assert_finite({"a": jnp.array([1.0, jnp.nan])})
  with pytest.raises(AssertionError):
    pt.assert_trees_allclose({"a": 1.0}, {"a": 1.1})
  with pytest.raises(AssertionError, match="structures differ"):
    pt.assert_trees_allclose({"a": 1.0}, {"b": 1.0})
  with pytest.raises(AssertionError, match="traced 2 times"):
    pt.assert_traced_once(lambda x: x + 1, [(jnp.zeros(2),), (jnp.zeros(3),)])
  pt.assert_traced_once(lambda x: x + 1, [(jnp.zeros(2),), (jnp.ones(2),)])
  with pytest.raises(ValueError, match="kind"):
    pst.preference_matrices(3, "transitive")


def test_run_on_cpu_devices_sees_the_requested_devices():
  """The child process sees exactly n CPU devices (the flag is set before
  jax is imported there), the parent keeps its own, and a bad count raises."""
  out = pt.run_on_cpu_devices(
      "import jax; print(jax.device_count(), jax.default_backend())", 3,
      timeout=120)
  assert out.returncode == 0, out.stderr[-2000:]
  assert out.stdout.split() == ["3", "cpu"]
  assert jax.device_count() == 1
  for bad in (0, 2.0, True):
    with pytest.raises(ValueError, match="n_devices"):
      pt.run_on_cpu_devices("pass", bad)
