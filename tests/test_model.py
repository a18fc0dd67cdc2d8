"""CNN-RNN and BCE heads (cnn_rnn_tf.model)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import inference
from cnn_rnn_tf import losses
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib
from helpers import tiny_head, tiny_model_config

K = 5
SEQUENCE_ONLY = losses.LossOptions(side_loss_weight=0.0)


def side_loss(head, feats, multi_hot, *, training):
  """The side head's term of the CNN-RNN's loss, unweighted (model.label_loss = bce)."""
  return losses.bce(model_lib.marginal_logits(head, feats, training=training), multi_hot)


def test_cnn_rnn_head_shapes_and_tied_scores():
  head = model_lib.build_head(tiny_model_config(), feature_dim=6, num_labels=K)
  ids = np.array([[K + 1, 0, 3], [K + 1, 2, -1]], np.int32)
  out = head({"image_features": np.ones((2, 6), np.float32), "input_ids": ids})
  assert sorted(out) == ["logits", "marginal_logits"]
  logits = out["logits"]
  assert logits.shape == (2, 3, K + 1) and out["marginal_logits"].shape == (2, K)
  emb = head.get_layer("label_embedding")
  assert tuple(emb.embeddings.shape) == (K + 2, 8)
  # The scores are the joint vector against the label embedding rows (tied weights).
  joint = np.random.default_rng(0).normal(size=(3, 8)).astype("float32")
  np.testing.assert_allclose(emb(joint, reverse=True),
                             joint @ emb.embeddings.numpy()[:K + 1].T, rtol=1e-5)


def test_sequence_logits_equal_step_by_step_decoding():
  head = tiny_head(num_labels=K, seed=3)
  feats = np.random.default_rng(1).normal(size=(2, 6)).astype("float32")
  ids = np.array([[K + 1, 1, 4, 0], [K + 1, 3, 2, K]], np.int32)
  logits = head({"image_features": feats, "input_ids": ids}, training=False)["logits"]
  np.testing.assert_array_equal(logits, model_lib.sequence_logits(head, feats, ids))
  step = model_lib.head_step(head)
  state = step.initial_state(feats)
  for t in range(4):
    log_probs, state = step(tf.constant(ids[:, t]), state)
    np.testing.assert_allclose(log_probs, tf.nn.log_softmax(logits[:, t]), rtol=1e-4,
                               atol=1e-5)


def test_padding_does_not_change_earlier_steps_and_costs_no_loss():
  head = tiny_head(num_labels=K, seed=1)
  feats = np.ones((1, 6), np.float32)
  multi_hot = np.array([[0, 1, 0, 1, 0]], np.float32)
  targets = vocab_lib.sequence_targets(multi_hot)  # [1, 3]: 1, 3, END
  np.testing.assert_array_equal(targets, [[1, 3, K]])
  loss = model_lib.head_loss(head, feats, multi_hot, training=False, options=SEQUENCE_ONLY)
  # Same image inside a batch whose other member has more labels (so more padding).
  both = np.concatenate([multi_hot, np.ones((1, K), np.float32)])
  loss_both = model_lib.head_loss(head, np.concatenate([feats, feats]), both, training=False,
                                  options=SEQUENCE_ONLY)
  np.testing.assert_allclose(loss_both[0], loss[0], rtol=1e-5)
  # The loss is the sum of -log P over the steps 1, 3, END.
  step = model_lib.head_step(head)
  state, prev, want = step.initial_state(feats), K + 1, 0.0
  for token in (1, 3, K):
    log_probs, state = step(tf.constant([prev]), state)
    want -= float(log_probs[0, token])
    prev = token
  np.testing.assert_allclose(loss[0], want, rtol=1e-4)


def test_bce_head_and_loss():
  head = model_lib.build_head(tiny_model_config("bce"), feature_dim=6, num_labels=K)
  logits = head(np.zeros((3, 6), np.float32))
  assert logits.shape == (3, K)
  loss = model_lib.head_loss(head, np.zeros((3, 6), np.float32), np.zeros((3, K)),
                             training=False)
  assert loss.shape == (3,)


def test_weight_decay_adds_regularization_losses():
  head = model_lib.build_head(tiny_model_config(weight_decay=1e-4), 6, K)
  head({"image_features": np.ones((1, 6), np.float32), "input_ids": np.zeros((1, 2), np.int32)})
  assert len(head.losses) >= 5  # embedding, lstm kernel + recurrent, two projections


@pytest.mark.parametrize("marginals", ["side_head", "joint_space"])
def test_head_save_and_load_round_trip(tmp_path, marginals):
  head = tiny_head(num_labels=K, seed=2, marginals=marginals)
  path = tmp_path / "head.keras"
  head.save(path)
  loaded = keras.models.load_model(path)
  inputs = {"image_features": np.ones((2, 6), np.float32),
            "input_ids": np.array([[K + 1, 0], [K + 1, -1]], np.int32)}
  want, got = head(inputs), loaded(inputs)
  for key in ("logits", "marginal_logits"):
    np.testing.assert_allclose(want[key], got[key], rtol=1e-6)
  # A deserialized model has no registry record: a clear error, not a guess by name.
  with pytest.raises(ValueError, match="build_head"):
    model_lib.head_kind(loaded)


def test_step_view_holds_the_heads_own_layers_and_vocab_ids():
  head = tiny_head(num_labels=K, seed=2)
  step = model_lib.head_step(head)
  layer_ids = {id(layer) for layer in head.layers}
  for layer in (step.label_embedding, step.lstm, step.output_projection,
                step.image_projection, step.joint_space):
    assert id(layer) in layer_ids
  assert (step.num_labels, step.end_id, step.start_id) == (
      K, vocab_lib.end_id_of(K), vocab_lib.start_id_of(K))
  assert vocab_lib.LabelVocab(list("abcde")).start_id == step.start_id
  with pytest.raises(ValueError, match="no step function"):
    model_lib.head_step(tiny_head(num_labels=K, head="bce"))


def test_head_kind_comes_from_the_registry_not_the_model_name():
  head = tiny_head(num_labels=K, head="bce")
  head.name = "renamed"  # the kind is recorded by build_head, not read off the name
  assert model_lib.head_kind(head) == "bce"
  assert model_lib.head_spec(head) is model_lib.HEADS["bce"]
  assert sorted(model_lib.HEADS) == ["bce", "cnn_rnn"]


def test_config_validation_knows_every_registered_head():
  """config_lib keeps its own tuple (it must not import TensorFlow); it must match HEADS."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  assert set(config_lib.HEADS) == set(model_lib.HEADS)


def test_attach_backbone_shares_weights():
  backbone = backbones.build_backbone("small_cnn", image_size=32, trainable=True)
  head = model_lib.build_head(tiny_model_config(), backbone.output_shape[-1], K)
  full = model_lib.attach_backbone(backbone, head)
  images = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
  ids = np.array([[K + 1, 0], [K + 1, 2]], np.int32)
  got = full({"images": images, "input_ids": ids})
  want = head({"image_features": backbone(images), "input_ids": tf.constant(ids)})
  for key in ("logits", "marginal_logits"):
    np.testing.assert_allclose(got[key], want[key], rtol=1e-5)
  assert len(full.trainable_weights) == len(backbone.trainable_weights) + len(
      head.trainable_weights)


def test_unknown_head_is_named():
  with pytest.raises(ValueError, match="'resnet_head'"):
    model_lib.build_head(tiny_model_config(head="resnet_head"), 6, K)


def _grads(loss_fn, head, feats):
  """{variable path: gradient or None} of loss_fn() and the gradient on the features."""
  feats = tf.constant(feats)
  with tf.GradientTape() as tape:
    tape.watch(feats)
    loss = tf.reduce_sum(loss_fn(feats))
  variables = head.trainable_variables
  grads = tape.gradient(loss, variables + [feats])
  return {v.path: g for v, g in zip(variables, grads[:-1])}, grads[-1]


def test_side_loss_scores_the_image_projection_against_the_label_rows():
  head = tiny_head(num_labels=K, seed=6, marginals="joint_space")
  step = model_lib.head_step(head)
  rng = np.random.default_rng(4)
  feats = rng.normal(size=(3, 6)).astype("float32")
  multi_hot = (rng.random((3, K)) < 0.5).astype("float32")
  kernel, bias = (np.float64(w.numpy()) for w in (step.image_projection.kernel,
                                                   step.image_projection.bias))
  image = feats @ kernel + bias
  logits = image @ np.float64(step.label_embedding.embeddings.numpy()[:K]).T  # [3, K]: labels
  # -y log(p) - (1 - y) log(1 - p), in the stable form.
  want = (np.maximum(logits, 0) - logits * multi_hot + np.log1p(np.exp(-np.abs(logits)))).sum(1)
  got = side_loss(head, feats, multi_hot, training=False)
  np.testing.assert_allclose(got, want, rtol=1e-4)
  # head_loss adds weight x the side term to the sequence loss; weight 0 adds nothing.
  base = model_lib.head_loss(head, feats, multi_hot, training=False, options=SEQUENCE_ONLY)
  with_aux = model_lib.head_loss(head, feats, multi_hot, training=False,
                                 options=losses.LossOptions(side_loss_weight=0.5))
  np.testing.assert_allclose(with_aux - base, 0.5 * want, rtol=1e-4, atol=1e-5)


def test_side_loss_gradient_reaches_only_the_image_side_and_the_label_rows():
  head = tiny_head(num_labels=K, seed=7, marginals="joint_space")
  rng = np.random.default_rng(5)
  feats = rng.normal(size=(4, 6)).astype("float32")
  multi_hot = (rng.random((4, K)) < 0.5).astype("float32")
  weight = 2.0

  def loss(options):
    return lambda f: model_lib.head_loss(head, f, multi_hot, training=True, options=options)

  with_aux, feats_with = _grads(loss(losses.LossOptions(side_loss_weight=weight)), head, feats)
  without, feats_without = _grads(loss(SEQUENCE_ONLY), head, feats)
  aux_only, feats_aux = _grads(
      lambda f: side_loss(head, f, multi_hot, training=True), head, feats)
  touched = set()
  for path, g in aux_only.items():
    diff = with_aux[path] - without[path]
    np.testing.assert_allclose(diff, weight * (0 if g is None else g), atol=1e-4)
    if g is not None and np.abs(g).max() > 0:
      touched.add(path.split("/")[0])
    if path.startswith(("relu_lstm", "output_projection")):
      assert g is None or not np.any(g), path  # the aux term never reaches them
  assert touched == {"image_projection", "label_embedding"}
  embedding = aux_only[model_lib.head_step(head).label_embedding.embeddings.path]
  embedding = tf.convert_to_tensor(embedding).numpy()  # IndexedSlices -> dense
  assert np.abs(embedding[:K]).max() > 0 and not np.any(embedding[K:])  # END, START: none
  # The features (a trained backbone) get the aux term's gradient too.
  assert np.abs(feats_aux).max() > 0
  np.testing.assert_allclose(feats_with - feats_without, weight * feats_aux, atol=1e-4)


def test_losses_of_every_order_run_inside_a_distributed_step():
  """The trainer calls head_loss inside strategy.run in a tf.function (replica context)."""
  head = tiny_head(num_labels=K, seed=8)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  feats = np.random.default_rng(6).normal(size=(4, 6)).astype("float32")
  multi_hot = np.array([[1, 1, 0, 0, 1], [0, 0, 0, 0, 0], [0, 1, 0, 0, 0], [1, 1, 1, 1, 1]],
                       np.float32)
  for order in ("random", "pla", "mla"):
    options = losses.LossOptions(label_order=order, side_loss_weight=1.0)

    @tf.function
    def run(step):
      return strategy.run(lambda: model_lib.head_loss(  # pylint: disable=cell-var-from-loop
          head, feats, multi_hot, training=True, max_labels=3, options=options, step=step))

    loss = run(tf.constant(3, tf.int64))
    assert loss.shape == (4,) and np.all(np.isfinite(loss))
    np.testing.assert_allclose(loss, model_lib.head_loss(
        head, feats, multi_hot, training=False, max_labels=3, options=options, step=3),
        rtol=1e-4)


@pytest.mark.parametrize("marginals", ["side_head", "joint_space"])
def test_marginal_logits_are_the_heads_graph_output(marginals):
  head = tiny_head(num_labels=K, seed=4, marginals=marginals, dropout=0.5)
  feats = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
  ids = np.array([[K + 1, 0]] * 3, np.int32)
  out = head({"image_features": feats, "input_ids": ids})
  np.testing.assert_array_equal(model_lib.marginal_logits(head, feats), out["marginal_logits"])
  # In training the branch draws its own dropout: two calls differ, and neither is the output
  # without dropout.
  first, second = (model_lib.marginal_logits(head, feats, training=True) for _ in range(2))
  assert not np.allclose(first, second) and not np.allclose(first, out["marginal_logits"])
  assert ("marginal_head" in [layer.name for layer in head.layers]) == (marginals == "side_head")


def test_side_head_is_a_full_rank_bce_classifier_on_the_features():
  head = tiny_head(num_labels=K, seed=8)  # model.marginals = "side_head" (the default)
  side_head = head.get_layer("marginal_head")  # a layer of the head's graph, its last
  assert head.layers[-1] is side_head and not hasattr(head, "marginal_head")
  assert {v.path for v in side_head.trainable_variables} <= {
      v.path for v in head.trainable_variables}  # the head's weights: checkpointed, trained
  rng = np.random.default_rng(6)
  feats = rng.normal(size=(3, 6)).astype("float32")
  multi_hot = (rng.random((3, K)) < 0.5).astype("float32")
  kernel, bias = (np.float64(w.numpy()) for w in side_head.weights)
  logits = feats @ kernel + bias  # [3, K]
  want = (np.maximum(logits, 0) - logits * multi_hot + np.log1p(np.exp(-np.abs(logits)))).sum(1)
  np.testing.assert_allclose(side_loss(head, feats, multi_hot, training=False), want, rtol=1e-4)
  probs = inference.predict_from_features(head, feats, beam_size=2,
                                          max_length=K)["marginal_scores"]
  np.testing.assert_allclose(probs, 1 / (1 + np.exp(-logits)), rtol=1e-4)


def test_side_head_gradient_reaches_the_backbone_end_to_end_and_not_the_lstm():
  backbone = backbones.build_backbone("small_cnn", image_size=16, trainable=True)
  head = tiny_head(num_labels=K, seed=9, feature_dim=backbone.output_shape[-1])
  images = tf.constant(np.random.default_rng(7).uniform(0, 255, (2, 16, 16, 3)), tf.float32)
  multi_hot = tf.one_hot([[0, 2], [1, 1]], K)  # [2, K]
  multi_hot = tf.reduce_max(multi_hot, axis=1)
  with tf.GradientTape() as tape:
    loss = tf.reduce_sum(side_loss(head, backbone(images, training=True), multi_hot,
                                   training=True))
  variables = backbone.trainable_variables + head.trainable_variables
  grads = dict(zip([v.path for v in variables], tape.gradient(loss, variables)))
  touched = {p for p, g in grads.items() if g is not None and np.abs(np.asarray(
      tf.convert_to_tensor(g))).max() > 0}
  assert any(p.startswith("conv1") for p in touched), sorted(touched)  # the backbone learns
  assert {p.split("/")[0] for p in touched if p in {v.path for v in head.trainable_variables}
          } == {"marginal_head"}  # not the LSTM, the projections or the label embedding


# Keras' own layer harness for TiedLabelEmbedding, the mixed_float16 policy included (as
# keras/src/layers/core/embedding_test.py calls it).
from keras.src import testing as keras_testing  # noqa: E402


class TiedLabelEmbeddingKerasHarnessTest(keras_testing.TestCase):

  def test_forward_embeds_ids(self):
    self.run_layer_test(
        model_lib.TiedLabelEmbedding, init_kwargs={"num_labels": K, "embedding_dim": 4},
        input_data=np.array([[K + 1, 0, 3, -1], [K + 1, K, -1, -1]], "int32"),
        expected_output_shape=(2, 4, 4), expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0, supports_masking=True,
        expected_mask_shape=(2, 4))

  def test_reverse_scores_the_joint_space(self):
    self.run_layer_test(
        model_lib.TiedLabelEmbedding, init_kwargs={"num_labels": K, "embedding_dim": 4},
        input_shape=(2, 3, 4), call_kwargs={"reverse": True},
        expected_output_shape=(2, 3, K + 1), expected_num_trainable_weights=1,
        expected_num_non_trainable_weights=0, supports_masking=True)


# ---- Planted-bug tests (issue 20): each fails if the named bug is put back. ----

def test_loss_options_carry_the_side_weight_alone():
  """model.side_loss_weight alone (the label order unchanged) reaches the loss through
  `loss_options`: dropping it there would make the weight always 0."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  head = tiny_head(num_labels=K, seed=5)
  feats = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
  multi_hot = np.array([[1, 0, 1, 0, 0], [0, 1, 0, 0, 1], [1, 1, 1, 0, 0]], np.float32)
  by_weight = {}
  for weight in (0.0, 0.5):
    config = config_lib.default_config()
    config.model.side_loss_weight = weight
    options = losses.loss_options(config)
    assert options.label_order == config_lib.default_config().train.label_order
    assert options.side_loss_weight == weight
    by_weight[weight] = model_lib.head_loss(head, feats, multi_hot, training=False,
                                            options=options).numpy()
  aux = side_loss(head, feats, multi_hot, training=False).numpy()
  assert np.all(aux > 0)
  np.testing.assert_allclose(by_weight[0.5] - by_weight[0.0], 0.5 * aux, rtol=1e-4, atol=1e-5)
