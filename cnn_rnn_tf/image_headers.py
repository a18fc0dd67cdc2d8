"""Image containers walked in-graph: the bytes before a decode, for the size and orientation.

    from cnn_rnn_tf import image_headers
    head, raw = image_headers.head_bytes(image_bytes)      # the first HEADER_BYTES bytes
    width, height, pixels = image_headers.gif_frames(gif_bytes)   # largest frame, all frames
    width, height, tiff = image_headers.jpeg_segments(jpeg_bytes) # SOF size, Exif TIFF start
    orientation = image_headers.exif_orientation(jpeg_bytes)      # int32 1..8

`images.header_shape` and `images.decode_rgb` read them (the module docstring of images.py
says why each is needed); TF ops only, in tf.data, tf.function and SavedModels alike.
"""

from __future__ import annotations

import tensorflow as tf

HEADER_BYTES = 32


def head_bytes(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
  """The first HEADER_BYTES bytes, zero padded: (string [], int64 [HEADER_BYTES])."""
  head = tf.strings.substr(image_bytes, 0, HEADER_BYTES)
  head = tf.strings.substr(tf.strings.join([head, b"\0" * HEADER_BYTES]), 0, HEADER_BYTES)
  return head, tf.cast(tf.io.decode_raw(head, tf.uint8), tf.int64)  # [HEADER_BYTES]


# GIF: TensorFlow's decoder (giflib's DGifSlurp) reads EVERY frame, holding width * height
# bytes per frame as its image descriptor says, then draws one RGB canvas of the largest frame
# width x height (expand_animations=False). The logical-screen size in the header bounds none
# of this, so the GIF branch walks the blocks: _GIF_WINDOW bytes per loop step, the chain of
# (sub-)blocks inside a window followed by pointer doubling (log2 steps of tf.gather).
_GIF_WINDOW = 1 << 15
_GIF_MARGIN = 16  # bytes read past a window: the fields of an image descriptor starting in it


def _gif_table_size(packed: tf.Tensor) -> tf.Tensor:
  """Bytes of the colour table a GIF packed-fields byte announces (flag 0x80, size bits 0-2)."""
  size = 3 * tf.bitwise.left_shift(tf.ones_like(packed) * 2, tf.bitwise.bitwise_and(packed, 7))
  return tf.where(tf.bitwise.bitwise_and(packed, 0x80) > 0, size, tf.zeros_like(packed))


def gif_frames(image_bytes: tf.Tensor) -> tf.Tensor:
  """What TensorFlow's GIF decoder allocates for `image_bytes`, from every image descriptor.

  Returns int64 [3]: (largest frame height, largest frame width, sum of the frames' height *
  width). The walk stops where giflib stops reading: the trailer, an unknown block or the end
  of the data. Time is linear in the size of the data; memory is a few windows.
  """
  image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
  length = tf.cast(tf.strings.length(image_bytes), tf.int64)
  _, raw = head_bytes(image_bytes)
  start = tf.minimum(13 + _gif_table_size(raw[10]), length)  # after the global colour table
  # Every walk node is a "size byte": a virtual sub-block terminator goes before the 1st block.
  data = tf.strings.join(["\0", tf.strings.substr(image_bytes, start, length)])
  data_length = tf.cast(tf.strings.length(data), tf.int64)
  window = tf.cast(tf.minimum(data_length, _GIF_WINDOW), tf.int32)
  read = window + _GIF_MARGIN
  zeros = tf.strings.substr(tf.constant(b"\0" * (_GIF_WINDOW + _GIF_MARGIN)), 0, read)
  node = tf.range(window)  # [W]

  def step(pos, done, height, width, total):
    del done
    chunk = tf.strings.substr(data, tf.minimum(pos, data_length), tf.cast(read, tf.int64))
    chunk = tf.strings.substr(tf.strings.join([chunk, zeros]), 0, read)
    b = tf.cast(tf.io.decode_raw(chunk, tf.uint8), tf.int32)  # [W + margin]
    at = lambda k: b[k:window + k]  # [W]: the byte k after each node
    end = tf.equal(at(0), 0)  # a chain's terminator: a block follows
    ext, image = tf.equal(at(1), 0x21), tf.equal(at(1), 0x2C)
    stop = tf.logical_and(end, tf.logical_not(tf.logical_or(ext, image)))  # trailer, junk
    # extension: 0x21, label, sub-blocks; image: 0x2C, 9 bytes, colour table, LZW size, ...
    nxt = tf.where(end, tf.where(ext, node + 3, node + 12 + _gif_table_size(at(10))),
                   node + 1 + at(0))  # [W]
    image = tf.logical_and(end, image)
    w = tf.where(image, at(6) + 256 * at(7), 0)  # [W]
    h = tf.where(image, at(8) + 256 * at(9), 0)
    pixels = tf.cast(w, tf.int64) * tf.cast(h, tf.int64)
    fixed = tf.logical_or(stop, nxt >= window)  # the chain ends or leaves the window here
    jump = tf.where(fixed, node, nxt)
    max_w, max_h, sum_p = (tf.where(fixed, tf.zeros_like(x), x) for x in (w, h, pixels))
    for _ in range(_GIF_WINDOW.bit_length() - 2):  # chains have <= W / 2 nodes
      max_w = tf.maximum(max_w, tf.gather(max_w, jump))
      max_h = tf.maximum(max_h, tf.gather(max_h, jump))
      sum_p = sum_p + tf.gather(sum_p, jump)
      jump = tf.gather(jump, jump)
    last = jump[0]  # the chain from node 0 ends (stop) or leaves the window at `last`
    return (pos + tf.cast(nxt[last], tf.int64), stop[last],
            tf.maximum(height, tf.cast(tf.maximum(max_h[0], h[last]), tf.int64)),
            tf.maximum(width, tf.cast(tf.maximum(max_w[0], w[last]), tf.int64)),
            total + sum_p[0] + pixels[last])

  zero = tf.constant(0, tf.int64)
  _, _, height, width, total = tf.while_loop(
      lambda pos, done, *_: tf.logical_not(done), step,
      (zero, tf.constant(False), zero, zero, zero), parallel_iterations=1)
  return tf.stack([height, width, total])


# JPEG: size and EXIF orientation from the segments before the frame header (SOF), at most
# _JPEG_SEGMENTS of them. The orientation (tag 0x0112 among the first _EXIF_ENTRIES entries of
# IFD0 of the APP1 "Exif" segment) is applied as viewers do; none (or not 1..8) means upright.
_JPEG_SEGMENTS, _EXIF_ENTRIES, _ORIENTATION_TAG = 1000, 32, 0x0112


def _bytes_at(data: tf.Tensor, pos: tf.Tensor, size: int) -> tf.Tensor:
  """int32 [size]: the bytes of `data` from `pos` on, zero padded past the end."""
  pos = tf.clip_by_value(tf.cast(pos, tf.int64), 0, tf.cast(tf.strings.length(data), tf.int64))
  chunk = tf.strings.substr(data, pos, size)
  chunk = tf.strings.substr(tf.strings.join([chunk, b"\0" * size]), 0, size)
  return tf.reshape(tf.cast(tf.io.decode_raw(chunk, tf.uint8), tf.int32), [size])


def jpeg_segments(jpeg_bytes) -> tf.Tensor:
  """int64 [3]: (height, width) from a JPEG's frame header (SOF), and where the TIFF header of
  its APP1 "Exif" segment starts (-1: none), walking the segments up to the scan (SOS).

  (0, 0) unless the segments up to and including the SOS header are all present (as
  libjpeg's header read needs), with a SOF among them, within _JPEG_SEGMENTS segments.
  Unlike tf.image.extract_jpeg_shape, a cut or corrupt file raises nothing here, so that the
  error can name the image (`header_shape`, `decode_batch`).
  """
  data = tf.convert_to_tensor(jpeg_bytes, tf.string)
  length = tf.cast(tf.strings.length(data), tf.int64)

  def step(n, pos, tiff, height, width, scan):
    b = tf.cast(_bytes_at(data, pos, 10), tf.int64)  # FF, marker, length (big-endian), ...
    marker = tf.where(tf.equal(b[0], 0xFF), b[1], -1)
    sof = tf.logical_and(tf.logical_and(marker >= 0xC0, marker <= 0xCF),
                         tf.logical_not(tf.reduce_any(tf.equal(marker, [0xC4, 0xC8, 0xCC]))))
    sof = tf.logical_and(sof, tf.equal(height, 0))  # the first frame header
    alone = tf.logical_or(tf.logical_or(tf.equal(marker, 0x01), tf.equal(marker, 0xFF)),
                          tf.logical_and(marker >= 0xD0, marker <= 0xD8))  # no length
    exif = tf.logical_and(tf.logical_and(tf.equal(marker, 0xE1), tiff < 0), tf.equal(
        tf.strings.substr(data, tf.minimum(pos + 4, length), 6), b"Exif\0\0"))
    one, two = tf.constant(1, tf.int64), tf.constant(2, tf.int64)
    jump = tf.where(tf.equal(marker, 0xFF), one, tf.where(alone, two, 2 + 256 * b[2] + b[3]))
    at_scan = tf.logical_and(tf.equal(marker, 0xDA), pos + jump <= length)  # SOS complete
    stop = tf.logical_or(marker < 0, tf.equal(marker, 0xDA))
    return (tf.where(stop, tf.constant(_JPEG_SEGMENTS, tf.int64), n + 1), pos + jump,
            tf.where(exif, pos + 10, tiff), tf.where(sof, 256 * b[5] + b[6], height),
            tf.where(sof, 256 * b[7] + b[8], width), tf.logical_or(scan, at_scan))

  zero = tf.constant(0, tf.int64)
  _, _, tiff, height, width, scan = tf.while_loop(
      lambda n, pos, *_: tf.logical_and(n < _JPEG_SEGMENTS, pos < length), step,
      (zero, tf.constant(2, tf.int64), tf.constant(-1, tf.int64), zero, zero,
       tf.constant(False)), parallel_iterations=1)
  return tf.stack([tf.where(scan, height, zero), tf.where(scan, width, zero), tiff])


def exif_orientation(jpeg_bytes, tiff=None) -> tf.Tensor:
  """int32 []: the EXIF orientation (1..8) of JPEG bytes; 1 when there is none.

  1 upright, 2 mirrored, 3 upside down, 4 flipped, 5 transposed, 6 to be turned 90 degrees
  clockwise (a phone held upright), 7 transversed, 8 to be turned 90 degrees anticlockwise.
  `tiff`: where the Exif TIFF header starts (`jpeg_segments(jpeg_bytes)[2]`), if known.
  """
  data = tf.convert_to_tensor(jpeg_bytes, tf.string)
  tiff = jpeg_segments(data)[2] if tiff is None else tf.cast(tiff, tf.int64)
  head = _bytes_at(data, tiff, 8)
  little = tf.logical_and(tf.equal(head[0], 0x49), tf.equal(head[1], 0x49))  # "II", else "MM"

  def number(lo_first, hi_first):  # a 2-byte unsigned int in the TIFF's byte order
    return tf.where(little, lo_first + 256 * hi_first, 256 * lo_first + hi_first)

  ifd = number(head[4], head[5]) + 65536 * number(head[6], head[7])  # offset < 64 KB segment
  ifd = tf.where(little, ifd, 65536 * number(head[4], head[5]) + number(head[6], head[7]))
  count = number(*tf.unstack(_bytes_at(data, tiff + tf.cast(ifd, tf.int64), 2)))
  entries = tf.reshape(_bytes_at(data, tiff + tf.cast(ifd, tf.int64) + 2, 12 * _EXIF_ENTRIES),
                       [_EXIF_ENTRIES, 12])  # tag, type, count, value (a SHORT: first 2)
  found = tf.logical_and(tf.equal(number(entries[:, 0], entries[:, 1]), _ORIENTATION_TAG),
                         tf.range(_EXIF_ENTRIES) < count)
  values = tf.boolean_mask(number(entries[:, 8], entries[:, 9]), found)
  value = tf.concat([values, [1]], 0)[0]
  ok = tf.logical_and(tiff >= 0, tf.logical_and(value >= 1, value <= 8))
  return tf.where(ok, value, 1)
