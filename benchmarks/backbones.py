r"""Per backbone of `backbones.REGISTRY`: speed per CPU second, FLOPs, roofline share, latency.

    python -m benchmarks.backbones [--backbones=vgg16,resnet50,...] [--batch_size=8] \
        [--rounds=3] [--latency_calls=5] [--matmul_size=2048] [--modes=tf_function,jit] \
        [--kinds=serving,fine_tuning] [--baseline] [--tiny] \
        [--out=/tmp/backbones_benchmark.json]

Every backbone at its default size (random weights: same speed), and with `--baseline` the
stock Keras model of each entry that has a `speedup` (label "<name> (stock)"), in float32
and under mixed_bfloat16, compiled as a tf.function (`tf_function`) and with
`jit_compile=True` (`jit`), for serving (the forward pass, `training=False`) and for
fine-tuning (forward and backward of a trainable backbone, `benchmarks.backbone_calls.make_call`).
All calls are built first, warmed up once, then timed in alternation, round by round (every
backbone, precision, mode and kind in each round), so that the ratios come from one run
under the same load:

  *_images_per_cpu_second   images / CPU seconds of this process (`time.process_time`, all
                            its threads) for one call of `batch_size` images; the median
                            of `rounds`. Other load on the machine disturbs this much less
                            than wall-clock time.
  *_ratio_to_resnet50_per_gflop
                            (images per CPU s x GFLOP per image) / resnet50's, same
                            precision, mode and kind, same rounds (when resnet50 ran)
  gflop_per_image           2 x the multiply-adds of its Conv2D, DepthwiseConv2D and Dense
                            layers (counted from the model's shapes; batch norm,
                            activations and pooling are left out, a few per cent)
  roofline_share            serving images per CPU s x FLOP per image / the FLOP per CPU s
                            of a `matmul_size`^3 matmul in the same precision, measured in
                            the same rounds (the machine's practical peak for dense math)
  faster                    the precision/mode of the most serving images per CPU s, and
                            `roofline_share_faster` its share
  latency_ms                `serving_default` on one 500x375 JPEG, batch 1 (the median of
                            `latency_calls`), of an export (`export_lib.write_saved_model`:
                            decode, resize, backbone, the CNN-RNN head with every decoder;
                            20 labels); `export_images_per_second` = 1000 / latency_ms.
                            `--latency_calls=0` skips the exports.

`--tiny` is for tests: 32x32 images (fixed-size backbones keep theirs), batch 2, one round,
a 256 matmul, one latency call, and by default only small_cnn (each export takes tens of
seconds on a busy 2-core machine).
"""

from __future__ import annotations

import contextlib
import dataclasses
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
from benchmarks.backbone_calls import make_call

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
_MODES = flags.DEFINE_list("modes", ["tf_function", "jit"], "tf_function (a tf.function), "
                           "jit (the same with jit_compile=True).")
_KINDS = flags.DEFINE_list("kinds", ["serving", "fine_tuning"], "serving (forward), "
                           "fine_tuning (forward and backward, benchmarks.profile).")
_BASELINE = flags.DEFINE_boolean("baseline", True, "Also the stock Keras model of each entry "
                                 "with a speedup, in the same rounds.")
_OUT = flags.DEFINE_string("out", "/tmp/backbones_benchmark.json", "Where the JSON goes.")

PRECISIONS = {"float32": None, "bfloat16": "mixed_bfloat16"}
MODES = ("tf_function", "jit")
KINDS = ("serving", "fine_tuning")
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
  """FLOP per CPU second of an n x n by n x n matmul (the median of `calls`, after one
  warm-up)."""
  a = tf.cast(tf.random.uniform([n, n], seed=0), dtype)
  b = tf.cast(tf.random.uniform([n, n], seed=1), dtype)
  fn = tf.function(lambda x, y: tf.reduce_sum(tf.cast(tf.matmul(x, y)[:1, :1], tf.float32)))
  fn(a, b).numpy()
  times = []
  for _ in range(calls):
    t = time.process_time()
    fn(a, b).numpy()
    times.append(time.process_time() - t)
  return 2 * n ** 3 / statistics.median(times)


def cpu_seconds(call, images) -> float:
  """CPU seconds of this process (all its threads) for one call, to its result."""
  t = time.process_time()
  np.asarray(call(images))
  return time.process_time() - t


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


def variants(names, baseline: bool) -> dict[str, tuple[str, bool]]:
  """{label: (registry name, stock)}: each backbone, and with `baseline` the stock Keras
  model of every entry with a `speedup` ("convnext_tiny (stock)")."""
  out = {}
  for name in names:
    out[name] = (name, False)
    if baseline and backbones.get(name).speedup is not None:
      out[f"{name} (stock)"] = (name, True)
  return out


@contextlib.contextmanager
def stock_entry(name: str, stock: bool):
  """While open, the registry entry of `name` without its speedup (when `stock`)."""
  entry = backbones.REGISTRY[name]
  if stock:
    backbones.REGISTRY[name] = dataclasses.replace(entry, speedup=None)
  try:
    yield
  finally:
    backbones.REGISTRY[name] = entry


def build_calls(table, size_of, batch_size: int, modes, kinds):
  """{(label, precision, mode, kind): (call, images)}, and {label: GFLOP per image}."""
  calls, gflop = {}, {}
  for label, (name, stock) in table.items():
    size = size_of(name)
    images = tf.random.uniform([batch_size, size, size, 3], 0, 255, seed=0)
    with stock_entry(name, stock):
      gflop[label] = gflop_per_image(backbones.build_backbone(name, image_size=size))
      for precision in PRECISIONS:
        for kind in kinds:
          for mode in modes:
            call = make_call(name, size, precision, kind, mode == "jit")
            calls[(label, precision, mode, kind)] = (call, images)
  return calls, gflop


def alternate(calls, rounds: int, matmul_size: int) -> dict:
  """{key: median CPU seconds per call}, the calls in alternation, round by round; and the
  matmul's FLOP per CPU second per precision in the same rounds."""
  for call, images in calls.values():
    np.asarray(call(images))  # tracing, oneDNN primitives, XLA compilation
  times = {key: [] for key in calls}
  peak = {p: [] for p in PRECISIONS}
  for _ in range(rounds):
    for precision in PRECISIONS:
      peak[precision].append(matmul_flops(
          matmul_size, tf.float32 if precision == "float32" else tf.bfloat16))
    for key, (call, images) in calls.items():
      times[key].append(cpu_seconds(call, images))
  return ({k: statistics.median(v) for k, v in times.items()},
          {p: statistics.median(v) for p, v in peak.items()})


def figures(table, calls, seconds, peak, gflop, batch_size: int, modes, kinds) -> dict:
  """Per label, precision and mode: images per CPU second, roofline share, and the ratio
  to resnet50 per GFLOP (when resnet50 ran)."""
  out = {}
  for label in table:
    out[label] = {"gflop_per_image": round(gflop[label], 3)}
    for precision in PRECISIONS:
      for mode in modes:
        row = {}
        for kind in kinds:
          ips = batch_size / seconds[(label, precision, mode, kind)]
          row[f"{kind}_images_per_cpu_second"] = round(ips, 3)
          base = (label, precision, mode, kind)
          if ("resnet50",) + base[1:] in seconds:
            ref = batch_size / seconds[("resnet50",) + base[1:]] * gflop["resnet50"]
            row[f"{kind}_ratio_to_resnet50_per_gflop"] = round(ips * gflop[label] / ref, 3)
        if "serving" in kinds:
          share = row["serving_images_per_cpu_second"] * gflop[label] * 1e9 / peak[precision]
          row["roofline_share"] = round(share, 3)
        out[label].setdefault(precision, {})[mode] = row
  return out


def measure_all(table, size_of, batch_size: int, rounds: int, matmul_size: int, modes,
                kinds) -> dict:
  calls, gflop = build_calls(table, size_of, batch_size, modes, kinds)
  seconds, peak = alternate(calls, rounds, matmul_size)
  result = figures(table, calls, seconds, peak, gflop, batch_size, modes, kinds)
  for label, b in result.items():
    name = table[label][0]
    b.update(image_size=size_of(name), feature_dim=backbones.get(name).feature_dim)
    for precision in PRECISIONS:
      b[precision]["matmul_gflop_per_cpu_second"] = round(peak[precision] / 1e9, 2)
    if "serving" in kinds:
      options = [(p, m) for p in PRECISIONS for m in modes]
      p, m = max(options, key=lambda o: b[o[0]][o[1]]["serving_images_per_cpu_second"])
      b.update(faster=f"{p}/{m}", roofline_share_faster=b[p][m]["roofline_share"])
  return result


def serving_figures(folder: str, name: str, size: int, latency_calls: int) -> dict:
  """{precision: {latency_ms, export_images_per_second}} of the served export."""
  out = {}
  for precision, policy in PRECISIONS.items():
    latency = serving_latency_ms(folder, name, size, policy, latency_calls)
    out[precision] = {"latency_ms": round(latency, 1),
                      "export_images_per_second": round(1000 / latency, 3)}
  return out


def run(names, batch_size: int, rounds: int, matmul_size: int, latency_calls: int,
        tiny: bool, modes=MODES, kinds=KINDS, baseline: bool = True) -> dict:
  def size_of(name):
    entry = backbones.get(name)
    return entry.image_size if (entry.fixed_size or not tiny) else 32

  table = variants(names, baseline)
  result = {"batch_size": batch_size, "rounds": rounds, "matmul_size": matmul_size,
            "tiny": tiny, "modes": list(modes), "kinds": list(kinds),
            "tensorflow": tf.__version__,
            "load_average_before": [round(x, 2) for x in os.getloadavg()]}
  result["backbones"] = measure_all(table, size_of, batch_size, rounds, matmul_size, modes,
                                    kinds)
  keras.backend.clear_session()
  if latency_calls:
    with tempfile.TemporaryDirectory() as folder:
      for label, (name, stock) in table.items():
        with stock_entry(name, stock):
          for precision, v in serving_figures(folder, name, size_of(name),
                                              latency_calls).items():
            result["backbones"][label][precision].update(v)
        keras.backend.clear_session()
  result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  return result


def main(argv):
  del argv
  runtime.setup()
  tiny = _TINY.value
  names = _BACKBONES.value or (["small_cnn"] if tiny else list(backbones.BACKBONES))
  for name in names:
    backbones.get(name)  # an unknown name fails before anything runs
  if set(_MODES.value) - set(MODES) or set(_KINDS.value) - set(KINDS):
    raise app.UsageError(f"--modes from {MODES}, --kinds from {KINDS}.")
  if tiny:
    result = run(names, 2, 1, 256, 1, True, _MODES.value, _KINDS.value, _BASELINE.value)
  else:
    result = run(names, _BATCH_SIZE.value, _ROUNDS.value, _MATMUL_SIZE.value,
                 _LATENCY_CALLS.value, False, _MODES.value, _KINDS.value, _BASELINE.value)
  for label, b in result["backbones"].items():
    for precision in PRECISIONS:
      for mode in result["modes"]:
        r = b[precision][mode]
        print(f"{label:>22} {b['image_size']:>3}px {b['gflop_per_image']:6.2f} GFLOP "
              f"{precision:>8} {mode:>11} | " + " ".join(
                  f"{k.replace('_images_per_cpu_second', '')} {v:.3g}" if "images" in k
                  else f"{k.replace('_ratio_to_resnet50_per_gflop', ' /resnet50')} {v:.3g}"
                  for k, v in r.items()), flush=True)
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
