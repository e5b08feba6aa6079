"""Tests of the study and benchmark harnesses, provenance and plotting.

Studies and benchmarks here are toy modules written into a fresh package in a
temporary folder, never the real ones.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import pathlib
import sys
import textwrap
from typing import NamedTuple
import uuid

import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import _harness as bench_harness
from prefsim import plotting
from prefsim import provenance
from studies import _harness as harness

MANIFEST_KEYS = {
    "git", "versions", "python", "platform", "cpu_count", "jax",
    "jax_enable_x64", "jax_threefry_partitionable", "xla_flags", "timestamp",
    "seeds", "config",
}

GOOD_STUDY = """
import numpy as np
from prefsim import plotting
from studies._harness import Report, check

DESCRIPTION = "a toy study whose claim holds"
CALLS = []

def run(ctx):
  def compute():
    CALLS.append(ctx.quick)
    return {"x": np.arange(3.0), "y": 2.0}
  value = ctx.memo("value", compute, n=3)
  ctx.log("computed")
  fig, ax = plotting.figure()
  plotting.band(ax, value["x"], np.ones((2, 3)), label="dpo")
  return Report(figure=fig, series={"x": value["x"], "y": value["y"],
                                    "diverged": float("nan")},
                claims=[check("y is two", value["y"], lo=1.9, hi=2.1)],
                config={"n": 3}, seeds=[0, 1])
"""

FAILING_STUDY = """
from prefsim import plotting
from studies._harness import Report, check

DESCRIPTION = "a toy study whose claim fails"

def run(ctx):
  fig, _ = plotting.figure()
  return Report(figure=fig, series={}, config={},
                claims=[check("one is below zero", 1.0, hi=0.0)])
"""

RAISING_STUDY = """
DESCRIPTION = "a toy study that raises"

def run(ctx):
  raise RuntimeError("boom")
"""

GOOD_BENCH = """
import jax.numpy as jnp
from benchmarks._harness import BenchResult, time_call
from studies._harness import check

DESCRIPTION = "toy: jnp sum vs Python sum"

def run(quick):
  x = jnp.arange(100.0)
  ours = time_call(lambda: x.sum(), repeat=2)
  theirs = time_call(lambda: sum(range(100)), repeat=2)
  return BenchResult(
      rows=[{"tool": "prefsim", "seconds": ours["median"]},
            {"tool": "python", "seconds": theirs["median"]}],
      ratio=theirs["median"] / ours["median"], ratio_label="python / prefsim",
      config={"n": 100, "quick": quick},
      claims=[check("same sum", float(x.sum()), lo=4950.0, hi=4950.0)])
"""

FAILING_BENCH = """
from benchmarks._harness import BenchResult
from studies._harness import check

DESCRIPTION = "toy: a claim that fails"

def run(quick):
  return BenchResult(rows=[{"tool": "prefsim", "seconds": 1.0}], ratio=1.0,
                     ratio_label="x / y", config={},
                     claims=[check("fast", 1.0, hi=0.5)])
"""


@pytest.fixture
def make_package(tmp_path, monkeypatch):
  """Write modules into a uniquely named package under tmp_path; import it."""
  made = []

  def make(modules: dict[str, str]):
    name = f"toy_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / name
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    for module, source in modules.items():
      (folder / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    made.append(name)
    return importlib.import_module(name)

  yield make
  for key in [k for k in sys.modules if k.split(".")[0] in made]:
    del sys.modules[key]


def _temp_files(folder: pathlib.Path) -> list[pathlib.Path]:
  return [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


def test_study_writes_figure_and_json_with_manifest(make_package, tmp_path,
                                                    capsys):
  package = make_package({"good": GOOD_STUDY})
  out = tmp_path / "out"
  assert harness.main(["run", "good", "--quick", "--out", str(out)],
                      package) == 0
  record = json.loads((out / "good.json").read_text())
  assert set(record) == {"study", "description", "quick", "manifest",
                         "config", "series", "claims", "seconds"}
  assert MANIFEST_KEYS <= set(record["manifest"])
  assert record["manifest"]["seeds"] == [0, 1]
  assert record["quick"] is True
  assert record["series"] == {"x": [0.0, 1.0, 2.0], "y": 2.0,
                              "diverged": "NaN"}
  assert record["claims"] == [{"claim": "y is two", "measured": 2.0,
                               "expected": "in [1.9, 2.1]", "holds": True}]
  assert (out / "good.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert not _temp_files(out)
  printed = capsys.readouterr()
  assert "y is two" in printed.out and "✓" in printed.out
  assert "running good..." in printed.err and "good took" in printed.err
  assert "[good" in printed.err  # ctx.log's prefix.


def test_failing_claim_exits_one_and_still_writes(make_package, tmp_path,
                                                  capsys):
  package = make_package({"good": GOOD_STUDY, "bad": FAILING_STUDY})
  out = tmp_path / "out"
  assert harness.main(["run", "all", "--quick", "--out", str(out)],
                      package) == 1
  assert json.loads((out / "bad.json").read_text())["claims"][0]["holds"] is (
      False)
  table = capsys.readouterr().out
  assert "one is below zero" in table and "✗" in table and "✓" in table


def test_raising_study_is_reported_and_others_run(make_package, tmp_path,
                                                  capsys):
  package = make_package({"boom": RAISING_STUDY, "good": GOOD_STUDY})
  out = tmp_path / "out"
  assert harness.main(["run", "all", "--quick", "--out", str(out)],
                      package) == 1
  assert (out / "good.json").exists() and not (out / "boom.json").exists()
  printed = capsys.readouterr()
  assert "RuntimeError: boom" in printed.out and "✗" in printed.out
  assert "Traceback" in printed.err


def test_list_prints_names_and_descriptions(make_package, capsys):
  package = make_package({"good": GOOD_STUDY, "bad": FAILING_STUDY,
                          "_private": RAISING_STUDY})
  assert harness.main(["list"], package) == 0
  lines = capsys.readouterr().out.splitlines()
  assert lines == ["bad   a toy study whose claim fails",
                   "good  a toy study whose claim holds"]


def test_memo_returns_cached_value_without_calling_fn(make_package, tmp_path):
  package = make_package({"good": GOOD_STUDY})
  module = importlib.import_module(f"{package.__name__}.good")
  out = tmp_path / "out"
  run = ["run", "good", "--out", str(out)]
  assert harness.main(run + ["--quick"], package) == 0
  first = json.loads((out / "good.json").read_text())["series"]
  assert harness.main(run + ["--quick"], package) == 0
  assert module.CALLS == [True]  # The rerun read the cache.
  assert json.loads((out / "good.json").read_text())["series"] == first
  assert len(list((out / ".cache" / "good").glob("value-*.pkl"))) == 1
  assert harness.main(run + ["--quick", "--fresh"], package) == 0
  assert harness.main(run, package) == 0  # A full run has its own key.
  assert module.CALLS == [True, True, False]


def test_loglog_slope_recovers_power_law():
  x = np.logspace(0, 4, 9)
  slope, intercept = harness.loglog_slope(x, 3.0 * x**-0.5)
  assert slope == pytest.approx(-0.5, abs=1e-12)
  assert intercept == pytest.approx(math.log(3.0), abs=1e-12)
  with pytest.raises(ValueError, match="positive"):
    harness.loglog_slope([1.0, 2.0], [1.0, 0.0])


def test_check_builds_interval_claims():
  assert harness.check("c", 0.5, lo=0.0, hi=1.0).holds
  assert not harness.check("c", 1.5, lo=0.0, hi=1.0).holds
  assert not harness.check("c", float("nan"), hi=1.0).holds
  assert harness.check("c", jnp.float32(2.0), lo=1.0).expected == ">= 1"
  with pytest.raises(ValueError):
    harness.check("c", 1.0)


class _Point(NamedTuple):
  x: float
  y: np.ndarray


def test_write_json_atomic_converts_and_leaves_no_temp(tmp_path):
  path = tmp_path / "sub" / "r.json"
  provenance.write_json_atomic(path, {
      "np": np.arange(3, dtype=np.int32), "jax": jnp.array([[0.5, 1.0]]),
      "f32": np.float32(0.25), "flag": np.bool_(True),
      "path": pathlib.Path("a"),
      "bad": [float("nan"), np.inf, -np.inf], "point": _Point(1.0, np.ones(2)),
      1: (1, 2),
  })
  assert json.loads(path.read_text()) == {
      "np": [0, 1, 2], "jax": [[0.5, 1.0]], "f32": 0.25, "flag": True,
      "path": "a", "bad": ["NaN", "Infinity", "-Infinity"],
      "point": {"x": 1.0, "y": [1.0, 1.0]}, "1": [1, 2],
  }
  assert os.listdir(path.parent) == ["r.json"]
  with pytest.raises(TypeError, match="object"):
    provenance.write_json_atomic(path, {"x": object()})
  assert json.loads(path.read_text())["f32"] == 0.25  # Old file intact.
  assert os.listdir(path.parent) == ["r.json"]


def test_write_bytes_atomic_keeps_old_file_when_replace_fails(tmp_path,
                                                              monkeypatch):
  path = tmp_path / "f.bin"
  provenance.write_bytes_atomic(path, b"old")

  def fail(*args):
    raise OSError("disk full")

  monkeypatch.setattr(os, "replace", fail)
  with pytest.raises(OSError, match="disk full"):
    provenance.write_bytes_atomic(path, b"new")
  assert path.read_bytes() == b"old"
  assert os.listdir(tmp_path) == ["f.bin"]


def test_color_is_stable_and_distinct():
  assert plotting.color("dpo") == plotting.color(" DPO ") == "#0072B2"
  family = ["dpo", "ipo", "rdpo", "cdpo", "simpo", "orpo", "kto", "hypo",
            "rlhf"]
  assert len({plotting.color(n) for n in family}) == len(family)
  # An unknown name hashes with MD5, not Python's per-process hash().
  assert plotting.color("some new method") == "#47A2CC"
  assert plotting.color("Some-New Method") == "#47A2CC"


def test_band_plots_mean_and_checks_shape():
  fig, ax = plotting.figure()
  line = plotting.band(ax, [0, 1], [[1.0, 2.0], [3.0, 4.0]], label="ipo")
  np.testing.assert_allclose(line.get_ydata(), [2.0, 3.0])
  assert line.get_color() == plotting.color("ipo")
  with pytest.raises(ValueError, match=r"\[S, T\]"):
    plotting.band(ax, [0, 1, 2], [[1.0, 2.0]])


def test_time_call_counts_warmup_and_repeats():
  calls = []
  timing = bench_harness.time_call(lambda: calls.append(1), repeat=3, warmup=2)
  assert len(calls) == 5 and len(timing["all"]) == 3
  assert timing["best"] == min(timing["all"]) <= timing["median"]


@pytest.mark.parametrize("modules,code", [
    ({"fast": GOOD_BENCH}, 0),
    ({"fast": GOOD_BENCH, "slow": FAILING_BENCH}, 1),
])
def test_benchmark_writes_results_and_docs_table(make_package, tmp_path,
                                                 capsys, modules, code):
  doc = tmp_path / "docs" / "benchmarks.md"
  doc.parent.mkdir()
  doc.write_text(f"intro\n{bench_harness.BEGIN}\nold\n{bench_harness.END}\n"
                 "outro\n")
  package = make_package(modules)
  assert bench_harness.main(["run", "all", "--quick"], package) == code
  results = pathlib.Path(package.__path__[0]) / "results"
  record = json.loads((results / "fast.json").read_text())
  assert {"benchmark", "description", "quick", "manifest", "config", "rows",
          "ratio", "ratio_label", "claims", "seconds"} == set(record)
  assert MANIFEST_KEYS <= set(record["manifest"])
  assert [row["tool"] for row in record["rows"]] == ["prefsim", "python"]
  assert not _temp_files(tmp_path)
  text = doc.read_text()
  assert text.startswith("intro\n") and text.endswith("outro\n")
  assert "old" not in text
  assert "| fast | toy: jnp sum vs Python sum |" in text
  assert "`python -m benchmarks run fast --quick`" in text
  assert ("| slow |" in text) == ("slow" in modules)
  printed = capsys.readouterr().out
  assert "ratio:" in printed and "same sum" in printed
