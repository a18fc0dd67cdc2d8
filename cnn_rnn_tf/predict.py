r"""Labels images with an exported SavedModel, locally (no server): `tf.saved_model.load`.

  python -m cnn_rnn_tf.predict --saved_model=export/models/cnn_rnn/1 photo.jpg more.png \
      [--signature=serving_default|predict_images] [--json]

Prints one line per image (the label path, each label's score, the path's log-probability),
or JSON with --json; the same output as `python -m cnn_rnn_tf.serving.client` through a
server (both print through `cnn_rnn_tf.serving.format`). From Python:

    from cnn_rnn_tf import predict
    model = predict.load("export/models/cnn_rnn/1")
    outputs = predict.predict(model, [open("photo.jpg", "rb").read()])   # dict of NumPy
    outputs["label_names"]   # object [1, L], '' padded
"""

from __future__ import annotations

import os
import sys
from typing import Sequence

from absl import app
from absl import flags
import tensorflow as tf

from cnn_rnn_tf.serving import format as format_lib

FLAGS = flags.FLAGS


def define_flags():
  """The binary's flags (defined only when run, so importing this module defines none)."""
  flags.DEFINE_string("saved_model", None,
                      "An export version folder, e.g. export/models/cnn_rnn/1.", required=True)
  flags.DEFINE_enum("signature", "serving_default", ["serving_default", "predict_images"],
                    "serving_default sends the encoded bytes; predict_images decodes the "
                    "images here and sends RGB pixels.")
  flags.DEFINE_bool("json", False, "Print JSON instead of one line per image.")


def load(saved_model_dir: str):
  """The exported SavedModel (no cnn_rnn_tf code needed to run it)."""
  if not tf.io.gfile.exists(os.path.join(saved_model_dir, "saved_model.pb")):
    raise FileNotFoundError(f"No saved_model.pb in {saved_model_dir!r}; pass a version folder "
                            "such as export/models/cnn_rnn/1.")
  return tf.saved_model.load(saved_model_dir)


def predict(model, images_bytes: Sequence[bytes], signature: str = "serving_default") -> dict:
  """Runs `signature` of a loaded export on encoded images; NumPy outputs, batch first."""
  if signature not in model.signatures:
    raise ValueError(f"The export has no signature {signature!r}; it has "
                     f"{sorted(model.signatures)}.")
  fn = model.signatures[signature]
  specs = fn.structured_input_signature[1]
  outputs = []
  for inputs in format_lib.request_inputs(signature, images_bytes):
    tensors = {k: tf.constant(v, dtype=specs[k].dtype) for k, v in inputs.items()}
    outputs.append({k: v.numpy() for k, v in fn(**tensors).items()})
  return format_lib.merge_outputs(outputs)


def predict_files(saved_model_dir: str, paths: Sequence[str],
                  signature: str = "serving_default", as_json: bool = False) -> str:
  """What the binary prints for `paths`."""
  outputs = predict(load(saved_model_dir), read_images(paths), signature)
  return (format_lib.to_json if as_json else format_lib.to_text)(paths, outputs)


def read_images(paths: Sequence[str]) -> list[bytes]:
  images = []
  for path in paths:
    if not os.path.isfile(path):
      raise FileNotFoundError(f"Image file {path!r} does not exist.")
    with open(path, "rb") as f:
      images.append(f.read())
  return images


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("Give one or more image files.")
  try:
    print(predict_files(FLAGS.saved_model, paths, FLAGS.signature, FLAGS.json))
  except (FileNotFoundError, ValueError, tf.errors.InvalidArgumentError) as e:
    print(f"error: {getattr(e, 'message', e)}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  define_flags()
  app.run(main)
