"""cnn_rnn_tf.periodic: when actions fire, the metric keys, the best checkpoint across a resume."""

import json
import math
import os

import pytest
import tensorflow as tf

from cnn_rnn_tf import periodic


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
