r"""Serving: latency and throughput of the exported model, and beam search's share of it.

    python -m benchmarks.serving [--batch_size=32] [--batch_calls=5] [--latency_calls=7] \
        [--compare=True] [--full_length=True] [--out=/tmp/serving_benchmark.json]

Exports, with `export_lib.export` as is, a workdir with random weights (VGG16 at 224x224,
its random weights saved to a Keras VGG16 weights file that `model.backbone_weights` names:
the frozen backbone is rebuilt from the config, not checkpointed, and random weights run at
the same speed; the CNN-RNN head at paper size: d=64, 512 ReLU-LSTM units,
20 labels, beam 3, max_length 10, its weights scaled so that the softmax is peaked and beam
search returns paths of a few labels, as a trained head does). With `--compare` a second
SavedModel in the other precision (mixed bfloat16 if the export is float32, else float32) is
written with `export_lib.write_saved_model` from the same weights and config. Then, for each,
after `tf.saved_model.load`:

  latency_ms_batch1        serving_default on one 500x375 JPEG (VOC-sized): the median of
                           `latency_calls` calls after two warm-up calls
  images_per_second        serving_default on `batch_size` JPEGs (the median call); also
                           per CPU second of this process
  beam_share_batch         predict_features (beam search, and the label-name lookup, alone)
                           on the same batch's backbone features / serving_default; goal
                           <= 5% with beam 3 and 20 labels
  beam_share_batch1        the same at batch 1
  full_length              beam search's worst case: predict_features of a copy of the
                           export whose every path is max_length long (decode.min_length =
                           max_length), against the export's serving_default

The features handed to predict_features are those of the export's own backbone (its weights
are copied out of the loaded SavedModel), so both calls decode the same paths (checked).
The calls alternate (each round: for each model in turn, serving_default once, then
predict_features `beam_calls` times), so that other load on the machine disturbs both models
and both sides of a share alike; each share is also given per CPU second of this process.
"""

from __future__ import annotations

import io
import os
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
from PIL import Image
from tensorflow.core.protobuf import saved_model_pb2
import tensorflow as tf

import benchmarks

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per throughput call.")
_BATCH_CALLS = flags.DEFINE_integer("batch_calls", 5, "Timed serving_default calls at "
                                    "batch_size (one warm-up call before).")
_LATENCY_CALLS = flags.DEFINE_integer("latency_calls", 7, "Timed batch-1 calls.")
_BEAM_CALLS = flags.DEFINE_integer("beam_calls", 3, "predict_features calls after each "
                                   "serving_default call.")
_NUM_LABELS = flags.DEFINE_integer("num_labels", 20, "K.")
_HEAD_SCALE = flags.DEFINE_float("head_scale", 2.0, "Head weights ~ N(0, scale^2 / fan_in); "
                                 "0 keeps Keras' initialization.")
_COMPARE = flags.DEFINE_boolean("compare", True, "Also measure the other precision.")
_FULL_LENGTH = flags.DEFINE_boolean(
    "full_length", True, "Also time beam search's worst case: every path max_length labels "
    "(a copy of the export with decode.min_length = max_length).")
_OUT = flags.DEFINE_string("out", "/tmp/serving_benchmark.json", "Where the JSON goes.")

_DT_BFLOAT16 = tf.bfloat16.as_datatype_enum


def make_workdir(path: str, num_labels: int, head_scale: float, seed: int = 0):
  """A workdir as training would leave it (config, labels, head checkpoint); random weights.

  Returns (config, vocab).
  """
  config = config_lib.default_config()  # vgg16 at 224, d=64, 512 units, beam 3, max_length 10
  # Random VGG16 weights (same speed, nothing to download) in a Keras VGG16 weights file, as
  # a frozen backbone's weights must be (config_checks.validate refuses a frozen None).
  os.makedirs(path, exist_ok=True)
  config.model.backbone_weights = os.path.join(path, "random_vgg16.weights.h5")
  keras.applications.VGG16(include_top=True, weights=None).save_weights(
      config.model.backbone_weights)
  vocab = vocab_lib.LabelVocab([f"label_{i:02d}" for i in range(num_labels)])
  _, head = workdir_lib.build_backbone_and_head(config, num_labels)
  workdir_lib.save_config(config, path)
  vocab.save(workdir_lib.labels_path(path))
  if head_scale:
    rng = np.random.default_rng(seed)
    weights = []
    for w in head.get_weights():  # kernels: scale / sqrt(fan_in); biases: 0.3
      std = head_scale / np.sqrt(np.prod(w.shape[:-1])) if w.ndim > 1 else 0.3
      weights.append(rng.normal(0, std, w.shape).astype(w.dtype))
    head.set_weights(weights)
  checkpoint = workdir_lib.make_checkpoint(config, None, head)  # frozen: head only
  tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(path),
                             max_to_keep=1).save(checkpoint_number=1)
  return config, vocab


def make_jpegs(num_images: int, seed: int = 0) -> list[bytes]:
  """500x375 JPEGs (quality 90) of smooth noise, which decode like photos (as in extract)."""
  rng = np.random.default_rng(seed)
  jpegs = []
  for _ in range(num_images):
    coarse = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8))
    image = np.asarray(coarse.resize((500, 375), Image.BICUBIC), np.float32)
    image += rng.normal(0, 6, image.shape)  # texture, like a photo's
    out = io.BytesIO()
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=90)
    jpegs.append(out.getvalue())
  return jpegs


def precision_of(export_dir: str) -> str:
  """"bfloat16" if any function of the SavedModel computes in bfloat16, else "float32"."""
  proto = saved_model_pb2.SavedModel()
  with tf.io.gfile.GFile(os.path.join(export_dir, "saved_model.pb"), "rb") as f:
    proto.ParseFromString(f.read())
  for function in proto.meta_graphs[0].graph_def.library.function:
    for node in function.node_def:
      for value in node.attr.values():
        if value.type == _DT_BFLOAT16 or _DT_BFLOAT16 in value.list.type:
          return "bfloat16"
  return "float32"


def copy_backbone_weights(loaded, backbone) -> None:
  """Gives `backbone` the weights of a loaded export's backbone (its first variables)."""
  saved = loaded.variables[:len(backbone.variables)]
  shapes = ([tuple(v.shape) for v in backbone.variables], [tuple(v.shape) for v in saved])
  if shapes[0] != shapes[1]:
    raise ValueError(f"The SavedModel's first variables {shapes[1][:3]}... do not match the "
                     f"backbone's {shapes[0][:3]}...")
  for mine, theirs in zip(backbone.variables, saved):
    mine.assign(theirs)


def write_variant(variant_dir: str, workdir: str, export_dir: str, precision: str,
                  decode: dict | None = None) -> None:
  """The exported model again, its backbone computing in `precision`: the workdir's head and
  config (`decode` fields replaced, e.g. {"min_length": 10}), the export's (random) backbone
  weights, written by `export_lib.write_saved_model`."""
  policy = "mixed_bfloat16" if precision == "bfloat16" else None
  config, vocab, backbone, head, *_ = workdir_lib.load_trained(workdir, "latest", policy=policy)
  config.decode.update(decode or {})
  copy_backbone_weights(tf.saved_model.load(export_dir), backbone)
  export_lib.write_saved_model(variant_dir, config, vocab.names, backbone, head)


def export_features(loaded, precision: str, image_bytes) -> tf.Tensor:
  """The backbone features serving_default computes for image_bytes [B]: [B, D]."""
  policy = "mixed_bfloat16" if precision == "bfloat16" else None
  backbone = backbones.build_backbone("vgg16", weights=None, policy=policy)
  copy_backbone_weights(loaded, backbone)
  images = images_lib.decode_batch(image_bytes, 224)
  return tf.cast(backbone(images, training=False), tf.float32)


def timed(fn, **inputs) -> tuple[float, float, dict]:
  """(wall seconds, process CPU seconds, outputs as numpy) of one call."""
  wall, cpu = time.perf_counter(), time.process_time()
  out = {k: v.numpy() for k, v in fn(**inputs).items()}
  return time.perf_counter() - wall, time.process_time() - cpu, out


class Served:
  """One loaded SavedModel, its two signatures and its backbone's features of the batch.

  With `features` given (those of another SavedModel with the same backbone), only its
  predict_features is timed (`serve` is None).
  """

  def __init__(self, export_dir: str, precision: str, image_bytes, features=None):
    t = time.perf_counter()
    self.loaded = tf.saved_model.load(export_dir)
    self.load_seconds = time.perf_counter() - t
    self.precision = precision
    self.beam = self.loaded.signatures["predict_features"]
    self.serve = None if features is not None else self.loaded.signatures["serving_default"]
    if features is None:
      features = export_features(self.loaded, precision, image_bytes)
    self.features = features  # [B, D]


def split(models: dict, image_bytes, batch: int, calls: int, warmup: int, beam_calls: int,
          reference: str = "export") -> dict:
  """serving_default vs predict_features on the first `batch` images, for every model.

  Each of the `calls` rounds calls, for each model in turn, serving_default once and then
  predict_features `beam_calls` times: load on the machine meets every model and both
  signatures alike. Returns {model name: figures}, from the median calls. A model without
  `serve` is compared with the serving_default of `reference`.
  """
  inputs = image_bytes[:batch]
  for _ in range(warmup):
    for m in models.values():
      if m.serve is not None:
        m.serve(image_bytes=inputs)
      m.beam(features=m.features[:batch])
  times = {name: ([], []) for name in models}  # (serving_default, predict_features) calls
  outputs = {}
  for _ in range(calls):
    for name, m in models.items():
      served = None
      if m.serve is not None:
        wall, cpu, served = timed(m.serve, image_bytes=inputs)
        times[name][0].append((wall, cpu))
      for _ in range(beam_calls):
        wall, cpu, decoded = timed(m.beam, features=m.features[:batch])
        times[name][1].append((wall, cpu))
      outputs[name] = served, decoded
  figures = {}
  for name, (serve_times, beam_times) in times.items():
    served, decoded = outputs[name]
    serve_times = serve_times or times[reference][0]
    serve_wall, serve_cpu = np.median(serve_times, axis=0)
    beam_wall, beam_cpu = np.median(beam_times, axis=0)
    figures[name] = {
        "serving_default_seconds": round(float(serve_wall), 5),
        "serving_default_cpu_seconds": round(float(serve_cpu), 5),
        "predict_features_seconds": round(float(beam_wall), 5),
        "beam_share": round(float(beam_wall / serve_wall), 4),
        "cpu_beam_share": round(float(beam_cpu / serve_cpu), 4),
        "mean_path_length": round(float(np.mean(decoded["num_labels"])), 2),
    }
    if served is not None:
      figures[name].update({
          # predict_features on these features decodes what serving_default does:
          "same_paths": float(np.mean(np.all(served["labels"] == decoded["labels"], axis=1))),
          "serving_default_seconds_all": [round(w, 4) for w, _ in serve_times],
      })
    else:
      figures[name]["serving_default_of"] = reference
  return figures


def measure(variants: dict, jpegs: list[bytes], batch_calls: int, latency_calls: int,
            beam_calls: int, decoding_only: dict | None = None) -> dict:
  """{name: figures} of every SavedModel of `variants` ({name: (export_dir, precision)});
  and for each of `decoding_only` ({name: export_dir}, the export's weights decoded another
  way) the decoding figures of that SavedModel against the export's serving_default."""
  image_bytes = tf.constant(jpegs)
  models = {name: Served(path, precision, image_bytes)
            for name, (path, precision) in variants.items()}
  for name, path in (decoding_only or {}).items():
    models[name] = Served(path, models["export"].precision, image_bytes,
                          features=models["export"].features)
  one = split(models, image_bytes, 1, latency_calls, 2, beam_calls)
  many = split(models, image_bytes, len(jpegs), batch_calls, 1, beam_calls)
  n = len(jpegs)
  figures = {name: {
      "precision": m.precision,
      "latency_ms_batch1": round(1000 * one[name]["serving_default_seconds"], 2),
      "images_per_second": round(n / many[name]["serving_default_seconds"], 3),
      "images_per_cpu_second": round(n / many[name]["serving_default_cpu_seconds"], 3),
      "beam_share_batch": many[name]["beam_share"],
      "beam_share_batch1": one[name]["beam_share"],
      "batch1": one[name],
      f"batch{n}": many[name],
      "load_seconds": round(m.load_seconds, 2),
  } for name, m in models.items() if m.serve is not None}
  for name in decoding_only or {}:
    figures[name] = {
        "beam_share_batch": many[name]["beam_share"],
        "beam_share_batch1": one[name]["beam_share"],
        "batch1": one[name], f"batch{n}": many[name]}
  return figures


def run(folder: str, batch_size: int, batch_calls: int, latency_calls: int, beam_calls: int,
        num_labels: int, head_scale: float, compare: bool, full_length: bool) -> dict:
  """Exports, writes the other precision, measures both; returns the figures."""
  load_before = os.getloadavg()
  keras.utils.set_random_seed(0)  # the same random VGG16 (so the same paths) run after run
  workdir = os.path.join(folder, "workdir")
  config, _ = make_workdir(workdir, num_labels, head_scale)
  t = time.perf_counter()
  export_dir = export_lib.export(workdir, os.path.join(folder, "export"))
  export_seconds = time.perf_counter() - t
  exported = precision_of(export_dir)
  variants = {"export": (export_dir, exported)}
  if compare:
    other = "float32" if exported == "bfloat16" else "bfloat16"
    variants[other] = (os.path.join(folder, other), other)
    write_variant(variants[other][0], workdir, export_dir, other)
    if precision_of(variants[other][0]) != other:
      raise RuntimeError(f"The {other} SavedModel does not compute in {other}.")

  jpegs = make_jpegs(batch_size)
  decoding_only = {}
  if full_length:  # the worst case of beam search: END masked until max_length labels
    decoding_only["full_length"] = os.path.join(folder, "full_length")
    write_variant(decoding_only["full_length"], workdir, export_dir, exported,
                  {"min_length": config.decode.max_length})
  # The export without its sampled decoder (expected_f1, decode.num_samples ancestral
  # samples): the path (and marginals) alone, to time expected_f1 against.
  decoding_only["path_only"] = os.path.join(folder, "path_only")
  write_variant(decoding_only["path_only"], workdir, export_dir, exported, {"num_samples": 0})
  figures = measure(variants, jpegs, batch_calls, latency_calls, beam_calls, decoding_only)
  full = figures.pop("full_length", None)
  path_only = figures.pop("path_only")
  export_batch = figures["export"][f"batch{batch_size}"]
  decoders = {
      # predict_features with every decoder over the same without expected_f1 (batch B).
      "expected_f1_over_path": round(
          export_batch["predict_features_seconds"]
          / path_only[f"batch{batch_size}"]["predict_features_seconds"], 3),
      "all_decoders_share_batch": figures["export"]["beam_share_batch"],
      "path_only_share_batch": path_only["beam_share_batch"],
      "num_samples": config.decode.num_samples,
  }
  print(f"decoders: expected_f1 ({config.decode.num_samples} samples) + path + marginals "
        f"take {decoders['all_decoders_share_batch']:.2%} of serving_default at batch "
        f"{batch_size}, path + marginals {decoders['path_only_share_batch']:.2%}; "
        f"{decoders['expected_f1_over_path']:.2f}x the decode time without expected_f1",
        flush=True)
  for name, f in figures.items():
    print(f"{name} ({f['precision']}): batch 1 {f['latency_ms_batch1']:.1f} ms, batch "
          f"{batch_size} {f['images_per_second']:.2f} images/s, beam search share "
          f"{f['beam_share_batch']:.2%} (batch {batch_size}), {f['beam_share_batch1']:.2%} "
          "(batch 1)", flush=True)
  if full:
    print(f"beam search share, every path {config.decode.max_length} labels long: "
          f"{full['beam_share_batch']:.2%} (batch {batch_size}), "
          f"{full['beam_share_batch1']:.2%} (batch 1)", flush=True)
  result = {
      "variants": figures,
      "full_length": full,
      "decoders": decoders,
      "export_precision": exported,
      "export_seconds": round(export_seconds, 2),
      "batch_size": batch_size,
      "jpeg": {"size": [500, 375], "bytes_mean": int(np.mean([len(j) for j in jpegs]))},
      "model": {"backbone": "vgg16", "image_size": 224, "num_labels": num_labels,
                "embedding_dim": config.model.embedding_dim,
                "lstm_units": config.model.lstm_units, "beam_size": config.decode.beam_size,
                "max_length": config.decode.max_length, "head_scale": head_scale},
      "load_average_before": [round(x, 2) for x in load_before],
      "tensorflow": tf.__version__,
  }
  by = {f["precision"]: f for f in figures.values()}
  if set(by) == {"bfloat16", "float32"}:
    for key in ("images_per_second", "images_per_cpu_second"):
      result[f"bf16_over_float32_{key}"] = round(by["bfloat16"][key] / by["float32"][key], 3)
  return result


def main(argv):
  del argv
  with tempfile.TemporaryDirectory() as folder:
    result = run(folder, _BATCH_SIZE.value, _BATCH_CALLS.value, _LATENCY_CALLS.value,
                 _BEAM_CALLS.value, _NUM_LABELS.value, _HEAD_SCALE.value, _COMPARE.value,
                 _FULL_LENGTH.value)
  benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
