r"""SavedModel export for TF Serving: images in, the beam-search label path out.

    from cnn_rnn_tf import export_lib
    path = export_lib.export("runs/demo", "export/models/cnn_rnn")   # -> ".../cnn_rnn/1"

or `python -m cnn_rnn_tf.export --workdir=runs/demo --export_base=export/models/cnn_rnn`.

The export reads the workdir only through `cnn_rnn_tf.workdir` (`load_trained`: config,
labels, models, and the checkpoint by the rule evaluate uses, `--checkpoint=auto|latest|best|
<path>`) and decodes with `inference.predict_from_features`, the function the evaluation
uses, so served and evaluated predictions are the same computation. Images are decoded and
resized with `images.decode_batch` / `images.resize`, the functions of the data pipeline.

Signatures (one `tf.function` per input kind, explicit `TensorSpec`s; beam search is a
`tf.while_loop` of plain TF ops: no PyFunc, no custom op, so the TF Serving binary runs it):

  serving_default   image_bytes  string  [batch]          encoded JPEG/PNG/GIF/BMP/WebP, any
                                                          size up to max_pixels, any channels
  predict_images    images       float32 [batch, H, W, 3] RGB in 0..255, any H and W
  predict_features  features     float32 [batch, D]       backbone features (cached ones)

  outputs of all three (`output_keys(config)`):
    labels          int32   [batch, L]   label ids in path order, -1 padded
    label_names     string  [batch, L]   their names, '' padded
    num_labels      int32   [batch]      length of the path
    label_scores    float32 [batch, K]   per-label ranking score (see `inference`)
  cnn_rnn only (a bce head has no path, `PATH_OUTPUT_KEYS`):
    path_log_prob   float32 [batch]      log-probability of the path (END included)
    paths           int32   [batch, N, L] the N best label sets of the beam, best first,
                                         -1 padded (paths[:, 0] == labels)
    paths_label_names string [batch, N, L] their names, '' padded
    paths_log_prob  float32 [batch, N]   their log-probabilities, descending
                                         (paths_log_prob[:, 0] == path_log_prob); -inf
                                         marks an empty slot
  and of either head:
    labels_<decoder>      int32  [batch, L]  per exported named decoder (`exported_decoders`:
    label_names_<decoder> string [batch, L]  cnn_rnn path, marginals, expected_f1; bce
                                         threshold, expected_f1): its set, by decreasing
                                         label_scores (the head's own decoder: `labels`)

with L = min(max_length, K) and N = the beam size. Beam size and lengths are fixed at
export time. `labels` / `label_names` /
`num_labels` are the set of `decode.decoder` (default: the head's own, the path or the
thresholded set).

Calibrated thresholds (either head): when the workdir has thresholds.json
(`workdir.load_trained` reads it, fitted by the trainer on the held-out part of the training
split), they are a constant inside the exported functions, so TF Serving needs nothing else:
the bce label set (labels, label_names, num_labels, labels_threshold) keeps every
label with p >= its class's threshold instead of 0.5; the cnn_rnn's `labels_marginals`
keeps every label whose marginal probability passes it. `label_scores` are the same either
way. They are also written to `assets.extra/thresholds.json`. Signatures and inputs are the
same.

The inputs' specs have unknown rank (`saved_model_cli` shows `unknown_rank`): neither TF
Serving nor `loaded.signatures[...]` enforces a signature's shapes, so each function checks
its input's shape itself (`export_inputs.check_shape`) and refuses another one with
INVALID_ARGUMENT naming the input, the shape expected and the one received, e.g.
"image_bytes must have shape [batch] (a vector of encoded images; one image is [1]), got
shape []." for a scalar.

Refused with INVALID_ARGUMENT, naming the element: an element of `image_bytes` that is not
an image or whose body does not decode ("image_bytes[1]: its png data does not decode"), or
that would decode to more than `max_pixels` pixels (config `data.max_image_pixels`, default
40 million; checked before it is decoded, for a GIF on every frame, e.g. "image_bytes[2]:
image of 20000x20000 = 400000000 pixels ... over the limit of 40000000"); an image of
`images` larger than that or with no height or width ("images must have height and width
>= 1, got shape [1, 0, 0, 3]."); NaN or Inf pixels (`images`) or features (`features`). A
JPEG's EXIF orientation is applied, as in training (`images.decode_rgb`). So one request holds at
most batch x max_pixels decoded pixels (uint8, 3 bytes each), see export/README.md.

Layout of `<export_base>/<version>/`:

  saved_model.pb, variables/        the model
  assets/labels.txt                 the vocabulary (the `label_names` lookup table's file)
  assets.extra/config.json          the resolved config, `decode` as exported
  assets.extra/compute.json         how the backbone computes: {"precision": the dtype the
                                    graph computes in (compute.json's inference entry of the
                                    workdir, or --precision), "jit", "source": compute.json
                                    or the override, ...}; XLA is not in the graph
  assets.extra/thresholds.json      with calibrated thresholds: the ones baked in
  assets.extra/tf_serving_warmup_requests   PredictionLog records for serving_default

The version folder appears atomically: everything is written to `<export_base>/tmp-<v>-<hex>`
(not a number, so TF Serving ignores it), loaded back and checked against its warmup
requests, then renamed to `<export_base>/<v>`. An existing version is never overwritten.
On object stores without atomic directory rename (GCS, S3), export locally and copy.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import uuid

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import decoding
from cnn_rnn_tf import export_inputs
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.workdir import compute as compute_lib

SIGNATURES = ("serving_default", "predict_images", "predict_features")
INPUT_KEYS = {
    "serving_default": "image_bytes",
    "predict_images": "images",
    "predict_features": "features",
}
OUTPUT_KEYS = ("labels", "label_names", "num_labels", "label_scores")  # every head's
# A head with a path (cnn_rnn) also returns these; an older bce export has them too.
PATH_OUTPUT_KEYS = ("path_log_prob", "paths", "paths_label_names", "paths_log_prob")
LABELS_ASSET = "labels.txt"
CONFIG_FILE = "config.json"
THRESHOLDS_FILE = "thresholds.json"
COMPUTE_FILE = "compute.json"
WARMUP_FILE = export_inputs.WARMUP_FILE
TMP_PREFIX = "tmp-"


def export(workdir: str, export_base: str, version: int | None = None, *,
           beam_size: int | None = None, max_length: int | None = None,
           min_length: int | None = None, checkpoint: str = "auto",
           precision: str | None = None, jit: str | None = None) -> str:
  """Exports a checkpoint of the workdir as `<export_base>/<version>`; returns that path.

  Args:
    workdir: a workdir written by `cnn_rnn_tf.train` (config.json, labels.txt, checkpoints/).
    checkpoint: "auto" | "latest" | "best" | a checkpoint path: the rule evaluate uses
      (`workdir.load_trained`): auto = best/ when the run kept one, else the latest.
    export_base: the model base path TF Serving polls; created if missing.
    version: the version folder's number; None takes the next integer (1 for a new base).
    beam_size, max_length, min_length: decoding settings baked into the export; None
      takes `config.decode`'s.
    precision, jit: "on" | "off" override the workdir's compute.json (its inference
      entry); what was used is written to assets.extra/compute.json.

  Raises:
    FileExistsError: `<export_base>/<version>` exists already.
    ConfigError: a bad decoding setting (e.g. beam_size=0), named.
    ValueError: a bad version.
  """
  trained = workdir_lib.load_trained(workdir, checkpoint, precision=precision,
                                     jit=jit)  # the one read of the workdir
  config, vocab, thresholds = trained.config, trained.vocab, trained.thresholds
  with config.unlocked():
    for name, value in (("beam_size", beam_size), ("max_length", max_length),
                        ("min_length", min_length)):
      if value is not None:
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer)) or \
            not float(value).is_integer():  # 2.5 is not 2, nor NaN a length
          raise config_lib.ConfigError([f"decode.{name} = {value!r}: must be an integer"])
        config.decode[name] = int(value)
  config_checks.validate(config)  # one line per problem, before anything is written
  decoding.check_lengths(vocab.num_labels, config.decode.max_length, config.decode.min_length)

  tf.io.gfile.makedirs(export_base)
  version = next_version(export_base) if version is None else int(version)
  if version < 0:
    raise ValueError(f"version must be a non-negative integer, got {version}.")
  final_dir = os.path.join(export_base, str(version))
  if tf.io.gfile.exists(final_dir):
    raise FileExistsError(f"Export version {final_dir!r} exists already; versions are never "
                          "overwritten. Pass another --version or leave it out for the next.")
  stale = [n for n in tf.io.gfile.listdir(export_base) if n.startswith(TMP_PREFIX)]
  if stale:
    logging.warning("Temp folders of other exports (interrupted, or still running) in %s; "
                    "TF Serving ignores them: %s", export_base, ", ".join(sorted(stale)))

  backbone, head, checkpoint = trained.backbone, trained.head, trained.checkpoint_path
  tmp_dir = os.path.join(export_base, f"{TMP_PREFIX}{version}-{uuid.uuid4().hex[:8]}")
  logging.info("Exporting %s (beam %d, lengths %d..%d) to %s via %s.", checkpoint,
               config.decode.beam_size, config.decode.min_length, config.decode.max_length,
               final_dir, tmp_dir)
  if thresholds is not None:
    logging.info("Exporting the calibrated thresholds of the workdir.")
  try:
    write_saved_model(tmp_dir, config, vocab.names, backbone, head, thresholds=thresholds,
                      compute=trained.compute)
    validate(tmp_dir)
    _publish(tmp_dir, final_dir)
  except BaseException:
    if tf.io.gfile.exists(tmp_dir):
      tf.io.gfile.rmtree(tmp_dir)
    raise
  logging.info("Exported version %d: %s", version, final_dir)
  return final_dir


def _publish(tmp_dir: str, final_dir: str) -> None:
  """Renames the finished temp folder to the version folder; never overwrites one."""
  try:
    tf.io.gfile.rename(tmp_dir, final_dir, overwrite=False)
  except tf.errors.OpError as e:
    if tf.io.gfile.exists(final_dir):
      raise FileExistsError(
          f"Export version {final_dir!r} was written by another export while this one ran "
          "(both took that version number); versions are never overwritten, so this one is "
          "discarded. Run it again (it takes the next version) or pass another --version."
      ) from None
    raise OSError(f"Cannot rename {tmp_dir!r} to {final_dir!r}: {e.message}") from None


def next_version(export_base: str) -> int:
  """1 + the largest numeric folder name under `export_base` (1 when there is none)."""
  if not tf.io.gfile.isdir(export_base):
    return 1
  versions = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(export_base)
              if re.fullmatch(r"\d+/?", n)]
  return max(versions, default=0) + 1


def write_saved_model(export_dir: str, config, label_names, backbone: keras.Model,
                      head: keras.Model, thresholds=None, compute: dict | None = None) -> None:
  """Writes the SavedModel, its labels asset, config.json and the warmup requests.

  `thresholds`: float [K] calibrated per-class thresholds (bce: of its probabilities;
  cnn_rnn: of its marginals; None: 0.5).
  `compute`: `load_trained`'s (how the backbone computes): assets.extra/compute.json.
  """
  with tempfile.TemporaryDirectory() as labels_dir:  # the asset's source, until write_out
    table = _label_table(labels_dir, label_names)
    archive = keras.export.ExportArchive()
    archive.track(backbone)
    archive.track(head)
    archive.track(table)
    # The specs have unknown rank: neither TF Serving nor `loaded.signatures[...]` enforces a
    # signature's shape, and a rank or size known here would constant-fold check_shape away.
    for name, (fn, dtype) in _signatures(config, backbone, head, table, thresholds).items():
      archive.add_endpoint(name, fn, input_signature=[
          tf.TensorSpec(None, dtype, name=INPUT_KEYS[name])])
    tf.io.gfile.makedirs(export_dir)
    archive.write_out(export_dir, verbose=False)

  extra = os.path.join(export_dir, "assets.extra")
  tf.io.gfile.makedirs(extra)
  with tf.io.gfile.GFile(os.path.join(extra, CONFIG_FILE), "w") as f:
    f.write(config.to_json_best_effort(indent=2, sort_keys=True))
  if compute is not None:  # the backbone's precision as in the graph; XLA recorded only
    with tf.io.gfile.GFile(os.path.join(extra, COMPUTE_FILE), "w") as f:
      json.dump(compute_lib.export_record(compute, backbone), f, indent=2, sort_keys=True)
  if thresholds is not None:
    with tf.io.gfile.GFile(os.path.join(extra, THRESHOLDS_FILE), "w") as f:
      json.dump({str(n): float(t) for n, t in zip(label_names, thresholds)}, f, indent=2)
  export_inputs.write_warmup_requests(os.path.join(extra, WARMUP_FILE), _image_size(config))


def _image_size(config) -> int:
  return backbones.backbone_image_size(config.model.backbone, config.model.image_size)


def _label_table(folder: str, label_names) -> tf.lookup.StaticHashTable:
  """id -> name from `folder`/labels.txt (which the SavedModel copies to assets/labels.txt);
  ids outside 0..K-1 (the -1 padding) -> ''."""
  labels_path = os.path.join(folder, LABELS_ASSET)
  with tf.io.gfile.GFile(labels_path, "w") as f:
    f.write("".join(f"{n}\n" for n in label_names))
  return tf.lookup.StaticHashTable(
      tf.lookup.TextFileInitializer(
          labels_path, tf.int64, tf.lookup.TextFileIndex.LINE_NUMBER,
          tf.string, tf.lookup.TextFileIndex.WHOLE_LINE, vocab_size=len(label_names)),
      default_value="")


def _signatures(config, backbone, head, table, thresholds) -> dict:
  """{signature name: (function of its one input, the input's dtype)}; all three share the
  decoding of `decode_features` and return `output_keys(config)`."""
  decode = config.decode
  max_pixels = int(config.data.get("max_image_pixels", None) or images_lib.DEFAULT_MAX_PIXELS)
  size = _image_size(config)
  feature_dim = backbone.output_shape[-1]

  keys = output_keys(config)

  def decode_features(features):  # float32 [B, D] -> dict of outputs
    out = inference.predict_from_features(
        head, features, inference.decode_options(config),
        thresholds=None if thresholds is None else tf.constant(thresholds, tf.float32))
    out.update(decoder_outputs(config.model.head, decode, out))
    out["label_names"] = table.lookup(tf.cast(out["labels"], tf.int64))  # [B, L]
    if "paths" in out:
      out["paths_label_names"] = table.lookup(tf.cast(out["paths"], tf.int64))  # [B, N, L]
    for name in exported_decoders(config):
      labels_key, names_key = decoders_lib.output_names(name)
      out[names_key] = table.lookup(tf.cast(out[labels_key], tf.int64))
    return {k: out[k] for k in keys}

  def features_of(images):  # float32 [B, S, S, 3] -> [B, D]
    # TF's CPU convolutions fail on an empty batch; an empty request gets empty outputs.
    return tf.cond(tf.shape(images)[0] > 0,
                   lambda: tf.cast(backbone(images, training=False), tf.float32),
                   lambda: tf.zeros([0, feature_dim], tf.float32))

  def from_features(features):  # [B, D]
    features = export_inputs.check_shape(features, [None, feature_dim], "features",
                           f"[batch, {feature_dim}] (backbone features)")
    with tf.control_dependencies([export_inputs.assert_finite(features, "features")]):
      features = tf.identity(features)
    return decode_features(features)

  def from_images(images):  # float32 [B, H, W, 3] in 0..255
    images = export_inputs.check_shape(images, [None, None, None, 3], "images",
                         "[batch, height, width, 3] (RGB pixels)")
    checks = [export_inputs.assert_finite(images, "images"),
              export_inputs.assert_pixels(images, max_pixels),
              export_inputs.assert_not_empty(images, "images")]
    with tf.control_dependencies(checks):
      images = tf.identity(images)
    return decode_features(features_of(images_lib.resize(images, size)))

  def from_image_bytes(image_bytes):  # string [B]
    image_bytes = export_inputs.check_shape(image_bytes, [None], "image_bytes",
                              "[batch] (a vector of encoded images; one image is [1])")
    return decode_features(features_of(
        images_lib.decode_batch(image_bytes, size, max_pixels=max_pixels)))

  return {"serving_default": (from_image_bytes, tf.string),
          "predict_images": (from_images, tf.float32),
          "predict_features": (from_features, tf.float32)}


def exported_decoders(config) -> tuple[str, ...]:
  """The named decoders whose sets the export carries: the head's (`decoders.DECODERS`)
  whose needs the config meets (the cnn_rnn's expected_f1 needs decode.num_samples > 0, its
  marginals a trained side head)."""
  return decoders_lib.available(config.model.head, config.decode.num_samples,
                                inference.marginals_trained(config))


def output_keys(config) -> tuple[str, ...]:
  """The export's outputs: OUTPUT_KEYS, PATH_OUTPUT_KEYS when the head has a path
  (`inference.head_outputs`), and `labels_<decoder>`, `label_names_<decoder>` of each
  exported decoder."""
  paths = "paths" in inference.head_outputs(config.model.head)
  return (OUTPUT_KEYS + PATH_OUTPUT_KEYS * paths
          + tuple(key for name in exported_decoders(config)
                  for key in decoders_lib.output_names(name)))


def decoder_outputs(head: str, decode, out: dict) -> dict:
  """`labels_<decoder>` int32 [B, L] for each decoder set `set_<decoder>` of `out`, and the
  configured decoder's (`decode.decoder`) as `labels` / `num_labels`.

  The head's own decoder (its first, `decoders.head_decoders`: the path, the thresholded set)
  keeps the order of `labels`; another set lists its labels by decreasing label_scores, at
  most L = labels.shape[1] (the rest of a larger set is cut), -1 padded.
  """
  own = decoders_lib.head_decoders(head)[0]
  length = out["labels"].shape[1]
  result = {}
  for key in [k for k in out if k.startswith("set_")]:
    name = key[len("set_"):]
    if name == own:
      result[decoders_lib.output_names(name)[0]] = out["labels"]
      continue
    chosen = out[key]  # bool [B, K]
    rank = tf.where(chosen, tf.cast(out["label_scores"], tf.float32), -1.0)  # [B, K]
    top, ids = tf.math.top_k(rank, length)  # [B, L]
    result[decoders_lib.output_names(name)[0]] = tf.where(top >= 0.0, ids, -1)
  default = inference.default_decoder(head, decode.decoder)
  if default != own:
    result["labels"] = result[decoders_lib.output_names(default)[0]]
    result["num_labels"] = tf.reduce_sum(tf.cast(result["labels"] >= 0, tf.int32), axis=1)
  return result


def validate(export_dir: str) -> None:
  """Loads the export back and runs its warmup requests; raises if anything is off."""
  labels = os.path.join(export_dir, "assets", LABELS_ASSET)
  if not tf.io.gfile.exists(labels):
    raise FileNotFoundError(f"The export {export_dir!r} lacks its vocabulary {labels!r}.")
  loaded = tf.saved_model.load(export_dir)
  missing = [s for s in SIGNATURES if s not in loaded.signatures]
  if missing:
    raise ValueError(f"The export {export_dir!r} lacks signatures {missing}; "
                     f"it has {sorted(loaded.signatures)}.")
  for i, request in enumerate(export_inputs.read_warmup_requests(export_dir)):
    fn = loaded.signatures[request.model_spec.signature_name or "serving_default"]
    inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
    out = fn(**inputs)
    batch = int(next(iter(inputs.values())).shape[0])
    if not set(OUTPUT_KEYS) <= set(out) or out["num_labels"].shape != (batch,):
      raise ValueError(f"Warmup request {i} of {export_dir!r} gave outputs "
                       f"{ {k: v.shape for k, v in out.items()} } for a batch of {batch}.")
