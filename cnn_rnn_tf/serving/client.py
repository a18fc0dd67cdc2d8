r"""Labels images through a TF Serving PredictionService (gRPC). Flags in, one call out.

  python -m cnn_rnn_tf.serving.client --server=localhost:8500 --model_name=cnn_rnn \
      [--signature=serving_default|predict_images] [--timeout=10] [--max_message_mb=64] \
      [--batch_size=32] [--n_best=3] [--json] [--output=labels.csv|labels.jsonl] \
      photo.jpg photos/ 'more/*.png'

Takes files, folders (recursive, by image extension) and globs, sends them in batches of
--batch_size (one request each) and prints exactly what `python -m cnn_rnn_tf.predict`
prints for the same export and images. A file that cannot be read or that the model refuses
is named on stderr and counted, the rest predicted; exit code 1 when any failed. The
library: `cnn_rnn_tf.serving.client_lib`.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_SERVER = flags.DEFINE_string("server", None, "host:port of the gRPC endpoint (TF Serving: "
                              "8500).", required=True)
_MODEL_NAME = flags.DEFINE_string("model_name", None, "The served model's name (--model_name "
                                  "of tensorflow_model_server, or models.config).",
                                  required=True)
_SIGNATURE = flags.DEFINE_string("signature", "serving_default",
                                 "serving_default sends the encoded bytes; predict_images "
                                 "decodes the images here and sends RGB pixels.")
_TIMEOUT = flags.DEFINE_float("timeout", 10.0, "Deadline of each request, in seconds.")
_MAX_MESSAGE_MB = flags.DEFINE_integer("max_message_mb", 64, "Largest request / answer in "
                                       "MiB (the server has its own limit).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Images per request.", lower_bound=1)
_N_BEST = flags.DEFINE_integer("n_best", 0, "Also show the N best label sets of the beam.",
                               lower_bound=0)
_JSON = flags.DEFINE_bool("json", False, "Print JSON instead of one line per image.")
_OUTPUT = flags.DEFINE_string("output", None, "Write the results to this .csv or .jsonl "
                              "file instead of printing them.")
_PROGRESS = runtime.define_progress_flag()


def main(argv):
  if len(argv) < 2:
    raise app.UsageError("Give one or more image files, folders or globs.")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf.serving import client_lib  # pylint: disable=g-import-not-at-top
  sys.exit(client_lib.run(_SERVER.value, _MODEL_NAME.value, argv[1:],
                          signature=_SIGNATURE.value, batch_size=_BATCH_SIZE.value,
                          n_best=_N_BEST.value, timeout=_TIMEOUT.value,
                          max_message_mb=_MAX_MESSAGE_MB.value, output=_OUTPUT.value,
                          as_json=_JSON.value))


if __name__ == "__main__":
  app.run(main)
