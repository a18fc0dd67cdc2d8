"""The tf.distribute strategy of a training run, and which process is the chief.

    from cnn_rnn_tf import distribute
    strategy = distribute.make_strategy()     # from TF_CONFIG and the local devices
    chief = distribute.is_chief(strategy)     # True on the one process that writes the workdir

Strategy: MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster of more than one task,
MirroredStrategy over the local devices otherwise (all GPUs; else all logical CPUs), the
default strategy when there is only one (faster than MirroredStrategy over one device).
`train_lib.train` uses both; the loop is the same code under every strategy.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf


def make_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy if TF_CONFIG names several tasks; MirroredStrategy over
  several local devices; the default strategy on one device.

  Why not MirroredStrategy on one device too: measured on a 2-core CPU, the demo's
  end-to-end step ran at 97 images/s under it and 172 under the default strategy (1.77x;
  the head alone on features 1.12x; `python -m benchmarks.strategy` measures the ratio).
  The loop is the same code under both; only the replica machinery differs.
  """
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
  if len(devices) == 1:
    return tf.distribute.get_strategy()
  return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "chief" or (
      not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)
