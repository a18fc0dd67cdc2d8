"""The training recipe (cnn_rnn_tf/optim.py): schedules, clipping, EMA, AdamW.

Each test fails when its option is ignored: the schedule's rate at given steps (also after a
resume), the applied update's norm capped by the clip (2 replicas too), the EMA equal to a
NumPy EMA and what evaluation during training, evaluate and the export compute with.
"""

import json
import math
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import optim
from cnn_rnn_tf import train_end
from cnn_rnn_tf import train_lib
from cnn_rnn_tf import workdir as workdir_lib
from helpers import kill_after_first_checkpoint, load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _train_config(**train):
  config = config_lib.default_config().train
  config.update(train)
  return config


def _rate(schedule, step):
  return float(schedule(step)) if callable(schedule) else float(schedule)


def test_cosine_schedule_warms_up_then_decays_to_its_final_fraction():
  train = _train_config(schedule="cosine", learning_rate=1e-3, num_steps=100,
                        warmup_steps=10, final_lr_fraction=0.1)
  schedule = optim.make_schedule(train)

  def expected(step):  # linear from 0, then cosine from the peak to 0.1 of it over 90 steps
    if step < 10:
      return 1e-3 * step / 10
    cosine = 0.5 * (1 + math.cos(math.pi * (step - 10) / 90))
    return 1e-3 * (0.1 + 0.9 * cosine)

  for step in (0, 5, 10, 40, 55, 99, 100):
    np.testing.assert_allclose(_rate(schedule, step), expected(step), rtol=1e-5, atol=1e-9,
                               err_msg=f"step {step}")


def test_step_schedule_multiplies_its_factors_at_fractions_of_the_run():
  train = _train_config(schedule="step", learning_rate=0.1, num_steps=200, warmup_steps=4,
                        decay_at=(0.5, 0.75), decay_factors=(0.1, 0.5))
  schedule = optim.make_schedule(train)
  for step, rate in ((0, 0.0), (2, 0.05), (4, 0.1), (99, 0.1), (100, 0.01), (149, 0.01),
                     (150, 0.005), (199, 0.005)):
    np.testing.assert_allclose(_rate(schedule, step), rate, rtol=1e-5, err_msg=f"step {step}")


def test_constant_schedule_is_the_configs_rate():
  assert optim.make_schedule(_train_config(learning_rate=3e-4)) == 3e-4


@pytest.mark.parametrize("changes, message", [
    ({"train.warmup_steps": 5}, "warm-up belongs to the cosine"),
    ({"train.schedule": "cosine", "train.warmup_steps": 20000}, "must be < train.num_steps"),
    ({"train.schedule": "step", "train.decay_factors": (0.1,)}, "one factor per"),
    ({"train.decay_at": (0.8, 0.5)}, "increasing fractions"),
    ({"train.optimizer": "adamw"}, "set model.weight_decay = 0"),
    ({"train.ema_decay": 1.0}, "train.ema_decay"),
    ({"train.grad_clip_norm": -1.0}, "train.grad_clip_norm"),
])
def test_recipe_settings_that_do_not_fit_are_refused(changes, message):
  config = config_lib.set_fields(config_lib.default_config(), changes)
  with pytest.raises(config_lib.ConfigError, match=message):
    config_checks.validate(config)


def test_adamw_decays_kernels_decoupled_and_leaves_biases():
  """With a zero gradient Adam moves nothing; AdamW still shrinks a kernel by lr * decay."""
  config = config_lib.default_config()
  config.train.update(dict(optimizer="adamw", learning_rate=0.1, weight_decay=0.5))
  config.model.weight_decay = 0.0
  config_checks.validate(config)
  kernel = tf.Variable(np.ones(3, np.float32), name="kernel")
  bias = tf.Variable(np.ones(3, np.float32), name="bias")
  optimizer = optim.make_optimizer(config)
  optimizer.apply_gradients([(tf.zeros(3), kernel), (tf.zeros(3), bias)])
  np.testing.assert_allclose(kernel.numpy(), 1 - 0.1 * 0.5, rtol=1e-6)
  np.testing.assert_allclose(bias.numpy(), 1.0)


def _step_config(**train):
  """small_cnn at 32x32 with a small cnn_rnn head, float32, no dropout, SGD, batch 4."""
  config = config_lib.default_config()
  config.model.update(dict(backbone="small_cnn", backbone_weights=None, image_size=32,
                           train_backbone=True, embedding_dim=8, lstm_units=16, dropout=0.0,
                           small_cnn_filters=(4, 8, 8, 8)))
  config.data.precision = "off"
  config.train.update(dict(batch_size=4, optimizer="sgd", learning_rate=0.1, momentum=0.0))
  config.train.update(train)
  return config


def _step_batch(config, num_labels=5, seed=0):
  rng = np.random.default_rng(seed)
  size, batch = config.model.image_size, config.train.batch_size
  labels = (rng.uniform(size=(batch, num_labels)) < 0.5).astype(np.float32)
  labels[:, 0] = 1.0  # at least one label each
  return {"image": rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32),
          "labels": labels}


def test_ema_equals_a_numpy_ema_of_the_weights():
  """Three trainer steps with train.ema_decay=0.6: the optimizer's averages equal
  a_1 = w_1, a_t = 0.6 a_(t-1) + 0.4 w_t of the weights after each step; `ema_weights`
  puts them in the model and gives the raw weights back exactly."""
  config = _step_config(ema_decay=0.6)
  batch = _step_batch(config)
  strategy = tf.distribute.get_strategy()
  models = train_lib.build_training_models(config, 5, strategy)
  multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
  iterator = iter(tf.data.Dataset.from_tensors(batch).repeat())
  average = None
  for _ in range(3):
    multi_step(iterator, tf.constant(1))
    weights = [v.numpy() for v in models.variables]
    average = weights if average is None else [0.6 * a + 0.4 * w
                                                for a, w in zip(average, weights)]
  kept = [v.numpy() for v in models.optimizer._model_variables_moving_average]  # pylint: disable=protected-access
  assert len(kept) == len(average) > 4
  assert any(not np.allclose(a, w) for a, w in zip(average, weights))  # they differ
  for a, k in zip(average, kept):
    np.testing.assert_allclose(k, a, rtol=1e-5, atol=1e-7)
  with optim.ema_weights(models.optimizer, models.variables):
    for v, a in zip(models.variables, average):
      np.testing.assert_allclose(v.numpy(), a, rtol=1e-5, atol=1e-7)
  for v, w in zip(models.variables, weights):
    np.testing.assert_array_equal(v.numpy(), w)


_CLIP = """
import json, sys
from cnn_rnn_tf import runtime
runtime.setup(cpu_devices=2)  # before any TensorFlow op
import ml_collections
import numpy as np
import tensorflow as tf
from cnn_rnn_tf import distribute
from cnn_rnn_tf import train_end
from cnn_rnn_tf import train_lib
config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
batch = {k: np.asarray(v, np.float32) for k, v in json.loads(sys.argv[2]).items()}
out = {}
for name, strategy in (("one", tf.distribute.get_strategy()),
                       ("two", distribute.make_strategy())):
  models = train_lib.build_training_models(config, len(batch["labels"][0]), strategy)
  before = [v.numpy() for v in models.variables]
  multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
  iterator = iter(strategy.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).repeat()))
  loss, reg, norm = (float(x) for x in multi_step(iterator, tf.constant(1)))
  update = [(v.numpy() - b) for v, b in zip(models.variables, before)]
  out[name] = {"replicas": strategy.num_replicas_in_sync, "norm": norm,
               "update_norm": float(np.sqrt(sum((u.astype(np.float64) ** 2).sum()
                                                for u in update))),
               "update": [u.ravel().tolist() for u in update]}
print(json.dumps(out))
"""


@pytest.mark.parametrize("clip", [0.0, 1e-3])
def test_clipping_caps_the_applied_update_on_one_and_two_replicas(clip):
  """SGD at lr 0.1: the update is -0.1 x the gradient the optimizer applied. With a clip its
  global norm is 0.1 x clip on 1 and on 2 replicas (the replicas' gradients are summed, then
  clipped: clipping each replica's half, as Keras' `global_clipnorm` would, gives about twice
  that), and the logged norm is the unclipped one, equal on both."""
  config = _step_config(grad_clip_norm=clip, batch_size=8)
  config.model.train_backbone = False
  config.data.cache_features = True  # the head trains on features: no backbone in the step
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  dim = backbones.build_backbone("small_cnn", image_size=32,
                                 filters=config.model.small_cnn_filters).output_shape[-1]
  rng = np.random.default_rng(3)
  batch = {"features": rng.normal(size=(8, dim)).tolist(),
           "labels": _step_batch(config)["labels"].tolist()}
  result = subprocess.run([sys.executable, "-c", _CLIP, config.to_json(), json.dumps(batch)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  one, two = out["one"], out["two"]
  assert (one["replicas"], two["replicas"]) == (1, 2)
  np.testing.assert_allclose(two["norm"], one["norm"], rtol=1e-4)
  if clip:
    assert one["norm"] > 10 * clip  # the clip really cuts
    np.testing.assert_allclose([one["update_norm"], two["update_norm"]], 0.1 * clip, rtol=1e-4)
  else:
    np.testing.assert_allclose(one["update_norm"], 0.1 * one["norm"], rtol=1e-4)
  for a, b in zip(one["update"], two["update"]):
    np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-3 * one["update_norm"])


def _demo_config(tfds_dir, **train):
  config = load_config_file(DEMO, "runlocal")
  config.data.data_dir = tfds_dir
  config.train.update(train)
  return config


def _fingerprint(trained):
  return train_end.weights_fingerprint(
      optim.trained_variables(trained.config, trained.backbone, trained.head))


def test_ema_run_evaluates_exports_and_resumes_with_its_ema(tmp_path, tfds_dir, monkeypatch):
  """train.ema_decay > 0: the evaluation during training, evaluate and the export compute
  with the EMA weights (the fingerprint of the optimizer's averages at the end), evaluate
  --weights=raw with the trained ones; the cosine rate follows the step across a resume."""
  config = _demo_config(tfds_dir, num_steps=6, checkpoint_every=3, log_every=1, eval_every=0,
                        schedule="cosine", warmup_steps=2, grad_clip_norm=1.0,
                        ema_decay=0.5, max_checkpoints=5)
  config.data.deterministic = True
  workdir = str(tmp_path / "ema")
  seen = []  # fingerprints of the weights the training-time evaluation used
  evaluate_models = evaluate_lib.evaluate_models

  def spy(config, vocab, backbone, head, *args, **kwargs):
    seen.append(train_end.weights_fingerprint(optim.trained_variables(config, backbone, head)))
    return evaluate_models(config, vocab, backbone, head, *args, **kwargs)

  monkeypatch.setattr(train_lib.evaluate_lib, "evaluate_models", spy)
  result = train_lib.train(config, workdir)
  assert result["ema_fingerprint"] and result["ema_fingerprint"] != result["fingerprint"]
  assert seen == [result["ema_fingerprint"]]
  assert _fingerprint(workdir_lib.load_trained(workdir)) == result["ema_fingerprint"]
  assert _fingerprint(workdir_lib.load_trained(workdir, weights="raw")) == result["fingerprint"]

  predicted = []
  predict_models = evaluate_lib.predict_models

  def spy_predict(config, vocab, backbone, head, *args, **kwargs):
    predicted.append(train_end.weights_fingerprint(
        optim.trained_variables(config, backbone, head)))
    return predict_models(config, vocab, backbone, head, *args, **kwargs)

  monkeypatch.setattr(evaluate_lib, "predict_models", spy_predict)
  assert evaluate_lib.evaluate(workdir)["weights"] == "ema"
  assert evaluate_lib.evaluate(workdir, weights="raw")["weights"] == "raw"
  assert predicted == [result["ema_fingerprint"], result["fingerprint"]]
  assert os.path.exists(os.path.join(workdir, "eval", "raw", "metrics.json"))

  from cnn_rnn_tf import export_lib  # pylint: disable=g-import-not-at-top
  export_dir = export_lib.export(workdir, str(tmp_path / "models"))
  reader = tf.train.load_checkpoint(os.path.join(export_dir, "variables", "variables"))
  saved = [reader.get_tensor(n) for n, _ in tf.train.list_variables(
      os.path.join(export_dir, "variables", "variables")) if "OBJECT_GRAPH" not in n]
  ema = workdir_lib.load_trained(workdir).head.trainable_variables
  raw = workdir_lib.load_trained(workdir, weights="raw").head.trainable_variables
  kernels = [(e.numpy(), r.numpy()) for e, r in zip(ema, raw) if len(e.shape) == 2]
  for e, r in kernels:
    assert not np.array_equal(e, r)
    assert any(s.shape == e.shape and np.array_equal(s, e) for s in saved)  # the EMA
    assert not any(s.shape == r.shape and np.array_equal(s, r) for s in saved)  # not raw

  # Resume from step 3: the same rates at steps 4-6, the same weights and averages.
  log = [json.loads(l) for l in open(os.path.join(workdir, "train", "log.jsonl"))]
  rates = {r["step"]: r["learning_rate"] for r in log if "learning_rate" in r}
  schedule = optim.make_schedule(config.train)
  for step, rate in rates.items():
    np.testing.assert_allclose(rate, float(schedule(step)), rtol=1e-6, err_msg=step)
  assert all("grad_norm" in r for r in log if "learning_rate" in r)
  directory = workdir_lib.checkpoints_dir(workdir)
  third = os.path.join(directory, "ckpt-3")
  for path in tf.train.get_checkpoint_state(directory).all_model_checkpoint_paths:
    if os.path.join(directory, os.path.basename(path)) != third:
      for name in tf.io.gfile.glob(os.path.join(directory, os.path.basename(path)) + ".*"):
        tf.io.gfile.remove(name)
  now = time.time()  # a CheckpointManager lists only checkpoints newer than the preserved time
  tf.compat.v1.train.update_checkpoint_state(directory, third, [third],
                                             all_model_checkpoint_timestamps=[now],
                                             last_preserved_timestamp=now - 1)
  resumed = train_lib.train(config, workdir)
  assert resumed["start_step"] == 3
  assert (resumed["fingerprint"], resumed["ema_fingerprint"]) == (
      result["fingerprint"], result["ema_fingerprint"])
  log = [json.loads(l) for l in open(os.path.join(workdir, "train", "log.jsonl"))]
  after = [r for r in log if "learning_rate" in r][len(rates):]
  assert [r["step"] for r in after] == [4, 5, 6]
  for r in after:
    assert r["learning_rate"] == rates[r["step"]]


def _run_train(workdir, tfds_dir, *flags):
  cmd = [sys.executable, "-m", "cnn_rnn_tf.train", f"--config={DEMO}:runlocal",
         f"--workdir={workdir}", f"--config.data.data_dir={tfds_dir}", *flags]
  return subprocess.Popen(cmd, cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _fingerprints(out):
  line = [l for l in out.splitlines() if "weights fingerprint" in l][-1]
  found = re.search(r"weights fingerprint (\w+); EMA fingerprint (\w+)", line)
  assert found, line
  return found.groups()


@pytest.mark.slow
def test_killed_ema_run_resumes_to_the_same_fingerprints(tmp_path, tfds_dir):
  """SIGKILL after the first checkpoint, then a restart: the trained weights and their EMA
  end bit for bit as in a run that was never interrupted (cosine schedule, clipping on)."""
  flags = ["--config.train.num_steps=40", "--config.train.checkpoint_every=10",
           "--config.train.log_every=10", "--config.train.ema_decay=0.8",
           "--config.train.schedule=cosine", "--config.train.warmup_steps=4",
           "--config.train.grad_clip_norm=1.0", "--config.data.deterministic=True",
           "--config.data.precision=off", "--config.train.eval_every=-1"]
  whole = _run_train(str(tmp_path / "whole"), tfds_dir, *flags)
  out, _ = whole.communicate(timeout=900)
  assert whole.returncode == 0, out
  workdir = str(tmp_path / "killed")
  first = _run_train(workdir, tfds_dir, *flags)
  kill_after_first_checkpoint(first, workdir, timeout=600)
  second = _run_train(workdir, tfds_dir, *flags)
  out2, _ = second.communicate(timeout=900)
  assert second.returncode == 0, out2
  assert "Resumed from" in out2
  assert _fingerprints(out2) == _fingerprints(out)
