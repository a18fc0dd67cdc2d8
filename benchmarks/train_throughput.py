r"""Training throughput of the CNN-RNN head on cached features: one replica against two, and
the orderless label orders (PLA, MLA) against the paper's frequency order.

    python -m benchmarks.train_throughput [--replicas=1,2] [--repeats=1] [--num_steps=400] \
        [--log_every=100] [--batch_size=64] [--num_examples=2048] \
        [--label_orders=frequent_first,pla,mla,pla/targets] \
        [--out=/tmp/train_throughput_benchmark.json]

The real trainer path, `train_lib.train`, in the paper's frozen setting: the head (paper size:
d=64, 512 ReLU-LSTM units, RMSProp; `config_lib.default_config()`) trains on a feature cache.
The cache is built once, before any timing, from `num_examples` random 64x64 JPEGs listed in
a CSV (20 VOC label names, 1 to 4 labels per image, so label sequences are 2 to 5 steps long
with END) by a frozen small_cnn with random weights saved to a weights file: 256-d features,
as in the demo. (A frozen VGG16 would need weights on disk, which this offline machine lacks;
the head's cost hardly depends on the feature size: the image projection is one matmul.)

Each replica count runs in its own subprocess, because the logical CPU devices
(`runtime.setup(cpu_devices=N)`) must be set before TensorFlow runs an op; the trainer
then picks a MirroredStrategy over them. The figure is sequences (= images: one label
sequence per image) per second, read from the trainer's own `train/log.jsonl`: the median of
its `examples_per_s` over the log intervals after the first (which holds the tracing), over
all runs of that setting. With `--repeats=2` the settings run in the order 1, 2, 2, 1, so
that a drift of other load on the machine meets both alike. Both settings process the same
global batch, so the step is the same; two replicas on a 2-core machine share the same
cores, and may well be slower.

`--label_orders` (`train.label_order`, optionally `/<train.align_inputs>`): each order other
than frequent_first runs with the first replica count, in the same ABBA order as the replica
settings; the result's `label_orders` gives each one's training steps/s and its cost, the
time per step over frequent_first's (goal for PLA and MLA: at most 1.5).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np

import benchmarks

_REPLICAS = flags.DEFINE_list("replicas", ["1", "2"], "Replica counts, each in a subprocess.")
_REPEATS = flags.DEFINE_integer("repeats", 1, "Runs of each setting, in ABBA order.")
_NUM_STEPS = flags.DEFINE_integer("num_steps", 400, "Training steps per setting.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 100, "Steps per timed interval (the first is "
                                  "left out: it holds the tracing).")
_STEPS_PER_LOOP = flags.DEFINE_integer("steps_per_loop", 50, "train.steps_per_loop.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Global batch size (all replicas).")
_NUM_EXAMPLES = flags.DEFINE_integer("num_examples", 2048, "Images in the feature cache.")
_LSTM_UNITS = flags.DEFINE_integer("lstm_units", 512, "ReLU-LSTM units (paper: 512).")
_OUT = flags.DEFINE_string("out", "/tmp/train_throughput_benchmark.json", "Where the JSON goes.")
_LABEL_ORDERS = flags.DEFINE_list(
    "label_orders", ["frequent_first"], "train.label_order values to compare (pla/targets: "
    "with train.align_inputs=targets); the others than frequent_first run with the first "
    "replica count.")
# Internal: a subprocess measuring one setting on the data of --data_dir.
_CHILD_REPLICAS = flags.DEFINE_integer("child_replicas", 0, "Internal: measure this many "
                                       "replicas in this process.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Internal: the prepared CSV and cache.")
_CHILD_LABEL_ORDER = flags.DEFINE_string("child_label_order", "frequent_first",
                                         "Internal: the label order of this process's run.")

LABELS = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
          "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
          "train", "tvmonitor")
IMAGE_SIZE = 64


def write_images(folder: str, num_images: int, seed: int = 0) -> str:
  """num_images 64x64 JPEGs and their CSV (1 to 4 labels each, skewed frequencies)."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  weights = 1.0 / np.arange(1, len(LABELS) + 1)  # Zipf-like, as in VOC and COCO
  rows = ["image_name,tags"]
  for i in range(num_images):
    pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
    name = f"images/{i:06d}.jpg"
    Image.fromarray(pixels).resize((IMAGE_SIZE, IMAGE_SIZE)).save(
        os.path.join(folder, name), quality=90)
    labels = rng.choice(LABELS, size=rng.integers(1, 5), replace=False, p=weights / weights.sum())
    rows.append(f"{name},{' '.join(labels)}")
  path = os.path.join(folder, "train.csv")
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")
  return path


def make_config(data_dir: str, num_steps: int, log_every: int, steps_per_loop: int,
                batch_size: int, lstm_units: int, label_order: str = "frequent_first"):
  """The default (paper) config on the prepared CSV, a frozen small_cnn and a shared cache.

  label_order: "pla", or "pla/targets" for train.align_inputs=targets.
  """
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()
  order, _, align_inputs = label_order.partition("/")
  config.train.label_order = order
  config.train.align_inputs = align_inputs or "predictions"
  config.data.source = "csv"
  config.data.train_csv = os.path.join(data_dir, "train.csv")
  config.data.cache_features = True
  config.data.cache_dir = os.path.join(data_dir, "feature_cache")
  config.model.backbone = "small_cnn"
  config.model.backbone_weights = os.path.join(data_dir, "small_cnn.weights.h5")
  config.model.image_size = IMAGE_SIZE
  config.model.train_backbone = False
  config.model.lstm_units = lstm_units
  config.train.batch_size = batch_size
  config.train.num_steps = num_steps
  config.train.log_every = log_every
  config.train.steps_per_loop = steps_per_loop
  config.train.checkpoint_every = num_steps  # one checkpoint, after the timed intervals
  config.train.eval_every = -1  # training only (the CSV has no evaluation split)
  return config


def prepare(data_dir: str, num_examples: int, config_args: dict) -> dict:
  """Writes the images, the frozen small_cnn's weights and the feature cache (untimed)."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import distribute  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  write_images(data_dir, num_examples)
  backbones.build_backbone("small_cnn", image_size=IMAGE_SIZE).save_weights(
      os.path.join(data_dir, "small_cnn.weights.h5"))
  # One step (validate refuses num_steps=0): the trainer builds the feature cache (and the
  # vocabulary) in a workdir of its own.
  config = make_config(data_dir, **{**config_args, "num_steps": 1, "log_every": 1})
  with contextlib.redirect_stdout(io.StringIO()):  # the extraction's progress bar
    train_lib.train(config, os.path.join(data_dir, "prepare_workdir"))
  return {"seconds": round(time.perf_counter() - t, 2)}


def devices(strategy) -> list[str]:
  """The devices `strategy` runs on. The default strategy, which make_strategy returns on one
  device, has no worker_devices (it raises RuntimeError): it runs on the first logical device."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if strategy is tf.distribute.get_strategy() and not tf.distribute.has_strategy():
    kind = "GPU" if tf.config.list_logical_devices("GPU") else "CPU"
    return [tf.config.list_logical_devices(kind)[0].name]
  return list(strategy.extended.worker_devices)


def measure(replicas: int, data_dir: str, config_args: dict,
            label_order: str = "frequent_first") -> dict:
  """One setting, in this process: train from scratch, read examples/s off the log."""
  from cnn_rnn_tf import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup(cpu_devices=replicas)  # before any TensorFlow op runs
  from cnn_rnn_tf import distribute  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.data import feature_cache  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.metric_writer import read_jsonl  # pylint: disable=g-import-not-at-top

  config = make_config(data_dir, **config_args, label_order=label_order)
  workdir = tempfile.mkdtemp(prefix=f"workdir_{replicas}_", dir=data_dir)
  strategy = distribute.make_strategy()
  load_before = os.getloadavg()
  t = time.perf_counter()
  summary = train_lib.train(config, workdir, strategy=strategy)
  seconds = time.perf_counter() - t
  log = read_jsonl(os.path.join(workdir, "train", "log.jsonl"))
  rates = [r["examples_per_s"] for r in log]
  if len(rates) < 2:
    raise ValueError(f"Only {len(rates)} log interval(s): raise --num_steps above --log_every "
                     "so that at least one interval after the first is timed.")
  caches = [os.path.join(config.data.cache_dir, n) for n in os.listdir(config.data.cache_dir)]
  meta = feature_cache.read_meta(next(c for c in caches if feature_cache.is_complete(c)))
  return {
      "label_order": label_order,
      "replicas": strategy.num_replicas_in_sync,
      "devices": devices(strategy),
      "sequences_per_second": round(float(np.median(rates[1:])), 2),
      "sequences_per_second_intervals": [round(r, 2) for r in rates],
      "steps": summary["step"],
      "final_loss": round(summary["loss"], 4),
      "train_seconds": round(seconds, 2),
      "feature_dim": meta["feature_dim"],
      "num_labels": meta["num_labels"],
      "cache_examples": meta["num_examples"],
      "load_average_before": [round(x, 2) for x in load_before],
      "load_average_after": [round(x, 2) for x in os.getloadavg()],
  }


def run(replica_counts, repeats: int, num_examples: int, config_args: dict,
        data_dir: str, label_orders=("frequent_first",)) -> dict:
  """Prepares the data here, then measures each setting in its own subprocesses.

  Settings: (replicas, frequent_first) for each replica count, then (first replica count,
  order) for each other label order; run forwards, backwards, forwards... (`repeats`).
  """
  prepared = prepare(data_dir, num_examples, config_args)
  settings_list = [(r, "frequent_first") for r in replica_counts] + [
      (replica_counts[0], o) for o in label_orders if o != "frequent_first"]
  runs = {s: [] for s in settings_list}
  order = [s for i in range(repeats) for s in (settings_list if i % 2 == 0
                                                 else settings_list[::-1])]
  for i, (replicas, label_order) in enumerate(order):
    out = os.path.join(data_dir, f"run{i}_replicas{replicas}.json")
    command = [sys.executable, "-m", "benchmarks.train_throughput",
               f"--child_replicas={replicas}", f"--child_label_order={label_order}",
               f"--data_dir={data_dir}", f"--out={out}"] + [
                   f"--{k}={v}" for k, v in config_args.items()]
    subprocess.run(command, check=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(out) as f:
      runs[(replicas, label_order)].append(json.load(f))
    print(f"{replicas} replica(s), {label_order}: "
          f"{runs[(replicas, label_order)][-1]['sequences_per_second']:.1f} sequences/s",
          flush=True)

  def summary(setting_runs):
    timed_intervals = [x for r in setting_runs for x in r["sequences_per_second_intervals"][1:]]
    return {
        "sequences_per_second": round(float(np.median(timed_intervals)), 2),
        "steps_per_second": round(float(np.median(timed_intervals)) /
                                  config_args["batch_size"], 3),
        **{k: setting_runs[0][k] for k in ("replicas", "devices", "feature_dim",
                                           "num_labels", "cache_examples")},
        "runs": setting_runs}

  settings = {str(r): summary(runs[(r, "frequent_first")]) for r in replica_counts}
  result = {"settings": settings, "order": [f"{r}:{o}" for r, o in order],
            "config": config_args, "num_examples": num_examples, "prepare": prepared}
  counts = [str(r) for r in replica_counts]
  if len(counts) >= 2:
    first, last = settings[counts[0]], settings[counts[-1]]
    result["ratio"] = {
        "what": f"{counts[-1]} replicas / {counts[0]}",
        "value": round(last["sequences_per_second"] / first["sequences_per_second"], 3)}
  if len(settings_list) > len(replica_counts):
    base = settings[counts[0]]
    orders = {"frequent_first": {**base, "cost": 1.0}}
    for replicas, label_order in settings_list[len(replica_counts):]:
      s = summary(runs[(replicas, label_order)])
      # Time per step over frequent_first's (goal for PLA and MLA: at most 1.5).
      s["cost"] = round(base["sequences_per_second"] / s["sequences_per_second"], 3)
      orders[label_order] = s
    result["label_orders"] = orders
  return result


def main(argv):
  del argv
  config_args = {"num_steps": _NUM_STEPS.value, "log_every": _LOG_EVERY.value,
                 "steps_per_loop": _STEPS_PER_LOOP.value, "batch_size": _BATCH_SIZE.value,
                 "lstm_units": _LSTM_UNITS.value}
  if _CHILD_REPLICAS.value:
    result = measure(_CHILD_REPLICAS.value, _DATA_DIR.value, config_args,
                     label_order=_CHILD_LABEL_ORDER.value)
  else:
    with tempfile.TemporaryDirectory() as data_dir:
      result = run([int(r) for r in _REPLICAS.value], _REPEATS.value, _NUM_EXAMPLES.value,
                   config_args, data_dir, label_orders=_LABEL_ORDERS.value)
    if "ratio" in result:
      print(f"{result['ratio']['what']}: {result['ratio']['value']:.3f}")
    for name, s in result.get("label_orders", {}).items():
      print(f"{name}: {s['steps_per_second']:.2f} steps/s, time per step "
            f"{s['cost']:.3f}x frequent_first's")
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
