"""README.md stays true: its example runs, and CI runs its test command."""

from __future__ import annotations

import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def _block_after(marker: str) -> str:
  match = re.search(rf"<!-- {marker} -->\n```\w*\n(.*?)```", README, re.S)
  assert match, f"README.md has no code block under <!-- {marker} -->"
  return match.group(1)


def test_readme_opens_with_the_two_commands():
  studies = _block_after("studies-command").strip()
  tests = _block_after("test-command").strip()
  assert "python -m studies run all --quick" in studies
  assert "pip install" in studies and "pip install" in tests
  assert "pytest" in tests
  # Nothing but the title and one line comes before them.
  assert README.index("<!-- studies-command -->") < README.index("## ")


def test_ci_runs_the_readme_test_command():
  ci = (REPO / ".ci" / "run").read_text()
  assert "<!-- test-command -->" in ci and 'eval "$cmd"' in ci


def test_readme_example_runs(capsys):
  exec(compile(_block_after("readme-example"), "README.md", "exec"), {})
  printed = capsys.readouterr().out
  error = float(printed.split("max error:")[1])
  assert error < 0.5  # K = 20, 5,000 comparisons: RMSE about 0.07.
