r"""Training throughput of the CNN-RNN head on cached features: one replica against two.

    python -m benchmarks.train_throughput [--replicas=1,2] [--repeats=1] [--num_steps=400] \
        [--log_every=100] [--batch_size=64] [--num_examples=2048] \
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
# Internal: a subprocess measuring one setting on the data of --data_dir.
_CHILD_REPLICAS = flags.DEFINE_integer("child_replicas", 0, "Internal: measure this many "
                                       "replicas in this process.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "Internal: the prepared CSV and cache.")

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
                batch_size: int, lstm_units: int):
  """The default (paper) config on the prepared CSV, a frozen small_cnn and a shared cache."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  config = config_lib.default_config()
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
  return config


def prepare(data_dir: str, num_examples: int, config_args: dict) -> dict:
  """Writes the images, the frozen small_cnn's weights and the feature cache (untimed)."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  t = time.perf_counter()
  write_images(data_dir, num_examples)
  backbones.build_backbone("small_cnn", image_size=IMAGE_SIZE).save_weights(
      os.path.join(data_dir, "small_cnn.weights.h5"))
  # num_steps=0: the trainer builds the feature cache (and the vocabulary), trains nothing.
  config = make_config(data_dir, **{**config_args, "num_steps": 0})
  with contextlib.redirect_stdout(io.StringIO()):  # the extraction's progress bar
    train_lib.train(config, os.path.join(data_dir, "prepare_workdir"))
  return {"seconds": round(time.perf_counter() - t, 2)}


def measure(replicas: int, data_dir: str, config_args: dict) -> dict:
  """One setting, in this process: train from scratch, read examples/s off the log."""
  from cnn_rnn_tf import runtime  # pylint: disable=g-import-not-at-top
  runtime.setup(cpu_devices=replicas)  # before any TensorFlow op runs
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.data import feature_cache  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.metric_writer import read_jsonl  # pylint: disable=g-import-not-at-top

  config = make_config(data_dir, **config_args)
  workdir = tempfile.mkdtemp(prefix=f"workdir_{replicas}_", dir=data_dir)
  strategy = train_lib.make_strategy()
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
      "replicas": strategy.num_replicas_in_sync,
      "devices": list(strategy.extended.worker_devices),
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
        data_dir: str) -> dict:
  """Prepares the data here, then measures each replica count in its own subprocesses."""
  prepared = prepare(data_dir, num_examples, config_args)
  runs = {str(r): [] for r in replica_counts}
  order = [r for i in range(repeats) for r in (replica_counts if i % 2 == 0
                                                  else replica_counts[::-1])]
  for i, replicas in enumerate(order):
    out = os.path.join(data_dir, f"run{i}_replicas{replicas}.json")
    command = [sys.executable, "-m", "benchmarks.train_throughput",
               f"--child_replicas={replicas}", f"--data_dir={data_dir}", f"--out={out}"] + [
                   f"--{k}={v}" for k, v in config_args.items()]
    subprocess.run(command, check=True, cwd=os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))))
    with open(out) as f:
      runs[str(replicas)].append(json.load(f))
    print(f"{replicas} replica(s): {runs[str(replicas)][-1]['sequences_per_second']:.1f} "
          "sequences/s", flush=True)
  settings = {}
  for replicas, setting_runs in runs.items():
    timed_intervals = [x for r in setting_runs for x in r["sequences_per_second_intervals"][1:]]
    settings[replicas] = {
        "sequences_per_second": round(float(np.median(timed_intervals)), 2),
        **{k: setting_runs[0][k] for k in ("replicas", "devices", "feature_dim",
                                           "num_labels", "cache_examples")},
        "runs": setting_runs}
  result = {"settings": settings, "order": order, "config": config_args,
            "num_examples": num_examples, "prepare": prepared}
  counts = [str(r) for r in replica_counts]
  if len(counts) >= 2:
    first, last = settings[counts[0]], settings[counts[-1]]
    result["ratio"] = {
        "what": f"{counts[-1]} replicas / {counts[0]}",
        "value": round(last["sequences_per_second"] / first["sequences_per_second"], 3)}
  return result


def main(argv):
  del argv
  config_args = {"num_steps": _NUM_STEPS.value, "log_every": _LOG_EVERY.value,
                 "steps_per_loop": _STEPS_PER_LOOP.value, "batch_size": _BATCH_SIZE.value,
                 "lstm_units": _LSTM_UNITS.value}
  if _CHILD_REPLICAS.value:
    result = measure(_CHILD_REPLICAS.value, _DATA_DIR.value, config_args)
  else:
    with tempfile.TemporaryDirectory() as data_dir:
      result = run([int(r) for r in _REPLICAS.value], _REPEATS.value, _NUM_EXAMPLES.value,
                   config_args, data_dir)
    if "ratio" in result:
      print(f"{result['ratio']['what']}: {result['ratio']['value']:.3f}")
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
