"""The demo (cnn_rnn_tf.demo_lib and its binary) at runlocal size: every stage runs, the report
is whole, and the binary's output is its own (stage headers, our log lines, the table).
"""

import json
import os
import re
import subprocess
import sys

import pytest

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import demo_config
from cnn_rnn_tf import demo_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import report as report_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = os.path.join(ROOT, "cnn_rnn_tf")
# An absl log line: "I1129 20:37:03.156062 139853398600576 train_lib.py:130] text".
_ABSL = re.compile(r"^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ ([^:\]]+):\d+\]")
# What the demo prints itself besides headers: the summary table, the comparison, the path.
_PRINTED = re.compile(r"^(\||#|- |Report: )")
_BAR = re.compile(r"\r|\x1b\[|\d+%\|")


def our_files() -> set[str]:
  """Basenames of the package's modules (what absl prints as the file of a log line)."""
  return {f for _, _, files in os.walk(PACKAGE) for f in files if f.endswith(".py")}


def foreign_lines(output: str, ours: set[str]) -> list[str]:
  """The lines of `output` that are not the demo's own and not progress bars.

  Ours: stage headers ("== [i/5] ..."), absl lines logged from the package's files and the
  lines that continue such a record (a multi-line message, e.g. a Markdown table), and the
  final table, comparison and report path. Blank lines are not counted.
  """
  foreign, owner = [], None
  for line in output.splitlines():
    if not line.strip() or _BAR.search(line):
      continue
    match = _ABSL.match(line)
    if match:
      owner = "ours" if os.path.basename(match.group(1)) in ours else "foreign"
    elif line.startswith(demo_lib.HEADER + "[") or _PRINTED.match(line):
      owner = None  # a print of ours: what follows it is not a continuation of a record
      continue
    elif owner != "ours":
      owner = "foreign"
    if owner == "foreign":
      foreign.append(line)
  return foreign


def test_foreign_lines_counts_what_is_not_ours():
  output = "\n".join([
      "== [1/5] training the S backbone end to end (6 steps) in runs/backbone",
      "Downloading and preparing dataset Unknown size to /tmp/x...",
      "I1129 20:37:08.180682 1398 train_lib.py:130] synthetic_scenes: 20 labels",
      "I1129 20:37:28.246291 1398 evaluate_lib.py:120] ",
      "### bce on synthetic_scenes test",
      "| top-3 | 0.0 |",
      "W1129 20:37:06.362133 1398 feature.py:72] `FeatureConnector.dtype` is deprecated.",
      "Instructions for updating:",
      "\x1b[1m 1/19\x1b[0m ━━━━━ 15s 870ms/batch",
      "",
      "## S: frozen features (seeds [0])",
      "| cnn_rnn | top3 | 1.0 ± 0.0 |",
      "- top3/CP: cnn_rnn loses to bce (0/1 seeds), difference +0.0 ± 0.0 points",
      "Report: runs/demo/report.md"])
  assert foreign_lines(output, {"train_lib.py", "evaluate_lib.py"}) == [
      "Downloading and preparing dataset Unknown size to /tmp/x...",
      "W1129 20:37:06.362133 1398 feature.py:72] `FeatureConnector.dtype` is deprecated.",
      "Instructions for updating:"]


def test_stage_header_format(capsys):
  demo_lib.stage_header(2, "training the cnn_rnn head")
  assert capsys.readouterr().out == f"== [2/{demo_lib.STAGES}] training the cnn_rnn head\n"


def test_demo_config_is_a_package_module():
  """configs/demo.py and the package module give the same configs (the wheel has no configs/)."""
  from helpers import load_config_file  # pylint: disable=g-import-not-at-top
  for arg in ("", "heads", "transfer", "runlocal", "heads,runlocal"):
    from_file = load_config_file(os.path.join(ROOT, "configs", "demo.py"), arg)
    assert from_file.to_dict() == demo_config.get_config(arg).to_dict(), arg
  with pytest.raises(ValueError, match=r"Bad demo config argument\(s\) \['tiny'\]"):
    demo_config.get_config("heads,tiny")
  with pytest.raises(ValueError, match=r"'heads' or 'transfer'"):
    demo_config.get_config("heads,transfer")


@pytest.mark.slow
def test_demo_binary_runs_every_stage_prints_little_else_and_resumes(tmp_path):
  """The binary once (issue 12: at most 25 lines that are not ours or progress bars, stdout
  not a terminal), then the library on the same folder: resumed, the next export version."""
  run_dir, export_base = str(tmp_path / "demo"), str(tmp_path / "export")
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL",
                                                          "CNN_RNN_TF_VERBOSE")}
  result = subprocess.run(
      [sys.executable, "-m", "cnn_rnn_tf.demo", "--size=runlocal", "--seeds=0",
       f"--workdir={run_dir}", f"--export_base={export_base}"],
      cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
      timeout=1200, check=False)
  assert result.returncode == 0, result.stdout[-3000:]
  headers = [l for l in result.stdout.splitlines() if l.startswith("== [")]
  # 2 backbones; S and T x 2 heads; E: the CNN-RNN (BCE seed 0 is S's backbone run).
  assert [h[:8] for h in headers] == (["== [1/5]"] * 2 + ["== [2/5]"] * 4 +
                                      ["== [3/5]", "== [4/5]", "== [5/5]"]), headers
  assert "| cnn_rnn | top3 |" in result.stdout and "Report: " in result.stdout
  foreign = foreign_lines(result.stdout, our_files())
  assert len(foreign) <= 25, "\n".join(foreign)

  text = open(os.path.join(run_dir, "report.md")).read()
  for section in ("## S: ", "## T: ", "## E: ", "Where each head wins", "Per-class precision",
                  "Training curves", "exported SavedModels", "Label embedding"):
    assert section in text, section
  for rule in metrics_lib.RULES:  # every rule defined, and a row of the head(s) it is of
    assert f"`{rule}`: " in text
    assert f"| bce | {rule} |" in text or f"| cnn_rnn | {rule} |" in text, rule
  assert "Which model and decoder for which metric" in text
  for png in ("per_class.png", "curves.png", "predictions.png"):
    assert os.path.getsize(os.path.join(run_dir, png)) > 1000
  summary = json.load(open(os.path.join(run_dir, "summary.json")))
  assert summary["seeds"] == {"S": [0], "T": [0], "E": [0]}
  for protocol in ("S", "T", "E"):
    assert [len(summary["metrics"][protocol][h]) for h in ("cnn_rnn", "bce")] == [1, 1]
    assert set(summary["comparison"][protocol]) == {"paper", "users", "goal_met", "decoders",
                                                   "decoder_goal", "decoder_goal_by_theory"}
  # E's BCE run of seed 0 is the S backbone's run: the same config, trained once.
  assert summary["metrics"]["E"]["bce"][0] == summary["backbones"]["S"]
  assert not os.path.exists(os.path.join(run_dir, "E", "seed0", "bce"))
  assert os.path.exists(os.path.join(run_dir, "E", "seed0", "cnn_rnn", "eval", "metrics.json"))
  # T's backbone learned the scene type (6 labels) on other images than the heads.
  t_config = json.load(open(os.path.join(run_dir, "transfer_backbone", "config.json")))
  assert (t_config["data"]["synthetic_labels"], t_config["data"]["synthetic_seed"]) == (
      "scene", 1)
  assert len(summary["backbones"]["T"]["per_class"]) == 6
  assert len(summary["predictions"]) == 8
  assert sorted(os.listdir(os.path.join(export_base, "cnn_rnn"))) == ["1"]
  # Attention maps need non-empty paths, which a 6-step model may not give; neighbours are
  # always there.
  assert os.path.exists(os.path.join(run_dir, "visualize", "label_neighbours.json"))

  # Again, from the library: resumes (nothing retrained) and exports the next version.
  logs = {p: open(os.path.join(run_dir, p, "train", "log.jsonl")).read()
          for p in ("backbone", "transfer_backbone", "seed0/bce", "T/seed0/cnn_rnn",
                    "E/seed0/cnn_rnn")}
  demo_lib.run_demo(run_dir, seeds=(0,), size="runlocal", export_base=export_base,
                    num_grid=4)
  assert sorted(os.listdir(os.path.join(export_base, "cnn_rnn"))) == ["1", "2"]
  for path, log in logs.items():  # training appends to log.jsonl: nothing was
    assert open(os.path.join(run_dir, path, "train", "log.jsonl")).read() == log, path
  assert len(json.load(open(os.path.join(run_dir, "summary.json")))["predictions"]) == 4


def test_runs_of_grid_adds_the_cnn_rnn_variants_but_not_the_default_twice():
  assert demo_lib.runs_of(False) == {"cnn_rnn": ("cnn_rnn", {}), "bce": ("bce", {})}
  grid = demo_lib.runs_of(True)
  default = config_lib.default_config()
  variants = [overrides for head, overrides in grid.values() if overrides]
  assert all(head == "cnn_rnn" for head, overrides in grid.values() if overrides)
  assert len(variants) == (len(demo_lib.GRID_LABEL_ORDERS) *
                           len(demo_lib.GRID_AUX_BCE_WEIGHTS) - 1)
  assert {"train.label_order": default.train.label_order,
          "model.side_loss_weight": default.model.side_loss_weight} not in variants
  picked = demo_lib.runs_of(True, ["cnn_rnn-frequent_first-aux0"])
  assert picked == {"cnn_rnn": ("cnn_rnn", {}), "bce": ("bce", {}),
                    "cnn_rnn-frequent_first-aux0": ("cnn_rnn", {
                        "train.label_order": "frequent_first", "model.side_loss_weight": 0.0})}
  with pytest.raises(ValueError, match=r"'cnn_rnn-fifo-aux0'.*cnn_rnn-pla-aux0"):
    demo_lib.runs_of(True, ["cnn_rnn-fifo-aux0"])


def _metrics(f1: float, calibrated: float | None = None, m_ap: float = 0.5) -> dict:
  """A metrics dict with every P/R/F1 of the thresholded rules = f1 (calibrated ones too)."""
  prf = lambda v: {k: v for k in ("CP", "CR", "CF1", "OP", "OR", "OF1")}
  out = {"top3_paper": prf(f1), "top3": prf(f1), "all": prf(f1), "mAP_noninterp": m_ap,
         "mAP_voc07": m_ap, "MAP@10": m_ap}
  if calibrated is not None:
    out.update(top3_calibrated=prf(calibrated), all_calibrated=prf(calibrated))
  return out


def test_the_cnn_rnn_is_compared_with_the_stronger_bce_rule():
  summary = report_lib.summarize_seeds({
      "cnn_rnn": [_metrics(0.80), _metrics(0.82)],
      "bce": [_metrics(0.70, calibrated=0.79), _metrics(0.72, calibrated=0.78)]})
  pairs = dict(demo_lib.user_pairs(summary))
  assert pairs["top3/OF1"] == "top3_calibrated/OF1" and pairs["all/CF1"] == "all_calibrated/CF1"
  # Ahead by 2.5 ± 1.5 points on every F1, mAP equal: met.
  assert demo_lib.goal_met(summary)
  # Calibration worse than @0.5: @0.5 is the one to beat, and the CNN-RNN loses to it.
  weak_calibration = report_lib.summarize_seeds({
      "cnn_rnn": [_metrics(0.80)], "bce": [_metrics(0.85, calibrated=0.60)]})
  assert dict(demo_lib.user_pairs(weak_calibration))["top3/OF1"] == "top3/OF1"
  assert not demo_lib.goal_met(weak_calibration)
  # Ahead, but by less than the seed spread: not met.
  noisy = report_lib.summarize_seeds({
      "cnn_rnn": [_metrics(0.70), _metrics(0.90)], "bce": [_metrics(0.78, calibrated=0.78)] * 2})
  assert not demo_lib.goal_met(noisy)
  # F1 ahead, mAP more than a point behind: not met.
  low_map = report_lib.summarize_seeds({
      "cnn_rnn": [_metrics(0.9, m_ap=0.80)], "bce": [_metrics(0.7, calibrated=0.7, m_ap=0.82)]})
  assert not demo_lib.goal_met(low_map)
