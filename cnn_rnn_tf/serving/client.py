r"""Labels images through a TF Serving PredictionService (gRPC, tensorflow-serving-api).

  python -m cnn_rnn_tf.serving.client --server=localhost:8500 --model_name=cnn_rnn \
      [--signature=serving_default|predict_images] [--timeout=10] [--max_message_mb=64] \
      [--json] photo.jpg more.png

Prints exactly what `python -m cnn_rnn_tf.predict` prints for the same export and images
(both go through `cnn_rnn_tf.serving.format`). From Python:

    from cnn_rnn_tf.serving import client
    outputs = client.predict("localhost:8500", "cnn_rnn", "serving_default",
                             [open("photo.jpg", "rb").read()], timeout=10, max_message_mb=64)
    outputs["label_names"]   # object [1, L], '' padded

Failures raise `ServingError` with a message that says what to do: server unreachable or
too slow (UNAVAILABLE / DEADLINE_EXCEEDED), no such model (NOT_FOUND), no such signature
(FAILED_PRECONDITION), an image that does not decode (INVALID_ARGUMENT), a request or an
answer over the message size (RESOURCE_EXHAUSTED).
"""

from __future__ import annotations

import sys
from typing import Sequence

from absl import app
from absl import flags
import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from cnn_rnn_tf import predict as predict_lib
from cnn_rnn_tf.serving import format as format_lib

FLAGS = flags.FLAGS


class ServingError(RuntimeError):
  """A failed Predict call; `code` is the grpc.StatusCode."""

  def __init__(self, message: str, code: grpc.StatusCode | None = None):
    super().__init__(message)
    self.code = code


def define_flags():
  """The binary's flags (defined only when run, so importing this module defines none)."""
  flags.DEFINE_string("server", None, "host:port of the gRPC endpoint (TF Serving: 8500).",
                      required=True)
  flags.DEFINE_string("model_name", None, "The served model's name (--model_name of "
                      "tensorflow_model_server, or models.config).", required=True)
  flags.DEFINE_string("signature", "serving_default",
                      "serving_default sends the encoded bytes; predict_images decodes the "
                      "images here and sends RGB pixels.")
  flags.DEFINE_float("timeout", 10.0, "Deadline of each request, in seconds.")
  flags.DEFINE_integer("max_message_mb", 64, "Largest request / answer in MiB (the server "
                       "has its own limit).")
  flags.DEFINE_bool("json", False, "Print JSON instead of one line per image.")


def predict(server: str, model_name: str, signature: str, images_bytes: Sequence[bytes],
            timeout: float = 10.0, max_message_mb: float = 64) -> dict:
  """Sends encoded images to `signature` of `model_name`; NumPy outputs, batch first.

  Raises:
    ServingError: the call failed (see the module docstring).
    ValueError: an image the client had to decode (predict_images) does not decode.
  """
  limit = int(max_message_mb * 1024 * 1024)
  options = [("grpc.max_send_message_length", limit),
             ("grpc.max_receive_message_length", limit)]
  with grpc.insecure_channel(server, options=options) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    outputs = []
    for inputs in format_lib.request_inputs(signature, images_bytes):
      request = predict_pb2.PredictRequest()
      request.model_spec.name = model_name
      request.model_spec.signature_name = signature
      for key, value in inputs.items():
        dtype = tf.string if value.dtype == object else tf.as_dtype(value.dtype)
        request.inputs[key].CopyFrom(tf.make_tensor_proto(value, dtype=dtype, shape=value.shape))
      try:
        response = stub.Predict(request, timeout=timeout)
      except grpc.RpcError as e:
        raise _explain(e, server, model_name, signature, timeout, max_message_mb) from None
      outputs.append({k: tf.make_ndarray(v) for k, v in response.outputs.items()})
  return format_lib.merge_outputs(outputs)


def _explain(error: grpc.RpcError, server, model_name, signature, timeout,
             max_message_mb) -> ServingError:
  code, details = error.code(), error.details()
  if code == grpc.StatusCode.UNAVAILABLE:
    message = (f"Cannot reach a model server at {server!r} (is it running, and is this its "
               f"gRPC port, 8500 for TF Serving?): {details}")
  elif code == grpc.StatusCode.DEADLINE_EXCEEDED:
    message = (f"The model server at {server!r} did not answer within {timeout} s; raise "
               f"--timeout or send fewer images: {details}")
  elif code == grpc.StatusCode.NOT_FOUND:
    message = f"The model server at {server!r} serves no model {model_name!r}: {details}"
  elif code == grpc.StatusCode.FAILED_PRECONDITION and "signature" in details.lower():
    message = (f"Model {model_name!r} at {server!r} has no signature {signature!r} "
               f"(cnn_rnn_tf exports have serving_default, predict_images and "
               f"predict_features): {details}")
  elif code == grpc.StatusCode.INVALID_ARGUMENT:
    message = f"Model {model_name!r} at {server!r} rejected the request: {details}"
  elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
    message = (f"A message to or from {server!r} is over the size limit ({max_message_mb} MiB "
               f"here; the server has its own): {details}")
  else:
    message = f"Predict on {server!r} failed with {code.name}: {details}"
  return ServingError(message, code)


def main(argv):
  paths = argv[1:]
  if not paths:
    raise app.UsageError("Give one or more image files.")
  try:
    outputs = predict(FLAGS.server, FLAGS.model_name, FLAGS.signature,
                      predict_lib.read_images(paths), FLAGS.timeout, FLAGS.max_message_mb)
  except (ServingError, ValueError, FileNotFoundError) as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)
  print((format_lib.to_json if FLAGS.json else format_lib.to_text)(paths, outputs))


if __name__ == "__main__":
  define_flags()
  app.run(main)
