"""Evaluation: decode a split with the trained head and compute the paper's metrics.

    from cnn_rnn_tf import evaluate_lib
    metrics = evaluate_lib.evaluate("runs/demo")            # the config's eval split
    metrics["top3"]["OF1"], metrics["mAP_noninterp"]

Writes into `<workdir>/eval/`: `metrics.json`, `metrics.md` (a Markdown table) and
`predictions.npz` (keys, y_true, decoded label ids, label scores) for reports.

What counts as a prediction (the issue's definitions):
  * cnn_rnn: "top3" = the first 3 labels of the beam-search path; "all" = the whole path.
  * bce:     "top3" = the 3 highest probabilities among those >= 0.5; "all" = every label
             with probability >= 0.5.
Ranking scores for AP and MAP@10: `inference.predict_from_features`'s `label_scores`.
"""

from __future__ import annotations

import json
import os

from absl import logging
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import workdir as workdir_lib


def eval_dataset(config, workdir, source, vocab, split, batch_size):
  """Batches of {'features' or 'image', 'labels', 'key'} over a split, once, in order."""
  if workdir_lib.uses_feature_cache(config):
    path = data_lib.feature_cache.build(
        source, split, vocab, config.model.backbone, config.model.backbone_weights,
        config.model.image_size, precision=config.data.precision,
        cache_dir=workdir_lib.feature_cache_dir(config, workdir), batch_size=batch_size)
    return data_lib.feature_dataset(path, batch_size=batch_size, training=False, seed=0,
                                    repeat=False, start_step=0, drop_remainder=False)
  return data_lib.image_dataset(
      source, split, vocab,
      image_size=backbones.backbone_image_size(config.model.backbone, config.model.image_size),
      batch_size=batch_size, training=False, seed=0, augment=False, repeat=False,
      start_step=0, drop_remainder=False)


def predict_split(config, workdir: str, split: str, batch_size: int | None = None,
                  beam_size: int | None = None) -> dict:
  """Decodes every image of `split`. Returns NumPy arrays keyed like `inference`'s outputs,
  plus 'y_true' bool [N, K] and 'keys' [N]."""
  source = data_lib.get_source(config.data)
  vocab = workdir_lib.load_vocab(workdir)
  backbone, head = workdir_lib.build_models(config, vocab.num_labels)
  checkpoint = workdir_lib.restore_weights(config, workdir, backbone, head)
  logging.info("Evaluating %s on split %r.", checkpoint, split)
  batch_size = batch_size or config.train.batch_size
  decode = config.decode
  use_cache = workdir_lib.uses_feature_cache(config)

  @tf.function
  def predict(batch):
    features = batch["features"] if use_cache else backbone(batch["image"], training=False)
    return inference.predict_from_features(
        head, features, beam_size=beam_size or decode.beam_size,
        max_length=decode.max_length, min_length=decode.min_length)

  outputs = {k: [] for k in inference.OUTPUT_KEYS + ("y_true", "keys")}
  for batch in eval_dataset(config, workdir, source, vocab, split, batch_size):
    for key, value in predict(batch).items():
      outputs[key].append(value.numpy())
    outputs["y_true"].append(batch["labels"].numpy() > 0)
    outputs["keys"].append(batch["key"].numpy())
  if not outputs["y_true"]:
    raise ValueError(f"Split {split!r} of {source.name} has no examples to evaluate.")
  result = {k: np.concatenate(v) for k, v in outputs.items()}
  result["skipped"] = dict(getattr(source, "skipped", {}) or {})
  return result


def evaluate(workdir: str, split: str | None = None, batch_size: int | None = None,
             beam_size: int | None = None) -> dict:
  """Evaluates the workdir's latest checkpoint on `split`; writes <workdir>/eval/*."""
  config = workdir_lib.load_config(workdir)
  split = split or config.data.eval_split
  pred = predict_split(config, workdir, split, batch_size, beam_size)
  vocab = workdir_lib.load_vocab(workdir)
  top3, every = inference.prediction_masks(config.model.head, pred["labels"],
                                           pred["label_scores"], vocab.num_labels)
  metrics = metrics_lib.compute_all(pred["y_true"], top3, every, pred["label_scores"],
                                    vocab.names)
  metrics.update(head=config.model.head, split=split, source=config.data.source,
                 beam_size=beam_size or config.decode.beam_size, skipped=pred["skipped"])
  out_dir = os.path.join(workdir, "eval")
  tf.io.gfile.makedirs(out_dir)
  with tf.io.gfile.GFile(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, allow_nan=False)
  table = metrics_lib.markdown_table(
      metrics, title=f"{config.model.head} on {config.data.source} {split}")
  with tf.io.gfile.GFile(os.path.join(out_dir, "metrics.md"), "w") as f:
    f.write(table + "\n")
  np.savez_compressed(os.path.join(out_dir, "predictions.npz"),
                      **{k: v for k, v in pred.items() if k != "skipped"})
  summary = tf.summary.create_file_writer(out_dir)
  with summary.as_default(step=int(config.train.num_steps)):
    for setting in ("top3", "all"):
      for key in metrics_lib.PRF_KEYS:
        tf.summary.scalar(f"{setting}/{key}", metrics[setting][key])
    tf.summary.scalar("mAP_noninterp", metrics["mAP_noninterp"] or 0.0)
  summary.flush()
  logging.info("\n%s", table)
  return metrics
