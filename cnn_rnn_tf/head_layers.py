"""The CNN-RNN head's own layers, and its one-step view for decoding.

`model.build_cnn_rnn_head` wires these into the head (see `model.py` for the equations):

    U_l  = TiedLabelEmbedding(num_labels=K, embedding_dim=d)   # embeds ids, scores [.., K + 1]
    x_t  = JointSpace("relu")([o_proj, i_proj])                # [B, T, d] + [B, d] -> [B, T, d]

Decoding needs the CNN-RNN one step at a time with explicit state. `build_head` makes that
view once, from the very layer objects of the head (no lookup by name), and the head offers
it:

    step = model.head_step(head)                       # a CNNRNNStep; same weights as head
    state = step.initial_state(feats)                  # {"r": [B, 512], "image": [B, d]}
    log_probs, state = step(prev_ids, state)           # int32 [B] -> [B, K+1]
    step.label_embedding, step.lstm, step.output_projection, step.image_projection,
    step.joint_space                                   # the head's layers, for analysis
    step.num_labels, step.start_id, step.end_id        # K, and the ids from `vocab`

`model` imports all three back (`model.TiedLabelEmbedding`, `model.CNNRNNStep`); the two
layers are registered as `cnn_rnn_tf>TiedLabelEmbedding` and `cnn_rnn_tf>JointSpace`, so
heads saved before they moved here still load.
"""

from __future__ import annotations

import keras
from keras import layers, ops, regularizers
import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.relu_lstm import ReLULSTM


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class TiedLabelEmbedding(layers.Layer):
  """The label embedding U_l, used both to embed label ids and to score the joint space.

  Rows: K labels, END = K, START = K + 1. Scores cover the K labels and END only (START is
  never an output). Negative ids (padding, -1) embed as zeros and are masked.

  Args:
    num_labels: K.
    embedding_dim: d.
    embeddings_regularizer: optional regularizer on U_l.

  Call arguments:
    inputs: int ids [B, T] (reverse=False) or joint-space vectors [..., d] (reverse=True).
    reverse: False embeds ids -> [B, T, d]; True scores -> [..., K + 1].
    labels_only: with reverse, scores the K labels only (not END) -> [..., K].

  Example:

    emb = TiedLabelEmbedding(num_labels=5, embedding_dim=4)
    w = emb(ops.convert_to_tensor([[6, 0, 3, -1]]))   # [1, 4, 4]
    s = emb(w, reverse=True)                           # [1, 4, 6]
  """

  def __init__(self, num_labels, embedding_dim, embeddings_initializer="uniform",
               embeddings_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    if num_labels < 1 or embedding_dim < 1:
      raise ValueError(f"num_labels and embedding_dim must be >= 1, got {num_labels}, "
                       f"{embedding_dim}.")
    self.num_labels = num_labels
    self.embedding_dim = embedding_dim
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = regularizers.get(embeddings_regularizer)
    self.supports_masking = True

  def build(self, input_shape=None):
    self.embeddings = self.add_weight(
        shape=(self.num_labels + 2, self.embedding_dim), name="embeddings",
        initializer=self.embeddings_initializer, regularizer=self.embeddings_regularizer)

  def call(self, inputs, reverse=False, labels_only=False):
    if reverse and labels_only:  # the K labels' rows only (the joint space's marginals)
      table = ops.cast(self.embeddings[: self.num_labels], self.compute_dtype)
      return tf.matmul(inputs, table, transpose_b=True)  # [..., K]
    if reverse:
      table = ops.cast(self.embeddings[: self.num_labels + 1], self.compute_dtype)
      return ops.matmul(inputs, ops.transpose(table))  # [..., K + 1]
    ids = ops.cast(inputs, "int32")
    # Both factors in the compute dtype (float16 under mixed_float16; a no-op at float32).
    table = ops.cast(self.embeddings, self.compute_dtype)  # [K + 2, d]
    valid = ops.cast(ops.expand_dims(ids >= 0, -1), self.compute_dtype)
    return ops.take(table, ops.maximum(ids, 0), axis=0) * valid  # [B, T, d]

  def compute_mask(self, inputs, mask=None, reverse=False, labels_only=False):
    if reverse:
      return mask
    return ops.greater_equal(inputs, 0)

  def get_config(self):
    config = super().get_config()
    config.update({
        "num_labels": self.num_labels,
        "embedding_dim": self.embedding_dim,
        "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer),
        "embeddings_regularizer": regularizers.serialize(self.embeddings_regularizer),
    })
    return config


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class JointSpace(layers.Layer):
  """x_t = h(U_o o(t) + U_I I): adds the per-image term to every step, then h.

  Call arguments: [o_proj [B, T, d], i_proj [B, d]] -> [B, T, d].
  """

  def __init__(self, activation="relu", **kwargs):
    super().__init__(**kwargs)
    self.activation = keras.activations.get(activation)
    self.supports_masking = True

  def call(self, inputs):
    o_proj, i_proj = inputs
    return self.activation(o_proj + ops.expand_dims(i_proj, 1))

  def compute_mask(self, inputs, mask=None):
    return None if mask is None else mask[0]

  def compute_output_shape(self, input_shapes):
    return input_shapes[0]

  def get_config(self):
    config = super().get_config()
    config["activation"] = keras.activations.serialize(self.activation)
    return config


class CNNRNNStep:
  """The CNN-RNN head one step at a time, for decoding. Same layers (so weights) as the head.

    step = head_step(head)                        # made once by build_cnn_rnn_head
    state = step.initial_state(features)          # features [B, D]
    log_probs, state = step(prev_ids, state)      # prev_ids int32 [B] -> [B, K + 1]

  `training=True` (initial_state and the call) applies the head's two dropouts as the head
  does in training (the orderless losses' free-running pass); decoding leaves it False.

  Attributes: the head's layers (`label_embedding`, `lstm`, `output_projection`,
  `image_projection`, `joint_space`, `image_dropout`, `rnn_dropout`), `num_labels` K,
  `start_id` and `end_id` (from `vocab`).
  """

  def __init__(self, label_embedding: TiedLabelEmbedding, lstm: ReLULSTM,
               output_projection: layers.Dense, image_projection: layers.Dense,
               joint_space: JointSpace, image_dropout: layers.Dropout | None = None,
               rnn_dropout: layers.Dropout | None = None):
    self.label_embedding = label_embedding
    self.lstm = lstm
    self.output_projection = output_projection
    self.image_projection = image_projection
    self.joint_space = joint_space
    self.image_dropout = image_dropout
    self.rnn_dropout = rnn_dropout
    self.num_labels = label_embedding.num_labels
    self.start_id = vocab_lib.start_id_of(self.num_labels)
    self.end_id = vocab_lib.end_id_of(self.num_labels)

  def image(self, features, training=False):
    """U_I dropout(I): the image side of the joint space, float32 [B, d]."""
    features = tf.convert_to_tensor(features)
    if training and self.image_dropout is not None:
      features = self.image_dropout(features, training=True)
    return tf.cast(self.image_projection(features), tf.float32)

  def initial_state(self, features, training=False):
    features = tf.convert_to_tensor(features)
    batch = tf.shape(features)[0]
    return {
        "r": tf.zeros([batch, self.lstm.units], features.dtype),  # [B, U]
        "image": self.image(features, training=training),  # [B, d]
    }

  def __call__(self, prev_ids, state, training=False):
    w = self.label_embedding(prev_ids[:, tf.newaxis])[:, 0]  # [B, d]
    o, r = self.lstm.step(w, state["r"])  # [B, U]
    if training and self.rnn_dropout is not None:
      o = self.rnn_dropout(o, training=True)
    o_proj = self.output_projection(o)[:, tf.newaxis]  # [B, 1, d]
    joint = self.joint_space([o_proj, state["image"]])  # [B, 1, d]
    logits = self.label_embedding(joint, reverse=True)[:, 0]  # [B, K + 1]
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return log_probs, {"r": r, "image": state["image"]}
