"""Figures and the Markdown report of a run (matplotlib, no display needed).

    report.plot_per_class({"cnn_rnn": metrics_a, "bce": metrics_b}, "per_class.png")
    report.plot_curves({"cnn_rnn": log_a, "bce": log_b}, "curves.png")
    report.plot_predictions(images, rows, "predictions.png")
    report.summarize_seeds({"cnn_rnn": [m_seed0, m_seed1], "bce": [...]})   # mean / std

`metrics_*` are the dicts `evaluate_lib.evaluate` returns; `log_*` the records of
`<workdir>/train/log.jsonl`.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np

from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import metrics as metrics_lib

# compare_heads' default: each headline metric against the same setting of the other head.
SAME_SETTING = [(f"{s}/{k}", f"{s}/{k}") for s in ("top3", "all") for k in ("CP", "CF1", "OP",
                                                                           "OF1")]
SAME_SETTING.append(("mAP_noninterp", "mAP_noninterp"))


def _value(metrics, setting, key=None):
  v = metrics[setting] if key is None else metrics[setting][key]
  return float("nan") if v is None else float(v)


def summarize_seeds(by_head: dict[str, list[dict]]) -> dict:
  """{head: {"top3/OF1": (mean, std, [per seed]), ...}} over the seeds' metrics dicts.

  Every metric of `metrics.METRICS` that all of a head's runs have: the set metrics as
  "<rule>/<key>" for each rule of `metrics.RULES` (BCE alone has the calibrated ones), the
  score metrics as "<key>".
  """
  out = {}
  for head, runs in by_head.items():
    row = {}
    for key in metrics_lib.metric_keys():
      rule, _, name = key.rpartition(".")
      if all(name in (m.get(rule, {}) if rule else m) for m in runs):
        vals = [_value(m, rule, name) if rule else _value(m, name) for m in runs]
        row[key.replace(".", "/")] = (float(np.mean(vals)), float(np.std(vals)), vals)
    out[head] = row
  return out


def summary_table(summary: dict) -> str:
  """Markdown: one row per head and rule it has, mean ± std (percent) over seeds; a column
  per set metric, then per score metric, of `metrics.METRICS` that the summary has."""
  keys = [k for k in metrics_lib.METRICS
          if any(f"{r}/{k}" in row or k in row for row in summary.values()
                 for r in metrics_lib.RULES)]
  sets = [k for k in keys if k in metrics_lib.set_metrics()]
  scores = [k for k in keys if k in metrics_lib.score_metrics()]
  names = [metrics_lib.METRICS[k].display_name for k in sets + scores]
  lines = ["| head | setting | " + " | ".join(names) + " |",
           "|---|---|" + "---|" * len(names)]
  fmt = lambda t: "n/a" if t is None else f"{100 * t[0]:.1f} ± {100 * t[1]:.1f}"
  for head, row in summary.items():
    for rule in metrics_lib.RULES:
      if not any(f"{rule}/{k}" in row for k in sets):
        continue
      cells = [fmt(row.get(f"{rule}/{k}")) for k in sets] + [fmt(row.get(k)) for k in scores]
      lines.append(f"| {head} | {rule} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def difference(summary: dict, a_key: str, b_key: str, a: str = "cnn_rnn", b: str = "bce"):
  """(mean, std, wins, losses) of a's a_key minus b's b_key over the seeds, in points.

  A win is a seed where a is better by the metric's direction (`metrics.METRICS`: lower
  for Hamming loss).
  """
  diff = 100 * (np.array(summary[a][a_key][2]) - np.array(summary[b][b_key][2]))
  better = diff if metrics_lib.higher_is_better(a_key.replace("/", ".")) else -diff
  return float(diff.mean()), float(diff.std()), int(np.sum(better > 0)), int(np.sum(better < 0))


def compare_heads(summary: dict, a: str = "cnn_rnn", b: str = "bce",
                  pairs=tuple(SAME_SETTING)) -> list[str]:
  """Sentences: does head `a` beat head `b`, per (a's metric, b's metric) pair, over the seeds.

      compare_heads(summary)   # top3 vs top3, all vs all, mAP
      compare_heads(summary, pairs=[("top3/OF1", "top3_calibrated/OF1")])
  """
  out = []
  for a_key, b_key in pairs:
    mean, std, wins, losses = difference(summary, a_key, b_key, a, b)
    n = len(summary[a][a_key][2])
    # Equal on a seed is neither a win nor a loss: "ties with" unless every seed went one way.
    verdict = "beats" if wins == n else "loses to" if losses == n else "ties with"
    mean = round(mean, 1) + 0.0  # + 0.0: no "-0.0" from rounding noise
    name = a_key if a_key == b_key else f"{a_key} vs {b_key}"
    out.append(f"{name}: {a} {verdict} {b} ({wins}/{n} seeds), "
               f"difference {mean:+.1f} ± {std:.1f} points")
  return out


# "Which model and decoder for which metric": the columns are the named decoders'
# (`decoders.report_columns()`: (head, rule suffix, column name)); rows (name, rule prefix,
# metric key). A cell is the metric of the rule "<prefix><suffix>" (mAP: the head's ranking,
# one per head). What decision theory prescribes per row (docs/method.md, "Named decoders":
# the mode for exact match, GFM for example F1, per-class thresholds for per-label F1) is
# `decoders.theory()`: no data chooses it, so it cannot lean on the split it is chosen on.
DECODER_ROWS = (("exact match", "all", "exact_match"), ("example F1", "all", "EF1"),
                ("top-3 O-F1", "top3", "OF1"), ("top-3 C-F1", "top3", "CF1"),
                ("all O-F1", "all", "OF1"), ("all C-F1", "all", "CF1"),
                ("mAP", None, "mAP_noninterp"))


def _decoder_key(prefix, suffix, key):
  return key if prefix is None else f"{prefix}{suffix}/{key}"


def choose_decoders(validation: dict) -> dict:
  """{(head, row name): rule suffix}: per head and row, the decoder with the best mean on the
  validation summary (`summarize_seeds` of the validation part's metrics). Never the test's."""
  chosen = {}
  for head in {h for h, _, _ in decoders_lib.report_columns()}:
    for row, prefix, key in DECODER_ROWS:
      options = [(validation.get(head, {}).get(_decoder_key(prefix, suffix, key)), suffix)
                 for h, suffix, _ in decoders_lib.report_columns() if h == head]
      options = [(v[0], suffix) for v, suffix in options if v is not None]
      if options:
        best = max if metrics_lib.higher_is_better(key) else min
        chosen[(head, row)] = best(options, key=lambda o: o[0])[1]
  return chosen


def decoder_table(test: dict, validation: dict | None) -> tuple[str, dict]:
  """Markdown: rows of DECODER_ROWS, a column per named decoder of each head (test, mean ±
  std over seeds), then each head with its decoder chosen on validation (`choose_decoders`),
  or, with `validation` None, the decoder theory prescribes (`decoders.theory()`).

  Returns (the table, {(head, row name): (suffix, per-seed test values)} of the chosen ones).
  """
  chosen = (choose_decoders(validation) if validation is not None else
            {(h, row): suffix for h, rows in decoders_lib.theory().items()
             for row, suffix in rows.items()})
  how = "chosen on validation" if validation is not None else "by theory"
  fmt = lambda t: "n/a" if t is None else f"{100 * t[0]:.1f} ± {100 * t[1]:.1f}"
  heads = ("bce", "cnn_rnn")
  columns = decoders_lib.report_columns()
  lines = ["| metric | " + " | ".join(c for _, _, c in columns) + " | " +
           " | ".join(f"{h}, {how}" for h in heads) + " |",
           "|---|" + "---|" * (len(columns) + len(heads))]
  picked = {}
  for row, prefix, key in DECODER_ROWS:
    cells = [fmt(test.get(h, {}).get(_decoder_key(prefix, suffix, key)))
             for h, suffix, _ in columns]
    for h in heads:
      suffix = chosen.get((h, row))
      value = None if suffix is None else test.get(h, {}).get(_decoder_key(prefix, suffix, key))
      name = next((c for hh, s, c in columns if hh == h and s == suffix), "")
      cells.append("n/a" if value is None else f"{fmt(value)} ({name})")
      if value is not None:
        picked[(h, row)] = (suffix, value[2])
    lines.append(f"| {row} | " + " | ".join(cells) + " |")
  return "\n".join(lines), picked


def decoder_goal(test: dict, picked: dict) -> list[tuple[str, float, float, bool]]:
  """The goal of "one CNN-RNN model never worse than calibrated BCE", per claim:
  [(claim, mean difference, std, met)] in points over the seeds' paired differences, the
  CNN-RNN with its decoder chosen on validation (`decoder_table`'s picked) against:
  calibrated BCE on O-F1 / C-F1 (top-3 and all) and mAP (met: mean >= -0.5); every BCE
  decoder on exact match (met: mean > std, each); BCE expected_f1 on example F1 (>= -0.5)."""
  out = []
  def diff(row, b_key):
    a = np.array(picked[("cnn_rnn", row)][1])
    b = np.array(test["bce"][b_key][2])
    d = 100 * (a - b)
    return float(d.mean()), float(d.std())
  for row, prefix, key in DECODER_ROWS:
    if ("cnn_rnn", row) not in picked:
      continue
    if row == "exact match":
      for _, suffix, name in [c for c in decoders_lib.report_columns() if c[0] == "bce"]:
        b_key = _decoder_key(prefix, suffix, key)
        if b_key in test.get("bce", {}):
          mean, std = diff(row, b_key)
          out.append((f"exact match vs {name}", mean, std, mean > std))
    elif row == "example F1":
      b_key = _decoder_key(prefix, "_expected_f1", key)
      if b_key in test.get("bce", {}):
        mean, std = diff(row, b_key)
        out.append((f"example F1 vs BCE expected_f1", mean, std, mean >= -0.5))
    else:
      b_key = _decoder_key(prefix, "" if prefix is None else "_calibrated", key)
      if b_key in test.get("bce", {}):
        mean, std = diff(row, b_key)
        out.append((f"{row} vs calibrated BCE", mean, std, mean >= -0.5))
  return out


def plot_per_class(metrics_by_head: dict[str, dict], path: str) -> None:
  """Per-class top-3 precision and recall bars, heads side by side (the paper's Fig. 7)."""
  heads = list(metrics_by_head)
  names = list(next(iter(metrics_by_head.values()))["per_class"])
  x = np.arange(len(names))
  width = 0.8 / len(heads)
  fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * len(names)), 6), sharex=True)
  for ax, key in zip(axes, ("precision", "recall")):
    for i, head in enumerate(heads):
      vals = [metrics_by_head[head]["per_class"][n][key] or 0.0 for n in names]
      ax.bar(x + (i - (len(heads) - 1) / 2) * width, vals, width, label=head)
    ax.set_ylabel(f"top-3 {key}")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
  axes[0].legend()
  axes[1].set_xticks(x, names, rotation=60, ha="right")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_curves(logs_by_head: dict[str, list[dict]], path: str) -> None:
  """Training loss against step, one line per head (and seed); records without a "loss"
  (the evaluation points of `train.eval_every`) are skipped."""
  fig, ax = plt.subplots(figsize=(7, 4))
  for head, records in logs_by_head.items():
    records = [r for r in records if "loss" in r]  # log.jsonl also holds evaluation points
    if records:
      ax.plot([r["step"] for r in records], [r["loss"] for r in records], label=head)
  ax.set_xlabel("step")
  ax.set_ylabel("training loss (per image)")
  ax.set_yscale("log")
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def plot_predictions(images: np.ndarray, rows: list[dict[str, str]], path: str,
                     columns: int = 4) -> None:
  """A grid of images with text under each: {"truth": ..., "cnn_rnn": ..., ...} (Fig. 6)."""
  n = len(images)
  nrows = (n + columns - 1) // columns
  fig, axes = plt.subplots(nrows, columns, figsize=(3.2 * columns, 3.6 * nrows))
  for i, ax in enumerate(np.atleast_1d(axes).flat):
    ax.axis("off")
    if i >= n:
      continue
    ax.imshow(images[i].astype(np.uint8), interpolation="nearest")
    ax.set_title("\n".join(f"{k}: {v}" for k, v in rows[i].items()), fontsize=7, loc="left")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)
