"""Where everything lies in a workdir, and the files read and written there.

    from cnn_rnn_tf.workdir import layout
    layout.config_path("runs/demo")                  # "runs/demo/config.json"
    config = layout.load_config("runs/demo")         # on top of default_config()
    vocab = layout.load_vocab("runs/demo")
    thresholds = layout.load_thresholds("runs/demo", vocab)   # float32 [K] or None

This module owns every path (the table `LAYOUT`, see the package docstring); nobody else
joins names onto a workdir.
"""

from __future__ import annotations

import json
import os
import re

from absl import logging
import ml_collections
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import vocab as vocab_lib


# Every name in a workdir. The rule: the accessor of key `k` is `k_path(workdir)` for a file
# and `k_dir(workdir)` for a folder, defined by name below (tests/test_workdir.py checks each).
LAYOUT = {
    "config": "config.json",
    "config_history": "config_history.jsonl",
    "labels": "labels.txt",
    "checkpoints": "checkpoints",
    "best": "best",
    "best_json": os.path.join("best", "best.json"),
    "train": "train",
    "eval": "eval",
    "data_report": "data_report.json",
    "backbone_weights": "backbone.weights.h5",
    "thresholds": "thresholds.json",
    "compute": "compute.json",
    "lock": ".lock",
}


def _join(workdir: str, key: str) -> str:
  return os.path.join(workdir, LAYOUT[key])


def config_path(workdir: str) -> str:
  """`<workdir>/config.json`: the resolved config."""
  return _join(workdir, "config")


def config_history_path(workdir: str) -> str:
  """`<workdir>/config_history.jsonl`: the settings resumed runs changed."""
  return _join(workdir, "config_history")


def labels_path(workdir: str) -> str:
  """`<workdir>/labels.txt`: the label vocabulary in training order."""
  return _join(workdir, "labels")


def checkpoints_dir(workdir: str) -> str:
  """`<workdir>/checkpoints/`: the latest checkpoints."""
  return _join(workdir, "checkpoints")


def best_dir(workdir: str) -> str:
  """`<workdir>/best/`: the best checkpoint so far (train.keep_best)."""
  return _join(workdir, "best")


def best_json_path(workdir: str) -> str:
  """`<workdir>/best/best.json`: {"metric", "value", "step"} of the best checkpoint."""
  return _join(workdir, "best_json")


def train_dir(workdir: str) -> str:
  """`<workdir>/train/`: TensorBoard summaries and log.jsonl."""
  return _join(workdir, "train")


def eval_dir(workdir: str) -> str:
  """`<workdir>/eval/`: metrics.json, metrics.md, predictions.npz."""
  return _join(workdir, "eval")


def data_report_path(workdir: str) -> str:
  """`<workdir>/data_report.json`: the examples skipped as bad data."""
  return _join(workdir, "data_report")


def backbone_weights_path(workdir: str) -> str:
  """`<workdir>/backbone.weights.h5`: the trained backbone."""
  return _join(workdir, "backbone_weights")


def thresholds_path(workdir: str) -> str:
  """`<workdir>/thresholds.json`: the calibrated per-label thresholds."""
  return _join(workdir, "thresholds")


def lock_path(workdir: str) -> str:
  """`<workdir>/.lock`: host and pid of the trainer that holds the workdir."""
  return _join(workdir, "lock")


def compute_path(workdir: str) -> str:
  """`<workdir>/compute.json`: how the run's backbone computes (precision, XLA), resolved
  once when the run started (`workdir.compute`)."""
  return _join(workdir, "compute")


def feature_cache_dir(workdir: str, cache_dir: str | None) -> str:
  """`cache_dir` (the config's data.cache_dir) if set, else `feature_cache/` beside the
  workdir (shared by runs side by side)."""
  cache_dir = config_lib.optional_path(cache_dir)
  if cache_dir:
    return cache_dir
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), "feature_cache")


# ---------------------------------------------------------------------------------------------
# Config, labels and thresholds.
# ---------------------------------------------------------------------------------------------


def save_config(config, workdir: str) -> None:
  """Writes config.json: unset paths None, set paths absolute (evaluate from any folder)."""
  tf.io.gfile.makedirs(workdir)
  resolved = config_lib.resolve_paths(config)
  tmp = config_path(workdir) + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
  tf.io.gfile.rename(tmp, config_path(workdir), overwrite=True)


# Fields added after workdirs were written whose default builds another model than the one
# such a workdir holds: a config.json without the field gets this value instead of the
# default, so the checkpoint still restores (model.marginals: workdirs from before the side
# head; model.small_cnn_filters: those of the thin small CNN that was the default then).
LEGACY_VALUES = {"model.marginals": "joint_space", "model.small_cnn_filters": (16, 32, 64, 64)}


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved, on top of `default_config()` (fields added since; those
  of `LEGACY_VALUES` take the value that rebuilds the saved model)."""
  path = config_path(workdir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No config.json in workdir {workdir!r}: was it trained there?")
  with tf.io.gfile.GFile(path) as f:
    saved = json.load(f)
  model = saved.get("model", {})
  if "aux_bce_weight" in model:  # the side head's weight, under its former name
    model.setdefault("side_loss_weight", model.pop("aux_bce_weight"))
  config = config_lib.default_config()
  for name, value in LEGACY_VALUES.items():
    section, key = name.split(".")
    if key not in saved.get(section, {}):
      config[section][key] = value
  unknown = []
  for section, values in saved.items():
    if isinstance(values, dict) and section in config:
      for key, value in values.items():
        if key in config[section]:
          config[section][key] = value
        else:
          unknown.append(f"{section}.{key}")
    elif section in config and not isinstance(values, dict):
      config[section] = values
    else:
      unknown.append(section)
  if unknown:
    logging.warning("%s has fields this version does not know (ignored): %s", path,
                    ", ".join(sorted(unknown)))
  return config_lib.canonical(config)


def load_vocab(workdir: str) -> vocab_lib.LabelVocab:
  path = labels_path(workdir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No labels.txt in workdir {workdir!r}: was it trained there?")
  return vocab_lib.LabelVocab.load(path)


def load_or_make_vocab(source, workdir: str, chief: bool) -> vocab_lib.LabelVocab:
  """The workdir's labels.txt when resuming; else the training split's frequency order."""
  path = labels_path(workdir)
  if tf.io.gfile.exists(path):
    return vocab_lib.LabelVocab.load(path)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  if chief:
    vocab.save(path)
  return vocab


def save_thresholds(workdir: str, label_names, thresholds, *, step: int) -> None:
  """Writes thresholds.json: the calibrated threshold of each label of the weights of `step`."""
  thresholds = np.asarray(thresholds, np.float64)
  if thresholds.shape != (len(label_names),):
    raise ValueError(f"{len(label_names)} label names but thresholds of shape "
                     f"{thresholds.shape}; expected one threshold per label.")
  body = {"step": int(step),
          "thresholds": {str(n): float(t) for n, t in zip(label_names, thresholds)}}
  tmp = thresholds_path(workdir) + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(body, f, indent=2)
  tf.io.gfile.rename(tmp, thresholds_path(workdir), overwrite=True)


def load_thresholds(workdir: str, vocab: vocab_lib.LabelVocab,
                    checkpoint_path: str | None = None) -> np.ndarray | None:
  """float32 [K] calibrated thresholds in vocab order, or None when the workdir has none.

  Raises ValueError naming the labels that thresholds.json lacks or has beyond the vocab, or
  a threshold outside [0, 1]. Warns when `checkpoint_path` is of another step than the one
  the thresholds were fitted for.
  """
  path = thresholds_path(workdir)
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    body = json.load(f)
  by_name = body.get("thresholds") if isinstance(body, dict) else None
  if not isinstance(by_name, dict):
    raise ValueError(f"{path}: expected {{'step': int, 'thresholds': {{label: threshold}}}}.")
  missing = [n for n in vocab.names if n not in by_name]
  extra = sorted(set(by_name) - set(vocab.names))
  if missing or extra:
    raise ValueError(f"{path} does not match labels.txt: missing labels {missing}, "
                     f"unknown labels {extra}.")
  values = np.array([by_name[n] for n in vocab.names], np.float64)
  bad = [n for n, v in zip(vocab.names, values) if not 0 <= v <= 1]
  if bad:
    raise ValueError(f"{path}: thresholds of {bad} are outside [0, 1].")
  found = re.search(r"-(\d+)$", checkpoint_path or "")
  if found and int(found.group(1)) != body.get("step"):
    logging.warning("%s was fitted for the weights of step %s; %s is of step %s.", path,
                    body.get("step"), checkpoint_path, found.group(1))
  return values.astype(np.float32)
