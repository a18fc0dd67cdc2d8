"""The CNN-RNN head and the BCE baseline head, as Keras functional models.

Both heads read backbone features I [B, D] (see `backbones.py`); the backbone is kept apart
so that the paper's frozen setting trains on cached features, and `attach_backbone` puts it
in front of the head when it is fine-tuned or exported.

CNN-RNN (paper section 3.2, docs/method.md "Model"):

    w_t   = U_l[input_ids]                               # [B, T, d]   label embedding
    o(t)  = ReLULSTM(w)                                  # [B, T, 512]
    x_t   = h(U_o dropout(o(t)) + U_I dropout(I))        # [B, T, d]   joint space
    s(t)  = x_t @ U_l[:K + 1]^T                          # [B, T, K+1] tied scores: labels + END

    head = build_head(config.model, feature_dim=4096, num_labels=K)
    logits = head({"image_features": feats, "input_ids": input_ids})   # [B, T, K+1]

BCE: one sigmoid per label on the same features: `head(feats)` -> logits [B, K].

Decoding needs the CNN-RNN one step at a time with explicit state; `CNNRNNStep` reads the
same layers (by name) out of a built head:

    step = CNNRNNStep(head)
    state = step.initial_state(feats)                  # {"r": [B, 512], "image": [B, d]}
    log_probs, state = step(prev_ids, state)           # [B] -> [B, K+1]
"""

from __future__ import annotations

import keras
from keras import layers, ops, regularizers
import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.relu_lstm import ReLULSTM

HEADS = ("cnn_rnn", "bce")


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

  def call(self, inputs, reverse=False):
    if reverse:
      table = ops.cast(self.embeddings[: self.num_labels + 1], self.compute_dtype)
      return ops.matmul(inputs, ops.transpose(table))  # [..., K + 1]
    ids = ops.cast(inputs, "int32")
    valid = ops.cast(ops.expand_dims(ids >= 0, -1), self.compute_dtype)
    return ops.take(self.embeddings, ops.maximum(ids, 0), axis=0) * valid  # [B, T, d]

  def compute_mask(self, inputs, mask=None, reverse=False):
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


def build_head(model_config, feature_dim: int, num_labels: int) -> keras.Model:
  """Builds `model_config.head` ("cnn_rnn" or "bce") on features of size `feature_dim`."""
  if model_config.head not in HEADS:
    raise ValueError(f"Unknown head {model_config.head!r}; expected one of {HEADS}.")
  if num_labels < 1:
    raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
  l2 = regularizers.L2(model_config.weight_decay) if model_config.weight_decay else None
  features = keras.Input((feature_dim,), name="image_features")
  dropped = layers.Dropout(model_config.dropout, name="image_dropout")(features)
  if model_config.head == "bce":
    logits = layers.Dense(num_labels, kernel_regularizer=l2, dtype="float32",
                          name="bce_logits")(dropped)  # [B, K]
    return keras.Model(features, logits, name="bce_head")

  d = model_config.embedding_dim
  input_ids = keras.Input((None,), dtype="int32", name="input_ids")
  label_embedding = TiedLabelEmbedding(num_labels, d, embeddings_regularizer=l2,
                                       dtype="float32", name="label_embedding")
  w = label_embedding(input_ids)  # [B, T, d]
  o = ReLULSTM(model_config.lstm_units, return_sequences=True, kernel_regularizer=l2,
               recurrent_regularizer=l2, name="relu_lstm")(w)  # [B, T, U]
  o = layers.Dropout(model_config.dropout, name="rnn_dropout")(o)
  o_proj = layers.Dense(d, kernel_regularizer=l2, name="output_projection")(o)  # [B, T, d]
  i_proj = layers.Dense(d, kernel_regularizer=l2, name="image_projection")(dropped)  # [B, d]
  joint = JointSpace(model_config.joint_activation, name="joint_space")([o_proj, i_proj])
  logits = label_embedding(joint, reverse=True)  # [B, T, K + 1]
  return keras.Model({"image_features": features, "input_ids": input_ids}, logits,
                     name="cnn_rnn_head")


def head_kind(head: keras.Model) -> str:
  """"cnn_rnn" or "bce", read off a built head."""
  return "bce" if head.name == "bce_head" else "cnn_rnn"


def attach_backbone(backbone: keras.Model, head: keras.Model) -> keras.Model:
  """One model from images: {"images", ["input_ids"]} -> the head's logits.

  The backbone and the head keep their own weights (shared, not copied).
  """
  images = keras.Input(backbone.input_shape[1:], name="images")
  features = backbone(images)  # [B, D]
  if head_kind(head) == "bce":
    return keras.Model(images, head(features), name="bce_model")
  input_ids = keras.Input((None,), dtype="int32", name="input_ids")
  logits = head({"image_features": features, "input_ids": input_ids})
  return keras.Model({"images": images, "input_ids": input_ids}, logits, name="cnn_rnn_model")


class CNNRNNStep:
  """The CNN-RNN head one step at a time, for decoding. Same weights as `head`.

    step = CNNRNNStep(head)
    state = step.initial_state(features)          # features [B, D]
    log_probs, state = step(prev_ids, state)      # prev_ids int32 [B] -> [B, K + 1]
  """

  def __init__(self, head: keras.Model):
    if head_kind(head) != "cnn_rnn":
      raise ValueError(f"CNNRNNStep needs a cnn_rnn head, got {head.name!r}.")
    self.label_embedding = head.get_layer("label_embedding")
    self.lstm = head.get_layer("relu_lstm")
    self.output_projection = head.get_layer("output_projection")
    self.image_projection = head.get_layer("image_projection")
    self.joint_space = head.get_layer("joint_space")
    self.num_labels = self.label_embedding.num_labels
    self.start_id = self.num_labels + 1
    self.end_id = self.num_labels

  def initial_state(self, features):
    features = tf.convert_to_tensor(features)
    batch = tf.shape(features)[0]
    return {
        "r": tf.zeros([batch, self.lstm.units], features.dtype),  # [B, U]
        "image": tf.cast(self.image_projection(features), tf.float32),  # [B, d]
    }

  def __call__(self, prev_ids, state):
    w = self.label_embedding(prev_ids[:, tf.newaxis])[:, 0]  # [B, d]
    o, r = self.lstm.step(w, state["r"])  # [B, U]
    o_proj = self.output_projection(o)[:, tf.newaxis]  # [B, 1, d]
    joint = self.joint_space([o_proj, state["image"]])  # [B, 1, d]
    logits = self.label_embedding(joint, reverse=True)[:, 0]  # [B, K + 1]
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1)
    return log_probs, {"r": r, "image": state["image"]}


def cnn_rnn_loss(logits, target_ids):
  """Per-example loss: softmax cross-entropy summed over the steps of each sequence.

  Args:
    logits: [B, T, K + 1]. target_ids: int32 [B, T], -1 = padding (no loss).
  Returns:
    float32 [B].
  """
  valid = target_ids >= 0  # [B, T]
  ce = tf.nn.sparse_softmax_cross_entropy_with_logits(
      labels=tf.maximum(target_ids, 0), logits=tf.cast(logits, tf.float32))  # [B, T]
  return tf.reduce_sum(tf.where(valid, ce, 0.0), axis=1)


def bce_loss(logits, multi_hot):
  """Per-example loss: sigmoid cross-entropy summed over the K labels. [B, K] -> [B]."""
  ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(multi_hot, tf.float32),
                                               logits=tf.cast(logits, tf.float32))
  return tf.reduce_sum(ce, axis=1)


def head_loss(head: keras.Model, features, multi_hot, *, training: bool, max_labels=None):
  """The head's per-example loss [B] on features [B, D] and multi-hot labels [B, K].

  The CNN-RNN is trained with teacher forcing on the labels in training (frequency)
  order followed by END (`vocab.sequence_targets`).
  """
  features = tf.convert_to_tensor(features)
  multi_hot = tf.convert_to_tensor(multi_hot)
  if head_kind(head) == "bce":
    return bce_loss(head(features, training=training), multi_hot)
  num_labels = multi_hot.shape[-1]
  target_ids = vocab_lib.sequence_targets(multi_hot, max_labels)  # [B, T]
  input_ids = vocab_lib.teacher_forcing_inputs(target_ids, num_labels + 1)  # [B, T]
  logits = head({"image_features": features, "input_ids": input_ids}, training=training)
  return cnn_rnn_loss(logits, target_ids)
