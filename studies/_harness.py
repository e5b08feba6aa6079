"""The study harness: discovery, the run context, claims and their table.

A study is a module ``studies/<name>.py`` (the name not starting with ``_``)
with ``DESCRIPTION: str`` and ``run(ctx: Context) -> Report``. For each study
the harness writes ``<out>/<name>.png`` and ``<out>/<name>.json`` atomically,
then prints every claim in one table; the exit code is 1 if a claim fails, a
study raises or a study checks no claim. The benchmark harness shares the
claims (:class:`Claim`, :func:`check`, :func:`print_claims`) and the command
line machinery (:func:`discover`, :func:`make_parser`, :func:`run_each`, ...).

Example study, ``studies/mean_rate.py``::

  # (A module docstring here.)
  from __future__ import annotations
  import numpy as np
  from prefsim import plotting
  from studies._harness import Context, Report, check, loglog_slope

  DESCRIPTION = "Sample-mean error shrinks as n^-1/2."

  def run(ctx: Context) -> Report:
    ns = [10, 100, 1000] if ctx.quick else [10, 100, 1000, 10000]
    seeds = list(range(20))

    def errors():  # [S, N]; cached under out/.cache/mean_rate/.
      return np.array([[abs(np.random.default_rng(s).normal(size=n).mean())
                        for n in ns] for s in seeds])

    err = ctx.memo("errors", errors, ns=ns, seeds=seeds)
    slope, _ = loglog_slope(ns, err.mean(axis=0))
    fig, ax = plotting.figure()
    plotting.band(ax, ns, err, label="sample mean")
    ax.set(xscale="log", yscale="log", xlabel="n", ylabel="|error|")
    return Report(figure=fig, series={"n": ns, "error": err},
                  claims=[check("log-log slope of error vs n", slope,
                                lo=-0.7, hi=-0.3)],
                  config={"ns": ns}, seeds=seeds)
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import pathlib
import pickle
import pkgutil
import sys
import time
import traceback
import types
from typing import Any, Callable, Sequence

import jax
from matplotlib.figure import Figure
import numpy as np

from prefsim import plotting
from prefsim import provenance


@dataclasses.dataclass(frozen=True)
class Claim:
  """One checked statement of a paper.

  Attributes:
    claim: the statement, in words.
    measured: what the run measured (a number, or anything JSON-convertible).
    expected: what the paper says, in words or as an interval.
    holds: whether ``measured`` agrees with ``expected``.
  """
  claim: str
  measured: Any
  expected: str
  holds: bool


def check(claim: str, measured: Any, *, lo: float | None = None,
          hi: float | None = None) -> Claim:
  """A claim that ``lo <= measured <= hi`` (either bound may be left out).

  ``expected`` reads ``"in [lo, hi]"``, ``">= lo"`` or ``"<= hi"``. A NaN
  measurement never holds. For other kinds of claim build :class:`Claim`
  directly.

  Raises:
    ValueError: if both bounds are missing.
  """
  if lo is None and hi is None:
    raise ValueError("check needs lo, hi or both")
  value = float(measured)
  if hi is None:
    expected, holds = f">= {lo:.4g}", value >= lo
  elif lo is None:
    expected, holds = f"<= {hi:.4g}", value <= hi
  else:
    expected, holds = f"in [{lo:.4g}, {hi:.4g}]", lo <= value <= hi
  return Claim(claim, value, expected, bool(holds))


def loglog_slope(x: Any, y: Any) -> tuple[float, float]:
  """Least-squares fit of ``log y = slope * log x + intercept``.

  Args:
    x: positive values, shape [N], N >= 2.
    y: positive values, shape [N].
  Returns:
    ``(slope, intercept)``, the intercept in natural log: ``y ~ e^b x^slope``.
  Raises:
    ValueError: for mismatched shapes, fewer than two points or non-positive
      values.
  """
  x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
  if x.ndim != 1 or x.shape != y.shape or x.size < 2:
    raise ValueError(f"x and y must be 1-D of the same length >= 2, got "
                     f"shapes {x.shape} and {y.shape}")
  if not (np.all(x > 0) and np.all(y > 0)):
    raise ValueError("x and y must be positive for a log-log fit")
  slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
  return float(slope), float(intercept)


@dataclasses.dataclass
class Report:
  """What a study returns.

  Attributes:
    figure: the study's figure (see :mod:`prefsim.plotting`).
    series: the plotted data, by name (arrays allowed).
    claims: the checked claims.
    config: the configuration that produced it (recorded in the JSON).
    seeds: the seeds used, or None for a deterministic study.
  """
  figure: Figure
  series: dict[str, Any]
  claims: list[Claim]
  config: dict[str, Any]
  seeds: list[int] | None = None


@dataclasses.dataclass
class Context:
  """What the harness hands to ``run``.

  Attributes:
    name: the study's name.
    quick: finish in minutes on a 2-core CPU.
    out: the output folder.
    fresh: ignore cached results of :meth:`memo`.
    start: ``time.perf_counter()`` at creation, for :meth:`log`.
  """
  name: str
  quick: bool
  out: pathlib.Path
  fresh: bool = False
  start: float = dataclasses.field(default_factory=time.perf_counter)

  def log(self, msg: str) -> None:
    """Print a progress line to stderr: ``[name  12.3s] msg``."""
    elapsed = time.perf_counter() - self.start
    print(f"[{self.name} {elapsed:6.1f}s] {msg}", file=sys.stderr, flush=True)

  def memo(self, name: str, fn: Callable[[], Any], **key: Any) -> Any:
    """Return ``fn()`` as a numpy pytree, cached on disk across runs.

    The cache file is ``out/.cache/<study>/<name>-<hash>.pkl``, the hash
    covering ``key`` (anything :func:`prefsim.provenance.jsonable` accepts)
    and ``quick``. Pass in ``key`` everything ``fn`` depends on; code changes
    are not detected: rerun with ``--fresh``. The value is the same on the
    first run and on a cached one: every leaf converted with ``np.asarray``.
    """
    if not name or not all(c.isalnum() or c in "_-." for c in name):
      raise ValueError(f"memo name must be letters, digits or '_-.', got "
                       f"{name!r}")
    blob = json.dumps(provenance.jsonable({"key": key, "quick": self.quick}),
                      sort_keys=True)
    digest = hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]
    path = self.out / ".cache" / self.name / f"{name}-{digest}.pkl"
    if path.exists() and not self.fresh:
      try:
        value = pickle.loads(path.read_bytes())
      except Exception as e:  # E.g. a class renamed since: recompute.
        self.log(f"{name}: cache unreadable ({e!r}), recomputing")
      else:
        self.log(f"{name}: cached")
        return value
    self.log(f"{name}: computing")
    value = jax.tree_util.tree_map(np.asarray, fn())
    provenance.write_bytes_atomic(path, pickle.dumps(value))
    return value


def discover(package: types.ModuleType) -> list[str]:
  """Names of the public modules of ``package`` (not starting with ``_``)."""
  return sorted(info.name for info in pkgutil.iter_modules(package.__path__)
                if not info.name.startswith("_"))


def load(package: types.ModuleType, name: str) -> types.ModuleType:
  """Import the module ``name`` of ``package``."""
  return importlib.import_module(f"{package.__name__}.{name}")


def select(known: Sequence[str], names: Sequence[str],
           parser: argparse.ArgumentParser) -> list[str]:
  """Expand ``all`` and check names, exiting through ``parser`` on a bad one."""
  if "all" in names:
    return list(known)
  unknown = [n for n in names if n not in known]
  if unknown:
    parser.error(f"unknown: {', '.join(unknown)}; known: "
                 f"{', '.join(known) or '(none)'}")
  return list(dict.fromkeys(names))


def print_listing(package: types.ModuleType) -> None:
  """Print each module's name and ``DESCRIPTION`` (or why it cannot load)."""
  names = discover(package)
  width = max((len(n) for n in names), default=0)
  for name in names:
    try:
      description = load(package, name).DESCRIPTION
    except Exception as e:  # Listed all the same, so that it gets fixed.
      description = f"(cannot load: {type(e).__name__}: {e})"
    print(f"{name:<{width}}  {description}")


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """Rows as aligned text columns under ``header``; floats shown to 4 digits."""
  cells = [[f"{c:.4g}" if isinstance(c, float) else str(c) for c in row]
           for row in [header, *rows]]
  widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
  lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip()
           for row in cells]
  lines.insert(1, "  ".join("-" * w for w in widths))
  return "\n".join(lines)


def print_claims(claims: Sequence[tuple[str, Claim]], source: str = "study"
                 ) -> None:
  """Print ``(source, claim)`` pairs as a table with a ✓/✗ column."""
  print(format_table(
      (source, "claim", "measured", "expected", "holds"),
      [(name, c.claim, c.measured, c.expected, "✓" if c.holds else "✗")
       for name, c in claims]))


def make_parser(prog: str, description: str, what: str
                ) -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
  """A parser with ``list`` and ``run NAME... [--quick]``, and its ``run``."""
  parser = argparse.ArgumentParser(prog=prog, description=description)
  commands = parser.add_subparsers(dest="command", required=True)
  commands.add_parser("list", help=f"list {what}")
  run = commands.add_parser("run", help=f"run {what}")
  run.add_argument("names", nargs="+", metavar="NAME", help="name or 'all'")
  run.add_argument("--quick", action="store_true",
                   help="small sizes: minutes on a 2-core CPU")
  return parser, run


def run_each(names: Sequence[str], run_one: Callable[[str], list[Claim]]
             ) -> list[tuple[str, Claim]]:
  """Call ``run_one(name)`` for each name, timing it and reporting progress.

  A run that raises prints its traceback and yields one failed claim
  (``ran without error``); the next name still runs.

  Returns:
    ``(name, claim)`` pairs, in order.
  """
  claims = []
  for name in names:
    print(f"running {name}...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    try:
      claims += [(name, c) for c in run_one(name)]
    except Exception as e:  # Report it, run the others, fail at the end.
      traceback.print_exc()
      claims.append((name, Claim("ran without error",
                                 f"{type(e).__name__}: {e}", "no exception",
                                 False)))
    print(f"{name} took {time.perf_counter() - start:.1f}s", file=sys.stderr,
          flush=True)
  return claims


def run_study(package: types.ModuleType, name: str, ctx: Context, fmt: str
              ) -> list[Claim]:
  """Run one study, write its figure and JSON, and return its claims."""
  module = load(package, name)
  start = time.perf_counter()
  report = module.run(ctx)
  seconds = time.perf_counter() - start
  if not isinstance(report, Report):
    raise TypeError(f"run must return a Report, got {type(report).__name__}")
  plotting.save(report.figure, ctx.out / f"{name}.{fmt}")
  provenance.write_json_atomic(ctx.out / f"{name}.json", {
      "study": name,
      "description": module.DESCRIPTION,
      "quick": ctx.quick,
      "manifest": provenance.manifest(seeds=report.seeds, config=report.config),
      "config": report.config,
      "series": report.series,
      "claims": report.claims,
      "seconds": seconds,
  })
  if not report.claims:
    raise ValueError(f"study {name} checked no claims")
  return report.claims


def main(argv: Sequence[str] | None = None,
         package: types.ModuleType | None = None) -> int:
  """The ``python -m studies`` command line; returns the exit code.

  Args:
    argv: arguments after the program name; default ``sys.argv[1:]``.
    package: where studies live; default the ``studies`` package. The default
      output folder is ``<package>/out``.
  """
  if package is None:
    package = importlib.import_module("studies")
  parser, run = make_parser("python -m studies", "Regenerate paper claims.",
                            "studies")
  run.add_argument("--out", type=pathlib.Path,
                   default=pathlib.Path(package.__path__[0]) / "out",
                   help="output folder (default: studies/out)")
  run.add_argument("--fresh", action="store_true", help="ignore cached results")
  run.add_argument("--format", choices=("png", "pdf"), default="png",
                   help="figure format")
  args = parser.parse_args(argv)
  if args.command == "list":
    print_listing(package)
    return 0

  def run_one(name: str) -> list[Claim]:
    ctx = Context(name=name, quick=args.quick, out=args.out, fresh=args.fresh)
    return run_study(package, name, ctx, args.format)

  claims = run_each(select(discover(package), args.names, parser), run_one)
  print_claims(claims)
  return 0 if all(c.holds for _, c in claims) else 1
