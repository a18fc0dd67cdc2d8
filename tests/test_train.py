"""The trainer (cnn_rnn_tf.train_lib and the train / evaluate binaries).

Fast tests call the library on synthetic_scenes/small; the slow ones run the real binaries
in subprocesses: resume after SIGKILL, 1 vs 2 logical devices, a 2-worker
MultiWorkerMirroredStrategy run on localhost.
"""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import calibration
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import train_lib
from cnn_rnn_tf import workdir as workdir_lib
from helpers import kill_after_first_checkpoint, load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = os.path.join(ROOT, "configs", "demo.py")


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _demo_config(tfds_dir, **train):
  config = load_config_file(DEMO, "runlocal")
  config.data.data_dir = tfds_dir
  config.train.update(train)
  return config


@pytest.mark.parametrize("head", ["cnn_rnn", "bce"])
def test_train_then_evaluate(tmp_path, tfds_dir, head, monkeypatch):
  config = _demo_config(tfds_dir, num_steps=4, checkpoint_every=2, eval_every=0)
  config.model.head = head
  workdir = str(tmp_path / head)
  parts = []  # (split, training, part) of every dataset the run builds
  dataset_for = train_lib.data_lib.dataset_for

  def spy(config, split, vocab, **kwargs):
    parts.append((split, kwargs["training"], kwargs.get("part", "all")))
    return dataset_for(config, split, vocab, **kwargs)

  monkeypatch.setattr(train_lib.data_lib, "dataset_for", spy)
  result = train_lib.train(config, workdir)
  # Both heads train on the fit part only; bce's thresholds come from the calibration part.
  assert (config.data.train_split, True, "fit") in parts
  assert [p for p in parts if p[1]] == [(config.data.train_split, True, "fit")]
  # The end-of-training evaluation, and both heads' thresholds (bce: its probabilities;
  # cnn_rnn: its marginals), use the calibration part; the test split is never read.
  assert (config.data.train_split, False, "calibration") in parts
  assert not [p for p in parts if p[0] == config.data.eval_split]
  assert os.path.exists(workdir_lib.thresholds_path(workdir))
  assert result["step"] == 4 and result["start_step"] == 0
  assert np.isfinite(result["loss"])
  assert tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints")).endswith("ckpt-4")
  assert workdir_lib.load_config(workdir).model.head == head
  vocab = workdir_lib.load_vocab(workdir)
  log = [json.loads(l) for l in open(os.path.join(workdir, "train", "log.jsonl"))]
  assert [r["step"] for r in log if "loss" in r] == [2, 4]
  assert [r["step"] for r in log if "eval/top3/OF1" in r] == [4]  # eval_every=0: at the end
  metrics = evaluate_lib.evaluate(workdir)
  assert metrics["head"] == head and metrics["num_images"] > 0
  settings = ["top3", "all", "top3_paper", "top3_expected_f1", "all_expected_f1"]
  settings += (["top3_calibrated", "all_calibrated"] if head == "bce" else
               ["top3_marginals", "all_marginals"])
  for setting in settings:
    assert {"CP", "CR", "CF1", "OP", "OR", "OF1", "exact_match", "EF1"} <= set(metrics[setting])
  assert set(metrics["per_class"]) == set(vocab.names)
  saved = json.load(open(os.path.join(workdir, "eval", "metrics.json")))
  assert saved["num_images"] == metrics["num_images"]
  validation = evaluate_lib.evaluate(workdir, validation=True)
  assert validation["split"] == "train[calibration]"
  assert validation["num_images"] < metrics["num_images"]  # a tenth of train, not the test
  assert os.path.exists(os.path.join(workdir, "eval", "validation", "metrics.json"))
  table = open(os.path.join(workdir, "eval", "metrics.md")).read()
  assert f"{100 * metrics['top3']['OF1']:.1f}" in table
  # Training again with the same workdir and num_steps resumes and has nothing to do.
  again = train_lib.train(config, workdir)
  assert again["start_step"] == 4 and again["step"] == 4


def test_orderless_order_and_aux_loss_reach_the_trainer(tmp_path, tfds_dir):
  """train.label_order and model.side_loss_weight change what the trainer trains (end to end,
  the backbone trained too; two steps per tf.function call)."""
  fingerprints = {}
  for name, order, aux in (("default", "frequent_first", 0.0), ("pla_aux", "pla", 1.0),
                           ("random", "random", 0.0)):
    config = _demo_config(tfds_dir, num_steps=2, steps_per_loop=2, eval_every=-1,
                          label_order=order)
    config.model.side_loss_weight = aux
    result = train_lib.train(config, str(tmp_path / name))
    assert result["step"] == 2 and np.isfinite(result["loss"]), name
    fingerprints[name] = result["fingerprint"]
  assert len(set(fingerprints.values())) == 3, fingerprints


def test_nan_loss_with_finite_weights_stops_the_run(tmp_path, tfds_dir, monkeypatch):
  """The loss check itself, not the weight check: the NaN adds nothing to the gradients."""
  config = _demo_config(tfds_dir, num_steps=3, checkpoint_every=1)
  workdir = str(tmp_path / "nan")
  train_lib.train(config, workdir)  # a good checkpoint at step 3
  head_loss = train_lib.model_lib.head_loss

  def nan_loss(*args, **kwargs):
    per_example = head_loss(*args, **kwargs)  # [B]
    return per_example + tf.stop_gradient(tf.fill(tf.shape(per_example), float("nan")))

  monkeypatch.setattr(train_lib.model_lib, "head_loss", nan_loss)
  config.train.num_steps = 6
  with pytest.raises(FloatingPointError, match="loss is nan"):
    train_lib.train(config, workdir)
  latest = tf.train.latest_checkpoint(os.path.join(workdir, "checkpoints"))
  assert latest.endswith("ckpt-3")
  reader = tf.train.load_checkpoint(latest)
  for name in reader.get_variable_to_shape_map():
    value = reader.get_tensor(name)
    if np.issubdtype(np.asarray(value).dtype, np.floating):
      assert np.all(np.isfinite(value)), name


def _checkpoint_tensors(path):
  """{name: value} of the float tensors (model, optimizer, RNG) in checkpoint `path`."""
  reader = tf.train.load_checkpoint(path)
  return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()
          if n != "_CHECKPOINTABLE_OBJECT_GRAPH"}


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_resumed_run_equals_an_uninterrupted_one(tmp_path, tfds_dir, dropout):
  """Same data order (dropout 0) and the same dropout masks (dropout > 0) after a resume."""
  config = _demo_config(tfds_dir, num_steps=4, checkpoint_every=2, eval_every=-1,
                        optimizer="sgd", learning_rate=0.05)
  config.model.dropout = dropout
  config.data.deterministic = True
  whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
  train_lib.train(config, whole)
  config.train.num_steps = 2
  train_lib.train(config, parts)
  config.train.num_steps = 4
  assert train_lib.train(config, parts)["start_step"] == 2
  a = _checkpoint_tensors(os.path.join(whole, "checkpoints", "ckpt-4"))
  b = _checkpoint_tensors(os.path.join(parts, "checkpoints", "ckpt-4"))
  assert a.keys() == b.keys()
  if dropout:
    assert any(k.startswith("rng/") for k in a), sorted(a)  # the dropout RNG state is saved
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)


def test_eval_every_writes_eval_points_to_log_and_tensorboard(tmp_path, tfds_dir):
  config = _demo_config(tfds_dir, num_steps=5, eval_every=2, log_every=5)
  workdir = str(tmp_path / "eval")
  result = train_lib.train(config, workdir)
  train_dir = os.path.join(workdir, "train")
  log = [json.loads(l) for l in open(os.path.join(train_dir, "log.jsonl"))]
  evals = [r for r in log if "eval/top3/OF1" in r]
  assert [r["step"] for r in evals] == [2, 4, 5]
  assert all(0.0 <= r["eval/mAP_noninterp"] <= 1.0 for r in evals)
  assert evals[-1]["eval/top3/OF1"] == pytest.approx(result["eval"]["top3"]["OF1"])
  tagged = {}
  for name in os.listdir(train_dir):
    if not name.startswith("events."):
      continue
    for event in tf.compat.v1.train.summary_iterator(os.path.join(train_dir, name)):
      for value in event.summary.value:
        tagged.setdefault(value.tag, []).append(event.step)
  assert sorted(tagged["eval/top3/OF1"]) == [2, 4, 5]
  assert sorted(tagged["eval/mAP_noninterp"]) == [2, 4, 5]
  assert sorted(tagged["loss"]) == [5]


def test_keep_best_keeps_the_best_checkpoint_across_a_resume(tmp_path, tfds_dir, monkeypatch):
  """Scripted metrics: the best (step 4) must survive a resume whose evaluations are worse."""
  values = {2: 0.3, 4: 0.7, 6: 0.5, 8: 0.6}

  def scripted(config, workdir, vocab, models):
    return lambda: {"top3": {"OF1": values[int(models.step.numpy())]}}

  monkeypatch.setattr(train_lib, "make_evaluate_fn", scripted)
  config = _demo_config(tfds_dir, num_steps=4, checkpoint_every=2, eval_every=2,
                        keep_best="top3.OF1", max_checkpoints=5)
  workdir = str(tmp_path / "best")
  train_lib.train(config, workdir)
  config.train.num_steps = 8
  train_lib.train(config, workdir)
  best_dir = os.path.join(workdir, "best")
  assert json.load(open(os.path.join(best_dir, "best.json"))) == {
      "metric": "top3.OF1", "value": 0.7, "step": 4}
  assert tf.train.latest_checkpoint(best_dir).endswith("ckpt-4")
  kept = _checkpoint_tensors(os.path.join(best_dir, "ckpt-4"))
  trained = _checkpoint_tensors(os.path.join(workdir, "checkpoints", "ckpt-4"))
  for key in trained:
    if not key.startswith("save_counter"):  # counts saves per manager, not training
      np.testing.assert_array_equal(kept[key], trained[key], err_msg=key)


def test_bce_thresholds_are_fitted_for_the_best_checkpoint(tmp_path, tfds_dir, monkeypatch):
  """With keep_best, evaluate and export take best/ (auto): the thresholds are fitted there."""
  values = {2: 0.7, 4: 0.3}
  monkeypatch.setattr(train_lib, "make_evaluate_fn", lambda config, workdir, vocab, models: (
      lambda: {"top3": {"OF1": values[int(models.step.numpy())]}}))
  config = _demo_config(tfds_dir, num_steps=4, checkpoint_every=2, eval_every=2,
                        keep_best="top3.OF1")
  config.model.head = "bce"
  workdir = str(tmp_path / "bce")
  train_lib.train(config, workdir)
  saved = json.load(open(workdir_lib.thresholds_path(workdir)))
  assert saved["step"] == 2  # the best step, not the last
  best = workdir_lib.load_trained(workdir, "best")
  want = calibration.calibrate(best.config, best.vocab, best.backbone, best.head,
                               cache_dir=workdir_lib.feature_cache_dir(workdir,
                                                                       config.data.cache_dir))
  got = workdir_lib.load_thresholds(workdir, best.vocab, best.checkpoint_path)
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_corrupt_latest_checkpoint_falls_back_to_the_previous_one(tmp_path, tfds_dir):
  config = _demo_config(tfds_dir, num_steps=4, checkpoint_every=2, eval_every=-1)
  workdir = str(tmp_path / "corrupt")
  train_lib.train(config, workdir)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  data = [f for f in os.listdir(ckpt_dir) if f.startswith("ckpt-4.data")]
  for name in data:
    with open(os.path.join(ckpt_dir, name), "r+b") as f:
      f.truncate(os.path.getsize(os.path.join(ckpt_dir, name)) // 2)
  config.train.num_steps = 5
  config.train.fallback_on_corrupt_checkpoint = False
  with pytest.raises(RuntimeError, match="ckpt-4"):
    train_lib.train(config, workdir)
  config.train.fallback_on_corrupt_checkpoint = True
  result = train_lib.train(config, workdir)
  assert result["start_step"] == 2 and result["step"] == 5


def test_failed_restart_with_another_head_leaves_the_workdir_intact(tmp_path, tfds_dir):
  """Issue 13 item 1: a restart with model.head=bce is refused before anything is written."""
  config = _demo_config(tfds_dir, num_steps=3, eval_every=-1)
  workdir = str(tmp_path / "restart")
  train_lib.train(config, workdir)
  saved = open(os.path.join(workdir, "config.json")).read()
  config.model.head = "bce"
  config.train.num_steps = 4
  with pytest.raises(Exception, match="model.head"):
    train_lib.train(config, workdir)
  assert open(os.path.join(workdir, "config.json")).read() == saved
  assert evaluate_lib.evaluate(workdir)["head"] == "cnn_rnn"


def _run_train(workdir, tfds_dir, *flags, env=None, **kwargs):
  cmd = [sys.executable, "-m", "cnn_rnn_tf.train", f"--config={DEMO}:runlocal",
         f"--workdir={workdir}", f"--config.data.data_dir={tfds_dir}", *flags]
  full_env = dict(os.environ, PYTHONPATH=ROOT, **(env or {}))
  return subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, **kwargs)


def _checkpoint_weights(workdir):
  """{variable path: value} of the head and the trained backbone in the latest checkpoint."""
  config = workdir_lib.load_config(workdir)
  backbone, head = workdir_lib.build_backbone_and_head(config, workdir_lib.load_vocab(workdir).num_labels)
  workdir_lib.restore_weights(config, workdir, backbone, head)
  return {v.path: v.numpy() for v in head.weights + backbone.weights}


@pytest.mark.slow
def test_killed_run_resumes_from_its_checkpoint(tmp_path, tfds_dir):
  workdir = str(tmp_path / "resume")
  flags = ["--config.train.num_steps=100", "--config.train.checkpoint_every=10",
           "--config.train.log_every=10"]
  first = _run_train(workdir, tfds_dir, *flags)
  kill_after_first_checkpoint(first, workdir, timeout=240)
  index = os.path.join(workdir, "checkpoints", "checkpoint")
  killed_at = int(tf.train.latest_checkpoint(os.path.dirname(index)).rsplit("-", 1)[1])
  assert 10 <= killed_at < 100
  second = _run_train(workdir, tfds_dir, *flags)
  out, _ = second.communicate(timeout=600)
  assert second.returncode == 0, out
  resumed = [l for l in out.splitlines() if "Resumed from" in l]
  assert resumed, out
  start = int(resumed[0].rsplit("at step ", 1)[1].rstrip("."))
  assert start >= killed_at
  assert tf.train.latest_checkpoint(os.path.dirname(index)).endswith("ckpt-100")
  assert "Finished at step 100" in out
  # The second run logged only steps after its start: it did not train from zero.
  assert f"step {start + 10}/100" in out and "step 10/100" not in out.split(resumed[0])[1]


# SGD, not RMSProp: RMSProp's first steps move every weight by ~lr / sqrt(1 - rho) whatever
# the gradient's size, so float round-off in a near-zero gradient (summed over 2 replicas in
# another order) flips whole updates, and 1 vs 2 devices could not be compared closely.
# float32 pinned, so that the precision choice cannot differ between the runs: with
# data.precision=auto a run that chose bfloat16 would differ by its round-off. (Differences
# of ~1e-3 in the label embedding were seen once, in a full-suite run under load.)
_SAME_RUN = ["--config.train.num_steps=6", "--config.model.dropout=0.0",
             "--config.data.deterministic=True", "--config.train.checkpoint_every=6",
             "--config.train.optimizer=sgd", "--config.train.learning_rate=0.01",
             "--config.train.eval_every=-1", "--config.data.precision=off"]


@pytest.mark.slow
def test_two_logical_devices_train_like_one(tmp_path, tfds_dir):
  one, two = str(tmp_path / "one"), str(tmp_path / "two")
  p1 = _run_train(one, tfds_dir, *_SAME_RUN)
  out1, _ = p1.communicate(timeout=600)
  assert p1.returncode == 0, out1
  p2 = _run_train(two, tfds_dir, *_SAME_RUN, "--cpu_devices=2")
  out2, _ = p2.communicate(timeout=600)
  assert p2.returncode == 0, out2
  assert "2 replicas" in out2 and "1 replicas" in out1
  w1, w2 = _checkpoint_weights(one), _checkpoint_weights(two)
  assert w1.keys() == w2.keys() and len(w1) > 10
  for key in w1:
    np.testing.assert_allclose(w1[key], w2[key], rtol=1e-3, atol=1e-4, err_msg=key)


def _free_port():
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_multi_worker_run_on_localhost(tmp_path, tfds_dir):
  ports = [_free_port(), _free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = []
  for index in range(2):
    tf_config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    procs.append(_run_train(str(tmp_path / "mw"), tfds_dir, *_SAME_RUN,
                            env={"TF_CONFIG": tf_config}))
  outs = [p.communicate(timeout=600)[0] for p in procs]
  for p, out in zip(procs, outs):
    assert p.returncode == 0, out
  prints = [[l for l in out.splitlines() if "weights fingerprint" in l] for out in outs]
  assert all(prints), outs
  fingerprints = [p[-1].rsplit("fingerprint ", 1)[1] for p in prints]
  assert fingerprints[0] == fingerprints[1]
  assert "2 replicas" in outs[0]
  # Only the chief kept a checkpoint.
  assert tf.train.latest_checkpoint(str(tmp_path / "mw" / "checkpoints")).endswith("ckpt-6")
  assert not os.path.exists(tmp_path / "mw" / ".tmp_worker" / "1")


@pytest.mark.slow
def test_multi_worker_weights_equal_a_single_worker_run(tmp_path, tfds_dir):
  """The loss is divided by the GLOBAL batch: a per-replica mean would double the gradients."""
  ports = [_free_port(), _free_port()]
  cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
  procs = [_run_train(str(tmp_path / "mw"), tfds_dir, *_SAME_RUN, env={"TF_CONFIG": json.dumps(
      {"cluster": cluster, "task": {"type": "worker", "index": i}})}) for i in range(2)]
  single = _run_train(str(tmp_path / "single"), tfds_dir, *_SAME_RUN)
  for p in procs + [single]:
    out, _ = p.communicate(timeout=600)
    assert p.returncode == 0, out
  w1, w2 = _checkpoint_weights(str(tmp_path / "single")), _checkpoint_weights(str(tmp_path / "mw"))
  assert w1.keys() == w2.keys() and len(w1) > 10
  for key in w1:
    np.testing.assert_allclose(w1[key], w2[key], rtol=1e-3, atol=1e-4, err_msg=key)


def test_train_and_evaluate_on_mock_voc2007(tmp_path):
  """The voc2007 config's path end to end on tfds.testing.mock_data (no archives needed)."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  config = load_config_file(os.path.join(ROOT, "configs", "voc2007.py"), "runlocal")
  # The small CNN instead of VGG16 (no ImageNet weights here), trained with the head.
  config.model.backbone = "small_cnn"
  config.model.backbone_weights = None
  config.model.image_size = 32
  config.model.train_backbone = True
  config.model.lstm_units = 16
  config.train.num_steps = 3
  config.train.batch_size = 4
  workdir = str(tmp_path / "voc")
  with tfds.testing.mock_data(num_examples=8):
    result = train_lib.train(config, workdir)
    metrics = evaluate_lib.evaluate(workdir)
  assert result["step"] == 3
  assert metrics["source"] == "voc2007" and metrics["split"] == "test"
  assert metrics["num_images"] == 8
  assert len(workdir_lib.load_vocab(workdir).names) == 20
  assert set(metrics["per_class"]) == set(workdir_lib.load_vocab(workdir).names)
  for key in ("mAP_voc07", "mAP_area", "mAP_noninterp", "MAP@10"):
    assert key in metrics


def test_frozen_random_backbone_is_refused(tmp_path, tfds_dir):
  config = _demo_config(tfds_dir)
  config.model.train_backbone = False
  with pytest.raises(ValueError, match="backbone_weights"):
    train_lib.train(config, str(tmp_path / "x"))


def _quiet_env():
  """The environment of a user's shell: no TF_CPP_MIN_LOG_LEVEL, no CI (set by conftest/CI)."""
  env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "CI")}
  env["PYTHONPATH"] = ROOT
  return env


_RUNLOCAL = [sys.executable, "-m", "cnn_rnn_tf.train", f"--config={DEMO}:runlocal",
             "--config.train.num_steps=4", "--config.train.eval_every=-1"]


@pytest.mark.slow
def test_progress_bar_on_a_terminal(tmp_path, tfds_dir):
  import pty  # pylint: disable=g-import-not-at-top
  import fcntl, struct, termios  # pylint: disable=g-import-not-at-top,g-multiple-import
  master, slave = pty.openpty()
  # A real terminal has a size; a fresh pty has 0 columns and tqdm would draw nothing.
  fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
  proc = subprocess.Popen(
      _RUNLOCAL + [f"--workdir={tmp_path / 'tty'}", f"--config.data.data_dir={tfds_dir}"],
      cwd=ROOT, env=_quiet_env(), stdin=slave, stdout=slave, stderr=slave, close_fds=True)
  os.close(slave)
  chunks = []
  while True:
    try:
      chunk = os.read(master, 65536)
    except OSError:  # EIO: the child closed the terminal
      break
    if not chunk:
      break
    chunks.append(chunk)
  proc.wait(timeout=600)
  os.close(master)
  out = b"".join(chunks).decode("utf-8", "replace")
  assert proc.returncode == 0, out
  assert "\r" in out
  bar = [l for l in re.split(r"[\r\n]", out) if "train:" in l and "|" in l]
  assert bar, repr(out[-3000:])
  assert any("4/4" in l for l in bar), bar
  assert any(("step/s" in l or "s/step" in l) and "loss=" in l for l in bar), bar


@pytest.mark.slow
def test_no_bar_and_no_tensorflow_info_lines_without_a_terminal(tmp_path, tfds_dir):
  proc = subprocess.run(
      _RUNLOCAL + [f"--workdir={tmp_path / 'pipe'}", f"--config.data.data_dir={tfds_dir}"],
      cwd=ROOT, env=_quiet_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      timeout=600, check=False)
  out = proc.stdout.decode("utf-8", "replace")
  assert proc.returncode == 0, out
  assert "Finished at step 4" in out  # our own log lines stay
  assert "\r" not in out and "\x1b[" not in out, out
  noise = [l for l in out.splitlines() if l.startswith("I0000") or "cpu_feature_guard" in l
           or "cudart_stub" in l]
  assert not noise, noise


def test_a_workdir_locked_by_another_trainer_is_refused_before_any_write(tmp_path, tfds_dir):
  config = _demo_config(tfds_dir)
  workdir = str(tmp_path / "locked")
  with workdir_lib.lock(workdir):
    with pytest.raises(workdir_lib.WorkdirLockedError):
      train_lib.train(config, workdir)
  assert not os.path.exists(os.path.join(workdir, "config.json"))
  assert not os.path.exists(os.path.join(workdir, "labels.txt"))


@pytest.mark.parametrize("validation_split", [None, "train"])
def test_training_evaluates_on_the_validation_part_only(tmp_path, tfds_dir, monkeypatch,
                                                       validation_split):
  """eval_every and keep_best select on the calibration part of the training split (or a
  named validation split), never on the test split nor on the examples trained on."""
  config = _demo_config(tfds_dir, num_steps=4, eval_every=2, keep_best="top3.OF1")
  config.data.validation_split = validation_split
  read = []
  predict_models = evaluate_lib.predict_models

  def spy(config, vocab, backbone, head, split, **kwargs):
    read.append((split, kwargs.get("part", "all")))
    return predict_models(config, vocab, backbone, head, split, **kwargs)

  monkeypatch.setattr(evaluate_lib, "predict_models", spy)
  result = train_lib.train(config, str(tmp_path / "run"))
  want = ("train", "calibration") if validation_split is None else ("train", "all")
  evaluations = [r for r in read if r != ("train", "calibration") or validation_split is None]
  assert evaluations and set(evaluations) == {want}, read
  assert result["eval"]["split"] == ("train[calibration]" if validation_split is None
                                     else "train")


def test_keep_best_reads_no_test_example(tmp_path):
  """A test split whose every image is broken: training with keep_best and eval_every never
  touches it (it would fail), and best/ is kept."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rows = []
  for i in range(40):
    tags = ["a"] + (["b"] if i % 2 else [])
    pixels = np.full((8, 8, 3), (90 * (i % 3), 40 * len(tags), i), np.uint8)
    Image.fromarray(pixels).save(tmp_path / f"{i}.png")
    rows.append(f"{i}.png,{' '.join(tags)}")
  (tmp_path / "train.csv").write_text("image_name,tags\n" + "\n".join(rows) + "\n")
  (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
  (tmp_path / "test.csv").write_text("image_name,tags\nbroken.png,a\nmissing.png,b\n")
  config = load_config_file(os.path.join(ROOT, "configs", "csv.py"), "runlocal")
  config.data.train_csv = str(tmp_path / "train.csv")
  config.data.eval_csv = str(tmp_path / "test.csv")
  config.data.check_images = "header"  # the test CSV is never opened to check its images
  config.data.calibration_fraction = 0.3
  config.train.update(num_steps=4, eval_every=2, keep_best="all.EF1", checkpoint_every=2)
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir)
  assert os.path.exists(os.path.join(workdir, "best", "best.json"))
  with pytest.raises(Exception, match="broken.png|missing.png"):
    evaluate_lib.evaluate(workdir)  # evaluate does read it: the test split is really broken


# ---- Planted-bug tests (issue 20): each fails if the named bug is put back. They drive the
# trainer's own step (`build_training_models`, `make_train_step`, `make_multi_step`) on one in-memory
# batch, without data or a workdir. ----

_K = 5


def _step_config(**train):
  """A toy config for the trainer's step: small_cnn at 32x32 trained with a small head,
  float32, no dropout, no decay, SGD, batch 4."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()
  config.model.update(dict(backbone="small_cnn", backbone_weights=None, image_size=32,
                           train_backbone=True, embedding_dim=8, lstm_units=16, dropout=0.0,
                           weight_decay=0.0, side_loss_weight=0.0))
  config.data.precision = "off"
  config.train.update(dict(batch_size=4, optimizer="sgd", learning_rate=0.1, momentum=0.0))
  config.train.update(train)
  return config


def _step_batch(config, seed=0):
  rng = np.random.default_rng(seed)
  size, batch = config.model.image_size, config.train.batch_size
  multi_hot = np.zeros((batch, _K), np.float32)
  for row in multi_hot:  # 3 or 4 labels each: many orders to draw from
    row[rng.choice(_K, size=rng.integers(3, 5), replace=False)] = 1.0
  return {"image": rng.uniform(0, 255, (batch, size, size, 3)).astype(np.float32),
          "labels": multi_hot}


def _trainer_steps(config, batch, num_calls, strategy=None):
  """Models after `num_calls` calls of the trainer's multi_step (one step each) on `batch`,
  and each call's loss."""
  strategy = strategy or tf.distribute.get_strategy()
  models = train_lib.build_training_models(config, _K, strategy)
  multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  losses = [float(multi_step(iterator, tf.constant(1))[0]) for _ in range(num_calls)]
  return models, losses


def test_random_label_order_changes_between_the_trainers_steps():
  """train.label_order=random draws each example's order anew at every step: the trainer
  hands the step to the loss. With the learning rate 0 (weights fixed), the same batch's loss
  still changes from step to step under `random`, and not under `frequent_first`."""
  for order, changes in (("frequent_first", False), ("random", True)):
    config = _step_config(label_order=order, learning_rate=0.0)
    _, losses = _trainer_steps(config, _step_batch(config), 3)
    assert np.all(np.isfinite(losses)), (order, losses)
    assert (len(set(losses)) > 1) == changes, (order, losses)


def test_trained_backbone_learns_in_the_trainers_step():
  """model.train_backbone=True: the backbone's variables are among those the optimizer
  updates, so a few steps change every backbone kernel (and the head's)."""
  config = _step_config()
  batch = _step_batch(config)
  models = train_lib.build_training_models(config, _K, tf.distribute.get_strategy())
  before = {v.path: v.numpy() for v in models.backbone.trainable_variables}
  assert before  # the small CNN has kernels to train
  del models
  models, losses = _trainer_steps(config, batch, 3)
  assert np.all(np.isfinite(losses))
  after = {v.path: v.numpy() for v in models.backbone.trainable_variables}
  assert after.keys() == before.keys()
  unchanged = [p for p in before if before[p].ndim > 1 and np.array_equal(before[p], after[p])]
  assert not unchanged, f"backbone kernels not trained: {unchanged}"


_TWO_REPLICAS = """
import json, sys
from cnn_rnn_tf import runtime
runtime.setup(cpu_devices=2)  # before any TensorFlow op
import ml_collections
import numpy as np
import tensorflow as tf
from cnn_rnn_tf import distribute
from cnn_rnn_tf import train_lib
config = ml_collections.ConfigDict(json.loads(sys.argv[1]))
batch = {k: np.asarray(v, np.float32) for k, v in json.loads(sys.argv[2]).items()}
weights, losses = {}, {}
for name, strategy in (("one", tf.distribute.get_strategy()),
                       ("two", distribute.make_strategy())):
  models = train_lib.build_training_models(config, len(batch["labels"][0]), strategy)
  before = [v.numpy() for v in models.head.trainable_variables]
  multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
  dataset = tf.data.Dataset.from_tensors(batch).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  losses[name] = [float(multi_step(iterator, tf.constant(1))[0]) for _ in range(2)]
  weights[name] = [(v.numpy() - b).tolist()
                   for v, b in zip(models.head.trainable_variables, before)]
  losses[name + "_replicas"] = strategy.num_replicas_in_sync
print(json.dumps({"losses": losses, "updates": weights}))
"""


def test_two_replicas_update_the_head_as_one_does():
  """The per-replica loss is divided by the GLOBAL batch (the replicas' gradients are summed):
  two steps on 2 logical CPU devices give the losses and weight updates of one device. A
  per-replica mean would double them. A fast subprocess (the devices are set before any op),
  the head alone on 8 feature vectors."""
  config = _step_config(batch_size=8)
  config.model.train_backbone = False
  config.data.cache_features = True  # the head trains on features: no backbone in the step
  rng = np.random.default_rng(4)
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  dim = backbones.build_backbone("small_cnn", image_size=32).output_shape[-1]
  batch = {"features": rng.normal(size=(8, dim)).tolist(),
           "labels": _step_batch(config)["labels"].tolist()}
  result = subprocess.run([sys.executable, "-c", _TWO_REPLICAS, config.to_json(),
                           json.dumps(batch)], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 0, result.stderr[-3000:]
  out = json.loads(result.stdout.strip().splitlines()[-1])
  assert out["losses"]["one_replicas"] == 1 and out["losses"]["two_replicas"] == 2
  np.testing.assert_allclose(out["losses"]["two"], out["losses"]["one"], rtol=1e-5)
  largest = max(np.abs(np.asarray(u)).max() for u in out["updates"]["one"])
  assert largest > 1e-3  # the steps moved the weights, or the comparison proves nothing
  for one, two in zip(out["updates"]["one"], out["updates"]["two"]):
    np.testing.assert_allclose(two, one, rtol=1e-3, atol=1e-3 * largest)


# ------------------------------------------------------------------------ issue 20: keep_best


def test_keep_best_without_evaluation_is_refused_before_the_workdir_is_touched(tmp_path):
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.runlocal(config_lib.default_config())
  config.train.keep_best = "mAP_noninterp"
  config.train.eval_every = -1
  workdir = str(tmp_path / "w")
  with pytest.raises(config_lib.ConfigError, match="train.keep_best = 'mAP_noninterp' with "
                     "train.eval_every = -1"):
    train_lib.check_before_writing(config, workdir)
  assert not os.path.exists(workdir)


def test_best_checkpoint_tie_keeps_the_later_checkpoint(tmp_path):
  from cnn_rnn_tf import periodic  # pylint: disable=g-import-not-at-top
  weight = tf.Variable(0.0)
  best_dir = str(tmp_path / "best")
  best = periodic.BestCheckpoint("top3.OF1", tf.train.Checkpoint(w=weight), best_dir)
  assert best.update(10, {"top3": {"OF1": 0.5}})
  weight.assign(6.0)
  assert best.update(60, {"top3": {"OF1": 0.5}})  # a tie: the later one is kept
  assert tf.train.latest_checkpoint(best_dir).endswith("ckpt-60")
  assert json.load(open(os.path.join(best_dir, "best.json")))["step"] == 60


def test_a_split_too_small_to_hold_out_trains_without_evaluation_or_thresholds(tmp_path):
  """6 images: the 10% validation part is empty. The run ends normally with a warning, no
  thresholds.json and no eval points; keep_best, which must choose, refuses naming the part."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rows = []
  for i in range(6):
    Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    rows.append(f"{i}.png,{'a b' if i % 2 else 'a'}")
  (tmp_path / "train.csv").write_text("image_name,tags\n" + "\n".join(rows) + "\n")
  config = load_config_file(os.path.join(ROOT, "configs", "csv.py"), "runlocal")
  config.data.train_csv = str(tmp_path / "train.csv")
  config.data.calibration_fraction = 1e-9  # no example held out, whatever the hash
  config.train.update(num_steps=2, checkpoint_every=2)
  workdir = str(tmp_path / "run")
  result = train_lib.train(config, workdir)
  assert result["step"] == 2 and result["eval"] is None
  assert not os.path.exists(workdir_lib.thresholds_path(workdir))
  config.train.update(num_steps=4, eval_every=2, keep_best="top3.OF1")
  with pytest.raises(train_lib.data_lib.EmptyPartError, match="calibration"):
    train_lib.train(config, str(tmp_path / "best"))
