"""Running a script on several fake CPU devices, for tests of sharded code."""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

__all__ = ["run_on_cpu_devices"]


def run_on_cpu_devices(code: str, n_devices: int, *,
                       cwd: str | os.PathLike[str] | None = None,
                       timeout: float = 600) -> subprocess.CompletedProcess:
  """Runs ``code`` in a fresh Python process that sees ``n_devices`` CPUs.

  ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` only takes effect
  before jax is imported, so a test of sharded code cannot set it in its own
  process (PITFALLS.md): this runs ``python -c code`` with the flag and
  ``JAX_PLATFORMS=cpu`` added to the current environment.

  Args:
    code: the Python source to run.
    n_devices: how many CPU devices the process sees, >= 1.
    cwd: its working directory (default: the current one).
    timeout: seconds before ``subprocess.TimeoutExpired``.
  Returns:
    The ``subprocess.CompletedProcess``, with ``stdout`` and ``stderr`` as
    text; the caller asserts on ``returncode`` and the output.
  Raises:
    ValueError: ``n_devices`` is not a positive int.
  """
  if isinstance(n_devices, bool) or not isinstance(n_devices, int) or (
      n_devices < 1):
    raise ValueError(f"n_devices must be a positive int, got {n_devices!r}")
  env = dict(os.environ, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
  return subprocess.run([sys.executable, "-c", code], env=env,
                        cwd=None if cwd is None else pathlib.Path(cwd),
                        capture_output=True, text=True, timeout=timeout)
