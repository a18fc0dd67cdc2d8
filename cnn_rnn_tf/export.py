r"""Exports a trained workdir as a SavedModel version for TF Serving. Flags in, one call out.

  python -m cnn_rnn_tf.export --workdir=runs/demo --export_base=export/models/cnn_rnn \
      [--checkpoint=auto|latest|best|PATH] [--version=N] [--beam_size=3] [--max_length=10] \
      [--min_length=0] [--precision=on|off] [--jit=on|off] [--progress=auto|on|off]

--checkpoint follows evaluate's rule (`workdir.load_trained`): auto = the best checkpoint
when the run kept one (train.keep_best), else the latest. Writes `<export_base>/<N>/`
(default N: the next integer) atomically. The backbone computes as the workdir's
compute.json says (what training evaluated with), unless --precision overrides it; the
export's assets.extra/compute.json names which. See
`cnn_rnn_tf.export_lib` for the signatures and the layout, and export/README.md for serving.
"""

from __future__ import annotations

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that cnn_rnn_tf.train wrote.")
_EXPORT_BASE = flags.DEFINE_string("export_base", None,
                                   "Model base path (TF Serving's --model_base_path).")
_VERSION = flags.DEFINE_integer("version", None, "Version number (default: the next one).",
                                lower_bound=0)
_BEAM = flags.DEFINE_integer("beam_size", None, "Beam size (default: config.decode.beam_size).")
_MAX_LENGTH = flags.DEFINE_integer("max_length", None,
                                   "Most labels per image (default: config.decode.max_length).")
_MIN_LENGTH = flags.DEFINE_integer("min_length", None,
                                   "Fewest labels per image (default: config.decode.min_length).")
_CHECKPOINT = runtime.define_checkpoint_flag()
_PROGRESS = runtime.define_progress_flag()
_PRECISION, _JIT = runtime.define_compute_flags()
flags.mark_flags_as_required(["workdir", "export_base"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf import export_lib  # pylint: disable=g-import-not-at-top
  path = export_lib.export(_WORKDIR.value, _EXPORT_BASE.value, _VERSION.value,
                           beam_size=_BEAM.value, max_length=_MAX_LENGTH.value,
                           min_length=_MIN_LENGTH.value, checkpoint=_CHECKPOINT.value,
                           precision=_PRECISION.value, jit=_JIT.value)
  print(path)


if __name__ == "__main__":
  app.run(main)
