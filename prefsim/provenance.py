"""Run manifests and atomic writes: what produced a result, saved safely.

Every result file that prefsim writes (a study's JSON and figure, a benchmark's
JSON, a cached intermediate) goes through :func:`write_bytes_atomic`: the bytes
land in a temporary file in the destination folder, which then replaces the
destination with ``os.replace``, so a reader or a killed run never sees half a
file (PITFALLS.md, "Long runs").

JSON is written strictly (no bare ``NaN``): :func:`jsonable` turns arrays into
lists, numpy scalars into Python numbers, and the non-finite floats into the
strings ``"NaN"``, ``"Infinity"`` and ``"-Infinity"`` (JavaScript's spellings),
so a diverged value stays distinguishable from a missing one (``null``).
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import math
import os
import pathlib
import platform
import secrets
import subprocess
import sys
from typing import Any

import jax
import numpy as np

PACKAGES = ("prefsim", "jax", "jaxlib", "numpy", "scipy", "optax", "flax",
            "matplotlib")


def _git(*args: str) -> str | None:
  """Output of ``git args`` run in prefsim's folder, or None if it fails."""
  try:
    done = subprocess.run(("git", *args), cwd=pathlib.Path(__file__).parent,
                          capture_output=True, text=True, timeout=10,
                          check=True)
  except (OSError, subprocess.SubprocessError):
    return None
  return done.stdout.strip()


def _version(package: str) -> str | None:
  """Installed version of ``package``, or None if it is not installed."""
  try:
    return importlib.metadata.version(package)
  except importlib.metadata.PackageNotFoundError:
    if package == "prefsim":  # Run from a checkout without `pip install -e .`.
      return getattr(sys.modules.get("prefsim"), "__version__", None)
    return None


def manifest(seeds: Any = None, config: Any = None) -> dict[str, Any]:
  """Describe the code, software and machine that produce a result.

  Args:
    seeds: the seeds of the run (anything :func:`jsonable` accepts).
    config: the configuration of the run (anything :func:`jsonable` accepts).
  Returns:
    A JSON-ready dict with keys ``git`` (``commit``: the HEAD hash or None
    outside a repository or before the first commit; ``dirty``: True when
    ``git status --porcelain`` lists anything, untracked files included, None
    without git), ``versions`` (package -> version or None, for prefsim, jax,
    jaxlib, numpy, scipy, optax, flax, matplotlib), ``python``, ``platform``,
    ``cpu_count``, ``jax`` (``backend``, ``device_count``, ``device_kinds``,
    ``process_count``), ``jax_enable_x64``, ``jax_threefry_partitionable``,
    ``xla_flags`` (the ``XLA_FLAGS`` environment variable or None),
    ``timestamp`` (UTC, ISO 8601), ``seeds`` and ``config``.
  """
  status = _git("status", "--porcelain")
  devices = jax.devices()
  return jsonable({
      "git": {"commit": _git("rev-parse", "HEAD"),
              "dirty": None if status is None else bool(status)},
      "versions": {name: _version(name) for name in PACKAGES},
      "python": platform.python_version(),
      "platform": platform.platform(),
      "cpu_count": os.cpu_count(),
      "jax": {"backend": jax.default_backend(),
              "device_count": len(devices),
              "device_kinds": sorted({d.device_kind for d in devices}),
              "process_count": jax.process_count()},
      "jax_enable_x64": bool(jax.config.jax_enable_x64),
      "jax_threefry_partitionable": bool(
          jax.config.jax_threefry_partitionable),
      "xla_flags": os.environ.get("XLA_FLAGS"),
      "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(
          timespec="seconds"),
      "seeds": seeds,
      "config": config,
  })


def jsonable(obj: Any) -> Any:
  """Convert ``obj`` to plain JSON types, recursively.

  numpy and JAX arrays become (nested) lists, numpy scalars Python numbers,
  NamedTuples and dataclasses dicts, tuples lists, paths strings, functions
  their qualified name, and non-finite floats the strings ``"NaN"``,
  ``"Infinity"``, ``"-Infinity"``. Dict keys become strings.

  Raises:
    TypeError: for any other type, naming it.
  """
  if obj is None or isinstance(obj, (bool, int, str)):
    return obj
  if isinstance(obj, float):
    if math.isfinite(obj):
      return obj
    return "NaN" if math.isnan(obj) else ("Infinity" if obj > 0
                                          else "-Infinity")
  if isinstance(obj, (np.ndarray, np.generic, jax.Array)):
    return jsonable(np.asarray(obj).tolist())
  if isinstance(obj, dict):
    return {str(k): jsonable(v) for k, v in obj.items()}
  if isinstance(obj, tuple) and hasattr(obj, "_asdict"):
    return jsonable(obj._asdict())
  if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
    return jsonable({f.name: getattr(obj, f.name)
                     for f in dataclasses.fields(obj)})
  if isinstance(obj, (list, tuple)):
    return [jsonable(v) for v in obj]
  if isinstance(obj, pathlib.PurePath):
    return str(obj)
  if callable(obj) and hasattr(obj, "__qualname__"):
    return f"{obj.__module__}.{obj.__qualname__}"
  raise TypeError(f"cannot convert {type(obj).__name__} to JSON: {obj!r:.80}")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
  """Write ``data`` to ``path`` so that readers see the old file or the new one.

  The bytes go to a temporary file in the same folder (created with the
  process umask, flushed and fsynced), which ``os.replace`` then moves onto
  ``path``. Parent folders are created. On any error the temporary file is
  removed and ``path`` is left as it was.
  """
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
  try:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
  """Write ``jsonable(obj)`` to ``path`` as indented strict JSON, atomically.

  Raises:
    TypeError: if ``obj`` holds a type :func:`jsonable` cannot convert; then
      nothing is written.
  """
  text = json.dumps(jsonable(obj), indent=2, allow_nan=False) + "\n"
  write_bytes_atomic(path, text.encode("utf-8"))
