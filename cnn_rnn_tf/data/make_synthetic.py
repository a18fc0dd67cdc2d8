r"""Generates a `synthetic_scenes` config into a TFDS data_dir and prints its size and time.

  python -m cnn_rnn_tf.data.make_synthetic --data_dir=/tmp/tfds [--config=small] [--seed=3]

The library is cnn_rnn_tf/data/synthetic_scenes.py (`synthetic_scenes.prepare`); training
generates the data on first use anyway, this binary only builds it ahead (and times it).
"""

from __future__ import annotations

import time

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS data directory.", required=True)
_CONFIG = flags.DEFINE_string("config", "default", "Base config: default or small.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Override the image side.")
_NUM_TRAIN = flags.DEFINE_integer("num_train", None, "Override the train split size.")
_NUM_TEST = flags.DEFINE_integer("num_test", None, "Override the test split size.")
_SEED = flags.DEFINE_integer("seed", None, "Override the seed.")
_PROGRESS = runtime.define_progress_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf.data import synthetic_scenes  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  builder = synthetic_scenes.prepare(
      _DATA_DIR.value, _CONFIG.value, image_size=_IMAGE_SIZE.value, num_train=_NUM_TRAIN.value,
      num_test=_NUM_TEST.value, seed=_SEED.value)
  seconds = time.perf_counter() - start
  splits = {k: v.num_examples for k, v in builder.info.splits.items()}
  print(f"synthetic_scenes/{builder.builder_config.name}: {splits} in {seconds:.1f} s "
        f"-> {builder.data_dir}")


if __name__ == "__main__":
  app.run(main)
