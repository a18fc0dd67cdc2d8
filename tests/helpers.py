"""Small builders shared by the tests (tiny configs, tiny heads, a killed training run)."""

import os
import signal
import struct
import time
import zlib

import ml_collections
import numpy as np

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import model as model_lib


def tiny_model_config(head="cnn_rnn", **overrides):
  """The model section of a config at toy size (d=8, 16 units, no dropout, no decay); the
  other fields are the defaults of `config_lib.default_config()`."""
  config = config_lib.default_config().model
  config.update(dict(
      head=head, backbone="small_cnn", backbone_weights=None, image_size=32,
      train_backbone=True, embedding_dim=8, lstm_units=16, joint_activation="relu",
      dropout=0.0, weight_decay=0.0))
  config.update(overrides)
  return config


def tiny_head(num_labels=4, feature_dim=6, seed=0, scale=3.0, head="cnn_rnn", **overrides):
  """A built head with random weights scaled up, so that probabilities are far from uniform.

  `overrides`: model config fields (e.g. dropout=0.1, side_loss_weight=1.0).
  """
  head = model_lib.build_head(tiny_model_config(head, **overrides), feature_dim, num_labels)
  rng = np.random.default_rng(seed)
  head.set_weights([rng.normal(0, scale / np.sqrt(max(w.shape[0], 1)), w.shape).astype("float32")
                    if w.ndim > 1 else rng.normal(0, 0.5, w.shape).astype("float32")
                    for w in head.get_weights()])
  return head


def load_config_file(path, arg=None):
  """`get_config(arg)` of a config file, loaded by path (as config_flags does)."""
  import importlib.util  # pylint: disable=g-import-not-at-top
  spec = importlib.util.spec_from_file_location("config_under_test", path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(arg) if arg is not None else module.get_config()


def png_chunk(kind, payload):
  return (struct.pack(">I", len(payload)) + kind + payload
          + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def big_gray_png(width, height):
  """A valid grayscale PNG of width x height, all zero: a small file (zlib), a huge image."""
  compressor = zlib.compressobj(9)
  row = b"\0" * (width + 1)  # filter byte + pixels
  data = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
  ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
  return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", data)
          + png_chunk(b"IEND", b""))


def kill_after_first_checkpoint(process, workdir: str, timeout: float) -> None:
  """SIGKILLs a training subprocess once `<workdir>/checkpoints/checkpoint` exists (asserts
  the run was still going: it must be killed mid-run, not after it ended)."""
  index = os.path.join(workdir, "checkpoints", "checkpoint")
  deadline = time.time() + timeout
  while not os.path.exists(index) and process.poll() is None and time.time() < deadline:
    time.sleep(0.05)
  assert process.poll() is None, "the first run ended before it could be killed:\n" + \
      process.stdout.read()
  process.send_signal(signal.SIGKILL)
  process.wait()
