"""Predictions of either head from backbone features, in TensorFlow ops.

One function serves evaluation and the exported SavedModel, so both decode identically:

    out = predict_from_features(head, features, beam_size=3, max_length=10, min_length=0)
    out["labels"]         # int32 [B, max_length], label ids (training order), -1 padded
    out["num_labels"]     # int32 [B]
    out["path_log_prob"]  # float32 [B]
    out["label_scores"]   # float32 [B, K], the per-label ranking score

CNN-RNN: beam search (`decoding.decode`); `label_scores` is the highest probability each
label gets at any step of the best path (see `decoding`).

BCE: the predicted set is every label with sigmoid probability >= 0.5, listed by decreasing
probability (at most `max_length`, at least `min_length`: the most probable labels fill up);
`label_scores` is the sigmoid probability; `path_log_prob` is the log-probability of the
returned set under the independent-labels model, sum_k log P(y_k = predicted_k).
"""

from __future__ import annotations

import keras
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import model as model_lib

OUTPUT_KEYS = ("labels", "num_labels", "path_log_prob", "label_scores")


def predict_from_features(head: keras.Model, features, *, beam_size: int, max_length: int,
                          min_length: int = 0) -> dict:
  """Decodes features [B, D] with the head; see the module docstring for the outputs."""
  features = tf.convert_to_tensor(features, tf.float32)
  if model_lib.head_kind(head) == "cnn_rnn":
    step = model_lib.CNNRNNStep(head)
    result = decoding.decode(step, step.initial_state(features), num_labels=step.num_labels,
                             beam_size=beam_size, max_length=max_length,
                             min_length=min_length)
    return result._asdict()
  logits = tf.cast(head(features, training=False), tf.float32)  # [B, K]
  num_labels = logits.shape[-1]
  length = decoding.check_lengths(num_labels, max_length, min_length)
  probs = tf.sigmoid(logits)
  top_p, top_ids = tf.math.top_k(probs, length)  # [B, L]
  rank = tf.range(length)[tf.newaxis, :]
  chosen = tf.logical_or(top_p >= 0.5, rank < min_length)  # [B, L], a prefix of each row
  labels = tf.where(chosen, top_ids, -1)
  picked = tf.reduce_any(tf.one_hot(tf.where(chosen, top_ids, num_labels), num_labels) > 0,
                         axis=1)  # [B, K]
  path_log_prob = tf.reduce_sum(
      tf.where(picked, tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)), axis=1)
  return {
      "labels": tf.cast(labels, tf.int32),
      "num_labels": tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1),
      "path_log_prob": path_log_prob,
      "label_scores": probs,
  }
