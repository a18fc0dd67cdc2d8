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
    out = head({"image_features": feats, "input_ids": input_ids})
    out["logits"]                                        # [B, T, K+1]
    out["marginal_logits"]                               # [B, K]: the labels from the image
                                                         # alone (model.marginals)
    sequence_logits(head, feats, input_ids)              # one output alone, as training reads
    marginal_logits(head, feats)                         # them (each its own dropout draw)

The marginal logits are the side head's, a Dense(K) on the dropped features (layer
"marginal_head", `model.marginals = "side_head"`), or the image side of the joint space
scored by the label rows of U_l (`"joint_space"`).

BCE: one sigmoid per label on the same features: `head(feats)` -> logits [B, K].

The head's own layers (`TiedLabelEmbedding`, `JointSpace`) and its one-step view for
decoding (`CNNRNNStep`) live in `head_layers.py` and are imported here; `build_head` makes the
step view once, from the very layer objects of the head:

    step = head_step(head)                             # a CNNRNNStep; same weights as head
    log_probs, state = step(prev_ids, step.initial_state(feats))   # int32 [B] -> [B, K+1]

Training loss (per example [B]; the options from the config, `losses.loss_options(config)`:
the label order of the target sequence, the per-label loss `model.label_loss` and the side
head's weight `model.side_loss_weight`; see `losses.py` and docs/method.md):

    loss = head_loss(head, feats, multi_hot, training=True, max_labels=None,
                     options=losses.loss_options(config), step=optimizer.iterations)   # [B]

The head registry `HEADS` (a plain dict: config value `model.head` -> `HeadSpec`) is the one
place that knows the heads: each entry gives the head's builder, its per-example loss and its
predictions (`inference.predict_from_features`: the head's outputs, then the set of each
named decoder it has, `decoders.DECODERS`). A new head is one function of each kind and one
entry; `head_kind(head)` reads the name `build_head` recorded on the built head.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import keras
from keras import layers, regularizers
import tensorflow as tf

from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import decoding
from cnn_rnn_tf import sampling
from cnn_rnn_tf import expected_f1
from cnn_rnn_tf import losses
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.head_layers import CNNRNNStep, JointSpace, TiedLabelEmbedding
from cnn_rnn_tf.relu_lstm import ReLULSTM

# Attributes `build_head` sets on a built head: its registry name, and (CNN-RNN) its step view.
_KIND_ATTR = "cnn_rnn_tf_head"
_STEP_ATTR = "cnn_rnn_tf_step"
_VIEWS_ATTR = "cnn_rnn_tf_views"


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
  return _cnn_rnn_part(head, _STEP_ATTR, "step function")


def _cnn_rnn_part(head: keras.Model, attr: str, what: str):
  """What `build_cnn_rnn_head` set as `attr` on the head; ValueError naming `what` if absent."""
  part = getattr(head, attr, None)
  if part is None:
    raise ValueError(f"Head {head.name!r} ({getattr(head, _KIND_ATTR, 'unknown kind')}) has "
                     f"no {what}: only a cnn_rnn head built by build_head has one.")
  return part


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
  """{"image_features" [B, D], "input_ids" int32 [B, T]} -> {"logits" [B, T, K + 1],
  "marginal_logits" [B, K]}.

  The built model carries its `CNNRNNStep` (see `head_step`), made from the same layers, and
  one-output views of its graph (`sequence_logits`, `marginal_logits`).
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
  # The marginal logits [B, K] (model.marginals) read the features through their own draw of
  # the image dropout: side_head, a Dense(K) (the BCE head inside the CNN-RNN); joint_space,
  # U_I dropout(I) . U_l[:K]^T. Built last, so the layers above keep their checkpoint keys.
  redropped = image_dropout(features)  # [B, D]
  if _marginals(model_config) == "side_head":
    marginals = layers.Dense(num_labels, kernel_regularizer=l2, dtype="float32",
                             name="marginal_head")(redropped)  # [B, K]
  else:
    marginals = label_embedding(image_projection(redropped), reverse=True,
                                labels_only=True)  # [B, K]
  inputs = {"image_features": features, "input_ids": input_ids}
  head = keras.Model(inputs, {"logits": logits, "marginal_logits": marginals},
                     name="cnn_rnn_head")
  # Two views of the same graph (same layers): training and decoding read one output each,
  # so neither draws the other's dropout.
  setattr(head, _VIEWS_ATTR, _Views(
      keras.Model(inputs, logits, name="cnn_rnn_head_logits"),
      keras.Model(features, marginals, name="cnn_rnn_head_marginals")))
  setattr(head, _STEP_ATTR, CNNRNNStep(label_embedding, lstm, output_projection,
                                       image_projection, joint_space,
                                       image_dropout=image_dropout, rnn_dropout=rnn_dropout))
  return head


class _Views:
  """The CNN-RNN head's one-output views (a plain object: not tracked, not checkpointed)."""

  def __init__(self, logits: keras.Model, marginals: keras.Model):
    self.logits = logits
    self.marginals = marginals


def _views(head: keras.Model) -> _Views:
  return _cnn_rnn_part(head, _VIEWS_ATTR, "marginal logits output")


MARGINALS = ("side_head", "joint_space")  # model.marginals


def _marginals(model_config) -> str:
  kind = model_config.marginals
  if kind not in MARGINALS:
    raise ValueError(f"Unknown model.marginals {kind!r}; expected one of {MARGINALS}.")
  return kind


def attach_backbone(backbone: keras.Model, head: keras.Model) -> keras.Model:
  """One model from images: {"images", ["input_ids"]} -> the head's outputs (bce: logits;
  cnn_rnn: {"logits", "marginal_logits"}).

  The backbone and the head keep their own weights (shared, not copied).
  """
  images = keras.Input(backbone.input_shape[1:], name="images")
  features = backbone(images)  # [B, D]
  name = f"{head_kind(head)}_model"
  if len(head.inputs) == 1:  # features only (bce)
    return keras.Model(images, head(features), name=name)
  input_ids = keras.Input((None,), dtype="int32", name="input_ids")
  outputs = head({"image_features": features, "input_ids": input_ids})
  return keras.Model({"images": images, "input_ids": input_ids}, outputs, name=name)


def sequence_logits(head: keras.Model, features, input_ids, *, training: bool = False):
  """[B, T, K + 1]: the CNN-RNN head's "logits" output alone (its marginal branch not run)."""
  return _views(head).logits({"image_features": features, "input_ids": input_ids},
                             training=training)


def marginal_logits(head: keras.Model, features, *, training: bool = False):
  """float32 [B, K]: the CNN-RNN head's "marginal_logits" output alone, the per-label logits
  from the image (`model.marginals`: the side head's Dense(K) `head.get_layer("marginal_head")`,
  or the joint space's image side); in training with its own dropout draw."""
  return tf.cast(_views(head).marginals(tf.convert_to_tensor(features), training=training),
                 tf.float32)


# Losses: per example, float32 [B] (the terms are in `losses.py`).

def _cnn_rnn_head_loss(head, features, multi_hot, *, training, max_labels, options, step):
  loss = losses.sequence_loss(_views(head).logits, head_step(head), features, multi_hot,
                              training=training, max_labels=max_labels, options=options,
                              iteration=step)  # [B]
  if options.side_loss_weight:
    loss += options.side_loss_weight * losses.label_loss(
        marginal_logits(head, features, training=training), multi_hot, options)
  return loss


def _bce_head_loss(head, features, multi_hot, *, training, max_labels, options, step):
  del max_labels, step  # one sigmoid per label: no order
  return losses.label_loss(head(features, training=training), multi_hot, options)


def head_loss(head: keras.Model, features, multi_hot, *, training: bool, max_labels=None,
              options: losses.LossOptions | None = None, step=0):
  """The head's per-example loss [B] on features [B, D] and multi-hot labels [B, K].

  CNN-RNN: the sequence loss in `options.label_order` (`losses.sequence_loss`) plus
  `options.side_loss_weight` times the per-label loss `options.label_loss` of its marginal
  logits; BCE: that per-label loss of its logits. `step` (a scalar, e.g. the optimizer's
  iteration count) draws the `random` order; see `losses.py` and docs/method.md.
  """
  return head_spec(head).loss(head, tf.convert_to_tensor(features),
                              tf.convert_to_tensor(multi_hot), training=training,
                              max_labels=max_labels, options=options or losses.LossOptions(),
                              step=step)


# Predictions: features [B, D] -> the dict `inference.predict_from_features` documents. Each
# head computes its outputs, then the set of each named decoder it has (`decoders.DECODERS`).

def _add_sets(head_name: str, out: dict, features, options) -> dict:
  """out["sets"]: {decoder: bool [B, K]} of the head's decoders whose needs are met."""
  names = decoders_lib.available(head_name, options.num_samples, marginals_trained=True)
  out["sets"] = {name: decoders_lib.resolve(decoders_lib.DECODERS[name].heads[head_name].set_fn)(
      out, features, options) for name in names}
  return out


def _cnn_rnn_predict(head, features, options):
  """The beam's path (`decoding.decode`), the marginal probabilities, with
  `options.num_samples` > 0 that many ancestral samples per image, and the named decoders'
  sets (`decoders.head_decoders("cnn_rnn")`); label_scores by `options.ranking`."""
  step = head_step(head)
  result = decoding.decode(step, step.initial_state(features), num_labels=step.num_labels,
                           beam_size=options.beam_size, max_length=options.max_length,
                           min_length=options.min_length)
  out = result._asdict()
  out["marginal_scores"] = tf.sigmoid(marginal_logits(head, features))  # [B, K]
  if options.num_samples:
    out["samples"] = sampling.sample_sets(
        step, step.initial_state(features), num_labels=step.num_labels,
        num_samples=options.num_samples, max_length=options.max_length,
        min_length=options.min_length, seeds=sampling.image_seeds(features, options.sample_seed))
    out["sample_scores"] = tf.reduce_mean(tf.cast(out["samples"], tf.float32), axis=1)  # [B, K]
  out["label_scores"] = {"path": out["label_scores"], "marginals": out["marginal_scores"],
                         "samples": out.get("sample_scores")}[options.ranking]
  if out["label_scores"] is None:
    raise ValueError("decode.ranking='samples' needs decode.num_samples > 0.")
  return _add_sets("cnn_rnn", out, features, options)


def path_set(pred, features, options):
  """The labels of the beam's best path: bool [B, K]."""
  del features, options
  k = pred["label_scores"].shape[-1]
  return tf.reduce_any(tf.one_hot(pred["labels"], k) > 0, axis=1)


def marginals_set(pred, features, options):
  """Marginal probabilities >= the thresholds (or 0.5): bool [B, K]."""
  del features
  return _above(pred["marginal_scores"], options.thresholds)


def expected_f1_samples_set(pred, features, options):
  """GFM over the ancestral samples (`pred["samples"]`): bool [B, K]."""
  del features, options
  return expected_f1.gfm(*expected_f1.size_joint_from_sets(pred["samples"]))[0]


def expected_f1_independent_set(pred, features, options):
  """GFM under independent labels (exact) of the BCE probabilities: bool [B, K]."""
  del features, options
  return expected_f1.gfm(*expected_f1.size_joint_independent(pred["label_scores"]))[0]


def threshold_set(pred, features, options):
  """Every label with p >= its threshold (or 0.5), uncapped: bool [B, K]."""
  del features
  return _above(pred["label_scores"], options.thresholds)


def _above(probs, thresholds):
  """bool [B, K]: probs >= thresholds (float [K]; None: 0.5 for every label)."""
  if thresholds is None:
    return probs >= 0.5
  thresholds = tf.convert_to_tensor(thresholds, tf.float32)
  if thresholds.shape != (probs.shape[-1],):
    raise ValueError(f"thresholds must be [K] = [{probs.shape[-1]}], got shape "
                     f"{thresholds.shape}.")
  return probs >= thresholds[tf.newaxis, :]


def _bce_predict(head, features, options):
  """Every label with p >= its threshold (0.5, or `options.thresholds` float [K]: the
  calibrated ones) by decreasing p (at most max_length, at least min_length), and the named
  decoders' sets (`decoders.head_decoders("bce")`)."""
  logits = tf.cast(head(features, training=False), tf.float32)  # [B, K]
  num_labels = logits.shape[-1]
  min_length = options.min_length
  length = decoding.check_lengths(num_labels, options.max_length, min_length)
  probs = tf.sigmoid(logits)  # [B, K]
  above = _above(probs, options.thresholds)  # [B, K]
  # Labels above their threshold first (by p, exact), then the rest (by p): a prefix of the
  # ranking is the set.
  rank_score = tf.where(above, probs, probs - 2.0)  # [B, K]
  _, top_ids = tf.math.top_k(rank_score, length)  # [B, L]
  top_above = tf.gather(above, top_ids, batch_dims=1)  # [B, L]
  rank = tf.range(length)[tf.newaxis, :]
  chosen = tf.logical_or(top_above, rank < min_length)  # [B, L], a prefix of each row
  labels = tf.cast(tf.where(chosen, top_ids, vocab_lib.PAD_ID), tf.int32)  # [B, L]
  out = {"labels": labels, "num_labels": tf.reduce_sum(tf.cast(chosen, tf.int32), axis=1),
         "label_scores": probs}  # no path: no path_log_prob, no paths
  return _add_sets("bce", out, features, options)


OUTPUTS = ("labels", "num_labels", "label_scores")  # every head's predictions


class HeadSpec(NamedTuple):
  """What the package needs to know of one kind of head (an entry of `HEADS`)."""
  # (model_config, feature_dim, num_labels) -> keras.Model
  build: Callable
  # (head, features [B, D], multi_hot [B, K], *, training, max_labels,
  #  options: losses.LossOptions, step) -> float32 [B]
  loss: Callable
  # (head, features [B, D], options: inference.DecodeOptions) -> dict of `outputs`, with
  #  "sets": {decoder name: bool [B, K]} (`_add_sets`)
  predict: Callable
  # The keys of `predict`'s outputs (`inference.predict_from_features` documents them): only
  # what the head has (a head without a path has no path_log_prob, no paths).
  outputs: tuple[str, ...] = OUTPUTS


HEADS: dict[str, HeadSpec] = {
    "cnn_rnn": HeadSpec(build_cnn_rnn_head, _cnn_rnn_head_loss, _cnn_rnn_predict,
                        OUTPUTS + ("path_log_prob", "paths", "paths_log_prob",
                                   "marginal_scores")),
    "bce": HeadSpec(build_bce_head, _bce_head_loss, _bce_predict),
}
