r"""The demo: train CNN-RNN and BCE on the built-in synthetic_scenes, compare, export, report.

  python -m cnn_rnn_tf.demo --workdir=runs/demo [--seeds=0,1,2] [--size=full|runlocal] [--grid]
  python -m cnn_rnn_tf.demo --workdir=runs/demo --grid --variants=cnn_rnn-frequent_first-aux0

(`make demo` runs exactly the first line.) Prints a header per stage ("== [1/5] ..."), per
protocol (S, T, E: see demo_lib) the two heads side by side with their comparison, and the
path of the report (Markdown + PNG in the workdir). `--grid`: E on every seed and the
CNN-RNN variants (label orders x auxiliary BCE weight) in every protocol; `--variants`
picks some of them (E on every seed and the paper's training only, in the second line).
Running it again resumes: trained seeds are re-evaluated, not retrained, and the export gets
the next version. Flags in, one library call out (`demo_lib.run_demo`).
"""

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_WORKDIR = flags.DEFINE_string("workdir", "runs/demo", "Run folder for all seeds and heads.")
_SEEDS = flags.DEFINE_list("seeds", ["0", "1", "2"], "Seeds; each trains both heads.")
_SIZE = flags.DEFINE_enum("size", "full", ["full", "runlocal"],
                          "runlocal: tiny data and a few steps (a smoke test).")
_EXPORT_BASE = flags.DEFINE_string("export_base", "export/models",
                                   "Exports go to <export_base>/<head>/<version>.")
_GRID = flags.DEFINE_bool("grid", False, "The full grid: E on every seed, and the CNN-RNN "
                          "variants (label orders x aux BCE weight) in every protocol.")
_VARIANTS = flags.DEFINE_list("variants", [], "With --grid: only these CNN-RNN variants "
                              "(names cnn_rnn-<label order>-aux<weight>; default: all).")
_PROGRESS = runtime.define_progress_flag()


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  try:
    seeds = tuple(int(s) for s in _SEEDS.value)
  except ValueError:
    raise app.UsageError(f"--seeds must be integers separated by commas, got "
                         f"{','.join(_SEEDS.value)!r}.") from None
  if _VARIANTS.value and not _GRID.value:
    raise app.UsageError("--variants picks grid variants; add --grid.")
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf import demo_lib  # pylint: disable=g-import-not-at-top
  demo_lib.run_demo(_WORKDIR.value, seeds=seeds, size=_SIZE.value,
                    export_base=_EXPORT_BASE.value, grid=_GRID.value,
                    variants=_VARIANTS.value or None)


if __name__ == "__main__":
  app.run(main)
