"""Shared pytest set-up: quiet TensorFlow, Keras on the TensorFlow backend, no network; the
order and grouping of the tests for pytest-xdist (`make test`: `--dist loadgroup`)."""

import os
import tempfile

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Tests must never download: TFDS and Keras would try the network for data and weights.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")
# data.precision=auto caches its measurement per machine; tests never touch the user's cache.
os.environ.setdefault("CNN_RNN_TF_PRECISION_CACHE",
                      os.path.join(tempfile.mkdtemp(prefix="cnn_rnn_tf_test_"), "precision.json"))

# The files whose tests take longest (`make test --durations`), started first so that the two
# test processes end together (longest first). Every other file follows in its usual order.
SLOWEST_FIRST = ("test_demo.py", "test_benchmarks.py", "test_docs.py", "test_train.py",
                 "test_export.py", "test_periodic.py", "test_wheel.py", "test_configs.py",
                 "test_evaluate_lib.py", "test_serving.py", "test_workdir.py")


def pytest_collection_modifyitems(config, items):
  """Each test in its file's xdist group (a file runs in one process, its module fixtures
  built once: as --dist loadfile), unless it names a group of its own (one per benchmark in
  test_benchmarks.py); the slowest files first."""
  del config
  rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
  for item in items:
    if not item.get_closest_marker("xdist_group"):
      item.add_marker(pytest.mark.xdist_group(os.path.basename(str(item.fspath))))
  items.sort(key=lambda item: rank.get(os.path.basename(str(item.fspath)), len(rank)))
