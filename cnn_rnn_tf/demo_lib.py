"""The demo: synthetic_scenes -> backbones -> CNN-RNN and BCE heads under three protocols,
over seeds -> evaluate -> export -> predict through the SavedModels -> a Markdown + PNG report.

    from cnn_rnn_tf import demo_lib
    report_path = demo_lib.run_demo("runs/demo", seeds=(0, 1, 2))   # grid=True: the full grid

`make demo` runs `python -m cnn_rnn_tf.demo --workdir=runs/demo`. The protocols (demo_report.PROTOCOLS):
  S: both heads on the frozen, cached features of a backbone trained end to end on these
     labels (the small CNN with a BCE head, stage 1);
  T: the paper's: both heads on the frozen features of a backbone trained on another task,
     the scene type of other images (`demo_config` "transfer"), as ImageNet is for VOC;
  E: both heads end to end from scratch, the same data and steps (BCE seed 0 is the S
     backbone's run).
Five stages: 1. the S and T backbones; 2. S and T heads per seed; 3. E (first seed; every
seed with grid=True, which also adds the CNN-RNN variants of `runs_of`); 4. export and
predict (S, first seed); 5. the report. Everything is resumable: a second run finds the
checkpoints, re-evaluates, and exports the next version.

Layout of the run folder:
  tfds/                   the generated synthetic_scenes data (seed 0; seed 1 for T's backbone)
  backbone/               S backbone workdir; backbone/backbone.weights.h5 its frozen backbone
  transfer_backbone/      T backbone workdir (scene type, seed-1 images)
  feature_cache/          features of both backbones, shared by the stage-2 runs
  seed<S>/<run>/          S: a training workdir per seed and run (config.json, checkpoints, eval/)
  T/seed<S>/<run>/        T: the same on the T backbone's features
  E/seed<S>/<run>/        E: end to end
  report.md               the report; *.png its figures
  summary.json            the metrics of every protocol, seed and run, the comparisons
"""

from __future__ import annotations

import json
import os
import time

from absl import logging
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import demo_config
from cnn_rnn_tf import demo_report
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import progress
from cnn_rnn_tf import report
from cnn_rnn_tf import train_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.analysis import output as analysis_output
from cnn_rnn_tf.data import synthetic_scenes  # pylint: disable=unused-import
from cnn_rnn_tf.metric_writer import read_jsonl

# --grid: CNN-RNN variants next to the default recipe (config_lib.default_config), per
# protocol and seed, E on every seed.
GRID_LABEL_ORDERS = ("frequent_first", "pla", "random")
GRID_AUX_BCE_WEIGHTS = (0.0, 1.0)
# Thresholded rules compared with the stronger of BCE@0.5 and calibrated BCE, per metric.
USER_METRICS = ("top3/OF1", "top3/CF1", "all/OF1", "all/CF1")


def _with_size(arg: str, size: str) -> str | None:
  return ",".join(a for a in (arg, "runlocal" if size == "runlocal" else "") if a) or None


def runs_of(grid: bool, variants=None) -> dict[str, tuple[str, dict]]:
  """{run name: (head, config overrides)}: both heads, and with `grid` the CNN-RNN variants
  (`cnn_rnn-<label order>-aux<weight>`; `variants`: only these names of them)."""
  runs = {"cnn_rnn": ("cnn_rnn", {}), "bce": ("bce", {})}
  default = config_lib.default_config()
  every = {}
  for order in GRID_LABEL_ORDERS:
    for weight in GRID_AUX_BCE_WEIGHTS:
      if (order, weight) != (default.train.label_order, default.model.side_loss_weight):
        every[f"cnn_rnn-{order}-aux{weight:g}"] = (
            "cnn_rnn", {"train.label_order": order, "model.side_loss_weight": weight})
  unknown = sorted(set(variants or ()) - set(every))
  if unknown:
    raise ValueError(f"Unknown grid variant(s) {unknown}; expected some of {sorted(every)}.")
  if grid:
    runs.update({k: v for k, v in every.items() if not variants or k in variants})
  return runs


def _config(arg: str, size: str, run_dir: str, head: str, seed: int = 0,
            overrides: dict | None = None):
  config = demo_config.get_config(_with_size(arg, size))
  config.model.head = head
  config.data.data_dir = os.path.join(run_dir, "tfds")
  config.seed = seed
  return config_lib.set_fields(config, overrides or {})


def _predict_through_export(export_dir: str, images: np.ndarray) -> list[list[str]]:
  """Label names of each image, through the SavedModel's serving_default on PNG bytes."""
  loaded = tf.saved_model.load(export_dir)
  png = tf.stack([tf.io.encode_png(img) for img in images])
  out = loaded.signatures["serving_default"](image_bytes=png)
  names = out["label_names"].numpy()
  return [[n.decode() for n in row if n] for row in names]


STAGES = 5
HEADER = "== "  # every stage header starts so: "== [1/5] training the backbone ..."


def stage_header(index: int, text: str) -> None:
  """Prints one stage header on stdout: `== [index/5] text`."""
  print(f"{HEADER}[{index}/{STAGES}] {text}", flush=True)


def _train_and_evaluate(config, workdir: str, t_start: float) -> dict:
  """Trains, then evaluates on the test split; the validation part's metrics (on which the
  report chooses decoders) ride along as metrics["validation"] (summary.json keeps them)."""
  train_lib.train(config, workdir)
  metrics = evaluate_lib.evaluate(workdir)
  metrics["validation"] = evaluate_lib.evaluate(workdir, validation=True)
  logging.info("%s: top3 O-F1 %.3f, mAP %.3f (%.0f s so far)", workdir,
               metrics["top3"]["OF1"], metrics["mAP_noninterp"] or 0, time.time() - t_start)
  return metrics


def _train_backbones(run_dir: str, size: str, t_start: float):
  """Stage 1: the S backbone (the small CNN end to end with a BCE head on the labels; also
  E's BCE run of seed 0) and the T backbone (the scene type of other images).

  Returns ({"S": weights file, "T": weights file}, {"S": metrics, "T": metrics}).
  """
  weights, metrics = {}, {}
  for protocol, arg, name, what in (("S", "", "backbone", "the labels"),
                                    ("T", "transfer", "transfer_backbone",
                                     "the scene type of other images")):
    config = _config(arg, size, run_dir, "bce")
    workdir = os.path.join(run_dir, name)
    stage_header(1, f"training the {protocol} backbone end to end on {what} "
                 f"({config.train.num_steps} steps) in {workdir}")
    metrics[protocol] = _train_and_evaluate(config, workdir, t_start)
    weights[protocol] = workdir_lib.backbone_weights_path(workdir)
  return weights, metrics


def workdir_of(run_dir: str, protocol: str, seed: int, name: str) -> str:
  """S keeps the demo's first layout (seed<S>/<run>); T and E get a folder each."""
  parts = ([] if protocol == "S" else [protocol]) + [f"seed{seed}", name]
  return os.path.join(run_dir, *parts)


def _train_frozen(run_dir, seeds, size, weights, runs, t_start):
  """Stage 2: every run on the frozen, cached features of the S and T backbones.

  Returns ({protocol: {run: [metrics per seed]}}, {"<run> seed <s>": S's log.jsonl records}).
  """
  results, logs = {}, {}
  for protocol in ("S", "T"):
    results[protocol] = {name: [] for name in runs}
    for seed in seeds:
      for name, (head, overrides) in runs.items():
        workdir = workdir_of(run_dir, protocol, seed, name)
        config = _config("heads", size, run_dir, head, seed, overrides)
        config.model.backbone_weights = weights[protocol]
        config.data.cache_dir = os.path.join(run_dir, "feature_cache")
        stage_header(2, f"{protocol}: training {name} on frozen features, seed {seed} "
                     f"({config.train.num_steps} steps) in {workdir}")
        results[protocol][name].append(_train_and_evaluate(config, workdir, t_start))
        if protocol == "S":
          logs[f"{name} seed {seed}"] = read_jsonl(os.path.join(workdir, "train", "log.jsonl"))
  return results, logs


def _train_end_to_end(run_dir, seeds, size, runs, backbone_metrics, t_start):
  """Stage 3: every run end to end from scratch (E). BCE seed 0 is stage 1's S backbone run
  (the same config), not trained twice. Returns {run: [metrics per seed]}."""
  results = {name: [] for name in runs}
  for seed in seeds:
    for name, (head, overrides) in runs.items():
      if (name, seed) == ("bce", 0):
        results[name].append(backbone_metrics)
        continue
      workdir = workdir_of(run_dir, "E", seed, name)
      config = _config("", size, run_dir, head, seed, overrides)
      stage_header(3, f"E: training {name} end to end, seed {seed} "
                   f"({config.train.num_steps} steps) in {workdir}")
      results[name].append(_train_and_evaluate(config, workdir, t_start))
  return results


def _export_and_predict(run_dir, first, export_base, synthetic_config, num_grid):
  """Stage 4: exports S seed 0's heads; a few test images through the SavedModels.

  Returns (exports {head: dir}, images uint8 [num_grid, H, W, 3], rows for the figure).
  """
  stage_header(4, f"exporting both heads to {export_base} and predicting {num_grid} test "
               "images through the SavedModels")
  exports = {h: export_lib.export(first[h], os.path.join(export_base, h)) for h in demo_report.HEADS}
  logging.info("Exported: %s", exports)
  builder = tfds.builder(f"synthetic_scenes/{synthetic_config}",
                         data_dir=os.path.join(run_dir, "tfds"))
  examples = list(tfds.as_numpy(builder.as_dataset(split=f"test[:{num_grid}]")))
  images = np.stack([e["image"] for e in examples])
  label_names = builder.info.features["labels"].feature.names
  predicted = {h: _predict_through_export(exports[h], images) for h in demo_report.HEADS}
  rows = [{"truth": " ".join(sorted(label_names[i] for i in e["labels"])),
           **{h: " ".join(predicted[h][j]) or "(none)" for h in demo_report.HEADS}}
          for j, e in enumerate(examples)]
  return exports, images, rows


def user_pairs(summary: dict) -> list[tuple[str, str]]:
  """The CNN-RNN's thresholded metrics against the stronger BCE rule (by mean) for each."""
  pairs = []
  for metric in USER_METRICS:
    setting, key = metric.split("/")
    options = [f"{s}/{key}" for s in (setting, f"{setting}_calibrated")
               if f"{s}/{key}" in summary["bce"]]
    pairs.append((metric, max(options, key=lambda k: summary["bce"][k][0])))
  return pairs + [("mAP_noninterp", "mAP_noninterp")]


def goal_met(summary: dict) -> bool:
  """Issue 10's goal for a protocol: every thresholded F1 ahead of the stronger BCE by more
  than the seed spread (mean difference > 1 std), and mAP within 1 point."""
  for a_key, b_key in user_pairs(summary):
    mean, std, _, _ = report.difference(summary, a_key, b_key)
    if (mean < -1.0) if a_key == "mAP_noninterp" else mean <= std:
      return False
  return True


def compare(results: dict) -> dict:
  """{protocol: {"summary", "paper", "users", "goal_met", "decoders", "decoder_goal"}} for
  the default CNN-RNN vs BCE; "decoders" is the which-decoder-for-which-metric table (each
  head's decoder chosen on the validation part, reported on test)."""
  out = {}
  for protocol, by_run in results.items():
    summary = report.summarize_seeds(by_run)
    validation = report.summarize_seeds(
        {run: [m["validation"] for m in runs] for run, runs in by_run.items()
         if all("validation" in m for m in runs)})
    table, picked = report.decoder_table(summary, validation)
    _, by_theory = report.decoder_table(summary, None)
    out[protocol] = {
        "summary": summary,
        "paper": report.compare_heads(summary, pairs=[(k, k) for k in demo_report.PAPER_METRICS]),
        "users": report.compare_heads(summary, pairs=user_pairs(summary)),
        "goal_met": goal_met(summary),
        "decoders": table,
        "decoder_goal": [{"claim": c, "mean": m, "std": s, "met": ok}
                         for c, m, s, ok in report.decoder_goal(summary, picked)],
        "decoder_goal_by_theory": [{"claim": c, "mean": m, "std": s, "met": ok}
                                   for c, m, s, ok in report.decoder_goal(summary, by_theory)]}
  return out


def run_demo(run_dir: str, seeds=(0, 1, 2), size: str = "full",
             export_base: str = "export/models", num_grid: int = 8,
             grid: bool = False, variants=None) -> str:
  """Runs the whole demo (five stages, a header printed for each); returns report.md's path.

  grid=False: the default CNN-RNN and BCE; S and T on every seed, E on the first seed only
  (end-to-end runs are the slow ones). grid=True: E on every seed, and the CNN-RNN variants of
  `runs_of(True, variants)` in every protocol (`variants`: only these of them).
  """
  t_start = time.time()
  if not progress.enabled():
    tfds.disable_progress_bar()  # TFDS draws its own bars (data generation) otherwise
  tf.io.gfile.makedirs(run_dir)
  runs = runs_of(grid, variants)
  weights, backbone_metrics = _train_backbones(run_dir, size, t_start)
  results, logs = _train_frozen(run_dir, seeds, size, weights, runs, t_start)
  e_seeds = tuple(seeds) if grid else tuple(seeds[:1])
  results["E"] = _train_end_to_end(run_dir, e_seeds, size, runs, backbone_metrics["S"],
                                   t_start)
  seeds_of = {"S": list(seeds), "T": list(seeds), "E": list(e_seeds)}
  first = {h: workdir_of(run_dir, "S", seeds[0], h) for h in demo_report.HEADS}
  exports, images, rows = _export_and_predict(
      run_dir, first, export_base, _config("heads", size, run_dir, "bce").data.synthetic_config,
      num_grid)

  path = os.path.join(run_dir, "report.md")
  stage_header(5, f"writing the report {path} (figures, attention maps)")
  comparison = compare(results)
  report.plot_per_class({h: results["S"][h][0] for h in demo_report.HEADS},
                        os.path.join(run_dir, "per_class.png"))
  report.plot_curves(logs, os.path.join(run_dir, "curves.png"))
  report.plot_predictions(images, rows, os.path.join(run_dir, "predictions.png"))
  vis = analysis_output.write_visualizations(first["cnn_rnn"],
                                            os.path.join(run_dir, "visualize"),
                                            images=images[:4])
  with tf.io.gfile.GFile(os.path.join(run_dir, "summary.json"), "w") as f:
    json.dump({"seeds": seeds_of, "grid": grid, "metrics": results,
               "backbones": backbone_metrics,
               "comparison": {p: {k: v for k, v in c.items() if k != "summary"}
                              for p, c in comparison.items()},
               "exports": exports, "predictions": rows}, f, indent=2)
  printed = demo_report.printed(comparison, seeds_of)
  text = demo_report.report_text(seeds_of, printed, comparison, results, rows, exports, vis,
                      backbone_metrics, time.time() - t_start)
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)
  print("\n" + printed)
  print(f"\nReport: {path}", flush=True)
  return path
