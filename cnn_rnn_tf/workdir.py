"""A workdir's files and the models they describe; shared by train, evaluate, export, visualize.

    config = workdir.load_config("runs/demo")                  # the resolved config.json
    vocab = workdir.load_vocab("runs/demo")                    # labels.txt
    backbone, head = workdir.build_models(config, vocab.num_labels)
    workdir.restore_weights(config, "runs/demo", backbone, head)   # latest checkpoint

Layout: config.json, labels.txt, checkpoints/ (head, the backbone when it was trained,
optimizer, step), train/ (summaries, log.jsonl), eval/ (metrics). A frozen backbone is not
checkpointed: its weights come from `config.model.backbone_weights` again.
"""

from __future__ import annotations

import json
import os

import ml_collections
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib


def save_config(config, workdir: str) -> None:
  tf.io.gfile.makedirs(workdir)
  with tf.io.gfile.GFile(os.path.join(workdir, "config.json"), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config a training run saved in its workdir."""
  path = os.path.join(workdir, "config.json")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No config.json in workdir {workdir!r}: was it trained there?")
  with tf.io.gfile.GFile(path) as f:
    return ml_collections.ConfigDict(json.load(f))


def load_vocab(workdir: str) -> vocab_lib.LabelVocab:
  path = os.path.join(workdir, "labels.txt")
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f"No labels.txt in workdir {workdir!r}: was it trained there?")
  return vocab_lib.LabelVocab.load(path)


def load_or_make_vocab(source, workdir: str, chief: bool) -> vocab_lib.LabelVocab:
  """The workdir's labels.txt when resuming; else the training split's frequency order."""
  path = os.path.join(workdir, "labels.txt")
  if tf.io.gfile.exists(path):
    return vocab_lib.LabelVocab.load(path)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  if chief:
    vocab.save(path)
  return vocab


def build_models(config, num_labels: int, policy: str | None = None):
  """(backbone, head) as the config says; the backbone carries its pretrained weights.

  `policy` (e.g. "mixed_bfloat16") applies to the backbone only; the head stays float32.
  """
  backbone = backbones.build_backbone(
      config.model.backbone, weights=config.model.backbone_weights,
      image_size=config.model.image_size, trainable=config.model.train_backbone,
      policy=policy)
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


def restore_weights(config, workdir: str, backbone, head) -> str:
  """Loads the latest checkpoint's model weights (for evaluation and export)."""
  latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  if latest is None:
    raise FileNotFoundError(f"No checkpoint in {os.path.join(workdir, 'checkpoints')!r}.")
  make_checkpoint(config, backbone, head).restore(latest).expect_partial()
  return latest


def uses_feature_cache(config) -> bool:
  """The paper's frozen setting: train the head on cached backbone features."""
  return not config.model.train_backbone and config.data.cache_features


def feature_cache_dir(config, workdir: str) -> str:
  """`data.cache_dir`, or `feature_cache/` beside the workdir (shared by runs side by side)."""
  if config.data.cache_dir:
    return config.data.cache_dir
  return os.path.join(os.path.dirname(os.path.abspath(workdir)), "feature_cache")
