"""Testing tools for prefsim and its users: hypothesis strategies, numeric
assertions, and the hypothesis profile for JAX code.

  from prefsim import testing as pt
  pt.register_profile()               # in conftest.py
  @given(u=pt.strategies.utilities(5))
  def test_...(u): pt.assert_finite(...)
"""

from prefsim.testing import strategies
from prefsim.testing.assertions import assert_finite
from prefsim.testing.assertions import assert_jit_matches_eager
from prefsim.testing.assertions import assert_traced_once
from prefsim.testing.assertions import assert_trees_allclose
from prefsim.testing.assertions import assert_vmap_matches_loop
from prefsim.testing.devices import run_on_cpu_devices
from prefsim.testing.profile import register_profile

__all__ = [
    "assert_finite",
    "assert_jit_matches_eager",
    "assert_traced_once",
    "assert_trees_allclose",
    "assert_vmap_matches_loop",
    "register_profile",
    "run_on_cpu_devices",
    "strategies",
]
