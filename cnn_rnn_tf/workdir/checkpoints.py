"""The trained models of a workdir: build them, find a checkpoint, restore it strictly.

    from cnn_rnn_tf.workdir import checkpoints
    trained = checkpoints.load_trained("runs/demo")         # checkpoint="auto"
    trained.config, trained.vocab, trained.backbone, trained.head, trained.checkpoint_path,
    trained.thresholds                                      # float32 [K] (calibrated bce) or None

Which checkpoint (`--checkpoint`, the one rule, `resolve_checkpoint`): see the package
docstring. Restoring is strict: the checkpoint must hold exactly the variables the saved
config builds (head, and backbone when it was trained); a mismatch names the fields and
shapes.
"""

from __future__ import annotations

import collections
import os
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
from cnn_rnn_tf import optim
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import precision as precision_lib
from cnn_rnn_tf.workdir import compute as compute_lib
from cnn_rnn_tf.workdir import layout

CHECKPOINT_RULES = ("auto", "latest", "best")
# Which weights of a checkpoint (`load_trained(weights=...)`): "auto" the EMA when the run
# kept one (train.ema_decay > 0), else the trained weights; "raw" the trained weights.
WEIGHTS = ("auto", "raw")


class Trained(NamedTuple):
  """What `load_trained` returns."""
  config: ml_collections.ConfigDict
  vocab: vocab_lib.LabelVocab
  backbone: keras.Model
  head: keras.Model
  checkpoint_path: str
  thresholds: np.ndarray | None  # float32 [K]: calibrated thresholds (bce: of its
  # probabilities; cnn_rnn: of its marginals), else None
  compute: dict | None = None  # {"precision", "jit", "source", "legacy"}: how the backbone
  # computes (`workdir.compute.for_inference`: compute.json's inference entry, or an override)


class CheckpointMismatchError(ValueError):
  """A checkpoint that does not hold the model the config describes."""


class CorruptCheckpointError(CheckpointMismatchError):
  """A checkpoint whose files cannot be read (e.g. truncated by a full disk)."""

_READ_ERRORS = (tf.errors.OpError, IndexError, ValueError)  # what a truncated file raises


def remove_temp_checkpoints(workdir: str) -> list[str]:
  """Deletes the `<prefix>_temp/` folders a failed save (e.g. a full disk) left in the
  workdir's checkpoints/ and best/; returns their paths, each logged.

  Call at the start of training, before anything saves there (the trainer holds the lock).
  """
  removed = []
  for directory in (layout.checkpoints_dir(workdir), layout.best_dir(workdir)):
    if not tf.io.gfile.isdir(directory):
      continue
    for name in sorted(tf.io.gfile.listdir(directory)):
      path = os.path.join(directory, name.rstrip("/"))
      if name.rstrip("/").endswith("_temp") and tf.io.gfile.isdir(path):
        logging.warning("Removing %s, left by an interrupted checkpoint save.", path)
        tf.io.gfile.rmtree(path)
        removed.append(path)
  return removed


def build_backbone_and_head(config, num_labels: int, policy: str | None = None):
  """(backbone, head) as the config says; the backbone carries its pretrained weights.

  `policy` (e.g. "mixed_bfloat16") applies to the backbone only; the head stays float32.
  """
  backbone = backbones.build_backbone(
      config.model.backbone, weights=config_lib.optional_path(config.model.backbone_weights),
      image_size=config.model.image_size, trainable=config.model.train_backbone,
      policy=policy, filters=config.model.small_cnn_filters)
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


def rng_state(*models) -> dict:
  """{"<model>.<layer>": state} of every layer's SeedGenerator (dropout, augmentation).

  Keyed by layer names (stable across builds), not by variable paths (a global counter).
  """
  states = {}
  pending = [(m.name, m) for m in models]
  while pending:
    prefix, layer = pending.pop()
    generator = getattr(layer, "seed_generator", None)
    if generator is not None:
      states[prefix] = generator.state
    pending += [(f"{prefix}.{sub.name}", sub) for sub in getattr(layer, "layers", [])]
  return states


# What a checkpoint's root may hold (make_checkpoint's items; training adds its dropout state).
_ITEMS = ("head", "backbone", "optimizer", "step", "rng")


def restore_checkpoint(checkpoint: tf.train.Checkpoint, path: str):
  """`checkpoint.restore(path)` (its load status), also for the checkpoints written while the
  CNN-RNN's side head was an attribute of the head: their object path `head/marginal_head`
  restores into the head's graph layer "marginal_head" (the head's other paths, by position
  in the graph, are unchanged)."""
  if not _side_head_attribute(path):
    return checkpoint.restore(path)
  items = {name: getattr(checkpoint, name) for name in _ITEMS if hasattr(checkpoint, name)}
  head = items["head"]
  as_then = tf.Module(name="head_as_saved")  # the head's object graph as it was then
  as_then._operations = list(head._operations)  # pylint: disable=protected-access
  as_then.marginal_head = head.get_layer("marginal_head")
  items["head"] = as_then
  return tf.train.Checkpoint(**items).restore(path)


def _side_head_attribute(path: str) -> bool:
  """Whether the checkpoint's head has a child `marginal_head` (the side head as attribute)."""
  try:
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(tf.train.load_checkpoint(path).get_tensor(
        "_CHECKPOINTABLE_OBJECT_GRAPH"))
  except _READ_ERRORS:
    return False  # unreadable: the restore itself reports it
  heads = [c.node_id for c in graph.nodes[0].children if c.local_name == "head"]
  return any(c.local_name == "marginal_head" for h in heads for c in graph.nodes[h].children)


def resolve_checkpoint(workdir: str, checkpoint: str = "auto") -> str:
  """The checkpoint prefix that `checkpoint` (auto | latest | best | <path>) names.

  See the module docstring for the rule. Raises FileNotFoundError naming where it looked.
  """
  checkpoint = checkpoint or "auto"
  if checkpoint in ("auto", "best"):
    best = tf.train.latest_checkpoint(layout.best_dir(workdir))
    if best is not None:
      return best
    if checkpoint == "best":
      raise FileNotFoundError(
          f"No best checkpoint in {layout.best_dir(workdir)!r}: the run did not keep one "
          "(train.keep_best). Use --checkpoint=latest or auto.")
  if checkpoint in ("auto", "latest"):
    latest = tf.train.latest_checkpoint(layout.checkpoints_dir(workdir))
    if latest is None:
      raise FileNotFoundError(
          f"No checkpoint in {layout.checkpoints_dir(workdir)!r}: was the workdir trained?")
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
  except _READ_ERRORS as e:
    raise CorruptCheckpointError(f"Cannot read checkpoint {path!r} ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]})") from e
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


def restore_model(config, path: str, backbone, head, weights: str = "auto") -> None:
  """Restores head (and trained backbone) strictly from checkpoint prefix `path`.

  weights="auto" with `train.ema_decay > 0`: the models get the EMA weights. The EMA lives
  in the checkpoint's optimizer (Keras' `use_ema`), so the optimizer is built, restored with
  the models, and `finalize_variable_values` copies its averages into them.
  """
  if weights not in WEIGHTS:
    raise ValueError(f"weights={weights!r}: expected one of {WEIGHTS}.")
  check_checkpoint(config, path, backbone, head)
  optimizer = None
  if weights == "auto" and optim.uses_ema(config):
    variables = optim.trained_variables(config, backbone, head)
    optimizer = optim.make_optimizer(config)
    optimizer.build(variables)
  try:
    status = restore_checkpoint(make_checkpoint(config, backbone, head, optimizer), path)
  except _READ_ERRORS as e:
    raise CorruptCheckpointError(f"Cannot read checkpoint {path!r} ({type(e).__name__}: "
                                 f"{str(e).splitlines()[0][:200]})") from e
  try:
    status.assert_existing_objects_matched()
  except AssertionError as e:
    raise CheckpointMismatchError(
        f"Checkpoint {path!r} does not match the config: {str(e)[:500]}") from e
  status.expect_partial()  # the optimizer and step in a training checkpoint are not wanted
  if optimizer is not None:
    optimizer.finalize_variable_values(variables)


def restore_weights(config, workdir: str, backbone, head, checkpoint: str = "auto") -> str:
  """Restores the workdir's `checkpoint` (see `resolve_checkpoint`) into the models; its path."""
  path = resolve_checkpoint(workdir, checkpoint)
  restore_model(config, path, backbone, head)
  return path


def _older_checkpoints(path: str) -> list[str]:
  """The checkpoints of `path`'s folder older than `path`, newest first."""
  state = tf.train.get_checkpoint_state(os.path.dirname(path))
  found = list(state.all_model_checkpoint_paths) if state else []
  found = [p if os.path.isabs(p) or "://" in p else os.path.join(os.path.dirname(path), p)
           for p in found]
  if path not in found:
    return []
  return list(reversed(found[:found.index(path)]))


def _restore_or_fall_back(config, path: str, backbone, head, checkpoint: str,
                          weights: str = "auto") -> str:
  """Restores `path`; a corrupt one falls back to the newest readable older checkpoint of its
  folder with a warning naming the bad one. Returns the path restored.

  Raises CorruptCheckpointError with a `--checkpoint=` hint when none is readable (or when
  `checkpoint` named one exact checkpoint).
  """
  bad = []
  candidates = [path] + ([] if path == checkpoint else _older_checkpoints(path))
  for candidate in candidates:
    try:
      restore_model(config, candidate, backbone, head, weights)
    except CorruptCheckpointError as e:
      bad.append(f"{candidate} ({e})")
      logging.warning("Checkpoint %s is corrupt: %s", candidate, e)
      continue
    if bad:
      logging.warning("Falling back to %s: the newer %s cannot be read.", candidate,
                      ", ".join(b.split(" ", 1)[0] for b in bad))
    return candidate
  raise CorruptCheckpointError(
      "No readable checkpoint: " + "; ".join(bad) + ". Name another with --checkpoint= "
      "(latest | best | a checkpoint prefix such as <workdir>/checkpoints/ckpt-N), or "
      "delete the corrupt files.")


def load_trained(workdir: str, checkpoint: str = "auto", policy: str | None = None, *,
                 require_head: str | None = None, precision: str | None = None,
                 jit: str | None = None, weights: str = "auto") -> Trained:
  """Everything evaluate, export and visualize need of a workdir, read once.

  The config, vocabulary and models restored from `checkpoint` (strict), and the calibrated
  thresholds (thresholds.json: of a bce head's probabilities or a cnn_rnn head's marginals;
  None without it). Callers
  pass the result down rather than reading the workdir again.

  Args:
    workdir: a workdir written by `cnn_rnn_tf.train`.
    checkpoint: "auto" | "latest" | "best" | a checkpoint path (the module docstring's rule).
    policy: Keras dtype policy of the backbone, e.g. "mixed_bfloat16" (the head is
      float32); None: compute.json's inference precision, or `precision`.
    precision, jit: "on" | "off" override compute.json's inference entry (named in
      `compute["source"]`); None: the record. A workdir without compute.json (saved before
      it existed) loads as before, in float32 without XLA, with a warning.
    require_head: e.g. "cnn_rnn": a workdir of another `model.head` raises ValueError
      before any model is built.
    weights: "auto": the EMA weights when the run kept them (train.ema_decay > 0), else the
      trained ones; "raw": the trained weights (`WEIGHTS`, `restore_model`).

  Raises:
    FileNotFoundError: no config.json, labels.txt or checkpoint.
    ValueError: a thresholds.json that does not match labels.txt.
    CheckpointMismatchError: the checkpoint does not hold the model config.json describes.
    CorruptCheckpointError: no readable checkpoint (a corrupt latest one falls back to the
      newest readable one of its folder, with a warning naming the bad file).
  """
  config = layout.load_config(workdir)
  if require_head is not None and config.model.head != require_head:
    raise ValueError(f"Workdir {workdir!r} has a {config.model.head!r} head; this needs a "
                     f"{require_head!r} head.")
  vocab = layout.load_vocab(workdir)
  path = resolve_checkpoint(workdir, checkpoint)
  used = compute_lib.for_inference(workdir, config, precision, jit)
  if policy is not None:  # an explicit Keras policy (benchmarks) wins
    used.update(precision="bfloat16" if "bfloat16" in policy else "float32",
                source=f"policy argument {policy!r}")
  policy = precision_lib.keras_policy(used["precision"])
  backbone, head = build_backbone_and_head(config, vocab.num_labels, policy=policy)
  path = _restore_or_fall_back(config, path, backbone, head, checkpoint, weights)
  thresholds = layout.load_thresholds(workdir, vocab, path)  # float32 [K] or None
  logging.info("Loaded %s (%s head, %d labels%s; backbone in %s%s, %s).", path,
               config.model.head, vocab.num_labels,
               ", calibrated thresholds" if thresholds is not None else "", used["precision"],
               " + XLA" if used["jit"] else "", used["source"])
  return Trained(config, vocab, backbone, head, path, thresholds, used)


