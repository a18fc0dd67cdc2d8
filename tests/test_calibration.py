"""Per-class thresholds of the calibrated BCE (cnn_rnn_tf.calibration)."""

import numpy as np
from PIL import Image
import pytest

from cnn_rnn_tf import calibration
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib


def _f1(pos, pred):
  tp = np.sum(pos & pred)
  fp = np.sum(~pos & pred)
  fn = np.sum(pos & ~pred)
  return 0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn)


def _best_f1(pos, score):
  """Brute force: the best F1 of any threshold (each distinct score, and above all)."""
  return max(_f1(pos, score >= t) for t in np.r_[np.unique(score), np.inf])


def test_thresholds_maximize_f1_against_brute_force():
  rng = np.random.default_rng(0)
  for trial in range(300):
    n, k = rng.integers(1, 10), rng.integers(1, 4)
    probs = np.round(rng.random((n, k)), 1)  # ties on purpose
    y = rng.random((n, k)) < 0.4
    th = calibration.fit_thresholds(y, probs)
    assert th.dtype == np.float32 and th.shape == (k,)
    for c in range(k):
      if not y[:, c].any():
        assert th[c] == 0.5  # no positive: F1 cannot rank thresholds; the default stays
        continue
      assert np.isclose(_f1(y[:, c], probs[:, c] >= th[c]), _best_f1(y[:, c], probs[:, c])), (
          trial, c)


def test_ties_go_to_the_highest_threshold_halfway_between_scores():
  # Cutting after 0.9 gives F1 = 2/3 (tp 1, fn 1); after 0.6 F1 = 4/5 (tp 2, fp 1) is best.
  y = np.array([[1], [0], [1], [0]], bool)
  probs = np.array([[0.9], [0.7], [0.6], [0.2]])
  np.testing.assert_allclose(calibration.fit_thresholds(y, probs), [0.4])  # (0.6 + 0.2) / 2
  # Two cuts with the same F1 2/3: after 0.9 (tp 1, fn 1) and after 0.5 (tp 2, fp 2): the
  # higher threshold, halfway between 0.9 and 0.7.
  y = np.array([[1], [0], [0], [1], [0]], bool)
  probs = np.array([[0.9], [0.7], [0.6], [0.5], [0.1]])
  np.testing.assert_allclose(calibration.fit_thresholds(y, probs), [0.8])


def test_bad_inputs_are_named():
  with pytest.raises(ValueError, match=r"\(2, 3\) and \(2, 2\)"):
    calibration.fit_thresholds(np.zeros((2, 3), bool), np.zeros((2, 2)))
  probs = np.zeros((2, 2))
  probs[1, 0] = np.nan
  with pytest.raises(ValueError, match=r"example 1, label 0"):
    calibration.fit_thresholds(np.zeros((2, 2), bool), probs)


@pytest.fixture
def csv_config(tmp_path):
  rng = np.random.default_rng(0)
  rows = ["image_name,tags"]
  for i in range(60):
    tags = [t for t in "abc" if rng.random() < 0.5] or ["a"]
    pixels = np.full((6, 5, 3), 0, np.uint8)
    pixels[..., 0] = 80 * ("a" in tags) + i
    pixels[..., 1] = 80 * ("b" in tags)
    pixels[..., 2] = 80 * ("c" in tags)
    Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    rows.append(f"{i}.png,{' '.join(tags)}")
  (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
  config = config_lib.default_config()
  config.data.source = "csv"
  config.data.train_csv = config.data.eval_csv = str(tmp_path / "train.csv")
  config.data.calibration_fraction = 0.3
  config.model.head = "bce"
  config.model.backbone = "small_cnn"
  config.model.backbone_weights = None
  config.model.image_size = 8
  config.train.batch_size = 8
  return config


def _calibrated(config, cache_dir):
  """(thresholds calibrate fits, the held-out part's predictions) of fresh models."""
  source = data_lib.get_source(config.data)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  backbone, head = workdir_lib.build_backbone_and_head(config, vocab.num_labels)
  thresholds = calibration.calibrate(config, vocab, backbone, head, cache_dir=cache_dir)
  held = evaluate_lib.predict_models(config, vocab, backbone, head, "train",
                                     cache_dir=cache_dir, part=data_lib.CALIBRATION)
  return vocab, thresholds, held


def test_calibrate_fits_on_the_held_out_part_only(csv_config, tmp_path):
  vocab, thresholds, held = _calibrated(csv_config, str(tmp_path))
  keys = [k.decode() for k in held["keys"]]
  assert 8 <= len(keys) <= 30  # about 0.3 of 60
  assert np.all(data_lib.in_calibration_part(np.array(keys), 0.3).numpy())
  np.testing.assert_array_equal(thresholds, calibration.fit_thresholds(held["y_true"],
                                                                       held["label_scores"]))
  for c in range(vocab.num_labels):
    pos, score = held["y_true"][:, c], held["label_scores"][:, c]
    if pos.any():
      assert np.isclose(_f1(pos, score >= thresholds[c]), _best_f1(pos, score))


def test_cnn_rnn_calibrates_its_marginals_on_the_held_out_part(csv_config, tmp_path):
  config = csv_config
  config.model.head = "cnn_rnn"
  config.model.embedding_dim, config.model.lstm_units = 8, 16
  assert calibration.calibrates(config)
  _, thresholds, held = _calibrated(config, str(tmp_path))
  np.testing.assert_array_equal(thresholds, calibration.fit_thresholds(
      held["y_true"], held["marginal_scores"]))
  config.model.side_loss_weight = 0.0  # the paper's training: no marginals to calibrate
  assert not calibration.calibrates(config)


def test_calibrate_refuses_fraction_zero(csv_config, tmp_path):
  vocab = vocab_lib.LabelVocab(["a", "b", "c"])
  csv_config.data.calibration_fraction = 0.0
  with pytest.raises(ValueError, match="calibration_fraction is 0"):
    calibration.calibrate(csv_config, vocab, None, None, cache_dir=str(tmp_path))


def test_an_empty_held_out_part_is_its_own_error(csv_config, tmp_path):
  """A split too small for its calibration part raises EmptyPartError (which the trainer
  turns into a warning and no thresholds), naming the fraction and the split's size."""
  csv_config.data.calibration_fraction = 1e-9  # 60 rows: none held out
  with pytest.raises(data_lib.EmptyPartError, match=r"calibration_fraction=1e-09 of 60"):
    _calibrated(csv_config, str(tmp_path))
