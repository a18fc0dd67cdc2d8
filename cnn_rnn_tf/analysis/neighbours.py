"""Neighbours in the label embedding (paper Table 5) and in the joint space (paper Fig. 9).

    label_neighbours(head, vocab, k=3)                    # {name: [(name, distance), ...]}
    joint_neighbours(backbone, head, vocab, images, k=3)  # [N] lists of (name, distance)

Label neighbours (Table 5): the rows 0..K-1 of U_l, the head's label embedding. END (row K)
and START (row K+1) are left out: they are tokens, not labels (END's row is shaped by "stop
here", whatever the image shows). Distance: cosine distance 1 - cos(w_a, w_b), in [0, 2]
(default), or Euclidean (`metric="euclidean"`). Cosine because scores are dot products
U_l^T x_t: a row's norm acts as a label prior (frequent labels grow longer rows), its direction
is what the label means. The k nearest *other* labels, nearest first (ties by id).

Joint-space neighbours (Fig. 9): the image's point is U^x_I I, the head's image projection of
the backbone features (dropout off), compared with the label rows 0..K-1 with the same
distance. Note what it leaves out: the vector the model scores at step t is
x_t = h(U^x_o o(t) + U^x_I I) (docs/method.md, "Model"), so the RNN term and the
nonlinearity h are not in it; these neighbours are the image's own contribution, the same at
every step.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.analysis import attention
from cnn_rnn_tf.analysis import common

METRICS = ("cosine", "euclidean")


def check_metric(metric: str) -> None:
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}.")


def distances(queries: np.ndarray, table: np.ndarray, metric: str) -> np.ndarray:
  """queries [Q, d], table [K, d] -> distances [Q, K]."""
  check_metric(metric)
  if metric == "cosine":
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    t = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    return 1.0 - q @ t.T
  diff = queries[:, None, :] - table[None, :, :]  # [Q, K, d]
  return np.sqrt(np.sum(diff * diff, axis=-1))


def _nearest(dist_row: np.ndarray, names: Sequence[str], k: int, skip: int | None = None):
  """The k smallest entries of one row as [(name, distance)], nearest first, ties by id."""
  order = [i for i in np.argsort(dist_row, kind="stable") if i != skip][:k]
  return [(names[i], float(dist_row[i])) for i in order]


def _check_k(k: int, available: int) -> int:
  if k < 1:
    raise ValueError(f"The number of neighbours must be >= 1, got {k}.")
  return min(k, available)


def label_neighbours(head: keras.Model, vocab: vocab_lib.LabelVocab, k: int = 3,
                     metric: str = "cosine") -> dict[str, list[tuple[str, float]]]:
  """Each label's k nearest other labels in U_l (paper Table 5), nearest first.

  Args:
    head: a built CNN-RNN head.
    vocab: its vocabulary (K names, in id order).
    k: neighbours per label (at most K - 1 are returned).
    metric: "cosine" (1 - cosine similarity) or "euclidean".

  Returns:
    {label name: [(neighbour name, distance), ...]} in vocabulary order.
  """
  check_metric(metric)
  table = common.label_rows(head)  # [K, d]
  common.check_vocab(vocab, table.shape[0])
  k = _check_k(k, vocab.num_labels - 1)
  dist = distances(table, table, metric)  # [K, K]
  return {name: _nearest(dist[i], vocab.names, k, skip=i) for i, name in enumerate(vocab.names)}


def joint_neighbours(backbone: keras.Model, head: keras.Model, vocab: vocab_lib.LabelVocab,
                     images, k: int = 3,
                     metric: str = "cosine") -> list[list[tuple[str, float]]]:
  """Each image's k nearest labels in the joint space (paper Fig. 9), nearest first.

  Args:
    backbone, head: the models of a workdir (`common.load_cnn_rnn`).
    vocab: the head's vocabulary.
    images: uint8 (or 0..255 float) [N, H, W, 3], or a list of [H, W, 3] of any sizes.
    k: neighbours per image (at most K).
    metric: "cosine" or "euclidean".

  Returns:
    N lists of (label name, distance between U^x_I I and the label's row of U_l).
  """
  inputs = attention.model_inputs(backbone, images)  # [N, S, S, 3]
  _, features = attention.conv_and_features(attention.activation_model(backbone), inputs)
  return joint_from_features(head, vocab, features, k, metric)


def joint_from_features(head, vocab, features, k: int = 3,
                        metric: str = "cosine") -> list[list[tuple[str, float]]]:
  """`joint_neighbours` from backbone features [N, D]."""
  check_metric(metric)
  table = common.label_rows(head)  # [K, d]
  common.check_vocab(vocab, table.shape[0])
  k = _check_k(k, vocab.num_labels)
  dist = distances(common.image_embeddings(head, features), table, metric)  # [N, K]
  return [_nearest(row, vocab.names, k) for row in dist]
