"""Process set-up of the binaries (cnn_rnn_tf.runtime): what a quiet start hides and shows.

Each case runs in a fresh interpreter: TensorFlow's C++ log settings and its once-per-process
notices are fixed at its import.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DT_BOOL_LINE = "oneDNN supports DT_BOOL only on platforms with AVX-512"

# runtime.setup() as a binary calls it, then the first graph run of a bool op (a training
# step does this); prints the C++ log level TensorFlow was left with.
_SCRIPT = """
import os, sys
from cnn_rnn_tf import runtime
if sys.argv[1] == "fake":  # stands for any machine's once-only notice, printed by the op
  real = runtime._once_only_ops
  def ops():
    os.write(2, b"E0000 util.cc:131] FAKE once-only notice\\n")
    real()
  runtime._once_only_ops = ops
runtime.setup(cpu_devices=int(sys.argv[2]))
import tensorflow as tf
tf.function(lambda x: tf.transpose(x > 0))(tf.ones([2, 3]))
print("TF_CPP_MIN_LOG_LEVEL", os.environ.get("TF_CPP_MIN_LOG_LEVEL"), len(tf.config.list_logical_devices("CPU")))
"""


def _run(mode, verbose, cpu_devices=0):
  env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
  env.update(PYTHONPATH=ROOT, CNN_RNN_TF_VERBOSE="1" if verbose else "0")
  result = subprocess.run([sys.executable, "-c", _SCRIPT, mode, str(cpu_devices)], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  return result


@pytest.mark.slow  # two TensorFlow imports in subprocesses
def test_the_onednn_dt_bool_line_is_hidden_by_default_and_shown_when_verbose():
  quiet, loud = _run("real", verbose=False), _run("real", verbose=True)
  assert DT_BOOL_LINE not in quiet.stderr, quiet.stderr[-3000:]
  # C++ errors after the start stay visible (level 2 hides only INFO and WARNING).
  assert "TF_CPP_MIN_LOG_LEVEL 2 1" in quiet.stdout
  if DT_BOOL_LINE not in loud.stderr:  # a CPU whose oneDNN takes bool: nothing to hide
    assert "oneDNN" not in quiet.stderr
  else:
    assert loud.stderr.count(DT_BOOL_LINE) == 1


@pytest.mark.slow
def test_what_the_once_only_ops_print_is_hidden_by_default_and_they_run_after_the_cpu_split():
  """The mechanism on any CPU: the notice the warm-up op prints (here a fake one) is not shown
  at default verbosity, and the warm-up does not stop --cpu_devices (which must precede ops)."""
  quiet = _run("fake", verbose=False, cpu_devices=2)
  assert "FAKE once-only notice" not in quiet.stderr, quiet.stderr[-3000:]
  assert "TF_CPP_MIN_LOG_LEVEL 2 2" in quiet.stdout
  loud = _run("fake", verbose=True)
  assert "FAKE" not in loud.stderr  # verbose: no warm-up, the notices print where they occur
