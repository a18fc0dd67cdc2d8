"""Images: the one place that reads image files, checks their format and size, decodes and
resizes.

    from cnn_rnn_tf import images
    image = images.decode_rgb(image_bytes, name="image_bytes[3]")   # uint8 [H, W, 3]
    batch = images.resize(image, 224)                 # float32 [224, 224, 3] in 0..255
    batch = images.decode_batch(image_bytes, 224)     # string [B] -> float32 [B, 224, 224, 3]

The Python side (files, `load_rgb`, `read_header`, `ImageError`, `error_message`) is
`image_files.py`, on top of these ops.

Used by the data pipeline and the CSV checks (cnn_rnn_tf/data), the export's
`serving_default`, the serving format, predict and visualize: training and serving see the
same pixels because they run the same two functions, `decode_rgb` then `resize`.

Formats (one table, `FORMATS`, checked by magic bytes before anything is decoded): JPEG, PNG,
GIF (first frame), BMP and still WebP (lossy `VP8 `, lossless `VP8L`, extended `VP8X`).
Animated WebP is refused: TensorFlow 2.21's WebP decoder corrupts the heap on it (a `double
free` abort seen here), so it is refused by its header flag, before any decode. Grayscale,
gray+alpha, RGBA and palette images become RGB (alpha dropped, not composited).

Size limit: `max_pixels` (config `data.max_image_pixels`, default `DEFAULT_MAX_PIXELS` = 40
megapixels) is checked BEFORE the full decode, on the size the decoder will allocate: JPEG
from its frame header (`image_headers.jpeg_segments`: the segments before SOF, walked
in-graph), PNG, BMP and WebP from the fixed header fields of `SIZE_FIELDS` (the first 32
bytes: `tf.strings.substr` + `tf.io.decode_raw`). A 20000x20000 PNG (1 MB on disk, 1.2 GB
decoded) is thus refused in microseconds. GIF: TensorFlow's decoder (giflib) reads EVERY
frame, width x height bytes each as its image descriptor says, then draws the largest frame
as RGB; the logical-screen size in the header bounds none of it (a 20000x20000 frame under a
header patched to 10x10 decoded, 1.6 GB). So `image_headers.gif_frames` walks all blocks
in-graph (linear time, pointer doubling inside 32 KB windows) and a GIF is refused when its
largest frame is over max_pixels or 3 x largest + all frames' pixels is over 3 x max_pixels
bytes. Animated PNG: TensorFlow decodes the default image only (the IHDR size). The decoded
uint8 image is resized straight to the target size (`tf.image.resize` on uint8 gives float32
at the target size): no full-size float copy. Memory per image is bounded by max_pixels * 3
bytes (120 MB at the default).

EXIF orientation: a JPEG's Orientation tag (APP1 "Exif", IFD0 tag 0x0112, values 1-8) is
applied as image viewers do (`image_headers.exif_orientation`, `orient`: 6 = turn 90 degrees
clockwise), in `decode_rgb`, hence in training, predict, visualize and every serving
signature alike. A missing tag or a value outside 1-8 means upright; other formats' EXIF is
not read.

Errors: TF ops raise `tf.errors.InvalidArgumentError` whose message starts with `name` (e.g.
"image_bytes[3]" or a file path) and says what was expected or the size found; a body the
decoder refuses is named by `decode_batch` too ("image_bytes[1]: its png data does not
decode"); the Python functions of `image_files` raise `ImageError` naming the file.
"""

from __future__ import annotations

import tensorflow as tf

from cnn_rnn_tf import image_headers

DEFAULT_MAX_PIXELS = 40_000_000

# name -> alternatives; an alternative matches when every (offset, bytes) part matches.
# The ONE magic-byte table of the package (data checks, pipeline, export, serving).
FORMATS: dict[str, tuple[tuple[tuple[int, bytes], ...], ...]] = {
    "jpeg": (((0, b"\xff\xd8\xff"),),),
    "png": (((0, b"\x89PNG\r\n\x1a\n"),),),
    "gif": (((0, b"GIF87a"),), ((0, b"GIF89a"),)),
    "bmp": (((0, b"BM"),),),
    "webp_vp8": (((0, b"RIFF"), (8, b"WEBPVP8 ")),),
    "webp_vp8l": (((0, b"RIFF"), (8, b"WEBPVP8L")),),
    "webp_vp8x": (((0, b"RIFF"), (8, b"WEBPVP8X")),),
}
FORMAT_NAMES = tuple(FORMATS)
EXPECTED = "a JPEG, PNG, GIF, BMP or still WebP image"
# Extensions of the formats above (folders of images: predict, CSV builders).
EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp")

# Width and height in the header: (offset, num_bytes, byteorder, shift, mask, add, signed).
# value = ((int at offset) >> shift & mask) + add; signed: negative values taken absolute
# (a BMP stored top-down has a negative height). JPEG has no fixed place: extract_jpeg_shape;
# GIF's header (the logical screen) does not bound what is decoded: gif_frames.
_Field = tuple[int, int, str, int, int, int, bool]
SIZE_FIELDS: dict[str, tuple[_Field, _Field] | None] = {  # (width, height)
    "jpeg": None,
    "png": ((16, 4, "big", 0, 0xFFFFFFFF, 0, False), (20, 4, "big", 0, 0xFFFFFFFF, 0, False)),
    "gif": None,  # every frame's image descriptor: gif_frames
    "bmp": ((18, 4, "little", 0, 0xFFFFFFFF, 0, True), (22, 4, "little", 0, 0xFFFFFFFF, 0, True)),
    "webp_vp8": ((26, 2, "little", 0, 0x3FFF, 0, False), (28, 2, "little", 0, 0x3FFF, 0, False)),
    "webp_vp8l": ((21, 4, "little", 0, 0x3FFF, 1, False), (21, 4, "little", 14, 0x3FFF, 1, False)),
    "webp_vp8x": ((24, 3, "little", 0, 0xFFFFFF, 1, False),
                  (27, 3, "little", 0, 0xFFFFFF, 1, False)),
}
# VP8X flags byte and its animation bit: animated WebP is refused (see the module docstring).
_WEBP_FLAGS_OFFSET, _WEBP_ANIMATION_BIT = 20, 0x02
_PARALLEL_DECODES = 10  # decode_batch: images decoded at once (memory: x max_pixels x 3 B)


# ---------------------------------------------------------------------------------------------
# TF ops (tf.data, tf.function, SavedModel).
# ---------------------------------------------------------------------------------------------


def _format_index(head: tf.Tensor) -> tf.Tensor:
  """int32 []: the index into FORMAT_NAMES of the format `head` starts like, or -1."""
  matches = []
  for alternatives in FORMATS.values():
    alt = [tf.reduce_all(tf.stack([tf.equal(tf.strings.substr(head, off, len(magic)), magic)
                                   for off, magic in parts]))
           for parts in alternatives]
    matches.append(tf.reduce_any(tf.stack(alt)))
  found = tf.where(tf.stack(matches))[:, 0]  # [<= 1]
  return tf.cast(tf.concat([found, [-1]], axis=0)[0], tf.int32)


def _field_value(raw: tf.Tensor, field: _Field) -> tf.Tensor:
  offset, size, order, shift, mask, add, signed = field
  value = tf.constant(0, tf.int64)
  for i in range(size):
    byte = raw[offset + (size - 1 - i if order == "big" else i)]
    value += byte * (1 << (8 * i))
  if signed:
    value = tf.where(value >= (1 << (8 * size - 1)), (1 << (8 * size)) - value, value)
  return tf.bitwise.bitwise_and(tf.bitwise.right_shift(value, shift), mask) + add


def _as_name(name) -> tf.Tensor:
  return tf.convert_to_tensor(name, tf.string)


def _check(condition: tf.Tensor, message: tf.Tensor) -> tf.Operation | None:
  """InvalidArgumentError(message) unless `condition`: raised now (eager) or by the op (graph)."""
  if tf.executing_eagerly():
    if not bool(condition):
      raise tf.errors.InvalidArgumentError(None, None, message.numpy().decode("utf-8", "replace"))
    return None
  return tf.debugging.Assert(condition, [message], summarize=1)


def orient(image: tf.Tensor, orientation) -> tf.Tensor:
  """[H, W, C] as EXIF `orientation` (int32 [], 1..8) says to show it (viewers' convention)."""
  image = tf.convert_to_tensor(image)
  turned = lambda: tf.transpose(image, [1, 0, 2])
  return tf.switch_case(tf.clip_by_value(tf.cast(orientation, tf.int32), 1, 8) - 1, [
      lambda: image,
      lambda: image[:, ::-1],
      lambda: image[::-1, ::-1],
      lambda: image[::-1],
      turned,
      lambda: turned()[:, ::-1],  # 90 degrees clockwise
      lambda: turned()[::-1, ::-1],
      lambda: turned()[::-1],  # 90 degrees anticlockwise
  ])

def header_shape(image_bytes: tf.Tensor, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 name="image") -> tuple[tf.Tensor, tf.Tensor]:
  """Checks format and header size of one encoded image, without decoding it.

  Args:
    image_bytes: string [] (an encoded image).
    max_pixels: the most height * width allowed; None: no limit.
    name: str or string [] that errors start with (an index like "image_bytes[3]", a path).

  Returns:
    (format index into FORMAT_NAMES int32 [], [height, width] int64 [2]).

  Raises:
    tf.errors.InvalidArgumentError: unknown format, animated WebP, or too many pixels.
  """
  image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
  name = _as_name(name)
  head, raw = image_headers.head_bytes(image_bytes)
  fmt = _format_index(head)
  first = tf.strings.reduce_join(tf.strings.as_string(raw[:8]), separator=" ")
  checks = [_check(fmt >= 0, tf.strings.join([
      name, ": not ", EXPECTED, " (unknown magic bytes; first bytes: ", first, ")"]))]
  webp_x = FORMAT_NAMES.index("webp_vp8x")
  animated = tf.logical_and(
      tf.equal(fmt, webp_x),
      tf.not_equal(tf.bitwise.bitwise_and(raw[_WEBP_FLAGS_OFFSET], _WEBP_ANIMATION_BIT), 0))
  checks.append(_check(tf.logical_not(animated), tf.strings.join([
      name, ": animated WebP is not supported; expected ", EXPECTED])))

  def fixed(fields):  # -> [3]: height, width, 0
    return lambda: tf.stack([_field_value(raw, fields[1]), _field_value(raw, fields[0]),
                             tf.constant(0, tf.int64)])

  readers = {"jpeg": lambda: tf.concat([image_headers.jpeg_segments(image_bytes)[:2], [0]], 0),
             "gif": lambda: image_headers.gif_frames(image_bytes)}
  branches = [readers[f] if SIZE_FIELDS[f] is None else fixed(SIZE_FIELDS[f])
              for f in FORMAT_NAMES]
  branches.append(lambda: tf.zeros([3], tf.int64))  # unknown format (already refused)
  with tf.control_dependencies([c for c in checks if c is not None]):
    index = tf.where(fmt < 0, len(FORMAT_NAMES), fmt)
    shape = tf.switch_case(index, branches)  # [3]: height, width, bytes beside the canvas
  hw = shape[:2]
  if max_pixels is not None:
    pixels = hw[0] * hw[1]
    held = 3 * pixels + shape[2]  # bytes the decoder holds: the RGB canvas, GIF frames
    size = tf.strings.join([tf.strings.as_string(hw[1]), "x", tf.strings.as_string(hw[0])])
    checks = [
        _check(tf.reduce_all(hw > 0), tf.strings.join([
            name, ": header says ", size, " pixels (width x height); expected a positive "
            "size (a file cut short before its size, or corrupt)"])),
        _check(pixels <= int(max_pixels), tf.strings.join([
            name, ": image of ", size, " = ", tf.strings.as_string(pixels),
            f" pixels (width x height, from its header) is over the limit of {int(max_pixels)}"
            " pixels (data.max_image_pixels); refused before decoding"])),
        _check(held <= 3 * int(max_pixels), tf.strings.join([
            name, ": GIF frames of ", tf.strings.as_string(shape[2]), " pixels in all (from "
            "every frame's image descriptor), decoded with a canvas of ", size, ": ",
            tf.strings.as_string(held), f" bytes, over the limit of 3 x {int(max_pixels)} "
            "(data.max_image_pixels); refused before decoding"]))]
    with tf.control_dependencies([c for c in checks if c is not None]):
      hw = tf.identity(hw)
  return fmt, hw


def decode_rgb(image_bytes, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               name="image") -> tf.Tensor:
  """One encoded image -> uint8 [H, W, 3] RGB; format and header size checked first.

  Args:
    image_bytes: string [] (JPEG, PNG, GIF, BMP or still WebP bytes).
    max_pixels: the most height * width allowed (None: no limit), checked on the header.
    name: str or string [] naming the image in errors ("image_bytes[3]", a file path).

  Raises:
    tf.errors.InvalidArgumentError starting with `name`: unknown format, animated WebP,
    too many pixels; a corrupt body fails in the decoder (TensorFlow's message).
  """
  fmt, hw = header_shape(image_bytes, max_pixels=max_pixels, name=name)
  with tf.control_dependencies([hw]):
    return _decode_checked(image_bytes, fmt)


def _decode_checked(image_bytes, fmt) -> tf.Tensor:
  """uint8 [H, W, 3] of bytes whose format (index `fmt`) and size `header_shape` checked."""
  image = tf.io.decode_image(image_bytes, channels=0, expand_animations=False,
                             dtype=tf.uint8)  # [H, W, C], C in 1..4
  channels = tf.shape(image)[-1]
  image = tf.cond(channels >= 3, lambda: image[..., :3],
                  lambda: tf.tile(image[..., :1], [1, 1, 3]))  # [H, W, 3]
  orientation = tf.cond(tf.equal(fmt, FORMAT_NAMES.index("jpeg")),
                        lambda: image_headers.exif_orientation(image_bytes), lambda: tf.constant(1, tf.int32))
  return tf.ensure_shape(orient(image, orientation), [None, None, 3])


def resize(images, size: int) -> tf.Tensor:
  """RGB [..., H, W, 3] (uint8 or float) -> float32 [..., size, size, 3] in 0..255.

  Bilinear, aspect ratio not kept: the one resize of training, extraction and serving. On
  uint8 input the result is float32 at the target size (no full-size float copy) and equal
  to resizing the float32 image.
  """
  out = tf.image.resize(images, [size, size], method="bilinear")
  return tf.cast(out, tf.float32) if out.dtype != tf.float32 else out


def decode_batch(image_bytes, size: int, *,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> tf.Tensor:
  """string [B] of encoded images -> float32 [B, size, size, 3] in 0..255.

  Errors name the element: "image_bytes[i]: ...", a body the decoder refuses too ("its png
  data does not decode"). At most max_pixels * 3 bytes of decoded image per element in
  flight, _PARALLEL_DECODES elements at once.
  """
  image_bytes = tf.convert_to_tensor(image_bytes, tf.string)
  if image_bytes.shape.rank is not None and image_bytes.shape.rank != 1:
    raise ValueError(f"image_bytes must be a 1-D string tensor [batch] of encoded images, "
                     f"got shape {image_bytes.shape}.")
  count = tf.shape(image_bytes)[0]
  index = tf.range(count)

  def check(args):  # the format and size checks: their errors name the element
    data, i = args
    name = tf.strings.join(["image_bytes[", tf.strings.as_string(i), "]"])
    return header_shape(data, max_pixels=max_pixels, name=name)[0]

  formats = tf.map_fn(check, (image_bytes, index), fn_output_signature=tf.int32)  # [B]
  # A decoder's own error (a corrupt or truncated body) cannot be given another message in a
  # graph: the decodes run in a tf.data map whose failures are dropped (and logged with
  # TensorFlow's message), so the first element missing from the output is named instead.
  with tf.control_dependencies([formats]):
    decoded = tf.data.Dataset.from_tensor_slices((image_bytes, formats, index)).map(
        lambda data, fmt, i: (resize(_decode_checked(data, fmt), size), i),
        num_parallel_calls=_PARALLEL_DECODES, deterministic=True).ignore_errors(
            log_warning=True).batch(tf.cast(tf.maximum(count, 1), tf.int64))
    pixels, done = decoded.reduce(
        (tf.zeros([0, size, size, 3], tf.float32), tf.zeros([0], tf.int32)),
        lambda state, batch: (tf.concat([state[0], batch[0]], 0),
                              tf.concat([state[1], batch[1]], 0)))
  # pixels float32 [B', size, size, 3], done int32 [B']: the elements decoded, in order
  missing = tf.reduce_min(tf.concat([tf.boolean_mask(
      index[:tf.size(done)], tf.not_equal(index[:tf.size(done)], done)), [tf.size(done)]], 0))
  bad = tf.gather(tf.constant(FORMAT_NAMES), tf.concat([formats, [0]], 0)[missing])
  check = _check(tf.equal(tf.size(done), count), tf.strings.join([
      "image_bytes[", tf.strings.as_string(missing), "]: its ", bad, " data does not decode "
      "(corrupt or truncated; the decoder's message is in the server log)"]))
  with tf.control_dependencies([c for c in [check] if c is not None]):
    return tf.ensure_shape(tf.identity(pixels), [None, size, size, 3])
