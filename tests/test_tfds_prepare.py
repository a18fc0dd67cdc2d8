"""cnn_rnn_tf/data/tfds_prepare.py: preparation by several processes at once."""

import subprocess
import sys
import time

import pytest


_PREPARE_SCRIPT = """
import os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
from cnn_rnn_tf import config_lib, data
config = config_lib.default_config().data
config.update(dict(source="synthetic_scenes", synthetic_config="small", data_dir=sys.argv[1]))
open(sys.argv[2], "w").close()            # ready
while not os.path.exists(sys.argv[3]):    # wait for the other worker: start together
  time.sleep(0.01)
source = data.get_source(config)
print("examples", source.num_examples("train"))
"""


@pytest.mark.slow
def test_two_workers_prepare_an_empty_shared_data_dir_at_once(tmp_path):
  # Issue 13 item 8: both found the data missing; one crashed with FileExistsError.
  data_dir, go = tmp_path / "tfds", tmp_path / "go"
  procs = [subprocess.Popen([sys.executable, "-c", _PREPARE_SCRIPT, str(data_dir),
                             str(tmp_path / f"ready{i}"), str(go)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
           for i in range(2)]
  deadline = time.monotonic() + 300
  while not all((tmp_path / f"ready{i}").exists() for i in range(2)):
    assert time.monotonic() < deadline and all(p.poll() is None for p in procs), [
        p.communicate()[0] for p in procs if p.poll() is not None]
    time.sleep(0.05)
  go.touch()
  outputs = [p.communicate(timeout=300)[0] for p in procs]
  assert [p.returncode for p in procs] == [0, 0], outputs
  assert all("examples 300" in out for out in outputs), outputs
  assert list(data_dir.glob(".synthetic_scenes-small-*.prepare.lock"))
