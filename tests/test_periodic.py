"""cnn_rnn_tf.periodic: when actions fire, the metric keys, the best checkpoint across a resume."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import metrics_markdown
from cnn_rnn_tf import periodic
from cnn_rnn_tf.metric_writer import MetricWriter


class Recorder(periodic.PeriodicAction):

  def __init__(self, every):
    super().__init__(every)
    self.steps = []

  def run(self, step, **context):
    self.steps.append(step)


def test_fires_when_a_multiple_is_crossed_and_at_the_end():
  action = Recorder(4)
  action.start(0, last_step=10)
  for step in (3, 6, 7, 8, 9, 10):  # 6 crosses 4, 8 is a multiple, 10 is the end
    action(step)
  assert action.steps == [6, 8, 10]


def test_next_step_is_the_next_multiple_or_the_end():
  action = Recorder(4)
  action.start(5, last_step=10)
  assert action.next_step(5) == 8
  assert action.next_step(8) == 10
  assert action.next_step(10) == 12


def test_every_zero_fires_only_at_the_end():
  action = Recorder(0)
  action.start(0, last_step=7)
  assert action.next_step(0) == 7
  for step in range(1, 8):
    action(step)
  assert action.steps == [7]
  unbounded = Recorder(0)
  unbounded.start(0)
  assert unbounded.next_step(3) == math.inf


def test_resumed_start_does_not_fire_for_steps_before_it():
  action = Recorder(5)
  action.start(7, last_step=20)
  action(9)
  action(10)
  assert action.steps == [10]


def test_negative_every_is_refused():
  with pytest.raises(ValueError, match="every"):
    Recorder(-2)


def test_metric_value_follows_dots_and_names_unknown_keys():
  metrics = {"top3": {"OF1": 0.5, "CF1": 0.25}, "mAP_noninterp": 0.75, "per_class": {}}
  assert periodic.metric_value(metrics, "top3.OF1") == 0.5
  assert periodic.metric_value(metrics, "mAP_noninterp") == 0.75
  with pytest.raises(KeyError, match="top3.OF2.*top3.CF1"):
    periodic.metric_value(metrics, "top3.OF2")
  assert periodic.flat_scalars(metrics) == {"top3.OF1": 0.5, "top3.CF1": 0.25,
                                            "mAP_noninterp": 0.75}


def test_best_checkpoint_keeps_the_best_value_across_a_restart(tmp_path):
  weight = tf.Variable(0.0)
  checkpoint = tf.train.Checkpoint(w=weight)
  best_dir = str(tmp_path / "best")
  best = periodic.BestCheckpoint("top3.OF1", checkpoint, best_dir)
  weight.assign(2.0)
  assert best.update(2, {"top3": {"OF1": 0.5}})
  weight.assign(4.0)
  assert not best.update(4, {"top3": {"OF1": 0.4}})
  # A restart reads best.json: a worse value after the resume does not replace the best.
  again = periodic.BestCheckpoint("top3.OF1", checkpoint, best_dir)
  assert again.best == {"metric": "top3.OF1", "value": 0.5, "step": 2}
  weight.assign(6.0)
  assert not again.update(6, {"top3": {"OF1": 0.45}})
  assert json.load(open(os.path.join(best_dir, "best.json")))["step"] == 2
  assert tf.train.latest_checkpoint(best_dir).endswith("ckpt-2")
  tf.train.Checkpoint(w=weight).restore(tf.train.latest_checkpoint(best_dir))
  assert float(weight.numpy()) == 2.0
  weight.assign(8.0)
  assert again.update(8, {"top3": {"OF1": 0.9}})
  assert tf.train.latest_checkpoint(best_dir).endswith("ckpt-8")
  assert sorted(f for f in os.listdir(best_dir) if f.endswith(".index")) == ["ckpt-8.index"]


class FakeWriter:

  def __init__(self):
    self.records = []

  def write(self, step, scalars, prefix=""):
    self.records.append((step, dict(scalars)))


def test_evaluate_writes_eval_scalars_and_feeds_the_best(tmp_path):
  values = iter([0.3, 0.7])
  writer = FakeWriter()
  best = periodic.BestCheckpoint("mAP_noninterp", tf.train.Checkpoint(w=tf.Variable(1.0)),
                                 str(tmp_path / "best"))
  action = periodic.Evaluate(2, lambda: {"mAP_noninterp": next(values),
                                         "top3": {"OF1": 0.1}}, writer, best)
  action.start(0, last_step=4)
  for step in range(1, 5):
    action(step)
  assert [s for s, _ in writer.records] == [2, 4]
  assert writer.records[1][1]["eval/mAP_noninterp"] == 0.7
  assert writer.records[0][1]["eval/top3/OF1"] == 0.1
  assert best.best["step"] == 4


def _size_error(y_true, y_pred):
  """An example metric: mean |predicted set size - true set size| (lower is better)."""
  return float(np.abs(y_pred.sum(axis=1) - y_true.sum(axis=1)).mean())


def _tensorboard_tags(logdir):
  tags = {}
  for name in os.listdir(logdir):
    if name.startswith("events."):
      for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
        for value in event.summary.value:
          tags.setdefault(value.tag, []).append(event.step)
  return tags


def test_one_registered_function_is_a_metric_everywhere(tmp_path, monkeypatch):
  """Issue 21 item 1: a metric registered in a test module (one function, one table entry)
  reaches metrics.json (compute_all), the TensorBoard scalars of train.eval_every, and is a
  valid train.keep_best key that the best checkpoint follows in its direction."""
  config = config_lib.default_config()
  config.train.keep_best = "all.size_error"
  with pytest.raises(config_lib.ConfigError, match="train.keep_best"):
    config_checks.validate(config)  # not a metric before it is registered
  monkeypatch.setitem(metrics_lib.METRICS, "size_error",
                      metrics_lib.Metric(_size_error, False, "size error"))
  config_checks.validate(config)

  rng = np.random.default_rng(0)
  y_true = rng.random((30, 5)) < 0.4
  scores = rng.random((30, 5))
  preds = [metrics_lib.top_k_mask(scores, 5, threshold=t) for t in (0.9, 0.5, 0.2)]
  reports = [metrics_lib.compute_all(y_true, metrics_lib.top_k_mask(scores, 3), p, scores,
                                     list("abcde")) for p in preds]
  written = json.loads(json.dumps(reports[0], allow_nan=False))  # as in metrics.json
  assert written["all"]["size_error"] == pytest.approx(_size_error(y_true, preds[0]))
  assert written["top3"]["size_error"] == pytest.approx(
      _size_error(y_true, metrics_lib.top_k_mask(scores, 3)))
  assert "size error" in metrics_markdown.markdown_table(reports[0])

  values = [r["all"]["size_error"] for r in reports]
  best_step = 2 * (int(np.argmin(values)) + 1)
  assert values[best_step // 2 - 1] < max(values)  # the lowest wins, not the highest
  writer = MetricWriter(str(tmp_path / "train"))
  best = periodic.BestCheckpoint("all.size_error", tf.train.Checkpoint(w=tf.Variable(1.0)),
                                 str(tmp_path / "best"))
  action = periodic.Evaluate(2, iter(reports).__next__, writer, best)
  action.start(0, last_step=6)
  for step in range(1, 7):
    action(step)
  writer.close()
  assert sorted(_tensorboard_tags(str(tmp_path / "train"))["eval/all/size_error"]) == [2, 4, 6]
  assert best.best == {"metric": "all.size_error", "value": min(values), "step": best_step}


def test_a_lower_is_better_metric_keeps_the_lowest_and_ties_keep_the_later(tmp_path,
                                                                          monkeypatch):
  monkeypatch.setitem(metrics_lib.METRICS, "size_error",
                      metrics_lib.Metric(_size_error, False, "size error"))
  lower = periodic.BestCheckpoint("top3.size_error", tf.train.Checkpoint(w=tf.Variable(1.0)),
                                  str(tmp_path / "lower"))
  assert lower.update(2, {"top3": {"size_error": 0.5}})
  assert not lower.update(4, {"top3": {"size_error": 0.6}})
  assert lower.update(6, {"top3": {"size_error": 0.5}})  # a tie: the later step
  assert lower.best["step"] == 6
  higher = periodic.BestCheckpoint("top3.OF1", tf.train.Checkpoint(w=tf.Variable(1.0)),
                                   str(tmp_path / "higher"))
  assert higher.update(10, {"top3": {"OF1": 0.305}})
  assert higher.update(60, {"top3": {"OF1": 0.305}})  # issue 20 item 5: ties keep the later
  assert not higher.update(70, {"top3": {"OF1": 0.3}})
  assert higher.best["step"] == 60
  assert tf.train.latest_checkpoint(str(tmp_path / "higher")).endswith("ckpt-60")
  with pytest.raises(KeyError, match="'nope'"):
    periodic.BestCheckpoint("top3.nope", tf.train.Checkpoint(w=tf.Variable(1.0)),
                            str(tmp_path / "unknown"))


@pytest.mark.slow
def test_a_registered_metric_reaches_a_real_runs_files(tmp_path, monkeypatch):
  """End to end: train with keep_best on the registered metric, then evaluate the workdir."""
  from cnn_rnn_tf import evaluate_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from helpers import load_config_file  # pylint: disable=g-import-not-at-top
  monkeypatch.setitem(metrics_lib.METRICS, "size_error",
                      metrics_lib.Metric(_size_error, False, "size error"))
  config = load_config_file(os.path.join(os.path.dirname(os.path.dirname(
      os.path.abspath(__file__))), "configs", "demo.py"), "runlocal")
  config.data.data_dir = str(tmp_path / "tfds")
  config.train.update(num_steps=4, checkpoint_every=2, eval_every=2, keep_best="all.size_error")
  config_checks.validate(config)
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir)
  log = [json.loads(l) for l in open(os.path.join(workdir, "train", "log.jsonl"))]
  evals = {r["step"]: r["eval/all/size_error"] for r in log if "eval/all/size_error" in r}
  assert sorted(evals) == [2, 4]
  assert "eval/all/size_error" in _tensorboard_tags(os.path.join(workdir, "train"))
  best = json.load(open(os.path.join(workdir, "best", "best.json")))
  assert best["metric"] == "all.size_error" and best["value"] == min(evals.values())
  assert best["step"] == max(s for s, v in evals.items() if v == min(evals.values()))
  # Training evaluates the validation part (never the test split): evaluate --validation
  # reproduces its last figure; evaluate on the test split writes eval/.
  validation = evaluate_lib.evaluate(workdir, checkpoint="latest", validation=True)
  assert validation["all"]["size_error"] == pytest.approx(evals[4])
  evaluate_lib.evaluate(workdir, checkpoint="latest")
  eval_dir = os.path.join(workdir, "eval")
  saved = json.load(open(os.path.join(eval_dir, "metrics.json")))
  assert saved["all"]["size_error"] is not None
  assert "size error" in open(os.path.join(eval_dir, "metrics.md")).read()
  assert "all/size_error" in _tensorboard_tags(eval_dir)


def test_an_evaluation_with_nothing_to_evaluate_is_skipped():
  writes = []

  class Writer:
    def write(self, step, scalars, prefix=""):
      writes.append(step)

  action = periodic.Evaluate(1, lambda: None, Writer())
  action.run(3)
  assert writes == [] and action.last_metrics is None


def test_logged_loss_is_the_mean_over_the_interval():
  """Issue 25 item 8: the logged loss (and regularization, gradient norm) is the mean of
  every step since the last log, each call weighted by its steps, not the last batch's."""
  writer = FakeWriter()
  action = periodic.LogMetrics(4, writer, global_batch=8, learning_rate=lambda: 0.5)
  action.start(0, last_step=6)
  # calls of 1, 2 and 1 steps (means 1.0, 4.0, 10.0), then 2 steps to the end (6.0)
  for step, loss, num in ((1, 1.0, 1), (3, 4.0, 2), (4, 10.0, 1), (6, 6.0, 2)):
    action(step, loss=loss, regularization=loss / 10, grad_norm=2 * loss, num=num)
  assert [s for s, _ in writer.records] == [4, 6]
  first, last = writer.records[0][1], writer.records[1][1]
  np.testing.assert_allclose(first["loss"], (1.0 + 2 * 4.0 + 10.0) / 4)
  np.testing.assert_allclose(first["regularization"], 0.475)
  np.testing.assert_allclose(first["grad_norm"], 9.5)
  np.testing.assert_allclose(last["loss"], 6.0)  # the sums restart after a log
  assert first["learning_rate"] == 0.5
