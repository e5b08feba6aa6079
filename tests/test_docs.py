"""The docs stay true: every test the theorem ledger names exists, and every
study it names is a study."""

from __future__ import annotations

import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
LEDGER = (REPO / "docs" / "theorems.md").read_text()


def _ledger_tests():
  """(file, test) pairs; ``::name`` after a full reference reuses its file."""
  pairs = []
  for row in LEDGER.splitlines():
    current = None
    for path, name in re.findall(r"`(tests/[\w/]+\.py)?::(\w+)`", row):
      current = path or current
      assert current, f"test name without a file in row: {row}"
      pairs.append((current, name))
  return pairs


def test_every_ledger_test_exists():
  pairs = _ledger_tests()
  assert len(pairs) >= 20
  missing = []
  for path, name in pairs:
    tree = ast.parse((REPO / path).read_text())
    names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    if name not in names:
      missing.append(f"{path}::{name}")
  assert not missing, f"ledger names tests that do not exist: {missing}"


def test_every_ledger_study_exists():
  studies = {p.stem for p in (REPO / "studies").glob("[!_]*.py")}
  named = set(re.findall(r"\| `(\w+)` \|$", LEDGER, re.M))
  assert named and named <= studies, named - studies
