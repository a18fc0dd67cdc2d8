r"""The trainer's step on one device: the default strategy against MirroredStrategy.

    python -m benchmarks.strategy [--steps=20] [--rounds=2] [--out=/tmp/strategy.json]

`train_lib.make_strategy` uses the default strategy when there is one device and
MirroredStrategy only over several. This benchmark is the measurement behind that choice:
the real step (`train_lib.make_train_step` inside `make_multi_step`, the same code for both)
of the demo's two kinds of run, on one in-memory batch of random inputs, under each strategy:

  end_to_end   the demo's end-to-end run: the small CNN trained with the CNN-RNN head on
               64x64 images, batch 32 (`demo_config.get_config()`, float32)
  head         the CNN-RNN head alone on 256-d features, batch 64 (`get_config("heads")`)

Each setting is built once, traced by one call, then timed `--rounds` times over `--steps`
steps in the order default, mirrored, mirrored, default, ... (a drift of other load on the
machine meets both alike). The figure is the best round's images per second; the ratio is
default / mirrored, measured in this one run.
"""

from __future__ import annotations

import json
import time

from absl import app
from absl import flags

_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed call.")
_ROUNDS = flags.DEFINE_integer("rounds", 2, "Timed calls per setting (ABBA order).")
_OUT = flags.DEFINE_string("out", "/tmp/strategy_benchmark.json", "Where the JSON goes.")

NUM_LABELS = 20


def _step_fn(kind: str, strategy):
  """(multi_step, distributed iterator, batch size) of one run kind under `strategy`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import demo_config  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top

  config = demo_config.get_config("heads" if kind == "head" else None)
  config.data.precision = "off"
  config.model.backbone_weights = None
  if kind == "head":
    config.model.train_backbone = False
  models = train_lib.build_models(config, NUM_LABELS, strategy)
  batch_size = config.train.batch_size
  labels = tf.cast(tf.random.uniform([batch_size, NUM_LABELS], seed=1) < 0.15, tf.float32)
  inputs = ({"features": tf.random.uniform([batch_size, 256], seed=2)} if kind == "head" else
            {"image": tf.random.uniform([batch_size, 64, 64, 3], 0, 255, seed=2)})
  dataset = tf.data.Dataset.from_tensors({**inputs, "labels": labels}).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  return train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models)), \
      iterator, batch_size


def main(argv):
  del argv
  from cnn_rnn_tf import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  device = tf.config.list_logical_devices("CPU")[0].name
  strategies = {"default": tf.distribute.get_strategy,
                "mirrored": lambda: tf.distribute.MirroredStrategy([device])}
  result = {"steps": _STEPS.value, "rounds": _ROUNDS.value, "kinds": {}}
  for kind in ("end_to_end", "head"):
    built = {}
    for name, make in strategies.items():
      multi_step, iterator, batch_size = _step_fn(kind, make())
      multi_step(iterator, tf.constant(2))[0].numpy()  # tracing
      built[name] = (multi_step, iterator)
    rates = {name: [] for name in strategies}
    names = list(strategies)
    for i in range(_ROUNDS.value):
      for name in names if i % 2 == 0 else names[::-1]:
        multi_step, iterator = built[name]
        start = time.perf_counter()
        multi_step(iterator, tf.constant(_STEPS.value))[0].numpy()
        rates[name].append(_STEPS.value * batch_size / (time.perf_counter() - start))
    summary = {name: round(max(r), 1) for name, r in rates.items()}
    result["kinds"][kind] = {"images_per_second": summary, "all_rounds": rates,
                             "ratio_default_over_mirrored": round(
                                 summary["default"] / summary["mirrored"], 3)}
    print(f"{kind}: default {summary['default']:.0f} images/s, MirroredStrategy over one "
          f"device {summary['mirrored']:.0f} images/s: "
          f"{summary['default'] / summary['mirrored']:.2f}x", flush=True)
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
