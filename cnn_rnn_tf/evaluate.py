r"""Evaluates a trained workdir: beam search over a split, the paper's metrics.

  python -m cnn_rnn_tf.evaluate --workdir=runs/demo [--split=test] [--checkpoint=auto] \
      [--precision=on|off] [--jit=on|off] \
      [--config.decode.beam_size=5 --config.decode.max_length=8] [--progress=auto]
  python -m cnn_rnn_tf.evaluate --workdir=runs/demo --validation   # where decoders are chosen
  python -m cnn_rnn_tf.evaluate --workdir=runs/demo --weights=raw  # an EMA run's raw weights

Writes <workdir>/eval/metrics.json, metrics.md and predictions.npz (with --validation:
<workdir>/eval/validation/), and prints the table.
`--checkpoint`: auto (the best checkpoint when the run kept one, else the latest) | latest |
best | a checkpoint path; the rule is in cnn_rnn_tf/workdir/. Only `decode.*` may be
overridden: the model and data are the workdir's.
"""

import sys

from absl import app
from absl import flags
import ml_collections

from cnn_rnn_tf import config_cli
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import runtime


def _decode_overrides() -> ml_collections.ConfigDict:
  """{"decode": every decode.* field, None = keep the workdir's value}."""
  decode = config_lib.default_config().decode
  return ml_collections.ConfigDict({"decode": {
      key: ml_collections.FieldReference(None, field_type=type(value))
      for key, value in decode.items()}})


_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that cnn_rnn_tf.train wrote.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: the config's eval_split).")
_VALIDATION = flags.DEFINE_boolean(
    "validation", False, "Evaluate the validation part instead (data.validation_split, else "
    "the held-out calibration part of the training split), where decoders are chosen; "
    "writes <workdir>/eval/validation/.")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the training one).")
_BEAM = flags.DEFINE_integer("beam_size", None,
                             "Beam size (default: config.decode.beam_size); same as "
                             "--config.decode.beam_size.")
_CHECKPOINT = runtime.define_checkpoint_flag()
_WEIGHTS = flags.DEFINE_enum(
    "weights", "auto", ["auto", "raw"], "auto: the EMA weights when the run kept them "
    "(train.ema_decay > 0), else the trained ones; raw: the trained weights, for comparison "
    "(written to <workdir>/eval/[validation/]raw/).")
_PROGRESS = runtime.define_progress_flag()
_PRECISION, _JIT = runtime.define_compute_flags()
_CONFIG = config_cli.define_overrides_flag(
    "config", _decode_overrides(),
    "Overrides of the workdir's decode.* settings, e.g. --config.decode.beam_size=5.",
    hint="evaluate takes only --config.decode.* overrides; the model and data are the "
    "workdir's")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf import evaluate_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import metrics_markdown  # pylint: disable=g-import-not-at-top
  decode = {k: v for k, v in _CONFIG.value.decode.items() if v is not None}
  try:
    result = evaluate_lib.evaluate(_WORKDIR.value, _SPLIT.value, _BATCH.value, _BEAM.value,
                                   checkpoint=_CHECKPOINT.value, decode=decode,
                                   validation=_VALIDATION.value, precision=_PRECISION.value,
                                   jit=_JIT.value, weights=_WEIGHTS.value)
  except config_lib.ConfigError as e:
    sys.stderr.write(f"FATAL {e}\n")
    sys.exit(2)
  print(metrics_markdown.markdown_table(result, title=f"{result['head']} on {result['split']}"))


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.flags_parser)
