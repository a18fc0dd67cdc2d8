"""The demo (cnn_rnn_tf.demo_lib) at runlocal size: every stage runs and the report is whole."""

import json
import os

import pytest

from cnn_rnn_tf import demo_lib


@pytest.mark.slow
def test_demo_runs_end_to_end_and_twice(tmp_path):
  run_dir, export_base = str(tmp_path / "demo"), str(tmp_path / "export")
  report = demo_lib.run_demo(run_dir, seeds=(0, 1), size="runlocal", export_base=export_base,
                             num_grid=4)
  text = open(report).read()
  for section in ("Does the CNN-RNN beat BCE?", "Per-class precision", "Training curves",
                  "exported SavedModels", "Label embedding"):
    assert section in text
  for png in ("per_class.png", "curves.png", "predictions.png"):
    assert os.path.getsize(os.path.join(run_dir, png)) > 1000
  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  assert summary["seeds"] == [0, 1]
  assert [len(summary["metrics"][h]) for h in ("cnn_rnn", "bce")] == [2, 2]
  assert len(summary["predictions"]) == 4
  assert sorted(os.listdir(os.path.join(export_base, "cnn_rnn"))) == ["1"]
  # Attention maps need non-empty paths, which a 6-step model may not give; neighbours are
  # always there.
  assert os.path.exists(os.path.join(run_dir, "visualize", "label_neighbours.json"))
  # Running it again resumes (nothing retrained) and exports the next version.
  demo_lib.run_demo(run_dir, seeds=(0, 1), size="runlocal", export_base=export_base,
                    num_grid=4)
  assert sorted(os.listdir(os.path.join(export_base, "cnn_rnn"))) == ["1", "2"]
