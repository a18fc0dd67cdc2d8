r"""A TEST STAND-IN for the TF Serving binary (see `server_lib`). Flags in, one call out.

  python -m cnn_rnn_tf.serving.server --port=8500 --model_name=cnn_rnn \
      --model_base_path=export/models/cnn_rnn

Production serves exports with `tensorflow_model_server` (export/README.md).
"""

from __future__ import annotations

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_PORT = flags.DEFINE_integer("port", 8500, "gRPC port on 127.0.0.1 (0: any free port).")
_MODEL_NAME = flags.DEFINE_string("model_name", None, "Name clients put in model_spec.name.",
                                  required=True)
_MODEL_BASE_PATH = flags.DEFINE_string("model_base_path", None,
                                       "Folder of numeric version folders.", required=True)
_MAX_MESSAGE_MB = flags.DEFINE_integer("max_message_mb", 64, "Largest request / answer in MiB.")
_THREADS = flags.DEFINE_integer("threads", 4, "Requests served at once.")
_PROGRESS = runtime.define_progress_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf.serving import server_lib  # pylint: disable=g-import-not-at-top
  server_lib.run(_MODEL_NAME.value, _MODEL_BASE_PATH.value, _PORT.value,
                 _MAX_MESSAGE_MB.value, _THREADS.value)


if __name__ == "__main__":
  app.run(main)
