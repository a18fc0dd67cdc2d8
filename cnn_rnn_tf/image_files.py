"""Image files on the Python side (predict, visualize, serving, CSV checks): errors name the file.

    from cnn_rnn_tf import image_files
    array = image_files.load_rgb("photos/cat.jpg")    # np.uint8 [H, W, 3]
    info = image_files.read_header(data)              # ImageHeader(format, height, width)
    data = image_files.read_file(path)                # bytes; ImageError naming the file

The checks and the decode are `images.py`'s TF ops (`header_shape`, `decode_rgb`), run
eagerly, so a file is refused here exactly as in training and serving. The functions raise
`ImageError` (a ValueError) naming the file; `error_message` takes the useful part of a TF
error and cuts it (`cut`) to MAX_MESSAGE_CHARS (300) characters.
"""

from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np
import tensorflow as tf

from cnn_rnn_tf import images


class ImageError(ValueError):
  """An image file that cannot be used; the message names the file and what was expected."""


class ImageHeader(NamedTuple):
  format: str  # a key of images.FORMATS
  height: int
  width: int


def read_file(path) -> bytes:
  """The bytes of a file (local or any tf.io.gfile path); ImageError naming it if unreadable."""
  path = os.fspath(path)
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  except (tf.errors.OpError, OSError) as e:
    raise ImageError(f"{path}: cannot read the file ({error_message(e)}).") from e


def sniff_format(data: bytes) -> str | None:
  """The images.FORMATS key `data` starts like, or None."""
  for fmt, alternatives in images.FORMATS.items():
    if any(all(data[off:off + len(magic)] == magic for off, magic in parts)
           for parts in alternatives):
      return fmt
  return None


def read_header(data: bytes, *, max_pixels: int | None = images.DEFAULT_MAX_PIXELS,
                name: str = "image") -> ImageHeader:
  """Format and size of encoded image bytes from the header (no decode); ImageError if bad.

  The size as stored (a GIF: its largest frame); a JPEG with EXIF orientation 5-8 decodes
  to width x height (`images.decode_rgb` turns it).
  """
  try:
    fmt, hw = images.header_shape(tf.constant(data), max_pixels=max_pixels, name=name)
  except tf.errors.OpError as e:
    raise ImageError(error_message(e)) from e
  return ImageHeader(images.FORMAT_NAMES[int(fmt)], int(hw[0]), int(hw[1]))


def load_rgb(path, *, max_pixels: int | None = images.DEFAULT_MAX_PIXELS) -> np.ndarray:
  """An image file -> np.uint8 [H, W, 3]; ImageError naming the file if it cannot be used."""
  path = os.fspath(path)
  data = read_file(path)
  try:
    return images.decode_rgb(tf.constant(data), max_pixels=max_pixels, name=path).numpy()
  except tf.errors.OpError as e:
    message = error_message(e)
    if not message.startswith(path):
      message = f"{path}: cannot decode ({message}); expected {images.EXPECTED}"
    raise ImageError(message) from e


MAX_MESSAGE_CHARS = 300  # an error message echoing input is cut to this


def error_message(error: Exception) -> str:
  """The useful part of a TF error message (no op names, no graph noise): names the image.
  At most MAX_MESSAGE_CHARS characters (a message may echo the input)."""
  text = getattr(error, "message", None) or str(error)
  text = text.split("[Op:")[0].split("\n\t [[")[0]
  text = re.sub(r"^(\{\{[^}]*\}\}\s*)+", "", text.strip())  # {{function_node ...}}
  if "assertion failed:" in text:
    text = text.split("assertion failed:", 1)[1].strip()
    if text.startswith("[") and text.endswith("]"):
      text = text[1:-1]
  text = text.split("\n\t [[")[0].split("\n")[0].strip()
  return cut(text)


def cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
  """`text`, or its first `limit` characters and how many more there were."""
  return text if len(text) <= limit else f"{text[:limit]}... ({len(text) - limit} more chars)"
