"""The shared numeric primitives of ``prefsim._numerics``."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from jax.test_util import check_grads
import numpy as np
from scipy.special import expit

from prefsim._numerics import log_sigmoid


def test_log_sigmoid_matches_an_exact_reference_and_its_derivatives():
  """log σ(x) = −log(1 + e^{−x}); d/dx = σ(−x); d²/dx² = −σ(x)σ(−x).

  The reference is float64 NumPy/SciPy (−logaddexp(0, −x), expit), accurate
  for every finite x; our value and first two derivatives (the custom JVP
  and its own derivative) must match it across 80 decades of |x|."""
  x64 = np.concatenate([-np.logspace(-6, 4, 41), [0.0], np.logspace(-6, 4, 41)])
  x = jnp.asarray(x64, jnp.float32)
  xf = np.asarray(x, np.float64)
  want = -np.logaddexp(0.0, -xf)
  np.testing.assert_allclose(log_sigmoid(x), want, rtol=2e-6, atol=1e-30)
  d1 = jax.vmap(jax.grad(log_sigmoid))(x)
  np.testing.assert_allclose(d1, expit(-xf), rtol=2e-6, atol=1e-30)
  d2 = jax.vmap(jax.grad(jax.grad(log_sigmoid)))(x)
  np.testing.assert_allclose(d2, -expit(xf) * expit(-xf), rtol=1e-5, atol=1e-30)
  assert np.all(np.isfinite(np.asarray(d1))) and np.all(np.isfinite(np.asarray(d2)))


def test_log_sigmoid_equals_jax_and_passes_check_grads():
  x = jax.random.normal(jax.random.key(0), (64,)) * 20
  np.testing.assert_allclose(log_sigmoid(x), jax.nn.log_sigmoid(x),
                             rtol=1e-6, atol=1e-7)
  # Finite differences are accurate only at moderate x in float32; the exact
  # derivatives over all scales are the previous test's.
  check_grads(log_sigmoid, (x / 5,), order=2, modes=("fwd", "rev"))
  np.testing.assert_allclose(jax.jit(jax.vmap(log_sigmoid))(x),
                             log_sigmoid(x), rtol=1e-6)
