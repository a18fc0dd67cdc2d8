"""The tf.data options and fixed parallelism every dataset of the package uses.

    ds = ds.map(fn, num_parallel_calls=options.PARALLELISM).prefetch(options.PREFETCH_BATCHES)
    ds = ds.with_options(options.dataset_options())

Autotuning is off on purpose. tf.data's autotuner runs a model thread
(`Model::OptimizeLoop`) that sleeps between optimizations, doubling the sleep up to 60 s, and
that thread is not woken when its iterator is cancelled: destroying an iterator then waits
for the rest of the sleep. That was the 15-60 s stall at the end of `train_lib.train` (and
after evaluations), found with gdb: the main thread in `~RootDataset::Iterator` waiting for
the `tf_data_model` thread, which sat in `CondVar::Wait` inside `OptimizeLoop`. With a fixed
parallelism (one call per CPU core) and a fixed prefetch the input pipelines keep their
throughput on the machines this runs on, and an iterator is released at once.
"""

from __future__ import annotations

import os

import tensorflow as tf

PARALLELISM = max(1, os.cpu_count() or 1)  # parallel calls of a map: one per CPU core
PREFETCH_BATCHES = 2  # batches made ahead of the consumer


def dataset_options() -> tf.data.Options:
  """No autotuning (see the module docstring); DATA auto-sharding for MultiWorkerMirrored.

  `deterministic` is set on the parallel maps only, never globally: a global setting would
  also let TFDS interleave its files out of order, and the shuffled stream would no longer
  be reproducible.
  """
  options = tf.data.Options()
  options.experimental_distribute.auto_shard_policy = (
      tf.data.experimental.AutoShardPolicy.DATA)
  options.autotune.enabled = False
  return options



def without_autotune_on_devices() -> None:
  """Autotuning off in the per-device datasets of tf.distribute's input iterators as well.

  `strategy.experimental_distribute_dataset` feeds the replicas through a MultiDeviceIterator,
  which builds one small dataset per device (a generator and a prefetch) with default
  options: autotuning on, each with the model thread of the module docstring, so releasing
  the distributed iterator could still wait seconds for it. TensorFlow has no option for
  those datasets; this wraps the one private function that builds them
  (`multi_device_iterator_ops._create_device_dataset`, TensorFlow 2.21) to apply
  `autotune.enabled = False`. Idempotent. Where that function does not exist (another
  TensorFlow) nothing changes but the release time, which `train_lib` logs.
  """
  from tensorflow.python.data.ops import multi_device_iterator_ops as mdi  # pylint: disable=g-import-not-at-top
  create = getattr(mdi, "_create_device_dataset", None)
  if create is None or getattr(create, "without_autotune", False):
    return

  def create_without_autotune(*args, **kwargs):
    options = tf.data.Options()
    options.autotune.enabled = False
    return create(*args, **kwargs).with_options(options)

  create_without_autotune.without_autotune = True
  mdi._create_device_dataset = create_without_autotune  # pylint: disable=protected-access
