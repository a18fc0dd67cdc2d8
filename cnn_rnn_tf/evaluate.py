r"""Evaluates a trained workdir: beam search over a split, the paper's metrics.

  python -m cnn_rnn_tf.evaluate --workdir=runs/demo [--split=test] [--beam_size=3]

Writes <workdir>/eval/metrics.json, metrics.md and predictions.npz, and prints the table.
"""

from absl import app
from absl import flags

_WORKDIR = flags.DEFINE_string("workdir", None, "A workdir that cnn_rnn_tf.train wrote.")
_SPLIT = flags.DEFINE_string("split", None, "Split to evaluate (default: the config's eval_split).")
_BATCH = flags.DEFINE_integer("batch_size", None, "Batch size (default: the training one).")
_BEAM = flags.DEFINE_integer("beam_size", None, "Beam size (default: config.decode.beam_size).")
flags.mark_flag_as_required("workdir")


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  from cnn_rnn_tf import evaluate_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import metrics  # pylint: disable=g-import-not-at-top
  result = evaluate_lib.evaluate(_WORKDIR.value, _SPLIT.value, _BATCH.value, _BEAM.value)
  print(metrics.markdown_table(result, title=f"{result['head']} on {result['split']}"))


if __name__ == "__main__":
  app.run(main)
