r"""Labels images with an exported SavedModel, locally (no server). Flags in, one call out.

  python -m cnn_rnn_tf.predict --saved_model=export/models/cnn_rnn/1 photo.jpg photos/ \
      'more/*.png' [--output=labels.csv|labels.jsonl] [--json] [--n_best=3] \
      [--batch_size=32] [--signature=serving_default|predict_images] [--progress=auto]

Takes files, folders (recursive, by image extension) and globs. Prints one line per image
(the label path, each label's score, the path's log-probability; with --n_best=N the N best
label sets of the beam below it), or JSON with --json, or writes a CSV / JSON Lines file
with --output. A file that cannot be read or decoded is named on stderr and counted, the
others are still predicted; the exit code is 1 when any failed. Same output as
`python -m cnn_rnn_tf.serving.client` through a server. The library: `serving.local`.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_SAVED_MODEL = flags.DEFINE_string(
    "saved_model", None, "An export version folder, e.g. export/models/cnn_rnn/1.",
    required=True)
_SIGNATURE = flags.DEFINE_enum(
    "signature", "serving_default", ["serving_default", "predict_images"],
    "serving_default sends the encoded bytes; predict_images decodes the images here and "
    "sends RGB pixels.")
_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of one line per image.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the results to this .csv or .jsonl "
                              "file instead of printing them.")
_N_BEST = flags.DEFINE_integer("n_best", 0, "Also show the N best label sets of the beam.",
                               lower_bound=0)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per call.", lower_bound=1)
_PROGRESS = runtime.define_progress_flag()


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("Give one or more image files, folders or globs.")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf.serving import local  # pylint: disable=g-import-not-at-top
  sys.exit(local.run(_SAVED_MODEL.value, argv[1:], signature=_SIGNATURE.value,
                     batch_size=_BATCH_SIZE.value, n_best=_N_BEST.value, output=_OUTPUT.value,
                     as_json=_JSON.value))


if __name__ == "__main__":
  app.run(main)
