"""Evaluation: decode a split with the trained head and compute the paper's metrics.

    from cnn_rnn_tf import evaluate_lib
    metrics = evaluate_lib.evaluate("runs/demo")            # the config's eval split
    metrics["top3"]["OF1"], metrics["mAP_noninterp"]

    # In memory, no files (the trainer's train.eval_every):
    cache_dir = workdir.feature_cache_dir(w, config.data.cache_dir)
    metrics = evaluate_lib.evaluate_models(config, vocab, backbone, head, "test",
                                           cache_dir=cache_dir)

`evaluate` takes the checkpoint `workdir.resolve_checkpoint` names (auto: the best one when
the run kept it, else the latest) and writes into `<workdir>/eval/`: `metrics.json`,
`metrics.md` (a Markdown table) and `predictions.npz` (keys, y_true, decoded label ids,
label scores) for reports. Decoding settings (`decode.*`) may be overridden; nothing else.

What counts as a prediction: the label-set rules of `metrics.RULES` (top3, all, top3_paper,
and with thresholds.json the calibrated ones: bce top3/all_calibrated, cnn_rnn
top3/all_marginals; the named decoders' others, e.g. top3/all_expected_f1; their
definitions are there and in docs/method.md), each a key of metrics.json with every set
metric of `metrics.METRICS` under it (C-P ... O-F1, exact match, E-P/E-R/E-F1, Hamming loss).
Paper-reproduction tables use top3_paper; "which head should I use" tables use the
thresholded (top3, all) and calibrated rules. (`inference.rule_masks`, from each head's
named decoders, `decoders.DECODERS`; `inference.prediction_masks` gives (top3, all).)
Ranking scores for AP and MAP@10: `inference.predict_from_features`'s `label_scores`.
"""

from __future__ import annotations

import collections
import copy
import json
import math
import os
import re

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import metrics_markdown
from cnn_rnn_tf import progress
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.data.sources import voc2007
from cnn_rnn_tf.workdir import compute as compute_lib


def _num_batches(source, split: str, batch_size: int) -> int | None:
  try:
    return math.ceil(source.num_examples(split) / batch_size)
  except Exception:  # pylint: disable=broad-except  (a bar without a total is fine)
    return None


def predict_models(config, vocab, backbone, head, split: str, *, cache_dir: str,
                   batch_size: int | None = None, source=None, part: str = "all") -> dict:
  """Decodes every image of `split` with `config.decode`. Returns NumPy arrays keyed like
  `inference`'s outputs, plus 'y_true' bool [N, K], 'keys' [N] and 'skipped' (a dict).

  `part`: "all", "fit" or "calibration" (`data.dataset_for`). The backbone runs under XLA
  when `data.jit` is "on" (as `workdir.compute.with_compute` sets it from compute.json).
  """
  source = source or data_lib.get_source(config.data)
  batch_size = batch_size or config.train.batch_size
  use_cache = data_lib.uses_feature_cache(config)
  call_backbone = compute_lib.backbone_fn(backbone, config.data.get("jit") == "on")

  def predict(batch):
    features = (batch["features"] if use_cache
                else call_backbone(batch["image"], training=False))
    return inference.predict_from_features(head, features, inference.decode_options(config))

  outputs = collections.defaultdict(list)
  dataset = data_lib.dataset_for(config, split, vocab, training=False, cache_dir=cache_dir,
                                 source=source, batch_size=batch_size, part=part)
  # One trace for every batch size (the last batch is smaller); no autograph: decoding is
  # explicit tf.while_loops, and converting it was most of the tracing time.
  predict = tf.function(predict, input_signature=[dataset.element_spec], autograph=False)
  with progress.bar(total=_num_batches(source, split, batch_size), desc=f"eval {split}",
                    unit="batch") as bar:
    for batch in dataset:
      for key, value in predict(batch).items():
        outputs[key].append(value.numpy())
      outputs["y_true"].append(batch["labels"].numpy() > 0)
      outputs["keys"].append(batch["key"].numpy())
      bar.update(1)
  if not outputs["y_true"]:
    raise ValueError(f"Split {split!r} of {source.name} has no examples to evaluate.")
  result = {k: np.concatenate(v) for k, v in outputs.items()}
  difficult = source.difficult_mask(split, result["keys"], vocab.names)  # VOC; else None
  if difficult is not None:
    result["difficult"] = difficult
  result["skipped"] = dict(getattr(source, "skipped", {}) or {})
  return result


def metrics_of(pred: dict, vocab, split: str, *, head: str, source: str, beam_size: int,
               voc_difficult: str = "ignore", thresholds=None) -> dict:
  """The metrics dict of `predict_models`' output (the keys `evaluate` returns).

  `head`, `source`, `beam_size`: the config's model.head, data.source, decode.beam_size
  (recorded with the metrics); `voc_difficult`: data.voc_difficult, applied when `pred` has
  VOC's difficult-only entries. `thresholds`: float [K] calibrated thresholds: adds the rules
  that need them (bce top3/all_calibrated, cnn_rnn top3/all_marginals).
  """
  masks = inference.rule_masks(head, pred, vocab.num_labels, thresholds)
  top3, every = masks.pop("top3"), masks.pop("all")
  y_true, ignore, convention = voc2007.eval_labels(pred, voc_difficult)  # VOC's difficult
  metrics = metrics_lib.compute_all(y_true, top3, every, pred["label_scores"],
                                    vocab.names, rules=masks, ignore=ignore)
  metrics.update(head=head, split=split, source=source, beam_size=int(beam_size),
                 skipped=pred["skipped"], **convention)
  return metrics


def _recorded(config) -> dict:
  """What metrics_of records of the config (read once, here: the metrics need no config)."""
  return dict(head=config.model.head, source=config.data.source,
              beam_size=config.decode.beam_size, voc_difficult=config.data.voc_difficult)


def evaluate_models(config, vocab, backbone, head, split: str, *, cache_dir: str,
                    batch_size: int | None = None, source=None, part: str = "all") -> dict:
  """Metrics of in-memory models on `split` (same keys as `evaluate`); writes no files.

  `source`: the data source when the caller has one (the trainer), so that it is not built
  (and its CSV checked) again at every evaluation; default `data.get_source(config.data)`.
  `part`: "all", or "calibration" (the held-out part of the training split).
  """
  recorded = _recorded(config)
  pred = predict_models(config, vocab, backbone, head, split, cache_dir=cache_dir,
                        batch_size=batch_size, source=source, part=part)
  return metrics_of(pred, vocab, split if part == "all" else f"{split}[{part}]", **recorded)


def validation_part(config) -> tuple[str, str]:
  """(split, part) that every choice made during training is made on, never the test split:
  `data.validation_split` when set, else the calibration part of `data.train_split`."""
  split = config_lib.optional_path(config.data.validation_split)
  if split is not None:
    return split, data_lib.ALL
  if not config.data.calibration_fraction:
    raise ValueError("No validation part: data.calibration_fraction is 0 and "
                     "data.validation_split is None.")
  return config.data.train_split, data_lib.CALIBRATION


def with_decode(config, decode: dict | None) -> ml_collections.ConfigDict:
  """A copy of `config` with `decode.*` fields replaced (None values left as they are).

  Raises ConfigError for a field outside decode.* or a bad resulting config.
  """
  config = copy.deepcopy(config)
  bad = []
  for key, value in (decode or {}).items():
    if key not in config.decode:
      close = config_checks.closest_field(key, list(config.decode.keys()))
      bad.append(f"decode.{key}: unknown field" + (f" (did you mean decode.{close}?)"
                                                   if close else ""))
    elif value is not None:
      try:
        config.decode[key] = value
      except TypeError:  # ml_collections: a value of another type (e.g. "abc" for an int)
        bad.append(f"decode.{key} = {value!r}: must be of type "
                   f"{type(config.decode[key]).__name__}")
  if bad:
    raise config_lib.ConfigError(bad)
  return config


def evaluate(workdir: str, split: str | None = None, batch_size: int | None = None,
             beam_size: int | None = None, *, checkpoint: str = "auto",
             decode: dict | None = None, validation: bool = False,
             precision: str | None = None, jit: str | None = None,
             weights: str = "auto") -> dict:
  """Evaluates a workdir's checkpoint on `split`; writes <workdir>/eval/*.

  validation=True evaluates the validation part instead (`validation_part`: where choices
  such as the decoder per metric are made) and writes <workdir>/eval/validation/*.

  Args:
    workdir: a workdir written by `cnn_rnn_tf.train`.
    split: default the config's `data.eval_split`.
    batch_size: default `train.batch_size`.
    beam_size: shorthand for decode={"beam_size": ...}.
    checkpoint: "auto" | "latest" | "best" | a path (`workdir.resolve_checkpoint`).
    decode: overrides of `decode.*` fields (beam_size, max_length, min_length).
    precision, jit: "on" | "off" override the workdir's compute.json (how training's own
      evaluation computed); metrics.json's "compute" names what was used and why.
    weights: "auto" (the EMA weights when the run kept them, train.ema_decay > 0) | "raw"
      (the trained weights, for comparison: written to <...>/raw/).

  The workdir is read once (`workdir.load_trained`). A workdir with `thresholds.json`
  (written by the trainer, either head) also gets the calibrated rules.

  Raises:
    ConfigError: a bad decode override (e.g. beam_size=0), named.
  """
  overrides = dict(decode or {})
  if beam_size is not None:
    overrides["beam_size"] = beam_size
  trained = workdir_lib.load_trained(workdir, checkpoint, precision=precision, jit=jit,
                                     weights=weights)  # the one read of the workdir
  config = compute_lib.with_compute(with_decode(trained.config, overrides), trained.compute)
  config_checks.validate(config)
  vocab = trained.vocab
  split, part = validation_part(config) if validation else (
      split or config.data.eval_split, data_lib.ALL)
  logging.info("Evaluating %s on split %r (%s).", trained.checkpoint_path, split, part)
  pred = predict_models(config, vocab, trained.backbone, trained.head, split,
                        cache_dir=workdir_lib.feature_cache_dir(workdir, config.data.cache_dir),
                        batch_size=batch_size, part=part)
  name = split if part == data_lib.ALL else f"{split}[{part}]"
  metrics = metrics_of(pred, vocab, name, thresholds=trained.thresholds, **_recorded(config))
  metrics["checkpoint"] = trained.checkpoint_path
  metrics["compute"] = compute_lib.summary(trained.compute)
  metrics["weights"] = "raw" if weights == "raw" or not config.train.ema_decay else "ema"
  out_dir = os.path.join(workdir_lib.eval_dir(workdir), *(["validation"] if validation else []),
                         *(["raw"] if weights == "raw" else []))
  _write(config, out_dir, metrics, pred, name)
  return metrics


def _write(config, out_dir: str, metrics: dict, pred: dict, split: str) -> None:
  tf.io.gfile.makedirs(out_dir)
  with tf.io.gfile.GFile(os.path.join(out_dir, "metrics.json"), "w") as f:
    json.dump(metrics, f, indent=2, allow_nan=False)
  table = metrics_markdown.markdown_table(
      metrics, title=f"{config.model.head} on {config.data.source} {split}")
  with tf.io.gfile.GFile(os.path.join(out_dir, "metrics.md"), "w") as f:
    f.write(table + "\n")
  np.savez_compressed(os.path.join(out_dir, "predictions.npz"),
                      **{k: v for k, v in pred.items() if k != "skipped"})
  # The checkpoint's step (ckpt-<step>), so that best and latest land where they were taken.
  found = re.search(r"-(\d+)$", metrics.get("checkpoint", ""))
  step = int(found.group(1)) if found else int(config.train.num_steps)
  summary = tf.summary.create_file_writer(out_dir)
  with summary.as_default(step=step):
    for tag, value in metrics_lib.scalars(metrics).items():
      tf.summary.scalar(tag, value)
  summary.flush()
  logging.info("\n%s", table)
