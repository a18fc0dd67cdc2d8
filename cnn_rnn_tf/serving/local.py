"""Labels images with an exported SavedModel in this process (no server): the library of
`python -m cnn_rnn_tf.predict`.

    from cnn_rnn_tf.serving import local
    model = local.load("export/models/cnn_rnn/1")
    outputs = local.predict(model, [open("photo.jpg", "rb").read()])   # dict of NumPy
    outputs["label_names"]   # object [1, L], '' padded; outputs["paths"] [1, N, L]

    run = local.predict_files("export/models/cnn_rnn/1", ["photos/", "*.png"], batch_size=32)
    run.records, run.failures          # see `serving.format`

The same output as `cnn_rnn_tf.serving.client_lib` through a server: both build requests
and results only through `cnn_rnn_tf.serving.format`.

Precision: the export's graph computes its backbone in the dtype it was exported with (the
workdir's compute.json, or export's --precision), so predictions here equal `evaluate`'s of
the same checkpoint and policy; `compute_of` reads what the export records
(assets.extra/compute.json) and `predict_files` logs it. It cannot be changed here: export
again with --precision=on|off.
"""

from __future__ import annotations

import json
import os
from typing import Sequence

from absl import logging
import tensorflow as tf

from cnn_rnn_tf import image_files
from cnn_rnn_tf.serving import format as format_lib

SIGNATURES = ("serving_default", "predict_images")


def load(saved_model_dir: str):
  """The exported SavedModel (no cnn_rnn_tf code needed to run it)."""
  if not tf.io.gfile.exists(os.path.join(saved_model_dir, "saved_model.pb")):
    raise FileNotFoundError(f"No saved_model.pb in {saved_model_dir!r}; pass a version folder "
                            "such as export/models/cnn_rnn/1.")
  return tf.saved_model.load(saved_model_dir)


def compute_of(saved_model_dir: str) -> dict | None:
  """assets.extra/compute.json of an export ({"precision", "jit", "source", ...}), or None
  for an export written before it existed."""
  path = os.path.join(saved_model_dir, "assets.extra", "compute.json")
  if not tf.io.gfile.exists(path):
    return None
  with tf.io.gfile.GFile(path) as f:
    return json.load(f)


def predict(model, images_bytes: Sequence[bytes], signature: str = "serving_default") -> dict:
  """Runs `signature` of a loaded export on encoded images; NumPy outputs, batch first.

  Raises:
    format.BadInputError: the model refused an image (the message names its index).
    ValueError: no such signature, or `images_bytes` is not a batch (a hint says how).
  """
  if signature not in model.signatures:
    raise ValueError(f"The export has no signature {signature!r}; it has "
                     f"{sorted(model.signatures)}.")
  fn = model.signatures[signature]
  specs = fn.structured_input_signature[1]
  outputs = []
  for inputs in format_lib.request_inputs(signature, images_bytes):
    tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
    try:
      outputs.append({k: v.numpy() for k, v in fn(**tensors).items()})
    except tf.errors.InvalidArgumentError as e:
      raise format_lib.BadInputError(image_files.error_message(e)) from None
  return format_lib.merge_outputs(outputs)


def predict_files(saved_model_dir: str, inputs: Sequence[str], *,
                  signature: str = "serving_default", batch_size: int = 32,
                  n_best: int = 0) -> format_lib.Run:
  """Predicts every image of `inputs` (files, folders, globs) with the export, in batches.

  Unreadable or refused files are counted in `failures` (named), the rest predicted.
  """
  paths, failures = format_lib.expand_paths(inputs)
  model = load(saved_model_dir)
  compute = compute_of(saved_model_dir)
  logging.info("%s computes its backbone in %s (%s).", saved_model_dir,
               compute["precision"] if compute else "the dtype it was exported with",
               compute["source"] if compute else "no assets.extra/compute.json")
  if signature not in model.signatures:
    raise ValueError(f"The export has no signature {signature!r}; it has "
                     f"{sorted(model.signatures)}.")
  return format_lib.predict_paths(lambda data: predict(model, data, signature), paths,
                                  batch_size=batch_size, n_best=n_best, failures=failures)


def run(saved_model_dir: str, inputs: Sequence[str], *, signature: str = "serving_default",
        batch_size: int = 32, n_best: int = 0, output: str | None = None,
        as_json: bool = False) -> int:
  """What `python -m cnn_rnn_tf.predict` does; returns its exit code (1: something failed)."""
  return format_lib.run_and_emit(
      lambda: predict_files(saved_model_dir, inputs, signature=signature,
                            batch_size=batch_size, n_best=n_best),
      output=output, as_json=as_json)
