"""The benchmarks (benchmarks/run.py and the modules it runs): each one runs, at tiny sizes.

The slow test runs `python -m benchmarks.run --tiny` as `make bench` runs it (a subprocess
from the repository root) and checks every benchmark that run.py registers: it ran, and
wrote its rows into results.json with finite positive figures. The figures themselves mean
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


@pytest.mark.slow
def test_every_benchmark_runs_at_tiny_sizes(tmp_path):
  out = tmp_path / "bench"
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", "--tiny", f"--out={out}"],
                        cwd=ROOT, env={**os.environ, "PYTHONPATH": ROOT},
                        capture_output=True, text=True, timeout=3600)
  assert proc.returncode == 0, (proc.stdout[-3000:], proc.stderr[-3000:])
  results = json.loads((out / "results.json").read_text())
  assert (out / "results.md").exists()
  assert set(results["benchmarks"]) == set(run.ROWS)
  for name, benchmark in results["benchmarks"].items():
    assert "error" not in benchmark and "result" in benchmark, (name, benchmark.get("error"))
    for flag in run.TINY[name]:  # it ran at the tiny sizes
      assert flag in benchmark["command"].split(), (name, flag, benchmark["command"])
    rows = [r for r in results["rows"] if r["command"] == benchmark["command"]]
    assert rows, f"{name} wrote no rows"
    for row in rows:
      figure = row["figure"]
      assert isinstance(figure, (int, float)) and math.isfinite(figure) and figure > 0, (
          name, row)
