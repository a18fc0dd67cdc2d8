r"""Feature extraction throughput: JPEG files on disk -> cached VGG16 fc7 features.

    python -m benchmarks.extract [--num_images=192] [--rounds=3] [--batch_size=32] \
        [--warmup_batches=1] [--out=/tmp/extract_benchmark.json]

Writes `num_images` random JPEGs of 500x375 (VOC-sized; smooth noise, so that they compress
and decode like photos) and a CSV to a temporary folder, then measures, in images/s:

  backbone_bf16     VGG16 fc7 (random weights: same speed) at 224x224 under mixed_bfloat16,
                    on in-memory tensors: the backbone's own throughput
  backbone_float32  the same in float32
  pipeline_bf16     the whole feature cache path (`feature_cache.build`): read, decode, resize,
                    backbone, write TFRecord shards, with the same compiled backbone
  decode_only       `pipeline.image_dataset` alone (read + decode + resize + batch)
  check_images      the CSV source's image check (a full parallel decode of every file)

and prints the ratios pipeline_bf16 / backbone_bf16 (goal >= 0.9) and backbone_bf16 /
backbone_float32 (machine-dependent: 0.55x to 6x), next to what `data.precision=auto`
chooses on this machine (cnn_rnn_tf/data/precision.py: its own short measurement, cached). The images are split into `rounds`; each round times
the bf16 backbone alone, the pipeline on that round's images, the bf16 backbone again and
float32, and the ratios are the medians of the per-round ratios, so that other load on the
machine (it has 2 cores) disturbs both sides of a ratio alike. Load averages are recorded,
and each ratio is also given per CPU second of this process (`time.process_time`), which
other processes disturb much less than wall-clock time.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
from PIL import Image
import tensorflow as tf

import benchmarks

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import runtime
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import feature_cache
from cnn_rnn_tf.data import precision

_NUM_IMAGES = flags.DEFINE_integer("num_images", 192, "JPEG files to extract, over all rounds.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per backbone call.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of backbone / pipeline / backbone / float32.")
_BACKBONE_BATCHES = flags.DEFINE_integer(
    "backbone_batches", 2, "Timed in-memory batches per bf16 backbone-only run (2 per round).")
_FLOAT32_BATCHES = flags.DEFINE_integer("float32_batches", 1,
                                        "Timed float32 batches per round.")
_WARMUP_BATCHES = flags.DEFINE_integer(
    "warmup_batches", 1, "Untimed batches before each backbone-only run; 0: only one per "
    "backbone, before the first round (it traces).")
_OUT = flags.DEFINE_string("out", "/tmp/extract_benchmark.json", "Where the JSON goes.")
_PROGRESS = runtime.define_progress_flag()

_LABELS = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow")


def write_jpegs(folder: str, num_images: int, seed: int = 0) -> str:
  """num_images 500x375 JPEGs (quality 90) and a CSV listing them; returns the CSV path."""
  rng = np.random.default_rng(seed)
  os.makedirs(os.path.join(folder, "images"), exist_ok=True)
  rows = ["image_name,tags"]
  for i in range(num_images):
    coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    image = np.asarray(coarse.resize((500, 375), Image.BICUBIC), np.float32)
    image += rng.normal(0, 6, image.shape)  # texture, like a photo's
    name = f"images/{i:06d}.jpg"
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(
        os.path.join(folder, name), quality=90)
    labels = rng.choice(_LABELS, size=rng.integers(1, 4), replace=False)
    rows.append(f"{name},{' '.join(labels)}")
  path = os.path.join(folder, "images.csv")
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")
  return path


def compiled(model) -> tf.types.experimental.GenericFunction:
  return tf.function(lambda images: model(images, training=False),
                     input_signature=[tf.TensorSpec([None, 224, 224, 3], tf.float32)])


class Timer:
  """Wall-clock and process CPU seconds (all threads) of a block."""

  def __enter__(self):
    self.wall, self.cpu = time.perf_counter(), time.process_time()
    return self

  def __exit__(self, *exc):
    self.wall = time.perf_counter() - self.wall
    self.cpu = time.process_time() - self.cpu


def backbone_only(call, batch_size: int, num_batches: int,
                  warmup: int = 1) -> tuple[float, float]:
  """(images per second, images per CPU second) of the compiled backbone on in-memory
  batches, after `warmup` warm-up batches."""
  images = tf.random.uniform([batch_size, 224, 224, 3], 0, 255, seed=0)
  for _ in range(warmup):
    call(images).numpy()
  with Timer() as t:
    for _ in range(num_batches):
      call(images).numpy()
  return batch_size * num_batches / t.wall, batch_size * num_batches / t.cpu


def run(num_images: int, batch_size: int, rounds: int, backbone_batches: int,
        float32_batches: int, workdir: str, warmup_batches: int = 1) -> dict:
  """Measures everything; returns the figures (see the module docstring)."""
  load_before = os.getloadavg()
  per_round = num_images // rounds
  if per_round < 1:
    raise ValueError(f"--num_images={num_images} is fewer than --rounds={rounds}.")
  t = time.perf_counter()
  csv_paths = [write_jpegs(os.path.join(workdir, f"round{r}"), per_round, seed=r)
               for r in range(rounds)]
  seconds_writing = time.perf_counter() - t
  sources = []
  for path in csv_paths:
    config = config_lib.default_config().data
    config.update(dict(source="csv", train_csv=path))
    sources.append(data_lib.get_source(config))
  t = time.perf_counter()
  n = sum(s.num_examples("train") for s in sources)  # CSV checks: a full decode of each image
  check_images = n / (time.perf_counter() - t)
  vocab = vocab_lib.LabelVocab(list(_LABELS))

  t = time.perf_counter()
  count = 0
  for batch in data_lib.image_dataset(sources[0], "train", vocab, image_size=224,
                                      batch_size=batch_size, training=False):
    count += int(batch["image"].shape[0])
  decode_only = count / (time.perf_counter() - t)

  bf16 = compiled(backbones.build_backbone("vgg16", weights=None, policy="mixed_bfloat16"))
  f32 = compiled(backbones.build_backbone("vgg16", weights=None))
  if warmup_batches < 1:  # one warm-up batch each before the first round: the tracing
    for call in (bf16, f32):
      call(tf.zeros([batch_size, 224, 224, 3])).numpy()
  per_round_figures = []
  for r, source in enumerate(sources):
    before, before_cpu = backbone_only(bf16, batch_size, backbone_batches, warmup_batches)
    with Timer() as t:  # the pipeline, with the same (already traced) backbone function
      feature_cache.build(source, "train", vocab, "vgg16", None, 224, precision="on",
                          cache_dir=os.path.join(workdir, "cache"), batch_size=batch_size,
                          backbone=lambda images, training=False: bf16(images), verbose=0)
    pipeline, pipeline_cpu = per_round / t.wall, per_round / t.cpu
    after, after_cpu = backbone_only(bf16, batch_size, backbone_batches, warmup_batches)
    float32, float32_cpu = backbone_only(f32, batch_size, float32_batches, warmup_batches)
    backbone, backbone_cpu = (before + after) / 2, (before_cpu + after_cpu) / 2
    per_round_figures.append({
        "round": r, "backbone_bf16_before": before, "backbone_bf16_after": after,
        "pipeline_bf16": pipeline, "backbone_float32": float32,
        "pipeline_over_backbone_bf16": pipeline / backbone,
        "bf16_over_float32": backbone / float32,
        # Per CPU second of this process: what the work costs, whatever else runs.
        "cpu_pipeline_over_backbone_bf16": pipeline_cpu / backbone_cpu,
        "cpu_bf16_over_float32": backbone_cpu / float32_cpu,
        "load_average_1min": os.getloadavg()[0]})
    print(f"round {r}: " + ", ".join(f"{k} {v:.3f}" for k, v in per_round_figures[-1].items()
                                     if k != "round"), flush=True)

  def median(key):
    return round(float(np.median([f[key] for f in per_round_figures])), 3)

  flags_line = ""
  try:
    with open("/proc/cpuinfo") as f:
      flags_line = next((l for l in f if l.startswith("flags")), "")
  except OSError:
    pass
  cpu_flags = sorted(set(flags_line.split()) & {"amx_bf16", "amx_tile", "avx512_bf16",
                                                 "avx512f", "avx512_vnni"})
  sizes = [os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(workdir)
           for f in files if f.endswith(".jpg")]
  return {
      "num_images": n,
      "rounds": rounds,
      "batch_size": batch_size,
      "warmup_batches": warmup_batches,
      "image_size_on_disk": [500, 375],
      "jpeg_bytes_mean": int(np.mean(sizes)),
      "images_per_second": {  # medians over the rounds
          "backbone_bf16": round(float(np.median(
              [(f["backbone_bf16_before"] + f["backbone_bf16_after"]) / 2
               for f in per_round_figures])), 3),
          "backbone_float32": median("backbone_float32"),
          "pipeline_bf16": median("pipeline_bf16"),
          "decode_only": round(decode_only, 3),
          "check_images": round(check_images, 3),
      },
      "ratios": {  # medians of the per-round ratios
          "pipeline_over_backbone_bf16": median("pipeline_over_backbone_bf16"),
          "bf16_over_float32": median("bf16_over_float32"),
          "cpu_pipeline_over_backbone_bf16": median("cpu_pipeline_over_backbone_bf16"),
          "cpu_bf16_over_float32": median("cpu_bf16_over_float32"),
      },
      "per_round": [{k: round(v, 3) if isinstance(v, float) else v for k, v in f.items()}
                    for f in per_round_figures],
      "seconds_writing_jpegs": round(seconds_writing, 2),
      "machine": {"cpu_count": os.cpu_count(), "cpu_flags": cpu_flags,
                  "processor": platform.processor() or platform.machine(),
                  "gpus": len(tf.config.list_physical_devices("GPU")),
                  "load_average_before": [round(x, 2) for x in load_before],
                  "load_average_after": [round(x, 2) for x in os.getloadavg()]},
      "tensorflow": tf.__version__,
      # What data.precision=auto chooses here (its own short measurement, cached per
      # machine: precision.py), to compare with the bf16 / float32 ratio measured above.
      "precision_auto": precision.auto_choice("vgg16", 224),
  }


def main(argv):
  del argv
  runtime.setup(progress=_PROGRESS.value)
  with tempfile.TemporaryDirectory() as workdir:
    result = run(_NUM_IMAGES.value, _BATCH_SIZE.value, _ROUNDS.value,
                 _BACKBONE_BATCHES.value, _FLOAT32_BATCHES.value, workdir,
                 _WARMUP_BATCHES.value)
  ips, ratios = result["images_per_second"], result["ratios"]
  print(f"images/s (medians of {result['rounds']} rounds)  backbone bf16 "
        f"{ips['backbone_bf16']:.2f}, backbone float32 {ips['backbone_float32']:.2f}, "
        f"pipeline bf16 {ips['pipeline_bf16']:.2f}, decode only {ips['decode_only']:.1f}, "
        f"image check {ips['check_images']:.1f}")
  print(f"pipeline / backbone (bf16): {ratios['pipeline_over_backbone_bf16']:.3f} wall-clock, "
        f"{ratios['cpu_pipeline_over_backbone_bf16']:.3f} per CPU second  (goal >= 0.9)")
  auto = result["precision_auto"]
  print(f"bf16 / float32 (backbone):  {ratios['bf16_over_float32']:.2f} wall-clock, "
        f"{ratios['cpu_bf16_over_float32']:.2f} per CPU second  -> data.precision=auto "
        f"chooses {auto['precision']} (its own measurement: {auto['ratio']:.2f}x, "
        f"{'cached in ' + precision.cache_file() if auto['cached'] else 'measured now'})")
  print(f"machine: {result['machine']}")
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
