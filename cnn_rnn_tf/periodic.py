"""Periodic work of the training loop as small named objects (after CommonLoopUtils).

    actions = [periodic.LogMetrics(100, writer, global_batch),
               periodic.SaveCheckpoint(1000, manager, variables),
               periodic.Evaluate(500, evaluate_fn, writer, best=best_keeper)]
    for action in actions:
      action.start(start_step, last_step=num_steps)
    ...
    num = min([steps_per_loop, num_steps - step] + [a.next_step(step) - step for a in actions])
    ... train `num` steps ...
    for action in actions:
      action(step, loss=loss, regularization=reg, grad_norm=norm, num=num)

An action fires when the step crosses a multiple of `every` since it last looked (so a loop
that advances several steps at a time never skips one), and always at `last_step`.
`every=0` fires only at `last_step`. The loop itself does no `%` arithmetic: it asks each
action for `next_step` and stops there.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Callable

from absl import logging
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import metrics as metrics_lib


class PeriodicAction:
  """Fires at every multiple of `every` that a step crosses, and at `last_step`.

  Subclasses implement `run(step, **context)`.
  """

  def __init__(self, every: int):
    if every is None or every < 0:
      raise ValueError(f"{type(self).__name__}: every must be >= 0 (0: only at the end), "
                       f"got {every!r}.")
    self.every = int(every)
    self._previous = 0
    self._last_step = None

  def start(self, step: int, last_step: int | None = None) -> None:
    """Where the loop starts (0, or the resumed step) and where it ends."""
    self._previous = int(step)
    self._last_step = last_step

  def due(self, step: int) -> bool:
    """True when `step` crossed a multiple of `every` since the last call, or is the end."""
    if step == self._last_step:
      return True
    return bool(self.every) and step // self.every > self._previous // self.every

  def next_step(self, step: int) -> int:
    """The first step after `step` at which this action fires (or `last_step`, or infinity)."""
    candidates = [] if self._last_step is None or step >= self._last_step else [self._last_step]
    if self.every:
      candidates.append((step // self.every + 1) * self.every)
    return min(candidates) if candidates else math.inf

  def __call__(self, step: int, **context) -> bool:
    """Runs the action when due; returns whether it ran."""
    fire = self.due(step)
    self._previous = step
    if fire:
      self.run(step, **context)
    return fire

  def run(self, step: int, **context) -> None:
    raise NotImplementedError


class LogMetrics(PeriodicAction):
  """Writes the interval's mean loss, regularization and gradient norm (before clipping),
  examples/s and the learning rate (train/ summaries).

  Every call (due or not) adds its means, weighted by its `num` steps: the logged loss is the
  mean over all steps since the last log, as flax and CLU log it, not the last batch's.
  """

  MEANS = ("loss", "regularization", "grad_norm")

  def __init__(self, every: int, writer, global_batch: int,
               learning_rate: Callable[[], float] = lambda: float("nan"),
               total_steps: int | None = None):
    super().__init__(every)
    self._writer, self._global_batch = writer, global_batch
    self._learning_rate, self._total = learning_rate, total_steps
    self._t0, self._since = time.time(), 0
    self._sums, self._count = dict.fromkeys(self.MEANS, 0.0), 0

  def start(self, step: int, last_step: int | None = None) -> None:
    super().start(step, last_step)
    self._t0, self._since = time.time(), step
    self._sums, self._count = dict.fromkeys(self.MEANS, 0.0), 0

  def __call__(self, step: int, **context) -> bool:
    num = context.get("num", 1)
    for key in self.MEANS:
      self._sums[key] += float(context.get(key, 0.0)) * num
    self._count += num
    return super().__call__(step, **context)

  def run(self, step: int, **_) -> None:
    elapsed = max(time.time() - self._t0, 1e-9)
    means = {k: v / max(self._count, 1) for k, v in self._sums.items()}
    self._writer.write(step, {
        **means,
        "examples_per_s": (step - self._since) * self._global_batch / elapsed,
        "learning_rate": self._learning_rate(),
    }, prefix=f"step {step}/{self._total or '?'}")
    self._t0, self._since = time.time(), step
    self._sums, self._count = dict.fromkeys(self.MEANS, 0.0), 0


class SaveCheckpoint(PeriodicAction):
  """Saves a checkpoint, after refusing NaN / Inf weights (the last good one stays last)."""

  def __init__(self, every: int, manager: tf.train.CheckpointManager, variables):
    super().__init__(every)
    self.manager = manager
    self._variables = variables

  def run(self, step: int, **_) -> None:
    check_finite(self._variables, step, self.manager.latest_checkpoint)
    self.manager.save(checkpoint_number=step)


def check_finite(variables, step: int, last_checkpoint) -> None:
  """Raises FloatingPointError naming the first weight that holds NaN or Inf."""
  for v in variables:
    if not bool(tf.reduce_all(tf.math.is_finite(v))):
      raise FloatingPointError(
          f"Weight {v.path} holds NaN or Inf at step {step}; stopping without saving. The "
          f"last good checkpoint is {last_checkpoint}.")


def metric_value(metrics: dict, key: str) -> float:
  """`metrics["top3"]["OF1"]` for key "top3.OF1"; a KeyError names the key and the choices."""
  node = metrics
  for part in key.split("."):
    if not isinstance(node, dict) or part not in node:
      choices = sorted(k for k, v in flat_scalars(metrics).items())
      raise KeyError(f"Metric {key!r} (train.keep_best) is not in the evaluation metrics; "
                     f"known: {choices}.")
    node = node[part]
  return float("nan") if node is None else float(node)


def flat_scalars(metrics: dict, prefix: str = "") -> dict:
  """{"top3.OF1": 0.61, "mAP_noninterp": 0.7, ...}: the numeric leaves, per_class left out."""
  out = {}
  for key, value in metrics.items():
    if key == "per_class":
      continue
    if isinstance(value, dict):
      out.update(flat_scalars(value, f"{prefix}{key}."))
    elif isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(value, bool):
      out[f"{prefix}{key}"] = float(value)
  return out


class BestCheckpoint:
  """Keeps the checkpoint with the best `metric` in `directory` (+ best.json).

  Best is the highest value, or the lowest for a metric whose `metrics.METRICS` entry says
  lower is better (e.g. Hamming loss). A tie keeps the later checkpoint (the longer-trained
  weights). best.json: {"metric": "top3.OF1", "value": 0.61, "step": 1500}. A resumed run
  reads it, so the best so far is kept across restarts.
  """

  def __init__(self, metric: str, checkpoint: tf.train.Checkpoint, directory: str,
               enabled: bool = True):
    self.metric = metric
    self.higher_is_better = metrics_lib.higher_is_better(metric)  # KeyError: names the key
    self.directory = directory
    self._enabled = enabled
    self._manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=1,
                                               checkpoint_name="ckpt")
    self.best = self._read()

  def _read(self) -> dict | None:
    path = os.path.join(self.directory, "best.json")
    if not tf.io.gfile.exists(path):
      return None
    with tf.io.gfile.GFile(path) as f:
      best = json.load(f)
    if best.get("metric") != self.metric:
      logging.warning("best.json in %s is for %r, not train.keep_best=%r: starting afresh.",
                      self.directory, best.get("metric"), self.metric)
      return None
    return best

  def _worse(self, value: float) -> bool:
    """Strictly worse than the best so far (a tie is not: the later checkpoint is kept)."""
    best = self.best["value"]
    return value < best if self.higher_is_better else value > best

  def update(self, step: int, metrics: dict) -> bool:
    """Saves when `metrics` beats or ties the best so far (a tie keeps the later); returns
    whether it did."""
    value = metric_value(metrics, self.metric)
    if not np.isfinite(value) or (self.best is not None and self._worse(value)):
      return False
    path = self._manager.save(checkpoint_number=step)
    self.best = {"metric": self.metric, "value": value, "step": int(step)}
    if self._enabled:
      with tf.io.gfile.GFile(os.path.join(self.directory, "best.json"), "w") as f:
        json.dump(self.best, f, indent=2)
    logging.info("New best %s=%.4f at step %d: %s", self.metric, value, step, path)
    return True


class Evaluate(PeriodicAction):
  """Evaluates (the trainer: on the validation part); writes `eval/...` scalars; keeps the
  best checkpoint. An `evaluate_fn` that returns None has nothing to evaluate: skipped."""

  def __init__(self, every: int, evaluate_fn: Callable[[], dict], writer,
               best: BestCheckpoint | None = None):
    super().__init__(every)
    self._evaluate = evaluate_fn
    self._writer = writer
    self._best = best
    self.last_metrics = None

  def run(self, step: int, **_) -> None:
    t0 = time.time()
    metrics = self._evaluate()
    if metrics is None:
      return
    scalars = {f"eval/{k}": v for k, v in metrics_lib.scalars(metrics).items()}
    scalars["eval/seconds"] = time.time() - t0
    self._writer.write(step, scalars, prefix=f"eval at step {step}")
    if self._best is not None:
      self._best.update(step, metrics)
    self.last_metrics = metrics

