"""Process set-up shared by the binaries: a quiet start, logical CPU devices, progress mode.

    def main(argv):
      runtime.setup(cpu_devices=_CPU_DEVICES.value, progress=_PROGRESS.value)
      from cnn_rnn_tf import train_lib   # TensorFlow is imported by setup(), quietly
      ...

Quiet by default: TensorFlow prints about a dozen C++ start-up lines on import (oneDNN
notices, "Could not find cuda drivers", a cuInit error on machines without a GPU) and its
dependencies print Python deprecation warnings. `setup()` imports TensorFlow with the
process's stderr (file descriptor 2) sent to a temporary file, sets TF_CPP_MIN_LOG_LEVEL=2
(C++ INFO and WARNING hidden afterwards; errors still shown) and ignores DeprecationWarning
and FutureWarning raised outside this package. The captured start-up text is printed again
if the import fails. Everything is shown as before with `--verbosity=1` (absl's flag, every
binary has it) or the environment variable CNN_RNN_TF_VERBOSE=1. Our own absl log lines
(INFO and up) always stay; of the Python log records of dependencies (TensorFlow, TFDS,
Keras: "Using MirroredStrategy", "Reusing dataset", deprecation notices, "retracing"
notices) only warnings that are not about deprecation or retracing, and errors, are shown
(`DependencyLogFilter`).

One C++ line escapes TF_CPP_MIN_LOG_LEVEL=2, as it is an error-level log: oneDNN's
"util.cc:131] oneDNN supports DT_BOOL only on platforms with AVX-512. Falling back to the
default Eigen-based implementation if present." It is harmless (the Eigen kernel runs) and
TensorFlow prints it once per process, at the first op on a bool tensor that oneDNN would
take (a transpose of a bool mask, say). `setup` runs such an op with stderr captured
(`spend_once_only_notices`, after the CPU split, which must precede any op), so the notice is
spent there; `--verbosity=1` skips it and the line shows at the first graph run.
Chosen over TF_CPP_MIN_LOG_LEVEL=3, which would hide every later C++ error too, and over a
filter on stderr, which would need a pipe for the process's whole life (a terminal no longer a
terminal, lines lost on a crash).

This module must not import TensorFlow at module level: the point is to control how it is
imported.
"""

from __future__ import annotations

import contextlib
import logging as std_logging
import os
import sys
import tempfile
import warnings

from absl import flags
from absl import logging

from cnn_rnn_tf import progress as progress_lib

# The flags `define_progress_flag` and `define_checkpoint_flag` define belong to the binary
# that calls them, so that its `--help` lists them (absl's key flags).
flags.disclaim_key_flags()

VERBOSE_ENV = "CNN_RNN_TF_VERBOSE"


def verbose() -> bool:
  """True when the user asked for TensorFlow's own start-up and warning output."""
  return logging.get_verbosity() >= 1 or os.environ.get(VERBOSE_ENV, "") not in ("", "0")


@contextlib.contextmanager
def _stderr_to_file():
  """Sends file descriptor 2 (C++ and Python stderr) to a temporary file; yields the file."""
  sys.stderr.flush()
  saved = os.dup(2)
  with tempfile.TemporaryFile(mode="w+b") as captured:
    os.dup2(captured.fileno(), 2)
    try:
      yield captured
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)


def quiet_tensorflow() -> None:
  """Imports TensorFlow (and initializes its devices) without its start-up noise."""
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
  for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
    warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("default", category=category, module=r"cnn_rnn_tf(\.|$)")
  if "tensorflow" in sys.modules:
    return  # imported already (a test, a notebook): its start-up lines are printed
  with _stderr_to_file() as captured:
    try:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      tf.config.list_physical_devices()  # the cuInit error is printed here, not on import
    except BaseException:
      captured.seek(0)
      sys.__stderr__.write(captured.read().decode("utf-8", "replace"))
      raise


def spend_once_only_notices() -> None:
  """Runs, with stderr captured, the ops whose once-per-process C++ notices would otherwise
  print mid-run: the oneDNN DT_BOOL line, at the first bool transpose. What they print is
  shown only if they fail."""
  with _stderr_to_file() as captured:
    try:
      _once_only_ops()
    except BaseException:
      captured.seek(0)
      sys.__stderr__.write(captured.read().decode("utf-8", "replace"))
      raise


def _once_only_ops() -> None:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  tf.transpose(tf.zeros([1, 1], tf.bool))  # oneDNN's DT_BOOL notice


def setup(cpu_devices: int = 0, progress: str = "auto") -> None:
  """Start of every binary's main(): quiet TensorFlow import, logging, devices, bars.

  Args:
    cpu_devices: split the CPU into this many logical devices (0 or 1: leave it whole);
      must run before any TensorFlow op.
    progress: "auto" (bars only on a terminal, never under CI), "on" or "off".
  """
  progress_lib.set_mode(progress)
  if logging.get_verbosity() < logging.INFO:
    logging.set_verbosity(logging.INFO)  # our progress lines are INFO
  if not verbose():
    quiet_tensorflow()
    quiet_dependency_logs()
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  if cpu_devices and cpu_devices > 1:
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_devices)
  # After the split: this op starts TensorFlow's runtime. Not in a multi-worker run
  # (TF_CONFIG names a cluster): MultiWorkerMirroredStrategy must configure the collective
  # ops before the runtime starts, so there the notice may print once.
  if not verbose() and not os.environ.get("TF_CONFIG"):
    spend_once_only_notices()



_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_NOISY_WARNINGS = ("deprecat", "retracing")  # dependency warnings a user can do nothing about


class DependencyLogFilter(std_logging.Filter):
  """Keeps log records of this package (and benchmarks/); of others, only the useful ones.

  Another library's record passes when it is an ERROR (or worse), or a WARNING that is not a
  deprecation or tf.function retracing notice.
  """

  def filter(self, record: std_logging.LogRecord) -> bool:
    path = os.path.abspath(record.pathname or "")
    if path.startswith(_PACKAGE_DIR + os.sep) or f"{os.sep}benchmarks{os.sep}" in path:
      return True
    if record.levelno >= std_logging.ERROR:
      return True
    if record.levelno < std_logging.WARNING:
      return False
    text = f"{os.path.basename(path)} {record.getMessage()}".lower()
    return not any(word in text for word in _NOISY_WARNINGS)


def quiet_dependency_logs() -> None:
  """Puts a `DependencyLogFilter` on absl's handler and TensorFlow's logger (once)."""
  targets = [logging.get_absl_handler(), std_logging.getLogger("tensorflow")]
  targets += std_logging.getLogger("tensorflow").handlers
  for target in targets:
    if not any(isinstance(f, DependencyLogFilter) for f in target.filters):
      target.addFilter(DependencyLogFilter())


def define_progress_flag() -> flags.FlagHolder:
  """`--progress=auto|on|off`, defined at module level by every binary:

    _PROGRESS = runtime.define_progress_flag()
    ...
    runtime.setup(progress=_PROGRESS.value)
  """
  return flags.DEFINE_enum("progress", "auto", list(progress_lib.MODES),
                           "Progress bars: auto (on a terminal only, never under CI), on or "
                           "off.")


def define_checkpoint_flag() -> flags.FlagHolder:
  """`--checkpoint`, the one rule of `workdir.resolve_checkpoint` (evaluate, export, visualize)."""
  return flags.DEFINE_string(
      "checkpoint", "auto", "auto (best/ when the run kept one, else the latest) | latest | "
      "best | a checkpoint path.")


def define_compute_flags() -> tuple[flags.FlagHolder, flags.FlagHolder]:
  """`--precision` and `--jit` (evaluate, export): overrides of the workdir's compute.json,
  named in the output (metrics.json's "compute", the export's assets.extra/compute.json)."""
  precision = flags.DEFINE_enum(
      "precision", None, ["on", "off"], "The backbone in mixed bfloat16 (on) or float32 (off), "
      "instead of the workdir's compute.json (what training used); named in the output.")
  jit = flags.DEFINE_enum("jit", None, ["on", "off"],
                          "The backbone under XLA or not, instead of the workdir's compute.json.")
  return precision, jit
