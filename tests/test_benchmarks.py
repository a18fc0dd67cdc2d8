"""The benchmarks (benchmarks/run.py and the modules it runs): each one runs, at tiny sizes.

The slow tests run `python -m benchmarks.run --tiny --only=<name>` as `make bench` runs it (a
subprocess from the repository root), one test per benchmark that run.py registers, and
check it: it ran at its tiny sizes, and wrote its rows into results.json with finite
positive figures. The figures themselves mean
nothing at these sizes; the point is that no benchmark can break silently.
"""

import json
import math
import os
import subprocess
import sys

import pytest

from benchmarks import run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_registered_benchmark_has_tiny_sizes():
  assert set(run.TINY) == set(run.ROWS), "give each benchmark of run.ROWS its run.TINY flags"


def test_tiny_flags_replace_the_commands_flags():
  argv = ["benchmarks.train_throughput", "--num_steps=300", "--batch_size=64"]
  assert run.with_flags(argv, ["--num_steps=4", "--num_examples=32"]) == [
      "benchmarks.train_throughput", "--num_steps=4", "--batch_size=64", "--num_examples=32"]


# Each benchmark in a test of its own, each its own xdist group (tests/conftest.py): the two
# test processes of `make test` share them, instead of one process running all five.
@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param(name, marks=pytest.mark.xdist_group(
    f"benchmark_{name}")) for name in run.ROWS])
def test_each_benchmark_runs_at_tiny_sizes(tmp_path, name):
  out = tmp_path / "bench"
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", f"--only={name}",
                         f"--out={out}"],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                        capture_output=True, text=True, timeout=3600)
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  results = json.loads((out / "results.json").read_text())
  assert (out / "results.md").exists()
  assert set(results["benchmarks"]) == {name}
  benchmark = results["benchmarks"][name]
  assert "error" not in benchmark and "result" in benchmark, (name, benchmark.get("error"))
  for flag in run.TINY[name]:  # it ran at the tiny sizes
    assert flag in benchmark["command"].split(), (name, flag, benchmark["command"])
  rows = [r for r in results["rows"] if r["command"] == benchmark["command"]]
  assert rows, f"{name} wrote no rows"
  for row in rows:
    figure = row["figure"]
    assert isinstance(figure, (int, float)) and math.isfinite(figure) and figure > 0, (
        name, row)
