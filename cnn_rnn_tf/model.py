"""The CNN-RNN head and the BCE baseline head, as Keras functional models, and the head registry.

Both heads read backbone features I [B, D] (see `backbones.py`); the backbone is kept apart
so that the paper's frozen setting trains on cached features, and `attach_backbone` puts it
in front of the head when it is fine-tuned or exported.

CNN-RNN (paper section 3.2, docs/method.md):

    w_t   = U_l[input_ids]                               # [B, T, d]   label embedding
    o(t)  = ReLULSTM(w)                                  # [B, T, 512]
    x_t   = h(U_o dropout(o(t)) + U_I dropout(I))        # [B, T, d]   joint space
    s(t)  = x_t @ U_l[:K + 1]^T                          # [B, T, K+1] tied scores: labels + END

    head = build_head(config.model, feature_dim=4096, num_labels=K)
    logits = head({"image_features": feats, "input_ids": input_ids})   # [B, T, K+1]

BCE: one sigmoid per label on the same features: `head(feats)` -> logits [B, K].

The head's own layers (`TiedLabelEmbedding`, `JointSpace`) and its one-step view for
decoding (`CNNRNNStep`) live in `head_layers.py` and are imported here; `build_head` makes the
step view once, from the very layer objects of the head:

    step = head_step(head)                             # a CNNRNNStep; same weights as head
    log_probs, state = step(prev_ids, step.initial_state(feats))   # int32 [B] -> [B, K+1]

Training loss (per example [B]; the order of the target sequence and the auxiliary BCE term
come from the config, `loss_options(config)`; see `label_order.py` and docs/method.md):

    loss = head_loss(head, feats, multi_hot, training=True, max_labels=None,
                     options=loss_options(config), step=optimizer.iterations)   # [B]

The head registry `HEADS` (a plain dict: config value `model.head` -> `HeadSpec`) is the one
place that knows the heads: each entry gives the head's builder, its per-example loss, its
predictions (`inference.predict_from_features`) and its prediction masks for the metrics
(`inference.prediction_masks`). A new head is one function of each kind and one entry;
`head_kind(head)` reads the name `build_head` recorded on the built head.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import keras
from keras import layers, regularizers
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import expected_f1
from cnn_rnn_tf import label_order as label_order_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.head_layers import CNNRNNStep, JointSpace, TiedLabelEmbedding
from cnn_rnn_tf.relu_lstm import ReLULSTM

# Attributes `build_head` sets on a built head: its registry name, and (CNN-RNN) its step view.
_KIND_ATTR = "cnn_rnn_tf_head"
_STEP_ATTR = "cnn_rnn_tf_step"


def build_head(model_config, feature_dim: int, num_labels: int) -> keras.Model:
  """Builds the head `model_config.head` (a key of `HEADS`) on features of size `feature_dim`."""
  spec = head_spec(model_config.head)
  if num_labels < 1:
    raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
  head = spec.build(model_config, feature_dim, num_labels)
  setattr(head, _KIND_ATTR, model_config.head)
  return head


def head_spec(name_or_head) -> "HeadSpec":
  """The registry entry of a head name ("cnn_rnn", "bce") or of a head `build_head` built."""
  name = name_or_head if isinstance(name_or_head, str) else head_kind(name_or_head)
  if name not in HEADS:
    raise ValueError(f"Unknown head {name!r}; expected one of {sorted(HEADS)}.")
  return HEADS[name]


def head_kind(head: keras.Model) -> str:
  """The registry name of a built head ("cnn_rnn", "bce"), as `build_head` recorded it."""
  kind = getattr(head, _KIND_ATTR, None)
  if kind is None:
    raise ValueError(f"Model {head.name!r} was not built by model.build_head (no head kind "
                     "recorded); build the head with build_head and load its weights.")
  return kind


def head_step(head: keras.Model) -> "CNNRNNStep":
  """The CNN-RNN head's one-step view (made by `build_head` from the head's own layers)."""
  step = getattr(head, _STEP_ATTR, None)
  if step is None:
    raise ValueError(f"Head {head.name!r} ({getattr(head, _KIND_ATTR, 'unknown kind')}) has "
                     "no step function: only a cnn_rnn head built by build_head has one.")
  return step


def _l2(model_config):
  return regularizers.L2(model_config.weight_decay) if model_config.weight_decay else None


def build_bce_head(model_config, feature_dim: int, num_labels: int) -> keras.Model:
  """features [B, D] -> logits [B, K]: one sigmoid per label."""
  features = keras.Input((feature_dim,), name="image_features")
  dropped = layers.Dropout(model_config.dropout, name="image_dropout")(features)
  logits = layers.Dense(num_labels, kernel_regularizer=_l2(model_config), dtype="float32",
                        name="bce_logits")(dropped)  # [B, K]
  return keras.Model(features, logits, name="bce_head")


def build_cnn_rnn_head(model_config, feature_dim: int, num_labels: int) -> keras.Model:
  """{"image_features" [B, D], "input_ids" int32 [B, T]} -> logits [B, T, K + 1].

  The built model carries its `CNNRNNStep` (see `head_step`), made from the same layers.
  """
  l2 = _l2(model_config)
  d = model_config.embedding_dim
  features = keras.Input((feature_dim,), name="image_features")
  image_dropout = layers.Dropout(model_config.dropout, name="image_dropout")
  rnn_dropout = layers.Dropout(model_config.dropout, name="rnn_dropout")
  dropped = image_dropout(features)
  input_ids = keras.Input((None,), dtype="int32", name="input_ids")
  label_embedding = TiedLabelEmbedding(num_labels, d, embeddings_regularizer=l2,
                                       dtype="float32", name="label_embedding")
  lstm = ReLULSTM(model_config.lstm_units, return_sequences=True, kernel_regularizer=l2,
                  recurrent_regularizer=l2, name="relu_lstm")
  output_projection = layers.Dense(d, kernel_regularizer=l2, name="output_projection")
  image_projection = layers.Dense(d, kernel_regularizer=l2, name="image_projection")
  joint_space = JointSpace(model_config.joint_activation, name="joint_space")

  w = label_embedding(input_ids)  # [B, T, d]
  o = lstm(w)  # [B, T, U]
  o = rnn_dropout(o)
  o_proj = output_projection(o)  # [B, T, d]
  i_proj = image_projection(dropped)  # [B, d]
  joint = joint_space([o_proj, i_proj])  # [B, T, d]
  logits = label_embedding(joint, reverse=True)  # [B, T, K + 1]
  head = keras.Model({"image_features": features, "input_ids": input_ids}, logits,
                     name="cnn_rnn_head")
  marginal_head = None
  if _marginals(model_config) == "side_head":
    # Dense(K) on the dropped features, the BCE head inside the CNN-RNN: an attribute of the
    # head, so its weights are the head's (checkpoints, optimizer) though the logits above
    # do not read it.
    marginal_head = layers.Dense(num_labels, kernel_regularizer=l2, dtype="float32",
                                 name="marginal_head")
    marginal_head.build((None, feature_dim))
    head.marginal_head = marginal_head
  setattr(head, _STEP_ATTR, CNNRNNStep(label_embedding, lstm, output_projection,
                                       image_projection, joint_space,
                                       image_dropout=image_dropout, rnn_dropout=rnn_dropout,
                                       marginal_head=marginal_head))
  return head


MARGINALS = ("side_head", "joint_space")  # model.marginals
# The named decoders of each head (decode.decoder; the first is the head's default), each a
# label set of its predictions' "sets".
DECODERS = {"cnn_rnn": ("path", "marginals", "expected_f1"), "bce": ("threshold", "expected_f1")}


def _marginals(model_config) -> str:
  kind = model_config.marginals
  if kind not in MARGINALS:
    raise ValueError(f"Unknown model.marginals {kind!r}; expected one of {MARGINALS}.")
  return kind


def attach_backbone(backbone: keras.Model, head: keras.Model) -> keras.Model:
  """One model from images: {"images", ["input_ids"]} -> the head's logits.

  The backbone and the head keep their own weights (shared, not copied).
  """
  images = keras.Input(backbone.input_shape[1:], name="images")
  features = backbone(images)  # [B, D]
  name = f"{head_kind(head)}_model"
  if len(head.inputs) == 1:  # features only (bce)
    return keras.Model(images, head(features), name=name)
  input_ids = keras.Input((None,), dtype="int32", name="input_ids")
  logits = head({"image_features": features, "input_ids": input_ids})
  return keras.Model({"images": images, "input_ids": input_ids}, logits, name=name)


# Losses: per example, float32 [B].

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


class LossOptions(NamedTuple):
  """How the CNN-RNN is trained (`loss_options(config)`); the defaults are the paper's."""
  label_order: str = "frequent_first"  # train.label_order (`label_order.ORDERS`)
  align_inputs: str = "predictions"  # train.align_inputs, for pla / mla
  aux_bce_weight: float = 0.0  # model.aux_bce_weight
  seed: int = 0  # config.seed, for the random order


def loss_options(config) -> LossOptions:
  """The LossOptions of a full config (train.label_order, train.align_inputs, ...)."""
  return LossOptions(label_order=config.train.label_order,
                     align_inputs=config.train.align_inputs,
                     aux_bce_weight=float(config.model.aux_bce_weight),
                     seed=int(config.seed))


def free_running_pass(step: CNNRNNStep, features, num_steps, *, training: bool):
  """The decoder run greedily for `num_steps` steps, fed back its own predictions.

  START first; at each step the most probable label not yet predicted (END is never chosen:
  the pass predicts labels only; a label already predicted is not predicted again).

  Returns:
    log_probs float32 [B, T, K + 1] (differentiable), predicted int32 [B, T].
  """
  features = tf.convert_to_tensor(features)
  batch = tf.shape(features)[0]
  k = step.num_labels
  state = step.initial_state(features, training=training)
  r_dtype = state["r"].dtype
  used = tf.one_hot(tf.fill([batch], step.end_id), k + 1) > 0  # [B, K + 1]: END excluded

  def body(t, prev, used, state, all_log_probs, all_predicted):
    log_probs, state = step(prev, state, training=training)  # [B, K + 1]
    state = {"r": tf.cast(state["r"], r_dtype), "image": state["image"]}
    predicted = tf.argmax(tf.where(used, -np.inf, log_probs), axis=-1,
                          output_type=tf.int32)  # [B]
    used = tf.logical_or(used, tf.one_hot(predicted, k + 1) > 0)
    return (t + 1, predicted, used, state, all_log_probs.write(t, log_probs),
            all_predicted.write(t, predicted))

  loop_vars = (tf.constant(0), tf.fill([batch], tf.constant(step.start_id, tf.int32)), used,
               state, tf.TensorArray(tf.float32, size=num_steps),
               tf.TensorArray(tf.int32, size=num_steps))
  *_, all_log_probs, all_predicted = tf.while_loop(
      lambda t, *_: t < num_steps, body, loop_vars, maximum_iterations=num_steps)
  log_probs = tf.transpose(all_log_probs.stack(), [1, 0, 2])  # [B, T, K + 1]
  predicted = tf.transpose(all_predicted.stack())  # [B, T]
  return log_probs, predicted


def aux_bce_loss(head, features, multi_hot, *, training: bool):
  """BCE on the head's marginal logits (`CNNRNNStep.marginal_logits`): per example [B],
  unweighted; sigmoid cross-entropy summed over the K labels (all of an image's labels,
  max_labels or not).

  model.marginals = side_head: logits = Dense(K)(dropout(I)); the gradient reaches that layer
  and the features (so a trained backbone). joint_space: logits = U_I dropout(I) . U_l[:K]^T;
  the gradient reaches the image projection, the label embedding's label rows and the
  features. Never the ReLU-LSTM nor the output projection.
  """
  logits = head_step(head).marginal_logits(features, training=training)  # [B, K]
  return bce_loss(logits, multi_hot)


def _sequence_loss(head, features, multi_hot, *, training, max_labels, options, step):
  order = options.label_order
  label_order_lib.check_order(order)
  num_labels = multi_hot.shape[-1]
  start_id = vocab_lib.start_id_of(num_labels)
  if order in label_order_lib.FIXED_ORDERS:
    # Teacher forcing on the labels in that order, then END.
    target_ids = label_order_lib.ordered_targets(
        multi_hot, order, max_labels=max_labels, seed=options.seed, step=step)  # [B, T]
  else:
    # PLA / MLA: align the targets to the model's own free-running pass.
    present = label_order_lib.cap_labels(multi_hot, max_labels)  # [B, K]
    num_steps = tf.reduce_max(tf.reduce_sum(tf.cast(present, tf.int32), axis=1)) + 1
    log_probs, predicted = free_running_pass(head_step(head), features, num_steps,
                                             training=training)  # [B, T, K + 1], [B, T]
    target_ids = label_order_lib.aligned_targets(log_probs, predicted, present, order)
    if options.align_inputs == "predictions":
      return cnn_rnn_loss(log_probs, target_ids)  # the free-running pass's own outputs
    if options.align_inputs != "targets":
      raise ValueError(f"Unknown align_inputs {options.align_inputs!r}; expected one of "
                       f"{label_order_lib.ALIGN_INPUTS}.")
  input_ids = vocab_lib.teacher_forcing_inputs(target_ids, start_id)  # [B, T]
  logits = head({"image_features": features, "input_ids": input_ids}, training=training)
  return cnn_rnn_loss(logits, target_ids)


def _cnn_rnn_head_loss(head, features, multi_hot, *, training, max_labels, options, step):
  loss = _sequence_loss(head, features, multi_hot, training=training, max_labels=max_labels,
                        options=options, step=step)  # [B]
  if options.aux_bce_weight:
    loss += options.aux_bce_weight * aux_bce_loss(head, features, multi_hot, training=training)
  return loss


def _bce_head_loss(head, features, multi_hot, *, training, max_labels, options, step):
  del max_labels, options, step  # one sigmoid per label: no order, no aux term
  return bce_loss(head(features, training=training), multi_hot)


def head_loss(head: keras.Model, features, multi_hot, *, training: bool, max_labels=None,
              options: LossOptions | None = None, step=0):
  """The head's per-example loss [B] on features [B, D] and multi-hot labels [B, K].

  The CNN-RNN's target sequence follows `options.label_order` (default: the paper's,
  labels in training (frequency) order then END, `vocab.sequence_targets`), plus
  `options.aux_bce_weight` times `aux_bce_loss`. `step` (a scalar, e.g. the optimizer's
  iteration count) draws the `random` order; see `label_order.py` and docs/method.md.
  """
  return head_spec(head).loss(head, tf.convert_to_tensor(features),
                              tf.convert_to_tensor(multi_hot), training=training,
                              max_labels=max_labels, options=options or LossOptions(),
                              step=step)


# Predictions: features [B, D] -> the dict `inference.predict_from_features` documents.

def _cnn_rnn_predict(head, features, *, beam_size, max_length, min_length, thresholds=None,
                     num_samples=0, sample_seed=0, ranking="path"):
  """The beam's path, and the label sets of the named decoders (`DECODERS["cnn_rnn"]`):
  path (the beam's best path), marginals (sigmoid of the marginal logits >= `thresholds`, or
  0.5), expected_f1 (GFM over `num_samples` ancestral samples; only when num_samples > 0)."""
  step = head_step(head)
  result = decoding.decode(step, step.initial_state(features), num_labels=step.num_labels,
                           beam_size=beam_size, max_length=max_length, min_length=min_length)
  out = result._asdict()
  k = step.num_labels
  marginals = tf.sigmoid(step.marginal_logits(features))  # [B, K]
  out["marginal_scores"] = marginals
  out["sets"] = {"path": tf.reduce_any(tf.one_hot(result.labels, k) > 0, axis=1),  # [B, K]
                 "marginals": _above(marginals, thresholds)}
  if num_samples:
    samples = decoding.sample_sets(step, step.initial_state(features), num_labels=k,
                                   num_samples=num_samples, max_length=max_length,
                                   min_length=min_length,
                                   seeds=decoding.image_seeds(features, sample_seed))
    out["sets"]["expected_f1"], _ = expected_f1.gfm(*expected_f1.size_joint_from_sets(samples))
    out["sample_scores"] = tf.reduce_mean(tf.cast(samples, tf.float32), axis=1)  # [B, K]
  out["label_scores"] = {"path": out["label_scores"], "marginals": marginals,
                         "samples": out.get("sample_scores")}[ranking]
  if out["label_scores"] is None:
    raise ValueError("decode.ranking='samples' needs decode.num_samples > 0.")
  return out


def _above(probs, thresholds):
  """bool [B, K]: probs >= thresholds (float [K]; None: 0.5 for every label)."""
  if thresholds is None:
    return probs >= 0.5
  thresholds = tf.convert_to_tensor(thresholds, tf.float32)
  if thresholds.shape != (probs.shape[-1],):
    raise ValueError(f"thresholds must be [K] = [{probs.shape[-1]}], got shape "
                     f"{thresholds.shape}.")
  return probs >= thresholds[tf.newaxis, :]


def _bce_predict(head, features, *, beam_size, max_length, min_length, thresholds=None,
                 num_samples=0, sample_seed=0, ranking="marginals"):
  """Every label with p >= its threshold (0.5, or `thresholds` float [K]: the calibrated
  ones) by decreasing p (at most max_length, at least min_length); the named decoders'
  sets (`DECODERS["bce"]`): threshold (that set, uncapped), expected_f1 (GFM, exact under
  independent labels; `num_samples` is not needed)."""
  del num_samples, sample_seed, ranking  # exact, no sampling; p is the only ranking score
  logits = tf.cast(head(features, training=False), tf.float32)  # [B, K]
  num_labels = logits.shape[-1]
  length = decoding.check_lengths(num_labels, max_length, min_length)
  probs = tf.sigmoid(logits)
  above = _above(probs, thresholds)  # [B, K]
  # Labels above their threshold first (by p, exact), then the rest (by p): a prefix of the
  # ranking is the set.
  rank_score = tf.where(above, probs, probs - 2.0)  # [B, K]
  _, top_ids = tf.math.top_k(rank_score, length)  # [B, L]
  top_above = tf.gather(above, top_ids, batch_dims=1)  # [B, L]
  rank = tf.range(length)[tf.newaxis, :]
  chosen = tf.logical_or(top_above, rank < min_length)  # [B, L], a prefix of each row
  labels = tf.cast(tf.where(chosen, top_ids, vocab_lib.PAD_ID), tf.int32)  # [B, L]
  picked = tf.reduce_any(tf.one_hot(tf.where(chosen, top_ids, num_labels), num_labels) > 0,
                         axis=1)  # [B, K]
  path_log_prob = tf.reduce_sum(
      tf.where(picked, tf.math.log_sigmoid(logits), tf.math.log_sigmoid(-logits)), axis=1)
  # The N best sets: the one set, then N - 1 empty slots (-1 labels, -inf log-probability).
  paths, paths_log_prob = decoding.pad_paths(labels[:, tf.newaxis], path_log_prob[:, tf.newaxis],
                                             beam_size)
  best_f1, _ = expected_f1.gfm(*expected_f1.size_joint_independent(probs))
  return {
      "sets": {"threshold": above, "expected_f1": best_f1},  # bool [B, K] each
      "labels": labels,
      "num_labels": tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1),
      "path_log_prob": path_log_prob,
      "label_scores": probs,
      "paths": paths,  # int32 [B, N, L]
      "paths_log_prob": paths_log_prob,  # float32 [B, N]
  }


# Prediction masks for the metrics: rule name -> bool [N, K] from NumPy predictions (the
# rules are defined in `metrics.RULES`).

def _calibrated(probs: np.ndarray, thresholds, num_labels: int) -> np.ndarray:
  """bool [N, K]: probs >= the per-class thresholds float [K]."""
  thresholds = np.asarray(thresholds, np.float64)
  if thresholds.shape != (num_labels,):
    raise ValueError(f"thresholds must be [K] = [{num_labels}], got shape {thresholds.shape}.")
  return np.asarray(probs) >= thresholds[np.newaxis, :]


def _top3_and_all(name: str, chosen: np.ndarray, scores: np.ndarray) -> dict:
  """{"top3_<name>", "all_<name>"}: a decoder's set, and its 3 best-ranked labels."""
  return {f"top3_{name}": metrics_lib.top_k_mask(np.where(chosen, scores, -np.inf), 3) & chosen,
          f"all_{name}": chosen}


def _cnn_rnn_masks(pred, num_labels: int, thresholds: np.ndarray | None = None):
  """top3 and top3_paper: the first 3 labels of the path; all: the whole path; with
  `thresholds` [K] (fitted on the marginals) top3_marginals / all_marginals: marginal
  probabilities >= them; with the expected_f1 set, top3_expected_f1 / all_expected_f1
  (top3_*: the 3 labels of the set with the highest ranking score)."""
  labels = pred["labels"]
  top3 = metrics_lib.path_mask(labels, num_labels, k=3)
  masks = {"top3": top3, "all": metrics_lib.path_mask(labels, num_labels), "top3_paper": top3}
  if thresholds is not None and "marginal_scores" in pred:
    masks.update(_top3_and_all(
        "marginals", _calibrated(pred["marginal_scores"], thresholds, num_labels),
        np.asarray(pred["marginal_scores"])))
  if "set_expected_f1" in pred:
    masks.update(_top3_and_all("expected_f1", np.asarray(pred["set_expected_f1"], bool),
                               np.asarray(pred["label_scores"])))
  return masks


def _bce_masks(pred, num_labels: int, thresholds: np.ndarray | None = None):
  """top3: the 3 highest probabilities among those >= 0.5; all: every p >= 0.5;
  top3_paper: the 3 highest probabilities; with per-class `thresholds` [K] also
  top3_calibrated / all_calibrated: the same with p >= thresholds[k] instead of 0.5; with
  the expected_f1 set, top3_expected_f1 / all_expected_f1."""
  scores = np.asarray(pred["label_scores"])
  masks = {"top3": metrics_lib.top_k_mask(scores, 3, threshold=0.5), "all": scores >= 0.5,
           "top3_paper": metrics_lib.top_k_mask(scores, 3)}
  if thresholds is not None:
    above = _calibrated(scores, thresholds, num_labels)  # [N, K]
    masks["top3_calibrated"] = masks["top3_paper"] & above
    masks["all_calibrated"] = above
  if "set_expected_f1" in pred:
    masks.update(_top3_and_all("expected_f1", np.asarray(pred["set_expected_f1"], bool),
                               scores))
  return masks


class HeadSpec(NamedTuple):
  """What the package needs to know of one kind of head (an entry of `HEADS`)."""
  # (model_config, feature_dim, num_labels) -> keras.Model
  build: Callable
  # (head, features [B, D], multi_hot [B, K], *, training, max_labels, options: LossOptions,
  #  step) -> float32 [B]
  loss: Callable
  # (head, features [B, D], *, beam_size, max_length, min_length, thresholds=None,
  #  num_samples=0, sample_seed=0, ranking) -> dict of outputs, with "sets": {decoder name
  #  (`DECODERS`): bool [B, K]} (thresholds: float [K] calibrated ones)
  predict: Callable
  # (predictions {"labels" int [N, L], "label_scores" float [N, K], optional
  #  "marginal_scores", "set_<decoder>"}, num_labels, thresholds=None)
  #   -> {rule name: bool [N, K]} (`metrics.RULES`)
  prediction_masks: Callable


HEADS: dict[str, HeadSpec] = {
    "cnn_rnn": HeadSpec(build_cnn_rnn_head, _cnn_rnn_head_loss, _cnn_rnn_predict,
                        _cnn_rnn_masks),
    "bce": HeadSpec(build_bce_head, _bce_head_loss, _bce_predict, _bce_masks),
}
