"""The metrics of `metrics.compute_all` as Markdown tables (percentages, 1 decimal).

    print(markdown_table(report, title="COCO val"))          # metrics.md, `evaluate`
    markdown_comparison({"CNN-RNN": report_rnn, "BCE": report_bce})
"""

from __future__ import annotations

import math
from typing import Mapping

from cnn_rnn_tf.metrics import METRICS, RULES, score_metrics, set_metrics


def _pct(x) -> str:
  """0.6604 -> '66.0'; None / NaN / missing -> 'n/a'."""
  if x is None or math.isnan(float(x)):
    return "n/a"
  return f"{100.0 * float(x):.1f}"


def _row(cells) -> str:
  return "| " + " | ".join(cells) + " |"


def _rule_cells(metrics: Mapping, rule: str) -> list[str]:
  return [_pct(metrics[rule].get(k)) for k in set_metrics()]


def markdown_table(metrics: Mapping, title: str | None = None) -> str:
  """Headline numbers of a `compute_all` report as Markdown (percentages, 1 decimal).

  One row per rule of `RULES` the report has (top-3, all, top-3 (paper), top-3 calibrated,
  all calibrated) with a column per set metric of `METRICS` (C-P C-R C-F1 O-P O-R O-F1 ...),
  then one row of the score metrics (mAP in three conventions, MAP@10) and the image count.
  Keys missing from `metrics` are shown as n/a.
  """
  set_names = [METRICS[k].display_name for k in set_metrics()]
  score_keys = score_metrics()
  lines = [f"### {title}", ""] if title else []
  lines += [_row(["setting"] + set_names), _row(["---"] * (1 + len(set_names)))]
  for rule, spec in RULES.items():
    if rule in metrics:
      lines.append(_row([spec.display_name] + _rule_cells(metrics, rule)))
  lines += ["", _row([METRICS[k].display_name for k in score_keys] + ["images"]),
            _row(["---"] * (len(score_keys) + 1))]
  lines.append(_row([_pct(metrics.get(k)) for k in score_keys]
                    + [str(metrics.get("num_images", "n/a"))]))
  return "\n".join(lines) + "\n"


def markdown_comparison(named_metrics: Mapping[str, Mapping]) -> str:
  """Several heads side by side: one row per head and rule, score metrics repeated per head.

    markdown_comparison({"CNN-RNN": report_rnn, "BCE": report_bce})
  """
  headers = (["head", "setting"] + [METRICS[k].display_name for k in set_metrics()]
             + [METRICS[k].display_name for k in score_metrics()])
  lines = [_row(headers), _row(["---"] * len(headers))]
  for head, metrics in named_metrics.items():
    maps = [_pct(metrics.get(k)) for k in score_metrics()]
    for rule, spec in RULES.items():
      if rule in metrics:
        lines.append(_row([str(head), spec.display_name] + _rule_cells(metrics, rule) + maps))
  return "\n".join(lines) + "\n"
