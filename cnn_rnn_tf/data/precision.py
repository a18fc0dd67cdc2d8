"""`data.precision` and `data.jit`: how the backbone computes, "auto" decided by measurement.

    from cnn_rnn_tf.data import precision
    precision.resolve_precision("auto", "vgg16", 224)   # "bfloat16" or "float32"
    precision.resolve_precision("auto", "small_cnn", 64, training=True)  # trained backbone
    precision.resolve_precision("on")                   # "bfloat16" ("off": "float32")
    precision.resolve_jit("auto", "small_cnn", 64, "float32")   # True: XLA (jit_compile)

A run resolves both once, before its first step, and records them in its workdir's
compute.json (`workdir.compute`); evaluate, export, predict and the feature cache reuse that
record, so this module is asked only when a run starts.

Whether mixed bfloat16 is faster depends on the machine, not on a CPU flag: measured with
VGG16, 0.55x of float32 on a Xeon with AVX-512 BF16 but no AMX, 1.95x on an AMD EPYC, about
6x on an AMX Xeon; and it depends on the work: on an AMD EPYC the small CNN's forward pass
was 1.27-1.33x faster in mixed bfloat16 while its training step ran at 0.28-0.39x. So
"auto", on first use per machine, times the backbone in float32 and under mixed_bfloat16 on
one small batch with random weights, doing what the run will do: the forward pass for
extraction and serving, forward and backward (`training=True`) when the backbone is trained.

The cost check (`faster_beyond_noise`): both variants are built and warmed up (one call:
tracing, oneDNN primitives, XLA compilation), then timed in `MEASURE_ROUNDS` alternating
rounds of `MEASURE_CALLS` calls each, so that a load change on the machine hits both. The
candidate (bfloat16; XLA) is chosen only when its *slowest* round is at least the margin
(`BF16_MARGIN` 10%, `JIT_MARGIN` 10%) faster than the baseline's *fastest* round: a margin
outside the spread of the timings. Otherwise float32 (no XLA): on a noisy machine "auto"
keeps the safe choice. bfloat16 costs precision, XLA a compilation per input shape.

`data.jit` ("auto" | "on" | "off", default "off": today's behaviour) is the speed mode: the
backbone's call wrapped in `tf.function(jit_compile=True)` (XLA) or not. "auto" times the
backbone with and without XLA, in the precision already chosen for that work, by the same
rule. XLA helps some backbones and slows others (EfficientNetV2-S 3x slower on an AMD EPYC).

Answers are cached in

    $CNN_RNN_TF_PRECISION_CACHE, else $XDG_CACHE_HOME/cnn_rnn_tf/precision.json,
    else ~/.cache/cnn_rnn_tf/precision.json

keyed by the machine (CPU model from /proc/cpuinfo, GPU names), the TensorFlow version, the
backbone (`backbones.describe`: its name, and small_cnn's filters), its input size, "train"
for a trained backbone, and for XLA "jit <precision>". Entries measured by the older rule
(one timing per variant, no `rule` field) are measured again. Delete the file (or an entry) to
measure again; set data.precision / data.jit to "on" or "off" to skip the measurement.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from typing import Any, Callable

from absl import logging
import tensorflow as tf

PRECISIONS = ("auto", "on", "off")
JITS = ("auto", "on", "off")
RESOLVED = ("bfloat16", "float32")
CACHE_ENV = "CNN_RNN_TF_PRECISION_CACHE"
RULE = 2  # the cache entries' decision rule: 2 = alternating rounds, margin outside the spread
BF16_MARGIN = 1.10  # bfloat16's slowest round must beat float32's fastest by this factor
JIT_MARGIN = 1.10  # the same for XLA against the plain tf.function
MEASURE_BATCH = 4  # images per timed call
MEASURE_TRAIN_BATCH = 16  # images per timed training call (a batch norm needs more than 4)
MEASURE_CALLS = 2  # timed calls per round
MEASURE_ROUNDS = 3  # alternating rounds per variant (after one warm-up call each)

# (backbone name, image size, keras dtype policy or None, training, filters, jit) -> the
# images/s of each timed round (a list), or one number.
Timer = Callable[..., "list[float] | float"]


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


def machine() -> str:
  """CPU model, GPUs and TensorFlow version: the machine part of a cache key."""
  gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
  details = []
  for gpu in tf.config.list_physical_devices("GPU"):
    try:
      details.append(tf.config.experimental.get_device_details(gpu).get("device_name", ""))
    except (ValueError, RuntimeError):
      pass
  gpu_part = ",".join(d for d in details if d) or (f"{len(gpus)} GPU" if gpus else "no GPU")
  return f"{cpu_model()} | {gpu_part} | TF {tf.__version__}"


def machine_key(backbone: str, image_size: int, training: bool = False,
                filters: tuple[int, ...] | None = None) -> str:
  """The cache key: CPU model, GPUs, TensorFlow version, backbone, input size, "train"."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  return (f"{machine()} | {backbones.describe(backbone, filters)} {image_size}" +
          (" train" if training else ""))


def _timed_call(backbone: str, image_size: int, policy: str | None, training: bool,
                filters: tuple[int, ...] | None, jit: bool):
  """(call, images): a warmed-up tf.function of the backbone (random weights) on one batch:
  the forward pass, or with `training` forward and backward (the gradients of its weights)."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  model = backbones.build_backbone(backbone, weights=None, image_size=image_size,
                                   policy=policy, filters=filters)
  batch = MEASURE_TRAIN_BATCH if training else MEASURE_BATCH
  images = tf.random.uniform([batch, image_size, image_size, 3], 0, 255, seed=0)
  if training:
    model.trainable = True

    def step(x):
      with tf.GradientTape() as tape:
        loss = tf.reduce_mean(tf.cast(model(x, training=True), tf.float32))
      return tape.gradient(loss, model.trainable_variables)[0]
  else:
    step = lambda x: model(x, training=False)
  call = tf.function(step, jit_compile=bool(jit))
  call(images).numpy()  # warm-up: tracing, oneDNN primitive creation, XLA compilation
  return call, images


def measure_rounds(backbone: str, image_size: int, variants, training: bool = False,
                   filters: tuple[int, ...] | None = None,
                   rounds: int = MEASURE_ROUNDS) -> list[list[float]]:
  """Images/s of each variant (policy, jit) in `rounds` alternating rounds; [variant][round]."""
  calls = [_timed_call(backbone, image_size, policy, training, filters, jit)
           for policy, jit in variants]
  speeds = [[] for _ in calls]
  for _ in range(rounds):
    for (call, images), out in zip(calls, speeds):
      start = time.perf_counter()
      for _ in range(MEASURE_CALLS):
        call(images).numpy()
      out.append(int(images.shape[0]) * MEASURE_CALLS /
                 max(time.perf_counter() - start, 1e-9))
  return speeds


def measure_images_per_second(backbone: str, image_size: int, policy: str | None,
                              training: bool = False,
                              filters: tuple[int, ...] | None = None,
                              jit: bool = False) -> float:
  """The median images/s of one variant (`measure_rounds`)."""
  return statistics.median(measure_rounds(backbone, image_size, [(policy, jit)], training,
                                          filters)[0])


def faster_beyond_noise(candidate, baseline, margin: float) -> bool:
  """Whether the candidate's slowest timing beats the baseline's fastest by `margin`."""
  return min(candidate) >= margin * max(baseline)


def _timings(timer: Timer | None, backbone, image_size, variants, training, filters):
  """[variant][round] images/s: the real alternating measurement, or an injected timer's."""
  if timer is None:
    return measure_rounds(backbone, image_size, variants, training, filters)
  out = []
  for policy, jit in variants:
    value = (timer(backbone, image_size, policy, training, filters, jit=True) if jit
             else timer(backbone, image_size, policy, training, filters))
    out.append([float(v) for v in (value if isinstance(value, (list, tuple)) else [value])])
  return out


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


def _cached_or_measured(key: str, valid: Callable[[dict], bool], measure: Callable[[], dict],
                        path: str) -> dict[str, Any]:
  cache = _read_cache(path)
  entry = cache.get(key)
  if isinstance(entry, dict) and entry.get("rule") == RULE and valid(entry):
    return {**entry, "cached": True}
  entry = {**measure(), "rule": RULE, "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
  cache = _read_cache(path)  # another process may have added entries meanwhile
  cache[key] = entry
  _write_cache(path, cache)
  return {**entry, "cached": False}


def _comparison(candidate: list[float], baseline: list[float], names: tuple[str, str],
                margin: float) -> dict[str, Any]:
  """The cache entry's figures: both timings, their medians, the median and lowest ratios."""
  return {f"{names[0]}_timings": [round(v, 3) for v in candidate],
          f"{names[1]}_timings": [round(v, 3) for v in baseline],
          f"{names[0]}_images_per_second": round(statistics.median(candidate), 3),
          f"{names[1]}_images_per_second": round(statistics.median(baseline), 3),
          "ratio": round(statistics.median(candidate) / max(statistics.median(baseline),
                                                            1e-12), 3),
          "ratio_low": round(min(candidate) / max(max(baseline), 1e-12), 3),
          "margin": margin}


def auto_choice(backbone: str, image_size: int, *, training: bool = False,
                timer: Timer | None = None, path: str | None = None,
                filters: tuple[int, ...] | None = None) -> dict[str, Any]:
  """The cached or newly measured precision for this machine, backbone and work.

  Returns:
    {"precision": "bfloat16" | "float32", "bfloat16_timings": [images/s per round],
     "float32_timings": [...], "bfloat16_images_per_second": median, "float32_...": median,
     "ratio": median bf16 / median float32, "ratio_low": slowest bf16 / fastest float32,
     "margin", "rule", "measured": time string, "cached": True when read from the file}.
  """
  path = path or cache_file()

  def measure():
    logging.info("data.precision=auto: timing %s%s in float32 and mixed bfloat16 (once per "
                 "machine; cached in %s).", backbone, " training" if training else "", path)
    f32, bf16 = _timings(timer, backbone, image_size, [(None, False),
                                                       ("mixed_bfloat16", False)],
                         training, filters)
    return {"precision": "bfloat16" if faster_beyond_noise(bf16, f32, BF16_MARGIN)
                         else "float32",
            **_comparison(bf16, f32, ("bfloat16", "float32"), BF16_MARGIN)}

  return _cached_or_measured(machine_key(backbone, image_size, training, filters),
                             lambda e: e.get("precision") in RESOLVED, measure, path)


def jit_choice(backbone: str, image_size: int, precision: str, *, training: bool = False,
               timer: Timer | None = None, path: str | None = None,
               filters: tuple[int, ...] | None = None) -> dict[str, Any]:
  """The cached or newly measured speed mode: {"jit": bool, "xla_timings", "plain_timings",
  "xla_images_per_second", "plain_images_per_second", "ratio", "ratio_low", ...}."""
  path = path or cache_file()
  policy = "mixed_bfloat16" if precision == "bfloat16" else None

  def measure():
    logging.info("data.jit=auto: timing %s%s in %s with and without XLA (once per machine; "
                 "cached in %s).", backbone, " training" if training else "", precision, path)
    plain, xla = _timings(timer, backbone, image_size, [(policy, False), (policy, True)],
                          training, filters)
    return {"jit": faster_beyond_noise(xla, plain, JIT_MARGIN),
            **_comparison(xla, plain, ("xla", "plain"), JIT_MARGIN)}

  key = f"{machine_key(backbone, image_size, training, filters)} jit {precision}"
  return _cached_or_measured(key, lambda e: isinstance(e.get("jit"), bool), measure, path)


def resolve_precision(precision: str | bool | None, backbone: str = "vgg16",
                      image_size: int | None = None, *, training: bool = False,
                      timer: Timer | None = None, path: str | None = None,
                      filters: tuple[int, ...] | None = None,
                      details: dict | None = None) -> str:
  """data.precision ("auto" | "on" | "off", or an already resolved "bfloat16" | "float32")
  -> "bfloat16" or "float32".

  "auto" measures once per machine and kind of work (`training`: the backbone is trained;
  see the module docstring) and logs the choice; `details`, a dict, receives the figures.
  """
  p = {True: "on", False: "off", None: "auto"}.get(precision, precision)
  p = str(p).lower()
  if p in RESOLVED:
    return p
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
               "images/s: %.2fx, slowest against fastest %.2fx, margin %.2f; %s).",
               choice["precision"], backbone, " training" if training else "",
               choice["bfloat16_images_per_second"], choice["float32_images_per_second"],
               choice["ratio"], choice["ratio_low"], BF16_MARGIN,
               "cached" if choice["cached"] else "measured now")
  if details is not None:
    details.update(choice)
  return choice["precision"]


def resolve_jit(jit: str | bool | None, backbone: str, image_size: int | None,
                precision: str, *, training: bool = False, timer: Timer | None = None,
                path: str | None = None, filters: tuple[int, ...] | None = None,
                details: dict | None = None) -> bool:
  """data.jit ("auto" | "on" | "off") -> whether the backbone runs under XLA."""
  j = {True: "on", False: "off", None: "off"}.get(jit, jit)
  j = str(j).lower()
  if j in ("on", "off"):
    return j == "on"
  if j != "auto":
    raise ValueError(f"data.jit must be one of {JITS}, got {jit!r}.")
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  size = backbones.backbone_image_size(backbone, image_size)
  choice = jit_choice(backbone, size, precision, training=training, timer=timer, path=path,
                      filters=filters)
  logging.info("data.jit=auto -> %s for %s%s in %s (XLA %.2f images/s, without %.2f: %.2fx, "
               "slowest against fastest %.2fx, margin %.2f; %s).",
               "on" if choice["jit"] else "off", backbone, " training" if training else "",
               precision, choice["xla_images_per_second"], choice["plain_images_per_second"],
               choice["ratio"], choice["ratio_low"], JIT_MARGIN,
               "cached" if choice["cached"] else "measured now")
  if details is not None:
    details.update(choice)
  return choice["jit"]


def keras_policy(precision: str) -> str | None:
  """"bfloat16" -> "mixed_bfloat16" (weights float32, compute bfloat16); else None."""
  return "mixed_bfloat16" if precision == "bfloat16" else None
