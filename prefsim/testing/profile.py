"""The hypothesis profile for JAX code (DESIGN.md, PITFALLS.md).

XLA compiles inside the first example of a property, so hypothesis's
per-example deadline would time the compiler: the profile has no deadline,
is derandomised (the same examples on every run and machine) and keeps no
example database. Load it once, in ``conftest.py``::

    from prefsim.testing import register_profile
    register_profile()
"""

from __future__ import annotations

import hypothesis

PROFILE = "prefsim"


def register_profile(max_examples: int = 12, load: bool = True) -> None:
  """Register (and by default load) the ``prefsim`` hypothesis profile.

  Args:
    max_examples: examples per property; few, since each may run XLA code.
    load: also make it the active profile.
  """
  hypothesis.settings.register_profile(
      PROFILE,
      deadline=None,
      derandomize=True,
      database=None,
      max_examples=max_examples,
      suppress_health_check=[hypothesis.HealthCheck.too_slow,
                             hypothesis.HealthCheck.data_too_large],
      print_blob=True,
  )
  if load:
    hypothesis.settings.load_profile(PROFILE)
