"""What the analysis modules share: a trained CNN-RNN workdir, the head's tables, the path.

    trained = common.load_cnn_rnn("runs/demo/seed0/cnn_rnn")    # a workdir.Trained
    config, vocab, backbone, head = trained.config, trained.vocab, trained.backbone, trained.head
    rows = common.label_rows(head)                     # float32 [K, d], U_l without END/START
    paths = common.predict_paths(head, features, **common.decode_args(config))

The public functions of the analysis modules take a workdir path or what `load_cnn_rnn`
returned, so a caller that runs several of them reads the workdir once.

The head's layers are reached only through its step function (`model.head_step`), never
looked up by name here; the workdir is restored by `workdir.load_trained` (its checkpoint
rule: "auto" = the best checkpoint when the run kept one, else the latest).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import inference
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

BATCH = 32  # images (or image x step rows) per forward pass


def check_cnn_rnn(head: keras.Model) -> None:
  if model_lib.head_kind(head) != "cnn_rnn":
    raise ValueError(f"Needs a cnn_rnn head (label embedding, RNN steps), got {head.name!r}.")


def check_vocab(vocab: vocab_lib.LabelVocab, num_rows: int) -> None:
  if vocab.num_labels != num_rows:
    raise ValueError(f"The vocabulary has {vocab.num_labels} labels but the head's label "
                     f"embedding has {num_rows} label rows.")


def step_of(head: keras.Model) -> model_lib.CNNRNNStep:
  """The head's step function (its layers: label embedding, image projection, ...)."""
  check_cnn_rnn(head)
  return model_lib.head_step(head)


def num_labels(head: keras.Model) -> int:
  """K of a CNN-RNN head."""
  return int(step_of(head).num_labels)


def label_rows(head: keras.Model) -> np.ndarray:
  """U_l rows 0..K-1 (the labels, without END and START): float32 [K, d]."""
  step = step_of(head)
  table = keras.ops.convert_to_numpy(step.label_embedding.embeddings)  # [K + 2, d]
  return table.astype(np.float32)[:step.num_labels]


def image_embeddings(head: keras.Model, features) -> np.ndarray:
  """U^x_I I: the head's image projection of backbone features [N, D] -> float32 [N, d]."""
  projection = step_of(head).image_projection
  out = projection(tf.convert_to_tensor(features, tf.float32))  # [N, d]
  return keras.ops.convert_to_numpy(out).astype(np.float32)


def load_cnn_rnn(workdir: "str | workdir_lib.Trained",
                 checkpoint: str = "auto") -> workdir_lib.Trained:
  """A trained CNN-RNN workdir (`workdir.load_trained`, weights restored), read once.

  `workdir`: a workdir path, or a `workdir.Trained` already loaded (returned as it is, after
  the head check). `checkpoint`: "auto" | "latest" | "best" | a path (`workdir.load_trained`'s
  rule). A workdir of another head raises ValueError naming it, before models are built.
  """
  if isinstance(workdir, workdir_lib.Trained):
    if workdir.config.model.head != "cnn_rnn":
      raise ValueError(f"Checkpoint {workdir.checkpoint_path!r} has a "
                       f"{workdir.config.model.head!r} head; this needs a 'cnn_rnn' head.")
    return workdir
  return workdir_lib.load_trained(workdir, checkpoint, require_head="cnn_rnn")


def decode_args(config) -> dict[str, int]:
  """The beam search settings of a config (`config.decode`)."""
  return dict(beam_size=int(config.decode.beam_size), max_length=int(config.decode.max_length),
              min_length=int(config.decode.min_length))


def predict_paths(head, features, beam_size, max_length, min_length) -> list[list[int]]:
  """The beam-search path of each image's features [N, D]: N lists of label ids."""
  out = inference.predict_from_features(head, features, beam_size=beam_size,
                                        max_length=max_length, min_length=min_length)
  labels = keras.ops.convert_to_numpy(out["labels"])  # [N, L], -1 padded
  return [[int(l) for l in row if l >= 0] for row in labels]
