"""A workdir's layout, and the trained models it holds; shared by train, evaluate, export.

    from cnn_rnn_tf import workdir
    trained = workdir.load_trained("runs/demo")                 # checkpoint="auto"
    trained.config, trained.vocab, trained.backbone, trained.head, trained.checkpoint_path

    with workdir.lock("runs/demo"):                             # the trainer, chief only
      workdir.check_resume(config, "runs/demo")                 # before anything is written
      workdir.save_config(config, "runs/demo")

Layout (this module owns every path; nobody else joins names onto a workdir):

  config.json          the resolved config, optional paths absolute (`config_path`)
  labels.txt           the label vocabulary in training order, id = line number (`labels_path`)
  checkpoints/         the latest checkpoints: head, the backbone when it was trained,
                       optimizer, step (`checkpoint_dir`)
  best/                the best checkpoint so far, `best/ckpt-<step>`, when the run kept one
                       (`train.keep_best`), and best/best.json {"metric", "value", "step"}
                       (`best_dir`, `best_json_path`)
  train/               TensorBoard summaries and log.jsonl (`train_dir`)
  eval/                metrics.json, metrics.md, predictions.npz (`eval_dir`)
  data_report.json     examples skipped as bad data, by reason (`data_report_path`)
  backbone.weights.h5  the trained backbone, reusable as a frozen `model.backbone_weights`
                       (`backbone_weights_path`)
  thresholds.json      bce: {"step", "thresholds": {label name: threshold}}, per-class
                       thresholds fitted on the held-out part of the training split
                       (calibration.py); evaluate and export use them (`thresholds_path`,
                       `save_thresholds`, `load_thresholds`)
  .lock                host and pid of the trainer that holds the workdir (`lock`)

A frozen backbone is not checkpointed: its weights come from `config.model.backbone_weights`
again (an absolute path in config.json).

Which checkpoint evaluate and export take (`--checkpoint`, the one rule, `resolve_checkpoint`):

  auto    (default) best/ when the run kept a best checkpoint, else the latest in checkpoints/
  latest  the latest in checkpoints/
  best    the one in best/ (an error when the run kept none)
  <path>  a checkpoint prefix (`.../ckpt-300`) or a folder of checkpoints (its latest)

Restoring is strict: the checkpoint must hold exactly the variables the saved config builds
(head, and backbone when it was trained); a mismatch names the fields and shapes.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import re
import socket
from typing import NamedTuple

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import process
from cnn_rnn_tf import vocab as vocab_lib

CHECKPOINT_RULES = ("auto", "latest", "best")
# Fields that may change when a run resumes (besides train.*, decode.* and seed): where the
# data lie and how the backbone computes, not what is learned.
RESUME_MAY_CHANGE = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.precision",
                     "data.check_images", "data.skip_bad_examples", "data.deterministic")


# ---------------------------------------------------------------------------------------------
# Paths.
# ---------------------------------------------------------------------------------------------


# Every name in a workdir; `<key>_path(w)` / `<key>_dir(w)` below join them onto a workdir.
LAYOUT = {
    "config": "config.json",
    "labels": "labels.txt",
    "checkpoints": "checkpoints",
    "best": "best",
    "best_json": os.path.join("best", "best.json"),
    "train": "train",
    "eval": "eval",
    "data_report": "data_report.json",
    "backbone_weights": "backbone.weights.h5",
    "thresholds": "thresholds.json",
    "lock": ".lock",
}


def _layout_path(key: str):
  def path(workdir: str) -> str:
    return os.path.join(workdir, LAYOUT[key])
  path.__doc__ = f"`<workdir>/{LAYOUT[key]}`."
  return path


config_path = _layout_path("config")
labels_path = _layout_path("labels")
checkpoint_dir = _layout_path("checkpoints")
best_dir = _layout_path("best")
best_json_path = _layout_path("best_json")
train_dir = _layout_path("train")
eval_dir = _layout_path("eval")
data_report_path = _layout_path("data_report")
backbone_weights_path = _layout_path("backbone_weights")
lock_path = _layout_path("lock")
thresholds_path = _layout_path("thresholds")


def feature_cache_dir(config, workdir: str) -> str:
  """`data.cache_dir`, or `feature_cache/` beside the workdir (shared by runs side by side)."""
  cache_dir = config_lib.optional_path(config.data.cache_dir)
  if cache_dir:
    return cache_dir
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), "feature_cache")


# ---------------------------------------------------------------------------------------------
# Config and labels.
# ---------------------------------------------------------------------------------------------


def save_config(config, workdir: str) -> None:
  """Writes config.json: unset paths None, set paths absolute (evaluate from any folder)."""
  tf.io.gfile.makedirs(workdir)
  resolved = config_lib.resolve_paths(config)
  tmp = config_path(workdir) + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    f.write(resolved.to_json_best_effort(indent=2, sort_keys=True))
  tf.io.gfile.rename(tmp, config_path(workdir), overwrite=True)


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The config a training run saved, on top of `default_config()` (fields added since)."""
  path = config_path(workdir)
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No config.json in workdir {workdir!r}: was it trained there?")
  with tf.io.gfile.GFile(path) as f:
    saved = json.load(f)
  config = config_lib.default_config()
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


# model.* fields that one head alone reads: a change does not stop another head's workdir from
# resuming (a BCE run trained before the default of model.aux_bce_weight changed resumes).
ONLY_FOR_HEAD = {"model.aux_bce_weight": "cnn_rnn"}


def _differences(saved, config, prefixes) -> list[str]:
  saved_flat = dict(zip(config_lib.field_names(saved),
                        (config_lib._get(saved, n) for n in config_lib.field_names(saved))))  # pylint: disable=protected-access
  new_flat = dict(zip(config_lib.field_names(config),
                      (config_lib._get(config, n) for n in config_lib.field_names(config))))  # pylint: disable=protected-access
  lines = []
  for name in sorted(set(saved_flat) | set(new_flat)):
    if not name.startswith(prefixes) or name in RESUME_MAY_CHANGE:
      continue
    if name in ONLY_FOR_HEAD and ONLY_FOR_HEAD[name] not in (saved.model.head,
                                                             config.model.head):
      continue
    old, new = saved_flat.get(name), new_flat.get(name)
    if old != new:
      lines.append(f"{name}: saved {old!r}, now {new!r}")
  return lines


def check_resume(config, workdir: str) -> None:
  """Refuses to resume a workdir with another model or data; call before writing anything.

  Compares `config` with the workdir's config.json (if any): a changed model.* or data.*
  field raises ValueError naming every differing field. train.*, decode.*, seed and the
  locations in `RESUME_MAY_CHANGE` may change.
  """
  if not tf.io.gfile.exists(config_path(workdir)):
    return
  saved = load_config(workdir)
  new = config_lib.resolve_paths(config)
  diffs = _differences(saved, new, ("model.", "data."))
  if diffs:
    raise ValueError(
        f"Workdir {workdir!r} was trained with another model or data; resuming would mix "
        "them. Use a new --workdir, or set these back:\n" +
        "\n".join(f"  {d}" for d in diffs))


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


# ---------------------------------------------------------------------------------------------
# Models and checkpoints.
# ---------------------------------------------------------------------------------------------


class Trained(NamedTuple):
  """What `load_trained` returns."""
  config: ml_collections.ConfigDict
  vocab: vocab_lib.LabelVocab
  backbone: keras.Model
  head: keras.Model
  checkpoint_path: str


class CheckpointMismatchError(ValueError):
  """A checkpoint that does not hold the model the config describes."""


def build_models(config, num_labels: int, policy: str | None = None):
  """(backbone, head) as the config says; the backbone carries its pretrained weights.

  `policy` (e.g. "mixed_bfloat16") applies to the backbone only; the head stays float32.
  """
  backbone = backbones.build_backbone(
      config.model.backbone, weights=config_lib.optional_path(config.model.backbone_weights),
      image_size=config.model.image_size, trainable=config.model.train_backbone,
      policy=policy, filters=config.model.get("small_cnn_filters"))
  head = model_lib.build_head(config.model, backbone.output_shape[-1], num_labels)
  return backbone, head


def make_checkpoint(config, backbone, head, optimizer=None, step=None) -> tf.train.Checkpoint:
  """What a checkpoint holds. A frozen backbone is not saved: its weights come from config."""
  items = {"head": head}
  if config.model.train_backbone:
    items["backbone"] = backbone
  if optimizer is not None:
    items["optimizer"] = optimizer
  if step is not None:
    items["step"] = step
  return tf.train.Checkpoint(**items)


def resolve_checkpoint(workdir: str, checkpoint: str = "auto") -> str:
  """The checkpoint prefix that `checkpoint` (auto | latest | best | <path>) names.

  See the module docstring for the rule. Raises FileNotFoundError naming where it looked.
  """
  checkpoint = checkpoint or "auto"
  if checkpoint in ("auto", "best"):
    best = tf.train.latest_checkpoint(best_dir(workdir))
    if best is not None:
      return best
    if checkpoint == "best":
      raise FileNotFoundError(
          f"No best checkpoint in {best_dir(workdir)!r}: the run did not keep one "
          "(train.keep_best). Use --checkpoint=latest or auto.")
  if checkpoint in ("auto", "latest"):
    latest = tf.train.latest_checkpoint(checkpoint_dir(workdir))
    if latest is None:
      raise FileNotFoundError(
          f"No checkpoint in {checkpoint_dir(workdir)!r}: was the workdir trained?")
    return latest
  if tf.io.gfile.isdir(checkpoint):
    latest = tf.train.latest_checkpoint(checkpoint)
    if latest is None:
      raise FileNotFoundError(f"No checkpoint in folder {checkpoint!r} (--checkpoint).")
    return latest
  if not tf.io.gfile.exists(checkpoint + ".index"):
    raise FileNotFoundError(
        f"Checkpoint {checkpoint!r} does not exist (no {checkpoint}.index); expected "
        f"one of {CHECKPOINT_RULES}, a checkpoint prefix or a folder of checkpoints.")
  return checkpoint


def _shapes(variables) -> list[tuple[int, ...]]:
  return sorted(tuple(int(d) for d in v.shape) for v in variables)


def _variables_by_root(path: str) -> dict[str, list[tuple[int, ...]]]:
  """{"head": shapes of the variables reachable from the checkpoint's `head`, ...}.

  Walks the checkpoint's object graph: a variable is stored once, under the first path that
  reaches it (often the optimizer's), so names alone do not tell whose it is.
  """
  reader = tf.train.load_checkpoint(path)
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
  shapes = reader.get_variable_to_shape_map()
  result = {}
  for child in graph.nodes[0].children:
    keys, seen, todo = set(), set(), [child.node_id]
    while todo:
      node_id = todo.pop()
      if node_id in seen:
        continue
      seen.add(node_id)
      node = graph.nodes[node_id]
      keys.update(a.checkpoint_key for a in node.attributes if a.name == "VARIABLE_VALUE")
      todo.extend(c.node_id for c in node.children)
    result[child.local_name] = [tuple(shapes[k]) for k in keys if k in shapes]
  return result


def check_checkpoint(config, path: str, backbone, head) -> None:
  """Raises CheckpointMismatchError unless `path` holds the models `config` builds."""
  try:
    by_root = _variables_by_root(path)
  except (tf.errors.OpError, ValueError) as e:
    raise CheckpointMismatchError(f"Cannot read checkpoint {path!r}: {e}") from e
  what = (f"model.head={config.model.head!r}, model.backbone={config.model.backbone!r}, "
          f"model.train_backbone={config.model.train_backbone}")
  problems = []
  wanted = {"head": head}
  if config.model.train_backbone:
    wanted["backbone"] = backbone
  elif "backbone" in by_root:
    problems.append("it holds a trained backbone, but the config's backbone is frozen "
                    "(model.train_backbone=False)")
  for root, model in wanted.items():
    expected, found = _shapes(model.weights), sorted(by_root.get(root, []))
    # Besides the weights, a checkpoint may hold a model's other state (e.g. dropout seeds).
    weight_ids = {id(v) for v in model.weights}
    optional = collections.Counter(_shapes(v for v in model.variables if id(v) not in weight_ids))
    missing = collections.Counter(expected) - collections.Counter(found)
    extra = collections.Counter(found) - collections.Counter(expected)
    if not found:
      problems.append(f"it has no {root} variables")
    elif missing or extra - optional:
      problems.append(f"its {root} has {len(found)} variables of shapes {found[:6]}"
                      f"{'...' if len(found) > 6 else ''}, the config builds {len(expected)} "
                      f"of shapes {expected[:6]}{'...' if len(expected) > 6 else ''} "
                      f"(model.head={config.model.head!r}, "
                      f"embedding_dim={config.model.embedding_dim}, "
                      f"lstm_units={config.model.lstm_units})")
  if problems:
    raise CheckpointMismatchError(
        f"Checkpoint {path!r} does not match the config ({what}): " + "; ".join(problems) +
        ". Was config.json changed after training, or the checkpoint taken from another run?")


def restore_model(config, path: str, backbone, head) -> None:
  """Restores head (and trained backbone) strictly from checkpoint prefix `path`."""
  check_checkpoint(config, path, backbone, head)
  status = make_checkpoint(config, backbone, head).restore(path)
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise CheckpointMismatchError(
        f"Checkpoint {path!r} does not match the config: {str(e)[:500]}") from e
  status.expect_partial()  # the optimizer and step in a training checkpoint are not wanted


def restore_weights(config, workdir: str, backbone, head, checkpoint: str = "auto") -> str:
  """Restores the workdir's `checkpoint` (see `resolve_checkpoint`) into the models; its path."""
  path = resolve_checkpoint(workdir, checkpoint)
  restore_model(config, path, backbone, head)
  return path


def load_trained(workdir: str, checkpoint: str = "auto", policy: str | None = None) -> Trained:
  """The workdir's config, vocabulary and models, restored from `checkpoint` (strict).

  Args:
    workdir: a workdir written by `cnn_rnn_tf.train`.
    checkpoint: "auto" | "latest" | "best" | a checkpoint path (the module docstring's rule).
    policy: Keras dtype policy of the backbone, e.g. "mixed_bfloat16"; the head is float32.

  Raises:
    FileNotFoundError: no config.json, labels.txt or checkpoint.
    CheckpointMismatchError: the checkpoint does not hold the model config.json describes.
  """
  config = load_config(workdir)
  vocab = load_vocab(workdir)
  path = resolve_checkpoint(workdir, checkpoint)
  backbone, head = build_models(config, vocab.num_labels, policy=policy)
  restore_model(config, path, backbone, head)
  logging.info("Loaded %s (%s head, %d labels).", path, config.model.head, vocab.num_labels)
  return Trained(config, vocab, backbone, head, path)


# ---------------------------------------------------------------------------------------------
# Lock.
# ---------------------------------------------------------------------------------------------


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir."""



def _read_lock(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `<workdir>/.lock` (host and pid) while the block runs; for the trainer.

  A live holder raises WorkdirLockedError naming its host and pid. A lock left by a dead
  process on this host is taken over with a warning; one from another host cannot be
  checked, so it is refused (delete the .lock file if that run is gone). Only local
  folders are locked (a remote workdir, e.g. gs://, logs a warning). Evaluate and export
  do not take the lock: they read finished checkpoints.
  """
  if "://" in workdir:
    logging.warning("Workdir %s is not on a local file system: not locked.", workdir)
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = lock_path(workdir)
  me = {"host": socket.gethostname(), "pid": os.getpid()}
  tmp = f"{path}.{me['host']}.{me['pid']}"
  with open(tmp, "w") as f:
    json.dump(me, f)
  try:
    for _ in range(3):
      try:
        os.link(tmp, path)  # atomic: fails if the lock exists
        break
      except FileExistsError:
        holder = _read_lock(path)
        host, pid = holder.get("host"), holder.get("pid")
        if host == me["host"] and isinstance(pid, int) and pid != me["pid"] and not process.alive(pid):
          logging.warning("Taking over the stale lock %s of process %d on %s (not running).",
                          path, pid, host)
          with contextlib.suppress(FileNotFoundError):
            os.remove(path)
          continue
        if not holder:
          raise WorkdirLockedError(
              f"Workdir {workdir!r} is locked ({path} exists but is unreadable); if no "
              "trainer runs there, delete that file.")
        raise WorkdirLockedError(
            f"Workdir {workdir!r} is in use by process {pid} on host {host} ({path}). Wait "
            "for it, or use another --workdir; if that process is gone, delete the lock file.")
    else:
      raise WorkdirLockedError(f"Could not take the lock {path}.")
  finally:
    os.remove(tmp)
  try:
    yield
  finally:
    if _read_lock(path) == me:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
