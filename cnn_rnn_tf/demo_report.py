"""The demo's texts: what `python -m cnn_rnn_tf.demo` prints and its report.md.

    from cnn_rnn_tf import demo_report
    text = demo_report.printed(comparison, seeds)     # per protocol: table, comparisons
    markdown = demo_report.report_text(seeds, text, comparison, results, rows, exports,
                                       vis, backbone_metrics, seconds)

`demo_lib` runs the demo and hands these functions its results (`demo_lib.compare`).
"""

from __future__ import annotations

import numpy as np

from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import metrics_markdown
from cnn_rnn_tf import report
from cnn_rnn_tf.data import synthetic_scenes

HEADS = ("cnn_rnn", "bce")
# The three protocols of the comparison (docs/method.md, "Protocols").
PROTOCOLS = {
    "S": "frozen features of a backbone trained end to end on these very labels",
    "T": "frozen features of a backbone trained on another task (the scene type of other "
         "images), as ImageNet is for VOC in the paper",
    "E": "both heads end to end from scratch: the same data, steps and backbone",
}
PAPER_METRICS = ("top3_paper/OP", "top3_paper/OF1", "top3_paper/CF1")


def printed(comparison: dict, seeds: dict) -> str:
  """What the binary prints at the end: per protocol its table and comparisons."""
  parts = []
  for protocol, c in comparison.items():
    claims = "\n".join(
        f"- {g['claim']}: {g['mean']:+.1f} ± {g['std']:.1f} points, "
        f"{'met' if g['met'] else 'NOT met'} (by theory's decoder: {t['mean']:+.1f} ± "
        f"{t['std']:.1f}, {'met' if t['met'] else 'NOT met'})"
        for g, t in zip(c["decoder_goal"], c["decoder_goal_by_theory"]))
    parts.append(f"## {protocol}: {PROTOCOLS[protocol]} (seeds {seeds[protocol]})\n\n"
                 f"{report.summary_table(c['summary'])}\n\n" +
                 "\n".join(f"- {line}" for line in c["paper"] + c["users"]) +
                 f"\n- goal met: {'yes' if c['goal_met'] else 'no'}\n\n"
                 f"Which model and decoder for which metric (test; 'chosen on validation': "
                 f"each head's decoder picked per metric on the validation part):\n\n"
                 f"{c['decoders']}\n\nThe CNN-RNN with its decoder chosen on validation "
                 f"against BCE:\n\n{claims}")
  return "\n\n".join(parts)


def _verdicts(comparison: dict) -> str:
  """One line per protocol: where the default CNN-RNN stands against BCE."""
  lines = []
  for protocol, c in comparison.items():
    paper = sum(" beats " in line for line in c["paper"])
    users = sum(" beats " in line for line in c["users"][:-1])
    lines.append(
        f"- **{protocol}**: with the paper's rule the CNN-RNN is ahead on {paper} of "
        f"{len(c['paper'])} ({', '.join(PAPER_METRICS)}) on every seed; with the thresholded "
        f"rules on {users} of {len(c['users']) - 1} F1 figures against the stronger BCE; "
        f"goal (every F1 ahead by more than the seed spread, mAP within 1 point): "
        f"{'met' if c['goal_met'] else 'not met'}.")
  return "\n".join(lines)


def report_text(seeds, printed, comparison, results, rows, exports, vis, backbone_metrics,
                 seconds) -> str:
  metrics = results["S"]
  per_seed = "\n\n".join(metrics_markdown.markdown_comparison(
      {f"{h} seed {s}": metrics[h][i] for h in HEADS}) for i, s in enumerate(seeds["S"]))
  lookalikes = ", ".join(f"{a}/{b}" for a, b in synthetic_scenes.LOOKALIKES)
  look_rows = ["| label | " + " | ".join(f"{h} precision | {h} recall" for h in HEADS) + " |",
               "|---|" + "---|---|" * len(HEADS)]
  for pair in synthetic_scenes.LOOKALIKES:
    for name in pair:
      cells = []
      for h in HEADS:
        p = np.mean([m["per_class"][name]["precision"] or 0 for m in metrics[h]])
        r = np.mean([m["per_class"][name]["recall"] or 0 for m in metrics[h]])
        cells += [f"{100 * p:.1f}", f"{100 * r:.1f}"]
      look_rows.append(f"| {name} | " + " | ".join(cells) + " |")
  rules = "\n".join(f"- `{k}`: {r.definition}." for k, r in metrics_lib.RULES.items())
  mean_ap = lambda m: 100 * (m["mAP_noninterp"] or 0)
  return f"""# CNN-RNN vs BCE on synthetic_scenes: protocols S, T and E

Stage 1 trained two backbones (the small CNN, end to end, with a BCE head): **S** on the 20
labels (test mAP {mean_ap(backbone_metrics["S"]):.1f}; this run is also E's BCE run of seed 0)
and **T** on the scene type of other images (synthetic seed 1; mAP over the 6 scenes
{mean_ap(backbone_metrics["T"]):.1f}). Stage 2 trained both heads on the frozen, cached
features of each; stage 3 (**E**) trained both heads end to end from scratch with the same
data and steps. {seconds / 60:.1f} minutes on this machine.

Metrics in percent, mean ± std over the seeds (population std; E on one seed has none). mAP
is non-interpolated average precision over the per-label ranking scores. Exact match, E-P,
E-R and E-F1 (example-based) and Hamming loss (lower is better) judge each image's whole
label set (docs/method.md, "Metrics"). The label-set rules:

{rules}

The paper's tables use `top3_paper`; "which head should I use" uses the thresholded rules,
and the CNN-RNN is compared with the stronger BCE rule (@0.5 or calibrated) metric by metric.

{printed}

## Where each head wins

{_verdicts(comparison)}

Look-alike labels ({lookalikes}: identical alone, told apart only by the other objects),
protocol S, top-3 precision and recall averaged over seeds:

{chr(10).join(look_rows)}

## Per seed (S)

{per_seed}

## Per-class precision and recall (S, seed {seeds["S"][0]})

![per class](per_class.png)

## Training curves (S)

![curves](curves.png)

## Test images through the exported SavedModels

Exports: {", ".join(f"`{p}`" for p in exports.values())}.

![predictions](predictions.png)

## What the CNN-RNN learned

{vis}
"""
