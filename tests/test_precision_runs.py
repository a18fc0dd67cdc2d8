"""Issue 26's acceptance: one checkpoint, one computation, whatever the entry point.

A precision cache (CNN_RNN_TF_PRECISION_CACHE) that says bfloat16 for training and float32
for inference: before compute.json, training evaluated in bfloat16 and `evaluate` in float32,
so these tests failed. Now training's evaluation = `evaluate --validation`, and `evaluate` on
the test split = `predict` = the reloaded export (labels equal, scores within 1e-5), for both
heads; a resumed run keeps its policy when the cache changed between the two runs.
"""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import train_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.data import precision
from cnn_rnn_tf.serving import local
from cnn_rnn_tf.workdir import compute
from helpers import load_config_file
from test_precision_record import fake_cache

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ("a", "b", "c")


def _csv(folder, name, count, seed):
  """`count` 32x32 PNGs with 1-3 labels each and their CSV; the CSV's path."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  rows = []
  for i in range(count):
    tags = [t for j, t in enumerate(LABELS) if (i >> j) & 1] or ["a"]
    pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    pixels[:, :, 0] = np.clip(pixels[:, :, 0] // 2 + 100 * ("b" in tags), 0, 255)
    Image.fromarray(pixels).save(folder / f"{name}{i}.png")
    rows.append(f"{name}{i}.png,{' '.join(tags)}")
  path = folder / f"{name}.csv"
  path.write_text("image_name,tags\n" + "\n".join(rows) + "\n")
  return str(path)


def _config(tmp_path, head):
  config = load_config_file(os.path.join(ROOT, "configs", "csv.py"), "runlocal")
  config.model.head = head
  config.data.train_csv = _csv(tmp_path, "train", 40, 0)
  config.data.eval_csv = _csv(tmp_path, "test", 10, 1)
  config.data.calibration_fraction = 0.3
  config.train.update(num_steps=4, eval_every=2, checkpoint_every=2, keep_best="")
  return config


@pytest.fixture
def cache(tmp_path, monkeypatch):
  path = str(tmp_path / "precision.json")
  monkeypatch.setenv(precision.CACHE_ENV, path)
  return path


def _numbers(tree, prefix=""):
  """{dotted key: float} of every finite number in a metrics dict."""
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_numbers(value, f"{prefix}{key}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool) and \
        np.isfinite(value):
      out[f"{prefix}{key}"] = float(value)
  return out


@pytest.mark.slow
@pytest.mark.parametrize("head", ["cnn_rnn", "bce"])
def test_training_evaluate_predict_and_export_compute_alike(tmp_path, cache, head):
  config = _config(tmp_path, head)
  fake_cache(cache, config, train="bfloat16", inference="float32")
  workdir = str(tmp_path / "run")
  result = train_lib.train(config, workdir)
  record = json.load(open(workdir_lib.compute_path(workdir)))
  assert record["train"]["precision"] == "bfloat16"
  assert record["inference"]["precision"] == "float32"

  # Training's last evaluation = evaluate --validation of the same checkpoint.
  validation = evaluate_lib.evaluate(workdir, checkpoint="latest", validation=True)
  assert validation["compute"] == {"precision": "float32", "jit": False,
                                   "source": "compute.json"}
  in_training, again = _numbers(result["eval"]), _numbers(validation)
  assert in_training and in_training.keys() <= again.keys()
  for key, value in in_training.items():
    assert again[key] == pytest.approx(value, abs=1e-6), key
  # The check can fail: the same checkpoint's backbone in bfloat16 scores otherwise.
  scores = np.load(os.path.join(workdir_lib.eval_dir(workdir), "validation",
                                "predictions.npz"))["label_scores"]
  evaluate_lib.evaluate(workdir, checkpoint="latest", validation=True, precision="on")
  other = np.load(os.path.join(workdir_lib.eval_dir(workdir), "validation",
                               "predictions.npz"))["label_scores"]
  assert np.abs(other - scores).max() > 1e-5

  # evaluate on the test split = predict = the reloaded export, image by image.
  metrics = evaluate_lib.evaluate(workdir)
  assert metrics["compute"]["precision"] == "float32"
  pred = np.load(os.path.join(workdir_lib.eval_dir(workdir), "predictions.npz"),
                 allow_pickle=True)
  export_dir = export_lib.export(workdir, str(tmp_path / "models"))
  thresholds = workdir_lib.load_trained(workdir).thresholds
  files = [os.path.join(str(tmp_path), os.path.basename(
      k.decode() if isinstance(k, bytes) else str(k))) for k in pred["keys"]]
  run = local.predict_files(export_dir, files, batch_size=4)
  assert not run.failures and [r["image"] for r in run.records] == files
  served = tf.saved_model.load(export_dir).signatures["serving_default"](
      image_bytes=tf.constant([open(f, "rb").read() for f in files]))
  for i, record in enumerate(run.records):
    want = [int(j) for j in pred["labels"][i] if j >= 0]
    if head == "bce" and thresholds is not None:  # the export applies thresholds.json
      want = sorted(int(j) for j in np.nonzero(pred["label_scores"][i] >= thresholds)[0])
      assert sorted(record["label_ids"]) == want
      assert sorted(int(j) for j in served["labels"][i].numpy() if j >= 0) == want
    else:
      assert record["label_ids"] == want
      assert [int(j) for j in served["labels"][i].numpy() if j >= 0] == want
    np.testing.assert_allclose(record["label_scores"], pred["label_scores"][i], atol=1e-5)
    np.testing.assert_allclose(served["label_scores"][i].numpy(), pred["label_scores"][i],
                               atol=1e-5)


@pytest.mark.slow
def test_a_resumed_run_keeps_its_policy_when_the_cache_changed(tmp_path, cache):
  config = _config(tmp_path, "cnn_rnn")
  config.train.num_steps = 2
  fake_cache(cache, config, train="bfloat16", inference="float32")
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir)
  first = json.load(open(workdir_lib.compute_path(workdir)))
  fake_cache(cache, config, train="float32", inference="bfloat16")  # measured otherwise now
  config.train.num_steps = 4
  result = train_lib.train(config, workdir)
  assert result["start_step"] == 2 and result["step"] == 4
  second = json.load(open(workdir_lib.compute_path(workdir)))
  assert second == first  # nothing re-measured, nothing changed
  trained = workdir_lib.load_trained(workdir, "latest")
  assert compute.compute_dtype(trained.backbone) == "float32"
  # An explicit override on resume takes effect and is recorded with its step.
  config.data.precision, config.train.num_steps = "on", 6
  train_lib.train(config, workdir)
  third = json.load(open(workdir_lib.compute_path(workdir)))
  assert third["train"]["precision"] == third["inference"]["precision"] == "bfloat16"
  assert third["changes"][-1]["step"] == 4
  assert third["changes"][-1]["requested"] == {"data.precision": "on"}
