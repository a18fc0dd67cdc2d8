"""Tests of `cnn_rnn_tf.report`: seed summaries, the Markdown table, head comparisons, plots."""

import math
import os

import numpy as np
import pytest

from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import report


def fake_metrics(base: float, per_class=("a", "b")) -> dict:
  """A metrics dict shaped like `evaluate_lib.evaluate`'s, every value derived from `base`."""
  prf = {k: base + 0.01 * i for i, k in enumerate(metrics_lib.PRF_KEYS)}
  return {"top3": dict(prf), "all": {k: v + 0.05 for k, v in prf.items()},
          "mAP_noninterp": base + 0.1, "mAP_voc07": base + 0.11, "MAP@10": base + 0.2,
          "per_class": {n: {"precision": base, "recall": base / 2} for n in per_class}}


def test_summarize_seeds_mean_std_and_values():
  summary = report.summarize_seeds({"cnn_rnn": [fake_metrics(0.5), fake_metrics(0.7)],
                                    "bce": [fake_metrics(0.6)]})
  assert set(summary) == {"cnn_rnn", "bce"}
  mean, std, values = summary["cnn_rnn"]["top3/OF1"]  # OF1 = base + 0.05
  assert values == pytest.approx([0.55, 0.75])
  assert mean == pytest.approx(0.65) and std == pytest.approx(0.1)  # population std
  assert summary["cnn_rnn"]["all/CP"][2] == pytest.approx([0.55, 0.75])
  mean, std, values = summary["bce"]["MAP@10"]
  assert (mean, std) == pytest.approx((0.8, 0.0)) and values == pytest.approx([0.8])
  # The six P/R/F1 of top3 and all, and the three score metrics the runs have.
  assert len(summary["bce"]) == 2 * len(metrics_lib.PRF_KEYS) + 3


def test_summarize_seeds_none_is_nan():
  m = fake_metrics(0.5)
  m["mAP_voc07"] = None  # evaluate writes None where a metric is undefined
  mean, _, values = report.summarize_seeds({"h": [m]})["h"]["mAP_voc07"]
  assert math.isnan(mean) and math.isnan(values[0])


def test_summary_table_rows_and_percentages():
  summary = report.summarize_seeds({"cnn_rnn": [fake_metrics(0.5), fake_metrics(0.7)],
                                    "bce": [fake_metrics(0.6)]})
  lines = report.summary_table(summary).splitlines()
  assert lines[0].startswith("| head | setting | C-P |") and len(lines) == 2 + 4
  row = lines[2].split(" | ")
  assert row[0] == "| cnn_rnn" and row[1] == "top3"
  assert row[2] == "60.0 ± 10.0"  # top3 CP: bases 0.5, 0.7 -> 60.0 ± 10.0 percent
  assert lines[2].endswith("| 70.0 ± 10.0 | 80.0 ± 10.0 |")  # mAP_noninterp, MAP@10
  assert lines[5].startswith("| bce | all | 65.0 ± 0.0 |")


def test_compare_heads_verdicts_by_value():
  a = [fake_metrics(0.6), fake_metrics(0.7)]
  b = [fake_metrics(0.5), fake_metrics(0.8)]  # a wins seed 0 by 10 points, loses seed 1 by 10
  lines = report.compare_heads(report.summarize_seeds({"cnn_rnn": a, "bce": b}))
  assert len(lines) == 9 and lines[0].startswith("top3/CP: ")
  assert lines[0] == ("top3/CP: cnn_rnn ties with bce (1/2 seeds), difference +0.0 ± 10.0 "
                      "points")
  ahead = report.compare_heads(report.summarize_seeds(
      {"x": [fake_metrics(0.6)], "y": [fake_metrics(0.5)]}), a="x", b="y")
  assert ahead[-1] == "mAP_noninterp: x beats y (1/1 seeds), difference +10.0 ± 0.0 points"
  equal = report.compare_heads(report.summarize_seeds(
      {"x": [fake_metrics(0.5)], "y": [fake_metrics(0.5)]}), a="x", b="y")
  assert equal[0] == "top3/CP: x ties with y (0/1 seeds), difference +0.0 ± 0.0 points"
  behind = report.compare_heads(report.summarize_seeds(
      {"x": [fake_metrics(0.4)], "y": [fake_metrics(0.5)]}), a="x", b="y")
  assert behind[3] == "top3/OF1: x loses to y (0/1 seeds), difference -10.0 ± 0.0 points"


def _png(path) -> bool:
  with open(path, "rb") as f:
    return f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
  report.plot_per_class({"cnn_rnn": fake_metrics(0.5), "bce": fake_metrics(0.7)},
                        str(tmp_path / "per_class.png"))
  logs = {"cnn_rnn seed 0": [{"step": s, "loss": 10.0 / s} for s in (1, 2, 3)],
          "bce seed 0": [{"step": 3, "eval/top3/OF1": 0.5}]}  # an evaluation point only
  report.plot_curves(logs, str(tmp_path / "curves.png"))
  images = np.random.default_rng(0).integers(0, 255, [5, 16, 16, 3]).astype(np.uint8)
  rows = [{"truth": "a b", "cnn_rnn": "a", "bce": "(none)"}] * 5
  report.plot_predictions(images, rows, str(tmp_path / "predictions.png"), columns=4)
  for name in ("per_class.png", "curves.png", "predictions.png"):
    assert _png(tmp_path / name) and os.path.getsize(tmp_path / name) > 1000, name


def test_compare_heads_follows_the_metrics_direction():
  """Hamming loss is lower-is-better: the head with the lower loss beats the other."""
  def with_loss(loss):
    m = fake_metrics(0.5)
    m["all"]["hamming_loss"] = loss
    return m
  summary = report.summarize_seeds({"x": [with_loss(0.1)], "y": [with_loss(0.2)]})
  line, = report.compare_heads(summary, a="x", b="y",
                               pairs=[("all/hamming_loss", "all/hamming_loss")])
  assert line == "all/hamming_loss: x beats y (1/1 seeds), difference -10.0 ± 0.0 points"
  assert "Hamming loss" in report.summary_table(summary).splitlines()[0]


def _metrics(values: dict) -> dict:
  """A metrics dict of evaluate's shape: {rule: {key: v}} and top-level score keys."""
  out = {}
  for key, v in values.items():
    if "/" in key:
      rule, name = key.split("/")
      out.setdefault(rule, {})[name] = v
    else:
      out[key] = v
  return out


def test_decoders_are_chosen_on_validation_and_reported_on_test():
  # Validation says marginals for all O-F1; the test split would have said path (90): the
  # table reports the marginals' test value, the decoder chosen on validation.
  val = {"cnn_rnn": [_metrics({"all/OF1": 0.5, "all_marginals/OF1": 0.7,
                                "all_expected_f1/OF1": 0.6, "mAP_noninterp": 0.8})],
         "bce": [_metrics({"all/OF1": 0.5, "all_calibrated/OF1": 0.6,
                           "all_expected_f1/OF1": 0.4, "mAP_noninterp": 0.8})]}
  test = {"cnn_rnn": [_metrics({"all/OF1": 0.9, "all_marginals/OF1": 0.61,
                                 "all_expected_f1/OF1": 0.5, "mAP_noninterp": 0.7}),
                       _metrics({"all/OF1": 0.9, "all_marginals/OF1": 0.63,
                                 "all_expected_f1/OF1": 0.5, "mAP_noninterp": 0.7})],
          "bce": [_metrics({"all/OF1": 0.5, "all_calibrated/OF1": 0.62,
                            "all_expected_f1/OF1": 0.4, "mAP_noninterp": 0.75})] * 2}
  val_s, test_s = report.summarize_seeds(val), report.summarize_seeds(test)
  chosen = report.choose_decoders(val_s)
  assert chosen[("cnn_rnn", "all O-F1")] == "_marginals"
  assert chosen[("bce", "all O-F1")] == "_calibrated"
  table, picked = report.decoder_table(test_s, val_s)
  assert picked[("cnn_rnn", "all O-F1")] == ("_marginals", [0.61, 0.63])
  row = next(l for l in table.splitlines() if l.startswith("| all O-F1 |"))
  assert row.rstrip(" |").endswith("62.0 ± 1.0 (CNN-RNN marginals)")  # not the path's 90 on test
  goal = {claim: (round(mean, 6), met) for claim, mean, _, met in
          report.decoder_goal(test_s, picked)}
  assert goal["all O-F1 vs calibrated BCE"] == (0.0, True)  # 62 vs 62
  assert goal["mAP vs calibrated BCE"] == (-5.0, False)


def test_decoders_by_theory_need_no_data():
  test = report.summarize_seeds({
      "cnn_rnn": [_metrics({"all/exact_match": 0.4, "all_marginals/exact_match": 0.5,
                            "all_expected_f1/EF1": 0.7, "all/EF1": 0.8})],
      "bce": [_metrics({"all/exact_match": 0.3, "all_expected_f1/EF1": 0.6})]})
  _, picked = report.decoder_table(test, None)
  assert picked[("cnn_rnn", "exact match")] == ("", [0.4])  # the mode, though marginals won
  assert picked[("cnn_rnn", "example F1")] == ("_expected_f1", [0.7])
