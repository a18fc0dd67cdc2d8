r"""Per backbone of `backbones.REGISTRY`: speed, FLOPs, share of the matmul roofline, latency.

    python -m benchmarks.backbones [--backbones=vgg16,resnet50,...] [--batch_size=8] \
        [--rounds=3] [--latency_calls=5] [--matmul_size=2048] [--tiny] \
        [--out=/tmp/backbones_benchmark.json]

For each backbone at its default size (random weights: same speed), in float32 and under
mixed_bfloat16:

  images_per_second  feature extraction: the compiled backbone on in-memory batches of
                     `batch_size` images (one warm-up call, then `rounds` rounds of
                     float32 then bfloat16 calls; the median round)
  gflop_per_image    2 x the multiply-adds of its Conv2D, DepthwiseConv2D and Dense layers
                     (counted from the model's shapes; batch norm, activations and pooling
                     are left out, a few per cent)
  roofline_share     images/s x FLOP per image / the FLOP/s of a `matmul_size`^3 matmul in
                     the same precision, measured in the same round (the machine's practical
                     peak for dense math, under the same load)
  latency_ms         `serving_default` on one 500x375 JPEG, batch 1 (the median of
                     `latency_calls`), of an export (`export_lib.write_saved_model`: decode,
                     resize, backbone, the CNN-RNN head with the beam inside; 20 labels)

`--tiny` is for tests: 32x32 images (fixed-size backbones keep theirs), batch 2, one round,
a 256 matmul, one latency call, and by default only small_cnn (each export takes tens of
seconds on a busy 2-core machine).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

import benchmarks

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import runtime
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

_BACKBONES = flags.DEFINE_list("backbones", None, "Registry names; default all (--tiny: "
                               "small_cnn).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per extraction call.")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "Rounds of float32 then bfloat16 calls.")
_LATENCY_CALLS = flags.DEFINE_integer("latency_calls", 5, "Timed batch-1 serving calls.")
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048, "N of the N x N x N roofline matmul.")
_TINY = flags.DEFINE_boolean("tiny", False, "Tiny sizes, for tests (module docstring).")
_OUT = flags.DEFINE_string("out", "/tmp/backbones_benchmark.json", "Where the JSON goes.")

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16"}
_NUM_LABELS = 20


def gflop_per_image(model: keras.Model) -> float:
  """2 x multiply-adds of the Conv2D / DepthwiseConv2D / Dense layers, nested models too."""
  macs = 0
  stack = list(model.layers)
  while stack:
    layer = stack.pop()
    if isinstance(layer, keras.Model):
      stack.extend(layer.layers)
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D)):
      h, w = layer.output.shape[1:3]  # kernel [kh, kw, C_in / groups (or C_in), C_out or mult]
      macs += h * w * int(np.prod(layer.kernel.shape))
    elif isinstance(layer, keras.layers.Dense):
      positions = int(np.prod(layer.output.shape[1:-1]))  # > 1 for a Dense on a feature map
      macs += positions * int(np.prod(layer.kernel.shape))
  return 2 * macs / 1e9


def matmul_flops(n: int, dtype: tf.DType, calls: int = 3) -> float:
  """FLOP/s of an n x n by n x n matmul (the median of `calls`, after one warm-up)."""
  a = tf.cast(tf.random.uniform([n, n], seed=0), dtype)
  b = tf.cast(tf.random.uniform([n, n], seed=1), dtype)
  fn = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
  fn(a, b).numpy()
  times = []
  for _ in range(calls):
    t = time.perf_counter()
    fn(a, b).numpy()
    times.append(time.perf_counter() - t)
  return 2 * n ** 3 / statistics.median(times)


def images_per_second(call, images, calls: int = 1) -> float:
  t = time.perf_counter()
  for _ in range(calls):
    call(images).numpy()
  return calls * int(images.shape[0]) / (time.perf_counter() - t)


def make_workdir(path: str, name: str, size: int) -> None:
  """A workdir as a frozen-backbone run would leave it (config, labels, head checkpoint)."""
  config = config_lib.default_config()  # the paper's head: d=64, 512 units, beam 3
  config.model.update(dict(backbone=name, image_size=size, backbone_weights=None))
  vocab = vocab_lib.LabelVocab([f"label_{i:02d}" for i in range(_NUM_LABELS)])
  workdir_lib.save_config(config, path)
  vocab.save(workdir_lib.labels_path(path))
  _, head = workdir_lib.build_backbone_and_head(config, _NUM_LABELS)
  checkpoint = workdir_lib.make_checkpoint(config, None, head)  # frozen: head only
  tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(path),
                             max_to_keep=1).save(checkpoint_number=1)


def serving_latency_ms(folder: str, name: str, size: int, policy: str | None,
                       calls: int) -> float:
  """serving_default on one JPEG (batch 1): the median of `calls` after a warm-up call."""
  workdir = os.path.join(folder, f"{name}_run")
  if not os.path.exists(workdir):
    make_workdir(workdir, name, size)
  config, vocab, backbone, head, *_ = workdir_lib.load_trained(workdir, "latest", policy=policy)
  export_dir = os.path.join(folder, f"{name}_{policy or 'float32'}")
  export_lib.write_saved_model(export_dir, config, vocab.names, backbone, head)
  serve = tf.saved_model.load(export_dir).signatures["serving_default"]
  pixels = tf.image.resize(tf.random.uniform([1, 12, 16, 3], 0, 255, seed=0), [375, 500])
  jpeg = tf.io.encode_jpeg(tf.cast(pixels[0], tf.uint8), quality=90)[None]  # [1] bytes
  serve(image_bytes=jpeg)
  times = []
  for _ in range(calls):
    t = time.perf_counter()
    {k: v.numpy() for k, v in serve(image_bytes=jpeg).items()}  # pylint: disable=expression-not-assigned
    times.append(time.perf_counter() - t)
  return 1000 * statistics.median(times)


def measure(name: str, size: int, batch_size: int, rounds: int, matmul_size: int,
            latency_calls: int, folder: str) -> dict:
  """Every figure of one backbone (module docstring)."""
  load_before = os.getloadavg()
  calls, models = {}, {}
  for precision, policy in PRECISIONS.items():
    model = backbones.build_backbone(name, weights=None, image_size=size, policy=policy)
    models[precision] = model
    calls[precision] = tf.function(
        lambda x, m=model: m(x, training=False),
        input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
  gflop = gflop_per_image(models["float32"])
  images = tf.random.uniform([batch_size, size, size, 3], 0, 255, seed=0)
  for call in calls.values():
    call(images).numpy()  # tracing, oneDNN primitives
  per_round = {p: [] for p in PRECISIONS}
  for _ in range(rounds):
    for precision in PRECISIONS:
      dtype = tf.float32 if precision == "float32" else tf.bfloat16
      peak = matmul_flops(matmul_size, dtype)
      ips = images_per_second(calls[precision], images)
      per_round[precision].append({"images_per_second": ips, "matmul_flops": peak,
                                   "roofline_share": ips * gflop * 1e9 / peak})
  result = {"image_size": size, "gflop_per_image": round(gflop, 3),
            "feature_dim": backbones.REGISTRY[name].feature_dim,
            "load_average_before": [round(x, 2) for x in load_before]}
  for precision, policy in PRECISIONS.items():
    rows = sorted(per_round[precision], key=lambda r: r["images_per_second"])
    mid = rows[len(rows) // 2]
    result[precision] = {
        "images_per_second": round(mid["images_per_second"], 3),
        "matmul_gflops": round(mid["matmul_flops"] / 1e9, 2),
        "roofline_share": round(statistics.median(r["roofline_share"] for r in rows), 3),
        "latency_ms": round(serving_latency_ms(folder, name, size, policy, latency_calls), 1),
    }
  faster = max(PRECISIONS, key=lambda p: result[p]["images_per_second"])
  result["faster"] = faster
  result["roofline_share_faster"] = result[faster]["roofline_share"]
  result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  return result


def run(names, batch_size: int, rounds: int, matmul_size: int, latency_calls: int,
        tiny: bool) -> dict:
  result = {"batch_size": batch_size, "rounds": rounds, "matmul_size": matmul_size,
            "tiny": tiny, "tensorflow": tf.__version__, "backbones": {}}
  with tempfile.TemporaryDirectory() as folder:
    for name in names:
      entry = backbones.get(name)
      size = entry.image_size if (entry.fixed_size or not tiny) else 32
      result["backbones"][name] = measure(name, size, batch_size, rounds, matmul_size,
                                          latency_calls, folder)
      keras.backend.clear_session()
  return result


def main(argv):
  del argv
  runtime.setup()
  tiny = _TINY.value
  names = _BACKBONES.value or (["small_cnn"] if tiny else list(backbones.BACKBONES))
  for name in names:
    backbones.get(name)  # an unknown name fails before anything runs
  if tiny:
    result = run(names, 2, 1, 256, 1, True)
  else:
    result = run(names, _BATCH_SIZE.value, _ROUNDS.value, _MATMUL_SIZE.value,
                 _LATENCY_CALLS.value, False)
  for name, b in result["backbones"].items():
    f, h = b["float32"], b["bfloat16"]
    print(f"{name:>18} {b['image_size']:>3}px {b['gflop_per_image']:7.2f} GFLOP | float32 "
          f"{f['images_per_second']:7.2f} img/s share {f['roofline_share']:.2f} "
          f"{f['latency_ms']:7.1f} ms | bf16 {h['images_per_second']:7.2f} img/s share "
          f"{h['roofline_share']:.2f} {h['latency_ms']:7.1f} ms | load {b['load_average_before'][0]}")
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
