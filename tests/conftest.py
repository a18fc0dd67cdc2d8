"""Shared pytest set-up: quiet TensorFlow, Keras on the TensorFlow backend, no network."""

import os
import tempfile

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
# Tests must never download: TFDS and Keras would try the network for data and weights.
os.environ.setdefault("TFDS_DISABLE_GCS", "1")
os.environ.setdefault("NO_GCE_CHECK", "true")
# data.precision=auto caches its measurement per machine; tests never touch the user's cache.
os.environ.setdefault("CNN_RNN_TF_PRECISION_CACHE",
                      os.path.join(tempfile.mkdtemp(prefix="cnn_rnn_tf_test_"), "precision.json"))
