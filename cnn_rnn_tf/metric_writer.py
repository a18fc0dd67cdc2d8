"""One small writer for scalar metrics: the log, TensorBoard and a JSON-lines file.

    writer = MetricWriter("/tmp/run/train")
    writer.write(100, {"loss": 2.3, "examples_per_s": 410.0}, prefix="step 100/2000")
    writer.close()
    read_jsonl("/tmp/run/train/log.jsonl")   # [{"step": 100, "loss": 2.3, ...}]

A writer with enabled=False (a non-chief worker) only logs.
"""

from __future__ import annotations

import json
import os

from absl import logging
import tensorflow as tf


class MetricWriter:

  def __init__(self, logdir: str, enabled: bool = True):
    self.enabled = enabled
    self.logdir = logdir
    if enabled:
      tf.io.gfile.makedirs(logdir)
      self._summary = tf.summary.create_file_writer(logdir)
      self._jsonl = tf.io.gfile.GFile(os.path.join(logdir, "log.jsonl"), "a")

  def write(self, step: int, scalars: dict, prefix: str = "") -> None:
    text = " ".join(f"{k}={v:.4g}" for k, v in scalars.items())
    logging.info("%s %s", prefix or f"step {step}", text)
    if not self.enabled:
      return
    with self._summary.as_default(step=step):
      for key, value in scalars.items():
        tf.summary.scalar(key, value)
    self._jsonl.write(json.dumps({"step": int(step), **{k: float(v) for k, v in
                                                         scalars.items()}}) + "\n")
    self._jsonl.flush()

  def close(self) -> None:
    if self.enabled:
      self._summary.flush()
      self._jsonl.close()


def read_jsonl(path: str) -> list[dict]:
  """The records a MetricWriter wrote (empty if the file does not exist)."""
  if not tf.io.gfile.exists(path):
    return []
  with tf.io.gfile.GFile(path) as f:
    return [json.loads(line) for line in f if line.strip()]
