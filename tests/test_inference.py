"""Predictions and prediction masks of every registered head (cnn_rnn_tf.inference)."""

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import decoders
from cnn_rnn_tf import inference
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import rule_masks
from helpers import tiny_head, tiny_model_config

K = 5


def test_cnn_rnn_masks_by_value():
  labels = np.array([[3, 0, 4, 1], [2, -1, -1, -1], [-1, -1, -1, -1]])
  scores = np.zeros((3, K))  # the CNN-RNN masks do not look at the scores
  top3, every = inference.prediction_masks("cnn_rnn", labels, scores, K)
  np.testing.assert_array_equal(top3, [[1, 0, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(every, [[1, 1, 0, 1, 1], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])


def test_bce_masks_by_value():
  scores = np.array([
      [0.9, 0.8, 0.7, 0.6, 0.1],   # four >= 0.5: top3 keeps the three highest
      [0.2, 0.95, 0.4, 0.3, 0.1],  # one >= 0.5: top3 must not fill up with p < 0.5
      [0.4, 0.3, 0.2, 0.1, 0.0],   # none
      [0.5, 0.1, 0.1, 0.1, 0.1],   # exactly 0.5 counts
  ])
  labels = np.full((4, 3), -1)  # the BCE masks do not look at the labels
  top3, every = inference.prediction_masks("bce", labels, scores, K)
  np.testing.assert_array_equal(top3, [[1, 1, 1, 0, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0],
                                       [1, 0, 0, 0, 0]])
  np.testing.assert_array_equal(every, [[1, 1, 1, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0],
                                        [1, 0, 0, 0, 0]])


def test_unknown_head_is_named():
  with pytest.raises(ValueError, match="'svm'.*bce"):
    inference.prediction_masks("svm", np.zeros((1, 1)), np.zeros((1, K)), K)


@pytest.mark.parametrize("beam", [1, 3])
def test_cnn_rnn_outputs_and_n_best(beam):
  head = tiny_head(num_labels=K, seed=4)
  feats = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
  out = inference.predict_from_features(head, feats, beam_size=beam, max_length=3)
  assert sorted(out) == sorted(inference.OUTPUT_KEYS + (
      "path_log_prob", "paths", "paths_log_prob", "marginal_scores", "set_path",
      "set_marginals"))
  assert sorted(inference.head_outputs("cnn_rnn")) == sorted(k for k in out
                                                             if not k.startswith("set_"))
  assert out["labels"].shape == (3, 3) and out["paths"].shape == (3, beam, 3)
  assert out["paths"].dtype == tf.int32 and out["paths_log_prob"].shape == (3, beam)
  np.testing.assert_array_equal(out["paths"][:, 0], out["labels"])
  np.testing.assert_array_equal(out["paths_log_prob"][:, 0], out["path_log_prob"])
  assert np.all(np.diff(out["paths_log_prob"].numpy(), axis=1) <= 0)


def test_bce_outputs_have_no_path():
  head = tiny_head(num_labels=K, seed=2, head="bce")
  feats = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
  out = inference.predict_from_features(head, feats, beam_size=3, max_length=4, min_length=1)
  probs = tf.sigmoid(head(feats)).numpy()
  np.testing.assert_allclose(out["label_scores"], probs, rtol=1e-6)
  for i in range(4):
    n = int(out["num_labels"][i])
    want = [int(j) for j in np.argsort(-probs[i]) if probs[i, j] >= 0.5][:4]
    want = want or [int(np.argmax(probs[i]))]  # min_length 1 fills up with the most probable
    assert out["labels"][i, :n].numpy().tolist() == want
  # Only what the head has: no path_log_prob, no paths.
  assert sorted(k for k in out if not k.startswith("set_")) == sorted(inference.OUTPUT_KEYS)
  assert inference.head_outputs("bce") == inference.OUTPUT_KEYS
  assert sorted(k for k in out if k.startswith("set_")) == ["set_expected_f1", "set_threshold"]


def test_a_new_head_is_one_registration(monkeypatch):
  """A head registered once in model.HEADS builds, trains, predicts and is evaluated."""
  import keras  # pylint: disable=g-import-not-at-top

  def build(model_config, feature_dim, num_labels):
    del model_config
    x = keras.Input((feature_dim,), name="image_features")
    return keras.Model(x, keras.layers.Dense(num_labels)(x), name="linear_head")

  bce = model_lib.HEADS["bce"]
  monkeypatch.setitem(model_lib.HEADS, "linear", model_lib.HeadSpec(
      build=build, loss=bce.loss, predict=bce.predict))
  for name in decoders.head_decoders("bce"):  # its decoders: the BCE head's
    entry = decoders.DECODERS[name]
    monkeypatch.setitem(decoders.DECODERS, name, entry._replace(
        heads={**entry.heads, "linear": entry.heads["bce"]}))
  head = model_lib.build_head(tiny_model_config("linear"), 6, K)
  assert model_lib.head_kind(head) == "linear"
  feats = np.ones((2, 6), np.float32)
  assert model_lib.head_loss(head, feats, np.zeros((2, K)), training=False).shape == (2,)
  out = inference.predict_from_features(head, feats, beam_size=2, max_length=K)
  top3, every = inference.prediction_masks("linear", out["labels"], out["label_scores"], K)
  assert top3.shape == every.shape == (2, K)


def test_paper_rule_by_value():
  scores = np.array([
      [0.9, 0.8, 0.7, 0.6, 0.1],   # four >= 0.5: the three highest, as top3
      [0.2, 0.95, 0.4, 0.3, 0.1],  # one >= 0.5: the paper's rule still takes three
      [0.4, 0.3, 0.2, 0.1, 0.0],   # none >= 0.5: three all the same
  ])
  masks = inference.rule_masks("bce", {"labels": np.full((3, 3), -1), "label_scores": scores}, K)
  assert sorted(masks) == ["all", "top3", "top3_paper"]  # no thresholds: no calibrated rules
  np.testing.assert_array_equal(masks["top3_paper"], [[1, 1, 1, 0, 0], [0, 1, 1, 1, 0],
                                                      [1, 1, 1, 0, 0]])
  labels = np.array([[3, 0, 4, 1], [2, -1, -1, -1]])
  masks = inference.rule_masks("cnn_rnn", {"labels": labels, "label_scores": np.zeros((2, K))}, K)
  np.testing.assert_array_equal(masks["top3_paper"], [[1, 0, 0, 1, 1], [0, 0, 1, 0, 0]])
  assert set(masks) <= set(metrics_lib.RULES)


def test_calibrated_rules_by_value():
  scores = np.array([[0.9, 0.45, 0.42, 0.41, 0.1],
                     [0.3, 0.2, 0.1, 0.05, 0.6]])
  thresholds = np.array([0.95, 0.4, 0.4, 0.4, 0.7])
  masks = inference.rule_masks("bce", {"labels": np.full((2, 3), -1), "label_scores": scores}, K,
                               thresholds)
  # label 0 (0.9) is under its 0.95; labels 1..3 are over 0.4; label 4 (0.6) under 0.7.
  np.testing.assert_array_equal(masks["all_calibrated"], [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
  # top3_calibrated: of the 3 most probable (0, 1, 2), those over their threshold.
  np.testing.assert_array_equal(masks["top3_calibrated"], [[0, 1, 1, 0, 0], [0, 0, 0, 0, 0]])
  with pytest.raises(ValueError, match=r"\[5\].*\(4,\)"):
    inference.rule_masks("bce", {"labels": np.full((2, 3), -1), "label_scores": scores}, K,
                         thresholds[:4])
  # The cnn_rnn head's thresholds are its marginals' (all_marginals), not the path's.
  masks = inference.rule_masks("cnn_rnn", {"labels": np.full((2, 3), -1), "label_scores": scores,
                                           "marginal_scores": scores}, K, thresholds)
  np.testing.assert_array_equal(masks["all_marginals"], [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(masks["top3_marginals"], [[0, 1, 1, 1, 0], [0, 0, 0, 0, 0]])
  assert not masks["all"].any()  # the path (empty here) is untouched by thresholds


def test_bce_outputs_use_the_thresholds():
  head = tiny_head(num_labels=K, seed=2, head="bce")
  feats = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")
  probs = tf.sigmoid(head(feats)).numpy()
  thresholds = np.array([0.9, 0.1, 0.5, 0.3, 0.7], np.float32)
  out = inference.predict_from_features(head, feats, beam_size=2, max_length=K,
                                        thresholds=thresholds)
  for i in range(4):
    n = int(out["num_labels"][i])
    want = [int(j) for j in np.argsort(-probs[i]) if probs[i, j] >= thresholds[j]]
    assert out["labels"][i, :n].numpy().tolist() == want
    assert np.all(out["labels"][i, n:].numpy() == -1)
  default = inference.predict_from_features(head, feats, beam_size=2, max_length=K)
  halves = inference.predict_from_features(head, feats, beam_size=2, max_length=K,
                                           thresholds=np.full(K, 0.5, np.float32))
  np.testing.assert_array_equal(default["labels"], halves["labels"])
  assert not np.array_equal(out["num_labels"], default["num_labels"])


def _brute_expected_f1(probs):
  """The best expected example-F1 under independent labels, by enumerating every set."""
  import itertools  # pylint: disable=g-import-not-at-top
  sets = np.array(list(itertools.product([False, True], repeat=len(probs))))
  q = np.prod(np.where(sets, probs, 1 - probs), axis=1)  # P(y) for every y
  def f1(y, h):
    return 1.0 if not y.any() and not h.any() else 2.0 * (y & h).sum() / (y.sum() + h.sum())
  return max(sum(qy * f1(y, h) for y, qy in zip(sets, q)) for h in sets)


def test_decoder_sets_of_both_heads():
  feats = np.random.default_rng(3).normal(size=(4, 6)).astype("float32")
  head = tiny_head(num_labels=K, seed=5)
  out = inference.predict_from_features(head, feats, beam_size=2, max_length=K, num_samples=64,
                                        sample_seed=3)
  path = rule_masks.path_mask(out["labels"].numpy(), K)
  np.testing.assert_array_equal(out["set_path"], path)  # the path decoder: the beam's path
  np.testing.assert_array_equal(out["set_marginals"], out["marginal_scores"].numpy() >= 0.5)
  np.testing.assert_allclose(out["label_scores"], out["marginal_scores"])  # ranking=marginals
  again = inference.predict_from_features(head, feats, beam_size=2, max_length=K,
                                          num_samples=64, sample_seed=3)
  np.testing.assert_array_equal(out["set_expected_f1"], again["set_expected_f1"])  # seeded
  # BCE: expected_f1 is exact under independent labels: its set reaches the brute-force best.
  bce = tiny_head(num_labels=K, seed=6, head="bce")
  out = inference.predict_from_features(bce, feats, beam_size=2, max_length=K)
  probs = out["label_scores"].numpy().astype(np.float64)
  for i in range(4):
    h = out["set_expected_f1"].numpy()[i]
    import itertools  # pylint: disable=g-import-not-at-top
    sets = np.array(list(itertools.product([False, True], repeat=K)))
    q = np.prod(np.where(sets, probs[i], 1 - probs[i]), axis=1)
    got = sum(qy * (1.0 if not y.any() and not h.any() else
                    2.0 * (y & h).sum() / (y.sum() + h.sum())) for y, qy in zip(sets, q))
    assert got == pytest.approx(_brute_expected_f1(probs[i]), abs=1e-5)
  masks = inference.rule_masks("bce", {k: v.numpy() for k, v in out.items()}, K)
  np.testing.assert_array_equal(masks["all_expected_f1"], out["set_expected_f1"])
  assert (masks["top3_expected_f1"] <= masks["all_expected_f1"]).all()
  assert (masks["top3_expected_f1"].sum(axis=1) == np.minimum(
      3, masks["all_expected_f1"].sum(axis=1))).all()
