"""The benchmark harness: prefsim against the tool a user would pick instead.

A benchmark is a module ``benchmarks/<name>.py`` (the name not starting with
``_``) with ``DESCRIPTION: str`` and ``run(quick: bool) -> BenchResult``. It
does the same work with prefsim and with the peer tool in this one process and
reports one row per tool and a ratio. The harness writes
``benchmarks/results/<name>.json`` atomically, prints the rows and the claims,
regenerates the results table of ``docs/benchmarks.md`` from every results
file, and exits 1 if a claim fails or a benchmark raises. Benchmarks are never
timed tests. Claims, discovery and tables come from ``studies._harness``.

Example benchmark::

  '''prefsim's solver against scipy's on the same problem.'''
  from __future__ import annotations
  from benchmarks._harness import BenchResult, time_call
  from studies._harness import check

  DESCRIPTION = "Solve the same problem: prefsim vs scipy.optimize."

  def run(quick: bool) -> BenchResult:
    n = 100 if quick else 10_000
    ours = time_call(lambda: prefsim_solve(n))
    theirs = time_call(lambda: scipy_solve(n))
    ratio = theirs["median"] / ours["median"]
    return BenchResult(
        rows=[{"tool": "prefsim", "seconds": ours["median"]},
              {"tool": "scipy", "seconds": theirs["median"]}],
        ratio=ratio, ratio_label="scipy time / prefsim time",
        config={"n": n},
        claims=[check("same optimum (max abs difference)", gap, hi=1e-5)])
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pathlib
import statistics
import time
import types
from typing import Any, Callable, Sequence

import jax

from prefsim import provenance
from studies._harness import Claim
from studies._harness import discover
from studies._harness import format_table
from studies._harness import load
from studies._harness import make_parser
from studies._harness import print_claims
from studies._harness import print_listing
from studies._harness import run_each
from studies._harness import select

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclasses.dataclass
class BenchResult:
  """What a benchmark returns.

  Attributes:
    rows: one dict per tool, e.g. ``{"tool": "prefsim fit", "seconds": 0.1,
      "log_likelihood": -5e4}``; the keys become the printed table's columns.
    ratio: the headline number, e.g. peer time over prefsim time.
    ratio_label: what the ratio divides, e.g. ``"choix time / prefsim time"``.
    config: the sizes and settings of the run.
    claims: checks that the tools did the same work (same optimum, same
      likelihood) and any speed claim.
  """
  rows: list[dict[str, Any]]
  ratio: float
  ratio_label: str
  config: dict[str, Any]
  claims: list[Claim] = dataclasses.field(default_factory=list)


def time_call(fn: Callable[[], Any], *, repeat: int = 5, warmup: int = 1
              ) -> dict[str, Any]:
  """Wall-clock seconds of ``fn()``, waiting for JAX results to be ready.

  Args:
    fn: called with no arguments; its result goes through
      ``jax.block_until_ready`` inside the timed interval.
    repeat: timed calls, >= 1.
    warmup: untimed calls first (compilation, caches).
  Returns:
    ``{"best": min, "median": median, "all": [each call's seconds]}``, timed
    with ``time.perf_counter``.
  """
  if repeat < 1:
    raise ValueError(f"repeat must be >= 1, got {repeat}")
  for _ in range(warmup):
    jax.block_until_ready(fn())
  times = []
  for _ in range(repeat):
    start = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - start)
  return {"best": min(times), "median": statistics.median(times), "all": times}


def run_benchmark(package: types.ModuleType, name: str, quick: bool,
                  results: pathlib.Path) -> list[Claim]:
  """Run one benchmark, write its JSON, print its rows and return its claims."""
  module = load(package, name)
  start = time.perf_counter()
  result = module.run(quick)
  seconds = time.perf_counter() - start
  if not isinstance(result, BenchResult):
    raise TypeError(f"run must return a BenchResult, got "
                    f"{type(result).__name__}")
  provenance.write_json_atomic(results / f"{name}.json", {
      "benchmark": name,
      "description": module.DESCRIPTION,
      "quick": quick,
      "manifest": provenance.manifest(config=result.config),
      "config": result.config,
      "rows": result.rows,
      "ratio": result.ratio,
      "ratio_label": result.ratio_label,
      "claims": result.claims,
      "seconds": seconds,
  })
  header = list(dict.fromkeys(k for row in result.rows for k in row))
  print(format_table(header, [[row.get(k, "") for k in header]
                              for row in result.rows]))
  print(f"ratio: {result.ratio:.3g} ({result.ratio_label})\n")
  return result.claims


def _machine(manifest: dict[str, Any]) -> str:
  """``"cpu, 2 CPUs"`` or ``"gpu ×8 (NVIDIA H100), 16 CPUs"``."""
  jax_info = manifest["jax"]
  backend = jax_info["backend"]
  if jax_info["device_count"] > 1:
    backend += f" ×{jax_info['device_count']}"
  if jax_info["device_kinds"] != [jax_info["backend"]]:
    backend += f" ({', '.join(jax_info['device_kinds'])})"
  return f"{backend}, {manifest['cpu_count']} CPUs"


def results_table(results: pathlib.Path) -> str:
  """The markdown table of every ``results/*.json``, one row per benchmark."""
  rows = []
  for path in sorted(results.glob("*.json")):
    r = json.loads(path.read_text())
    command = f"python -m benchmarks run {r['benchmark']}" + (
        " --quick" if r["quick"] else "")
    ratio = r["ratio"] if isinstance(r["ratio"], str) else f"{r['ratio']:.3g}"
    cells = [r["benchmark"], r["description"],
             f"{ratio} ({r['ratio_label']})", r["manifest"]["timestamp"][:10],
             _machine(r["manifest"]), f"`{command}`"]
    rows.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
  if not rows:
    return "_No results yet._"
  header = "| Benchmark | Compares | Ratio | Date | Machine | Command |"
  return "\n".join([header, "|---|---|---|---|---|---|", *rows])


def update_docs(results: pathlib.Path, doc: pathlib.Path) -> None:
  """Replace the text between the results markers of ``doc``, atomically.

  Raises:
    ValueError: if ``doc`` lacks the markers.
  """
  text = doc.read_text()
  begin, end = text.find(BEGIN), text.find(END)
  if begin < 0 or end < begin:
    raise ValueError(f"{doc} must contain {BEGIN} followed by {END}")
  text = (text[:begin + len(BEGIN)] + "\n" + results_table(results) + "\n"
          + text[end:])
  provenance.write_bytes_atomic(doc, text.encode("utf-8"))


def main(argv: Sequence[str] | None = None,
         package: types.ModuleType | None = None) -> int:
  """The ``python -m benchmarks`` command line; returns the exit code.

  Args:
    argv: arguments after the program name; default ``sys.argv[1:]``.
    package: where benchmarks live; default the ``benchmarks`` package. Its
      results go to ``<package>/results/`` and the table to
      ``<package>/../docs/benchmarks.md``.
  """
  if package is None:
    package = importlib.import_module("benchmarks")
  parser, _ = make_parser("python -m benchmarks", "prefsim against its peers.",
                          "benchmarks")
  args = parser.parse_args(argv)
  if args.command == "list":
    print_listing(package)
    return 0
  root = pathlib.Path(package.__path__[0])
  claims = run_each(
      select(discover(package), args.names, parser),
      lambda name: run_benchmark(package, name, args.quick, root / "results"))
  update_docs(root / "results", root.parent / "docs" / "benchmarks.md")
  print_claims(claims, source="benchmark")
  return 0 if all(c.holds for _, c in claims) else 1
