"""Tests of cnn_rnn_tf.evaluate_lib (and the evaluate binary): prediction masks by value,
in-memory evaluation, the workdir evaluation with its checkpoint rule and decode overrides.

Workdirs are written by hand with random weights (no training) on synthetic_scenes/small.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_TEST = 100  # synthetic_scenes/small's test split


# ------------------------------------------------------------------------ masks by value


def test_bce_masks_respect_the_threshold():
  scores = np.array([[0.9, 0.6, 0.55, 0.52, 0.1],    # 4 labels >= 0.5: the best 3
                     [0.4, 0.3, 0.9, 0.2, 0.49],     # 1 label >= 0.5: only it, not 3
                     [0.1, 0.2, 0.3, 0.4, 0.45]])    # none: nothing
  labels = np.full((3, 4), -1)
  top3, every = inference.prediction_masks("bce", labels, scores, 5)
  np.testing.assert_array_equal(top3, [[1, 1, 1, 0, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(every, [[1, 1, 1, 1, 0], [0, 0, 1, 0, 0], [0, 0, 0, 0, 0]])


def test_cnn_rnn_masks_read_the_path():
  end = 5
  labels = np.array([[4, 0, 2, 1, end, -1],   # 4 labels: top3 the first three
                     [3, end, -1, -1, -1, -1],
                     [end, -1, -1, -1, -1, -1]])
  scores = np.full((3, 5), 0.9)  # ignored by this head
  top3, every = inference.prediction_masks("cnn_rnn", labels, scores, 5)
  np.testing.assert_array_equal(top3, [[1, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])
  np.testing.assert_array_equal(every, [[1, 1, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 0]])


# ------------------------------------------------------------------------ with models


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _config(tfds_dir, head="cnn_rnn"):
  config = config_lib.runlocal(config_lib.default_config())  # synthetic_scenes/small, 32x32
  config.model.head = head
  config.data.data_dir = tfds_dir
  config.train.batch_size = 32
  return config


def _vocab(config):
  return vocab_lib.LabelVocab(data_lib.get_source(config.data).label_names)


def _models(config, vocab, seed):
  tf.keras.utils.set_random_seed(seed)
  backbone, head = workdir_lib.build_backbone_and_head(config, vocab.num_labels)
  for v in head.weights:  # far from uniform: paths of a few labels
    if len(v.shape) > 1:
      v.assign(tf.random.normal(v.shape, stddev=2.0 / np.sqrt(v.shape[0])))
  return backbone, head


def _workdir(path, config, vocab, steps=(2,), best=None):
  w = str(path)
  workdir_lib.save_config(config, w)
  vocab.save(workdir_lib.labels_path(w))
  for i, step in enumerate(steps):
    checkpoint = workdir_lib.make_checkpoint(config, *_models(config, vocab, i))
    tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(w), 5).save(step)
  if best is not None:
    checkpoint = workdir_lib.make_checkpoint(config, *_models(config, vocab, 99))
    tf.train.CheckpointManager(checkpoint, workdir_lib.best_dir(w), 1).save(best)
  return w


@pytest.mark.parametrize("head", ["cnn_rnn", "bce"])
def test_evaluate_models_in_memory_writes_nothing(tmp_path, tfds_dir, head, monkeypatch):
  monkeypatch.chdir(tmp_path)
  config = _config(tfds_dir, head)
  vocab = _vocab(config)
  backbone, head_model = _models(config, vocab, 0)
  metrics = evaluate_lib.evaluate_models(config, vocab, backbone, head_model, "test",
                                         cache_dir=str(tmp_path / "cache"), batch_size=16)
  assert os.listdir(tmp_path) == []  # no files, no cache (images mode)
  assert metrics["num_images"] == NUM_TEST
  assert metrics["head"] == head and metrics["split"] == "test"
  assert metrics["beam_size"] == config.decode.beam_size
  assert set(metrics["per_class"]) == set(vocab.names)
  for key in ("top3", "all", "mAP_noninterp", "MAP@10", "skipped"):
    assert key in metrics


def test_evaluate_models_on_the_feature_cache(tmp_path, tfds_dir):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  backbone, _ = _models(config, vocab, 0)
  weights = str(tmp_path / "bb.weights.h5")
  backbone.save_weights(weights)
  config.model.train_backbone = False
  config.model.backbone_weights = weights
  config.data.cache_features = True
  backbone, head = _models(config, vocab, 0)
  cache = tmp_path / "cache"
  metrics = evaluate_lib.evaluate_models(config, vocab, backbone, head, "test",
                                         cache_dir=str(cache))
  assert metrics["num_images"] == NUM_TEST
  assert os.listdir(cache)  # the features went where the caller said


def test_evaluate_agrees_with_evaluate_models_and_writes_eval(tmp_path, tfds_dir):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab, steps=(2, 4), best=3)
  metrics = evaluate_lib.evaluate(w, batch_size=50)  # auto: the best checkpoint
  assert metrics["checkpoint"] == os.path.join(workdir_lib.best_dir(w), "ckpt-3")
  trained = workdir_lib.load_trained(w, "best")
  in_memory = evaluate_lib.evaluate_models(trained.config, trained.vocab, trained.backbone,
                                           trained.head, "test", cache_dir=str(tmp_path))
  for setting in ("top3", "all"):
    assert metrics[setting] == pytest.approx(in_memory[setting])
  assert metrics["mAP_noninterp"] == pytest.approx(in_memory["mAP_noninterp"])
  saved = json.load(open(os.path.join(workdir_lib.eval_dir(w), "metrics.json")))
  assert saved["top3"] == pytest.approx(metrics["top3"])
  pred = np.load(os.path.join(workdir_lib.eval_dir(w), "predictions.npz"))
  assert pred["y_true"].shape == (NUM_TEST, vocab.num_labels)
  latest = evaluate_lib.evaluate(w, checkpoint="latest", batch_size=50)
  assert latest["checkpoint"].endswith(os.path.join("checkpoints", "ckpt-4"))
  assert latest["mAP_noninterp"] != metrics["mAP_noninterp"]  # other weights


def test_decode_overrides(tmp_path, tfds_dir):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab)
  metrics = evaluate_lib.evaluate(w, decode={"beam_size": 1, "max_length": 2}, batch_size=50)
  assert metrics["beam_size"] == 1
  labels = np.load(os.path.join(workdir_lib.eval_dir(w), "predictions.npz"))["labels"]
  assert labels.shape[1] <= 3  # at most max_length labels (+ END)
  assert workdir_lib.load_config(w).decode.beam_size == config.decode.beam_size  # not saved


@pytest.mark.parametrize("kwargs, line", [
    ({"beam_size": 0}, "decode.beam_size = 0: must be >= 1"),
    ({"decode": {"min_length": 11}}, "decode.min_length = 11: must be <= decode.max_length"),
    ({"decode": {"beamsize": 2}}, "decode.beamsize: unknown field (did you mean "
                                  "decode.beam_size?)"),
])
def test_bad_decode_settings_are_refused_before_any_work(tmp_path, tfds_dir, kwargs, line):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab)
  with pytest.raises(config_lib.ConfigError) as info:
    evaluate_lib.evaluate(w, **kwargs)
  assert any(p.startswith(line) for p in info.value.problems), info.value.problems
  assert not os.path.exists(workdir_lib.eval_dir(w))


def _evaluate_binary(cwd, *args):
  env = {**os.environ, "PYTHONPATH": ROOT}
  return subprocess.run([sys.executable, "-m", "cnn_rnn_tf.evaluate", *args], cwd=cwd,
                        env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_evaluate_binary_from_another_folder_with_a_bar_and_overrides(tmp_path, tfds_dir):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  result = _evaluate_binary(elsewhere, f"--workdir={w}", "--progress=on",
                            "--config.decode.beam_size=2", "--checkpoint=latest")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "eval test" in result.stderr and "batch" in result.stderr  # the tqdm bar
  assert "| top-3 |" in result.stdout
  saved = json.load(open(os.path.join(workdir_lib.eval_dir(w), "metrics.json")))
  assert saved["beam_size"] == 2
  refused = _evaluate_binary(elsewhere, f"--workdir={w}", "--beam_size=0")
  assert refused.returncode == 2
  assert "decode.beam_size = 0: must be >= 1" in refused.stderr
  assert "Traceback" not in refused.stderr
  other = _evaluate_binary(elsewhere, f"--workdir={w}", "--config.model.head=bce")
  assert other.returncode == 2
  assert "only --config.decode.*" in other.stderr and "Traceback" not in other.stderr


def test_evaluate_writes_the_paper_and_calibrated_rules(tmp_path, tfds_dir):
  config = _config(tfds_dir, "bce")
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab, steps=(2,))
  plain = evaluate_lib.evaluate(w, batch_size=50)
  assert "top3_paper" in plain and "top3_calibrated" not in plain  # no thresholds.json yet
  pred = np.load(os.path.join(workdir_lib.eval_dir(w), "predictions.npz"))
  scores, y_true = pred["label_scores"], pred["y_true"]
  # Thresholds that differ per class: the median score of each class.
  thresholds = np.median(scores, axis=0).astype(np.float32)
  workdir_lib.save_thresholds(w, vocab.names, thresholds, step=2)
  metrics = evaluate_lib.evaluate(w, batch_size=50)
  above = scores >= thresholds
  top3 = np.zeros_like(above)
  np.put_along_axis(top3, np.argsort(-scores, axis=1, kind="stable")[:, :3], True, axis=1)
  rule_metrics = metrics_lib.rule_metrics  # every set metric, exact match etc. included
  assert metrics["all_calibrated"] == pytest.approx(rule_metrics(y_true, above))
  assert metrics["top3_calibrated"] == pytest.approx(rule_metrics(y_true, top3 & above))
  assert metrics["top3_paper"] == pytest.approx(rule_metrics(y_true, top3))
  assert metrics["top3"] == pytest.approx(plain["top3"])  # the 0.5 rules stay
  saved = json.load(open(os.path.join(workdir_lib.eval_dir(w), "metrics.json")))
  assert saved["all_calibrated"] == pytest.approx(metrics["all_calibrated"])
  table = open(os.path.join(workdir_lib.eval_dir(w), "metrics.md")).read()
  for label, key in (("top-3 (paper)", "top3_paper"), ("top-3 calibrated", "top3_calibrated"),
                     ("all calibrated", "all_calibrated")):
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} |"))
    assert f"{100 * metrics[key]['OF1']:.1f}" in row


def test_thresholds_json_must_match_the_labels(tmp_path, tfds_dir):
  config = _config(tfds_dir, "bce")
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab, steps=(2,))
  workdir_lib.save_thresholds(w, vocab.names[1:] + ["zebra"],
                              np.full(vocab.num_labels, 0.3), step=2)
  with pytest.raises(ValueError, match=rf"missing labels \['{vocab.names[0]}'\].*'zebra'"):
    evaluate_lib.evaluate(w, batch_size=50)


def test_min_length_3_is_the_papers_k_3_for_the_cnn_rnn(tmp_path, tfds_dir):
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab)
  plain = evaluate_lib.evaluate(w, batch_size=50)
  labels = np.load(os.path.join(workdir_lib.eval_dir(w), "predictions.npz"))["labels"]
  lengths = ((labels >= 0) & (labels < vocab.num_labels)).cumprod(axis=1).sum(axis=1)
  assert lengths.min() < 3  # some paths are shorter than 3 by default
  assert plain["top3_paper"] == plain["top3"]  # the same rule for the CNN-RNN
  paper = evaluate_lib.evaluate(w, decode={"min_length": 3}, batch_size=50)
  labels = np.load(os.path.join(workdir_lib.eval_dir(w), "predictions.npz"))["labels"]
  masks = inference.rule_masks("cnn_rnn", {"labels": labels,
                                           "label_scores": np.zeros((len(labels), 1))},
                                vocab.num_labels)
  assert np.all(masks["top3_paper"].sum(axis=1) == 3)  # k = 3 labels for every image
  assert paper["top3_paper"] != plain["top3_paper"]


def _truncate_data(prefix: str) -> str:
  data = tf.io.gfile.glob(prefix + ".data-*")[0]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 3)
  return data


def test_evaluate_falls_back_from_a_corrupt_latest_checkpoint(tmp_path, tfds_dir, caplog):
  """Issue 20 item 7: as training does, name the bad file and take the newest readable one."""
  config = _config(tfds_dir)
  vocab = _vocab(config)
  w = _workdir(tmp_path / "w", config, vocab, steps=(2, 4))
  bad = os.path.join(workdir_lib.checkpoints_dir(w), "ckpt-4")
  _truncate_data(bad)
  with caplog.at_level("WARNING"):
    metrics = evaluate_lib.evaluate(w, batch_size=50)
  assert metrics["checkpoint"].endswith(os.path.join("checkpoints", "ckpt-2"))
  assert bad in caplog.text
  _truncate_data(os.path.join(workdir_lib.checkpoints_dir(w), "ckpt-2"))
  with pytest.raises(workdir_lib.CorruptCheckpointError, match="--checkpoint="):
    evaluate_lib.evaluate(w, batch_size=50)
