"""`data.precision`: float32 or mixed bfloat16 for the backbone, "auto" decided by measurement.

    from cnn_rnn_tf.data import precision
    precision.resolve_precision("auto", "vgg16", 224)   # "bfloat16" or "float32"
    precision.resolve_precision("auto", "small_cnn", 64, training=True)  # trained backbone
    precision.resolve_precision("on")                   # "bfloat16" ("off": "float32")

Whether mixed bfloat16 is faster depends on the machine, not on a CPU flag: measured with
VGG16, 0.55x of float32 on a Xeon with AVX-512 BF16 but no AMX, 1.95x on an AMD EPYC, about
6x on an AMX Xeon; and it depends on the work: on an AMD EPYC the small CNN's forward pass
was 1.27-1.33x faster in mixed bfloat16 while its training step ran at 0.28-0.39x. So
"auto", on first use per machine, times the backbone in float32 and under mixed_bfloat16 on
one small batch with random weights, doing what the run will do: the forward pass for
extraction and serving, forward and backward (`training=True`) when the backbone is trained
(`measure_images_per_second`: one warm-up call, then timed calls; a few seconds for VGG16 on
a CPU). It picks bfloat16 only when it is at least `BF16_MARGIN` (10%) faster (it costs
precision), logs the choice and both speeds, and caches the answer in

    $CNN_RNN_TF_PRECISION_CACHE, else $XDG_CACHE_HOME/cnn_rnn_tf/precision.json,
    else ~/.cache/cnn_rnn_tf/precision.json

keyed by the machine (CPU model from /proc/cpuinfo, GPU names), the TensorFlow version, the
backbone (`backbones.describe`: its name, and small_cnn's filters), its input size and "train"
for a trained backbone. Delete the file (or its entry)
to measure again; set data.precision to "on" or "off" to skip the measurement.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from typing import Any, Callable

from absl import logging
import tensorflow as tf

PRECISIONS = ("auto", "on", "off")
CACHE_ENV = "CNN_RNN_TF_PRECISION_CACHE"
BF16_MARGIN = 1.10  # bfloat16 must be this much faster than float32 to be chosen
MEASURE_BATCH = 4  # images per timed call
MEASURE_TRAIN_BATCH = 16  # images per timed training call (a batch norm needs more than 4)
MEASURE_CALLS = 2  # timed calls per policy (after one warm-up call)

# (backbone name, image size, keras dtype policy or None, training, filters) -> images/s.
Timer = Callable[[str, int, "str | None", bool, "tuple[int, ...] | None"], float]


def cache_file() -> str:
  """Where the measured choices are kept (see the module docstring)."""
  if os.environ.get(CACHE_ENV):
    return os.environ[CACHE_ENV]
  root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return os.path.join(root, "cnn_rnn_tf", "precision.json")


def cpu_model(cpuinfo_path: str = "/proc/cpuinfo") -> str:
  """The CPU's model name ("AMD EPYC 7B13", ...), or the platform's processor string."""
  try:
    with open(cpuinfo_path) as f:
      for line in f:
        if line.lower().startswith(("model name", "hardware", "cpu model")):
          return line.split(":", 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine() or "unknown cpu"


def machine_key(backbone: str, image_size: int, training: bool = False,
                filters: tuple[int, ...] | None = None) -> str:
  """The cache key: CPU model, GPUs, TensorFlow version, backbone, input size, "train"."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
  details = []
  for gpu in tf.config.list_physical_devices("GPU"):
    try:
      details.append(tf.config.experimental.get_device_details(gpu).get("device_name", ""))
    except (ValueError, RuntimeError):
      pass
  gpu_part = ",".join(d for d in details if d) or (f"{len(gpus)} GPU" if gpus else "no GPU")
  return (f"{cpu_model()} | {gpu_part} | TF {tf.__version__} | "
          f"{backbones.describe(backbone, filters)} {image_size}" +
          (" train" if training else ""))


def measure_images_per_second(backbone: str, image_size: int, policy: str | None,
                              training: bool = False,
                              filters: tuple[int, ...] | None = None) -> float:
  """Images/s of the backbone (random weights) under a dtype policy, on one small batch:
  the forward pass, or with `training` forward and backward (the gradients of its weights)."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  model = backbones.build_backbone(backbone, weights=None, image_size=image_size,
                                   policy=policy, filters=filters)
  batch = MEASURE_TRAIN_BATCH if training else MEASURE_BATCH
  images = tf.random.uniform([batch, image_size, image_size, 3], 0, 255, seed=0)
  if training:
    model.trainable = True

    @tf.function
    def call(x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.cast(model(x, training=True), tf.float32))
      return tape.gradient(loss, model.trainable_variables)[0]
  else:
    call = tf.function(lambda x: model(x, training=False))
  call(images).numpy()  # warm-up: tracing, oneDNN primitive creation
  start = time.perf_counter()
  for _ in range(MEASURE_CALLS):
    call(images).numpy()
  return batch * MEASURE_CALLS / max(time.perf_counter() - start, 1e-9)


def _read_cache(path: str) -> dict[str, Any]:
  try:
    with open(path) as f:
      data = json.load(f)
    return data if isinstance(data, dict) else {}
  except (OSError, ValueError):
    return {}


def _write_cache(path: str, data: dict[str, Any]) -> None:
  """Atomic replace; a cache that cannot be written only costs a measurement next time."""
  try:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".precision-")
    with os.fdopen(fd, "w") as f:
      json.dump(data, f, indent=1, sort_keys=True)
    os.replace(tmp, path)
  except OSError as e:
    logging.warning("data.precision=auto: could not write the cache %s (%s).", path, e)


def auto_choice(backbone: str, image_size: int, *, training: bool = False,
                timer: Timer | None = None, path: str | None = None,
                filters: tuple[int, ...] | None = None) -> dict[str, Any]:
  """The cached or newly measured decision for this machine and backbone.

  Returns:
    {"precision": "bfloat16" | "float32", "bfloat16_images_per_second": ...,
     "float32_images_per_second": ..., "ratio": bf16 / float32, "measured": time string,
     "cached": True when read from the cache file}.
  """
  path = path or cache_file()
  key = machine_key(backbone, image_size, training, filters)
  cache = _read_cache(path)
  entry = cache.get(key)
  if isinstance(entry, dict) and entry.get("precision") in ("bfloat16", "float32"):
    return {**entry, "cached": True}
  timer = timer or measure_images_per_second
  logging.info("data.precision=auto: timing %s%s in float32 and mixed bfloat16 (once per "
               "machine; cached in %s).", backbone, " training" if training else "", path)
  f32 = float(timer(backbone, image_size, None, training, filters))
  bf16 = float(timer(backbone, image_size, "mixed_bfloat16", training, filters))
  ratio = bf16 / max(f32, 1e-12)
  entry = {"precision": "bfloat16" if ratio >= BF16_MARGIN else "float32",
           "bfloat16_images_per_second": round(bf16, 3),
           "float32_images_per_second": round(f32, 3), "ratio": round(ratio, 3),
           "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  cache = _read_cache(path)  # another process may have added entries meanwhile
  cache[key] = entry
  _write_cache(path, cache)
  return {**entry, "cached": False}


def resolve_precision(precision: str | bool | None, backbone: str = "vgg16",
                      image_size: int | None = None, *, training: bool = False,
                      timer: Timer | None = None, path: str | None = None,
                      filters: tuple[int, ...] | None = None) -> str:
  """data.precision ("auto" | "on" | "off") -> "bfloat16" or "float32".

  "auto" measures once per machine and kind of work (`training`: the backbone is trained;
  see the module docstring) and logs the choice.
  """
  p = {True: "on", False: "off", None: "auto"}.get(precision, precision)
  p = str(p).lower()
  if p == "on":
    return "bfloat16"
  if p == "off":
    return "float32"
  if p != "auto":
    raise ValueError(f"data.precision must be one of {PRECISIONS}, got {precision!r}.")
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  size = backbones.backbone_image_size(backbone, image_size)
  choice = auto_choice(backbone, size, training=training, timer=timer, path=path,
                       filters=filters)
  logging.info("data.precision=auto -> %s for %s%s (mixed bfloat16 %.2f images/s, float32 %.2f "
               "images/s: %.2fx; %s).", choice["precision"], backbone,
               " training" if training else "",
               choice["bfloat16_images_per_second"], choice["float32_images_per_second"],
               choice["ratio"], "cached" if choice["cached"] else "measured now")
  return choice["precision"]
