"""The heads' training losses: the per-label loss table, and the CNN-RNN's sequence loss.

Per-label losses (logits [B, K], multi-hot [B, K] -> float32 [B], summed over the K labels)
are entries of one table, `LABEL_LOSSES`, read from `model.label_loss` by the BCE head (its
whole loss) and by the CNN-RNN's side head (weighted by `model.side_loss_weight`):

    LABEL_LOSSES["bce"](logits, multi_hot)                       # sigmoid cross-entropy
    LABEL_LOSSES["asl"](logits, multi_hot, gamma_neg=4.0, gamma_pos=0.0, clip=0.05)

A loss's own settings are the fields of `model.<name>` (e.g. `model.asl`), passed as keyword
arguments; the function's keyword defaults equal the config's (tests/test_losses.py). Adding
a loss is one function here and one entry in `LABEL_LOSSES`, with its name repeated in
`config_lib.LABEL_LOSSES` and its settings (if any) declared and checked there.

The training loss of either head (per example, [B]), with the options of a config:

    loss = model.head_loss(head, feats, multi_hot, training=True,
                           options=losses.loss_options(config), step=optimizer.iterations)

CNN-RNN: `sequence_loss` (softmax cross-entropy over the target sequence; its order from
`train.label_order`, `label_order.py`) + side_loss_weight x the per-label loss of the head's
`marginal_logits` output (`model.marginal_logits`). BCE: the per-label loss of its logits.
See docs/method.md.
"""

from __future__ import annotations

from typing import NamedTuple

import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import label_order as label_order_lib
from cnn_rnn_tf import vocab as vocab_lib


def bce(logits, multi_hot):
  """Sigmoid cross-entropy summed over the K labels: [B, K] -> float32 [B]."""
  ce = tf.nn.sigmoid_cross_entropy_with_logits(labels=tf.cast(multi_hot, tf.float32),
                                               logits=tf.cast(logits, tf.float32))
  return tf.reduce_sum(ce, axis=1)


def asl(logits, multi_hot, *, gamma_neg: float = 4.0, gamma_pos: float = 0.0,
        clip: float = 0.05):
  """The Asymmetric Loss (Ridnik et al., ICCV 2021), summed over the K labels: [B, K] -> [B].

  p = sigmoid(logit), p_m = max(p - clip, 0):
  L = -y (1 - p)^gamma_pos log p - (1 - y) p_m^gamma_neg log(1 - p_m).
  The focusing weights (1 - p)^gamma_pos and p_m^gamma_neg are taken without gradient
  (`tf.stop_gradient`, as the authors' code does); in float32, log p = log_sigmoid(logit),
  log(1 - p_m) = log(min(1 - p + clip, 1)) (= log_sigmoid(-logit) when clip is 0).
  """
  logits = tf.cast(logits, tf.float32)
  y = tf.cast(multi_hot, tf.float32)
  p = tf.sigmoid(logits)
  p_m = tf.maximum(p - clip, 0.0)
  if clip:
    log_not_p_m = tf.math.log(tf.minimum(tf.sigmoid(-logits) + clip, 1.0))
  else:
    log_not_p_m = tf.math.log_sigmoid(-logits)
  w_pos = tf.stop_gradient(tf.pow(1.0 - p, gamma_pos))  # 1 when gamma_pos = 0
  w_neg = tf.stop_gradient(tf.pow(p_m, gamma_neg))
  per_label = -y * w_pos * tf.math.log_sigmoid(logits) - (1.0 - y) * w_neg * log_not_p_m
  return tf.reduce_sum(per_label, axis=1)


# The per-label losses (model.label_loss): (logits [B, K], multi_hot [B, K], **settings) -> [B].
LABEL_LOSSES = {"bce": bce, "asl": asl}


class LossOptions(NamedTuple):
  """How a head is trained (`loss_options(config)`); the defaults are the config's defaults."""
  label_order: str = "frequent_first"  # train.label_order (`label_order.ORDERS`)
  align_inputs: str = "predictions"  # train.align_inputs, for pla / mla
  label_loss: str = "bce"  # model.label_loss, a key of LABEL_LOSSES
  label_loss_settings: tuple = ()  # (name, value) pairs of model.<label_loss>, if any
  side_loss_weight: float = 1.0  # model.side_loss_weight (cnn_rnn)
  seed: int = 0  # config.seed, for the random order


def loss_options(config) -> LossOptions:
  """The LossOptions of a full config (train.label_order, model.label_loss, ...)."""
  name = config.model.label_loss
  settings = config.model.get(name, None)
  return LossOptions(label_order=config.train.label_order,
                     align_inputs=config.train.align_inputs, label_loss=name,
                     label_loss_settings=tuple(sorted(settings.to_dict().items()))
                     if settings is not None else (),
                     side_loss_weight=float(config.model.side_loss_weight),
                     seed=int(config.seed))


def label_loss(logits, multi_hot, options: LossOptions):
  """The per-label loss `options.label_loss` of logits [B, K]: float32 [B]."""
  if options.label_loss not in LABEL_LOSSES:
    raise ValueError(f"Unknown model.label_loss {options.label_loss!r}; expected one of "
                     f"{sorted(LABEL_LOSSES)}.")
  return LABEL_LOSSES[options.label_loss](logits, multi_hot,
                                          **dict(options.label_loss_settings))


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


def sequence_loss(logits_model, step, features, multi_hot, *, training, max_labels,
                  options: LossOptions, iteration):
  """The CNN-RNN's sequence loss [B]: its targets in `options.label_order`. `logits_model` is
  the head's view {"image_features", "input_ids"} -> logits [B, T, K + 1] (teacher forcing),
  `step` its `CNNRNNStep` (the orderless orders' free-running pass); `iteration` draws the
  random order."""
  order = options.label_order
  label_order_lib.check_order(order)
  num_labels = multi_hot.shape[-1]
  start_id = vocab_lib.start_id_of(num_labels)
  if order in label_order_lib.FIXED_ORDERS:
    # Teacher forcing on the labels in that order, then END.
    target_ids = label_order_lib.ordered_targets(
        multi_hot, order, max_labels=max_labels, seed=options.seed, step=iteration)  # [B, T]
  else:
    # PLA / MLA: align the targets to the model's own free-running pass.
    present = label_order_lib.cap_labels(multi_hot, max_labels)  # [B, K]
    num_steps = tf.reduce_max(tf.reduce_sum(tf.cast(present, tf.int32), axis=1)) + 1
    log_probs, predicted = decoding.free_running_pass(step, features, num_steps,
                                                      training=training)  # [B, T, K + 1]
    target_ids = label_order_lib.aligned_targets(log_probs, predicted, present, order)
    if options.align_inputs == "predictions":
      return cnn_rnn_loss(log_probs, target_ids)  # the free-running pass's own outputs
    if options.align_inputs != "targets":
      raise ValueError(f"Unknown align_inputs {options.align_inputs!r}; expected one of "
                       f"{label_order_lib.ALIGN_INPUTS}.")
  input_ids = vocab_lib.teacher_forcing_inputs(target_ids, start_id)  # [B, T]
  logits = logits_model({"image_features": features, "input_ids": input_ids},
                        training=training)
  return cnn_rnn_loss(logits, target_ids)
