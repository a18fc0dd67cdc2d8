"""A trained-looking workdir without training, and small encoded images, for export tests.

    workdir = export_fixtures.make_workdir(tmp_path / "run")               # CNN-RNN head
    workdir = export_fixtures.make_workdir(tmp_path / "bce", head="bce")   # BCE baseline
    images = export_fixtures.encoded_images()    # {name: bytes}: PNG, JPEG, GIF, BMP, ...

The workdir holds what `cnn_rnn_tf.train` leaves behind: `config.json` (configs/demo.py's
"runlocal" variant: small_cnn at 32x32, the backbone trained, so it is checkpointed),
`labels.txt` and `checkpoints/`. The weights are random, scaled up so that the softmax is
far from uniform and beam search returns paths of several lengths.
"""

from __future__ import annotations

import functools
import io
import os
import pathlib
import struct
import zlib

import numpy as np
import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib
from helpers import load_config_file

LABELS = ("person", "dog", "car", "tree", "boat", "bird")
_DEMO_CONFIG = pathlib.Path(__file__).resolve().parent.parent / "configs" / "demo.py"


def demo_config(head: str = "cnn_rnn"):
  """configs/demo.py's get_config("runlocal"), with `head` set."""
  config = load_config_file(_DEMO_CONFIG, "runlocal")
  config.model.head = head
  return config


def scale_weights(model, seed: int, scale: float) -> None:
  """Random normal weights with std scale / sqrt(fan_in): peaked softmaxes, varied paths."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    w = v.numpy()
    if "moving_variance" in v.path:  # batch norm statistics must stay positive
      new = rng.uniform(0.5, 1.5, w.shape)
    else:
      fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 1
      std = scale / np.sqrt(max(fan_in, 1)) if w.ndim > 1 else 0.3
      new = rng.normal(0.0, std, w.shape)
    v.assign(new.astype(w.dtype))


def make_workdir(path, head: str = "cnn_rnn", labels=LABELS, seed: int = 0,
                 backbone_scale: float = 3.0, head_scale: float = 2.0, **model) -> str:
  """Writes config.json, labels.txt and a checkpoint into `path`; returns it as a str.

  `model`: config.model fields to override, e.g. backbone="resnet50", image_size=32.
  """
  workdir = os.fspath(path)
  config = demo_config(head)
  config.model.update(model)
  workdir_lib.save_config(config, workdir)
  vocab = vocab_lib.LabelVocab(labels)
  vocab.save(os.path.join(workdir, "labels.txt"))
  backbone, head_model = workdir_lib.build_backbone_and_head(config, vocab.num_labels)  # built
  # These scales and seed give paths of 1 to 4 labels that differ between images (checked
  # by test_export; a new backbone architecture may need other scales).
  scale_weights(backbone, seed, backbone_scale)
  scale_weights(head_model, seed + 1, head_scale)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head_model)
  manager = tf.train.CheckpointManager(checkpoint, os.path.join(workdir, "checkpoints"),
                                       max_to_keep=1)
  manager.save(checkpoint_number=config.train.num_steps)
  return workdir


def random_pixels(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
  """uint8 [height, width, channels]: smooth colour gradients plus noise (not constant)."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:height, 0:width]
  base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)),
                   ((x + y) * 97) % 256, 255 - x % 128], axis=-1)[..., :channels]
  noise = rng.integers(0, 64, size=(height, width, channels))
  return np.clip(base + noise + seed * 31, 0, 255).astype(np.uint8)


def large_image(height: int = 2400, width: int = 3200) -> bytes:
  """A JPEG of height x width (7.7 megapixels by default): a small random patch, tiled."""
  patch = random_pixels(60, 80, 3, seed=9)
  pixels = np.tile(patch, (-(-height // 60), -(-width // 80), 1))[:height, :width]
  return encode(np.ascontiguousarray(pixels), "jpeg")


@functools.lru_cache(maxsize=2)
def huge_png(width: int = 20000, height: int = 20000, header_only: bool = False) -> bytes:
  """A valid RGB PNG of width x height, all black: about 1 MB on disk, 1.2 GB decoded at
  20000 x 20000. Written row by row (zlib), never held decoded here. header_only: the same
  header with one row of data (cheap to make; a decoder would fail on it)."""
  compressor = zlib.compressobj(1)
  row = b"\0" * (3 * width + 1)  # filter byte + RGB pixels
  rows = 1 if header_only else height
  data = b"".join(compressor.compress(row) for _ in range(rows)) + compressor.flush()

  def chunk(kind, payload):
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))

  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
  return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data)
          + chunk(b"IEND", b""))


def encode(pixels: np.ndarray, fmt: str) -> bytes:
  """uint8 [H, W, C] -> PNG / JPEG / GIF / BMP bytes."""
  if fmt == "png":
    return tf.io.encode_png(pixels).numpy()
  if fmt == "jpeg":
    return tf.io.encode_jpeg(pixels, quality=95).numpy()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
  out = io.BytesIO()
  image.save(out, format={"gif": "GIF", "bmp": "BMP"}[fmt])
  return out.getvalue()


def encoded_images() -> dict:
  """A few images of different formats, sizes and channel counts, by a short name."""
  return {
      "rgb.png": encode(random_pixels(40, 56, 3, seed=1), "png"),
      "rgb.jpg": encode(random_pixels(33, 20, 3, seed=2), "jpeg"),
      "gray.png": encode(random_pixels(25, 25, 1, seed=3), "png"),
      "rgba.png": encode(random_pixels(17, 31, 4, seed=4), "png"),
      "pal.gif": encode(random_pixels(30, 30, 3, seed=5), "gif"),
      "rgb.bmp": encode(random_pixels(12, 19, 3, seed=6), "bmp"),
      "tiny.png": encode(random_pixels(1, 1, 3, seed=7), "png"),
  }


def write_images(directory, images: dict) -> list:
  """Writes {name: bytes} into `directory`; returns the paths in the dict's order."""
  directory = pathlib.Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  paths = []
  for name, data in images.items():
    (directory / name).write_bytes(data)
    paths.append(str(directory / name))
  return paths


def graph_ops(export_dir) -> set:
  """The op types of a SavedModel's graphs and functions (not the function-call ops)."""
  from tensorflow.core.protobuf import saved_model_pb2  # pylint: disable=g-import-not-at-top
  model = saved_model_pb2.SavedModel.FromString(
      pathlib.Path(export_dir, "saved_model.pb").read_bytes())
  ops = set()
  for meta_graph in model.meta_graphs:
    library = meta_graph.graph_def.library
    functions = {f.signature.name for f in library.function}
    nodes = list(meta_graph.graph_def.node)
    nodes += [n for f in library.function for n in f.node_def]
    ops |= {n.op for n in nodes if n.op not in functions}
  return ops
