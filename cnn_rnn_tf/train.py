r"""Trains a CNN-RNN (or BCE baseline) head. Flags in, one library call out.

  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/demo \
      [--config.train.num_steps=500] [--config.model.head=bce]
  python -m cnn_rnn_tf.train --config=demo:runlocal --workdir=runs/demo   # by name (pip install)

Starting again with the same workdir resumes from its last checkpoint. Distributed: on one
machine all local GPUs are used (MirroredStrategy); across machines set TF_CONFIG on each
worker (MultiWorkerMirroredStrategy). `--cpu_devices=N` splits the CPU into N logical
devices, to try distribution on a laptop. `--progress=auto|on|off`: a bar with loss,
examples/s and ETA on a terminal (auto), always, or never.
"""

import sys

from absl import app
from absl import flags

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_cli
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import runtime

_CONFIG = config_cli.define_config_file_flag(
    "config", "Config: a name (csv, voc2007, ...: the package's configs/*.py, also from an "
    "installed wheel) or a file (configs/csv.py, my_config.py), then ':arg' (e.g. :runlocal).")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, logs and labels go.")
_CPU_DEVICES = flags.DEFINE_integer("cpu_devices", 0,
                                    "Split the CPU into this many logical devices (0: no split).")
_PROGRESS = runtime.define_progress_flag()
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
  runtime.setup(cpu_devices=_CPU_DEVICES.value, progress=_PROGRESS.value)
  try:
    config_checks.validate(_CONFIG.value)  # before any work or write
  except config_lib.ConfigError as e:
    sys.stderr.write(f"FATAL {e}\n")
    sys.exit(2)
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  train_lib.train(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
  app.run(main, flags_parser=config_cli.flags_parser)
