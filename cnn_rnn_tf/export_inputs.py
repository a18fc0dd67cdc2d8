"""What the exported signatures accept: their input checks, and the warmup requests.

The checks are ops of the exported functions (`export_lib._signatures`): each fails with
InvalidArgumentError naming the input and what was expected, since neither TF Serving nor
`loaded.signatures[...]` enforces a signature's input spec.

    x = check_shape(images, [None, None, None, 3], "images", "[batch, height, width, 3]")
    with tf.control_dependencies([assert_finite(x, "images"), assert_pixels(x, 40_000_000)]):
      ...
    write_warmup_requests(path, size)   # assets.extra/tf_serving_warmup_requests
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_log_pb2

WARMUP_FILE = "tf_serving_warmup_requests"  # TF Serving reads it from assets.extra/


def check_shape(x, shape, name: str, expected: str) -> tf.Tensor:
  """`x` with the static shape `shape` (None: any size), after an op that fails with
  InvalidArgumentError when its rank or a fixed size differs, naming the input, the shape
  expected and the one received, e.g. "image_bytes must have shape [batch] (...), got shape
  [1, 1].". A signature's input spec is not enforced when it is called: this is the check.
  """
  x = tf.convert_to_tensor(x)
  got = tf.shape(x)  # int32 [rank]
  ok = tf.equal(tf.size(got), len(shape))
  padded = tf.concat([got, tf.fill([len(shape)], -1)], 0)  # index i exists at any rank
  for i, size in enumerate(shape):
    if size is not None:
      ok = tf.logical_and(ok, tf.equal(padded[i], size))
  received = tf.strings.reduce_join(tf.strings.as_string(got), separator=", ")
  check = tf.debugging.Assert(ok, [tf.strings.join([
      f"{name} must have shape {expected}, got shape [", received, "]."])],
                              name=f"check_{name}_shape")
  with tf.control_dependencies([check]):
    return tf.ensure_shape(x, shape)


def assert_finite(x, name: str):
  """An op that fails with InvalidArgumentError naming the first element of `x` [B, ...]
  with a NaN or Inf value, e.g. "images[1] has NaN or Inf values"."""
  x = tf.convert_to_tensor(x)
  bad = tf.logical_not(tf.reduce_all(tf.math.is_finite(tf.reshape(x, [tf.shape(x)[0], -1])),
                                     axis=1))  # [B]
  first = tf.reduce_min(tf.concat([tf.cast(tf.where(bad)[:, 0], tf.int32), [-1]], 0)[:1])
  return tf.debugging.Assert(tf.logical_not(tf.reduce_any(bad)), [tf.strings.format(
      name + "[{}] has NaN or Inf values; expected finite numbers.", (first,))])


def assert_not_empty(images, name: str):
  """An op that fails with InvalidArgumentError when images [B, H, W, 3] have no height or
  width, naming the input and its shape, e.g. "images must have height and width >= 1, got
  shape [1, 0, 0, 3]."
  """
  shape = tf.shape(images)
  received = tf.strings.reduce_join(tf.strings.as_string(shape), separator=", ")
  return tf.debugging.Assert(tf.reduce_all(shape[1:3] >= 1), [tf.strings.join([
      f"{name} must have height and width >= 1, got shape [", received, "]."])])


def assert_pixels(images, max_pixels: int):
  """An op that fails with InvalidArgumentError when images [B, H, W, 3] are larger than
  `max_pixels` pixels each, naming the size."""
  shape = tf.shape(images, out_type=tf.int64)
  pixels = shape[1] * shape[2]
  return tf.debugging.Assert(pixels <= max_pixels, [tf.strings.format(
      "images: {}x{} = {} pixels > {} per image (the export's max_pixels; resize first).",
      (shape[2], shape[1], pixels, max_pixels))])


def warmup_images(size: int) -> list[list[bytes]]:
  """The warmup batches: 1, 2 and 3 images of different formats, sizes and channels."""
  rng = np.random.default_rng(0)

  def pixels(h, w, c):
    return rng.integers(0, 256, size=(h, w, c), dtype=np.uint8)

  png = lambda p: tf.io.encode_png(p).numpy()
  jpeg = lambda p: tf.io.encode_jpeg(p, quality=90).numpy()
  return [
      [jpeg(pixels(size, size, 3))],
      [png(pixels(2 * size, size + 3, 3)), jpeg(pixels(7, 5, 1))],
      [png(pixels(1, 1, 4)), jpeg(pixels(size // 2 + 1, 3 * size, 3)), png(pixels(9, 9, 1))],
  ]


def write_warmup_requests(path: str, size: int) -> int:
  """Writes PredictionLog records of serving_default requests; returns how many."""
  batches = warmup_images(size)
  with tf.io.TFRecordWriter(path) as writer:
    for batch in batches:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = "serving_default"
      request.inputs["image_bytes"].CopyFrom(
          tf.make_tensor_proto(batch, dtype=tf.string, shape=[len(batch)]))
      log = prediction_log_pb2.PredictionLog(
          predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return len(batches)


def read_warmup_requests(export_dir: str) -> list:
  """The PredictRequests of an export's `assets.extra/tf_serving_warmup_requests`."""
  path = os.path.join(export_dir, "assets.extra", WARMUP_FILE)
  requests = []
  for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
    log = prediction_log_pb2.PredictionLog.FromString(record)
    if log.WhichOneof("log_type") != "predict_log":
      raise ValueError(f"Warmup record {len(requests)} in {path!r} is a "
                       f"{log.WhichOneof('log_type')}, expected a predict_log.")
    requests.append(log.predict_log.request)
  return requests
