r"""The trainer's step on one device: the default strategy against MirroredStrategy.

    python -m benchmarks.strategy [--steps=20] [--repeats=2] [--out=/tmp/strategy.json]

`distribute.make_strategy` uses the default strategy when there is one device and
MirroredStrategy only over several. This benchmark is the measurement behind that choice:
the real step (`train_lib.make_train_step` inside `make_multi_step`, the same code for both)
of the demo's two kinds of run, on one in-memory batch of random inputs, under each strategy:

  end_to_end   the demo's end-to-end run: the small CNN trained with the CNN-RNN head on
               64x64 images, batch 32 (`demo_config.get_config()`, float32)
  head         the CNN-RNN head alone on 256-d features, batch 64 (`get_config("heads")`)

Each (strategy, kind) runs in its own subprocess (a strategy made in a process may change
what the other finds there), in the order default, mirrored, mirrored, default, ... over
`--repeats` (a drift of other load on the machine meets both alike). A run builds the step,
traces it with one call, then times three calls of `--steps` steps; its figure is the best
call's images per second, a setting's the median over its runs. The ratio is default /
mirrored, measured in this one run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

_STEPS = flags.DEFINE_integer("steps", 20, "Steps per timed call.")
_REPEATS = flags.DEFINE_integer("repeats", 2, "Runs per setting (ABBA order).")
_OUT = flags.DEFINE_string("out", "/tmp/strategy_benchmark.json", "Where the JSON goes.")
_CHILD = flags.DEFINE_string("child", None, "Internal: '<strategy>:<kind>' to time here.")

NUM_LABELS = 20
STRATEGIES = ("default", "mirrored")
KINDS = ("end_to_end", "head")
TIMED_CALLS = 3


def measure(strategy_name: str, kind: str, steps: int) -> float:
  """Images/s of one kind of step under one strategy, in this process (best of 3 calls)."""
  from cnn_rnn_tf import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import demo_config  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top

  device = tf.config.list_logical_devices("CPU")[0].name
  strategy = (tf.distribute.get_strategy() if strategy_name == "default"
              else tf.distribute.MirroredStrategy([device]))
  config = demo_config.get_config("heads" if kind == "head" else None)
  config.data.precision = "off"
  config.model.backbone_weights = None
  config.model.train_backbone = kind != "head"
  models = train_lib.build_training_models(config, NUM_LABELS, strategy)
  batch_size = config.train.batch_size
  labels = tf.cast(tf.random.uniform([batch_size, NUM_LABELS], seed=1) < 0.15, tf.float32)
  inputs = ({"features": tf.random.uniform([batch_size, 256], seed=2)} if kind == "head" else
            {"image": tf.random.uniform([batch_size, 64, 64, 3], 0, 255, seed=2)})
  dataset = tf.data.Dataset.from_tensors({**inputs, "labels": labels}).repeat()
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
  multi_step(iterator, tf.constant(2))[0].numpy()  # tracing
  rates = []
  for _ in range(TIMED_CALLS):
    start = time.perf_counter()
    multi_step(iterator, tf.constant(steps))[0].numpy()
    rates.append(steps * batch_size / (time.perf_counter() - start))
  return max(rates)


def main(argv):
  del argv
  if _CHILD.value:
    strategy_name, kind = _CHILD.value.split(":")
    with open(_OUT.value, "w") as f:
      json.dump({"images_per_second": measure(strategy_name, kind, _STEPS.value)}, f)
    return
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  runs = {(s, k): [] for s in STRATEGIES for k in KINDS}
  order = [s for i in range(_REPEATS.value)
           for s in (STRATEGIES if i % 2 == 0 else STRATEGIES[::-1])]
  with tempfile.TemporaryDirectory() as folder:
    for kind in KINDS:
      for i, name in enumerate(order):
        out = os.path.join(folder, f"{kind}_{i}.json")
        subprocess.run([sys.executable, "-m", "benchmarks.strategy", f"--child={name}:{kind}",
                        f"--steps={_STEPS.value}", f"--out={out}"], check=True, cwd=root)
        with open(out) as f:
          runs[(name, kind)].append(json.load(f)["images_per_second"])
  result = {"steps": _STEPS.value, "repeats": _REPEATS.value, "order": order, "kinds": {}}
  for kind in KINDS:
    median = {s: round(float(np.median(runs[(s, kind)])), 1) for s in STRATEGIES}
    ratio = median["default"] / median["mirrored"]
    result["kinds"][kind] = {"images_per_second": median,
                             "runs": {s: runs[(s, kind)] for s in STRATEGIES},
                             "ratio_default_over_mirrored": round(ratio, 3)}
    print(f"{kind}: default {median['default']:.0f} images/s, MirroredStrategy over one "
          f"device {median['mirrored']:.0f} images/s: {ratio:.2f}x", flush=True)
  with open(_OUT.value, "w") as f:
    json.dump(result, f, indent=1)


if __name__ == "__main__":
  app.run(main)
