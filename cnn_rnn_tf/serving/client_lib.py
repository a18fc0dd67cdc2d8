"""Labels images through a TF Serving PredictionService (gRPC, tensorflow-serving-api): the
library of `python -m cnn_rnn_tf.serving.client`.

    from cnn_rnn_tf.serving import client_lib
    outputs = client_lib.predict("localhost:8500", "cnn_rnn", "serving_default",
                                 [open("photo.jpg", "rb").read()], timeout=10, max_message_mb=64)
    outputs["label_names"]   # object [1, L], '' padded; outputs["paths"] [1, N, L]

    run = client_lib.predict_files("localhost:8500", "cnn_rnn", ["photos/", "*.png"])
    run.records, run.failures          # see `serving.format`

Gives exactly what `cnn_rnn_tf.serving.local` gives for the same export and images (both go
through `cnn_rnn_tf.serving.format`).

Failures raise `ServingError` with a message that says what to do: server unreachable or
too slow (UNAVAILABLE / DEADLINE_EXCEEDED), no such model (NOT_FOUND), no such signature
(FAILED_PRECONDITION), a request or an answer over the message size (RESOURCE_EXHAUSTED).
An image the model refuses (INVALID_ARGUMENT) raises `ServingBadInputError`, which is both a
ServingError and a `format.BadInputError`, so `predict_files` counts that file and goes on.
"""

from __future__ import annotations

from typing import Sequence

import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from cnn_rnn_tf import image_files
from cnn_rnn_tf.serving import format as format_lib


class ServingError(RuntimeError):
  """A failed Predict call; `code` is the grpc.StatusCode."""

  def __init__(self, message: str, code: grpc.StatusCode | None = None):
    super().__init__(message)
    self.code = code


class ServingBadInputError(ServingError, format_lib.BadInputError):
  """The model refused the request's images (INVALID_ARGUMENT)."""


def predict(server: str, model_name: str, signature: str, images_bytes: Sequence[bytes],
            timeout: float = 10.0, max_message_mb: float = 64) -> dict:
  """Sends encoded images to `signature` of `model_name`; NumPy outputs, batch first.

  Raises:
    ServingError: the call failed (see the module docstring).
    ValueError: an image the client had to decode (predict_images) does not decode.
  """
  requests = format_lib.request_inputs(signature, images_bytes)
  limit = int(max_message_mb * 1024 * 1024)
  options = [("grpc.max_send_message_length", limit),
             ("grpc.max_receive_message_length", limit)]
  with grpc.insecure_channel(server, options=options) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    outputs = []
    for inputs in requests:
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
  code, details = error.code(), image_files.cut(error.details() or "")  # may echo input
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
  if code == grpc.StatusCode.INVALID_ARGUMENT:
    return ServingBadInputError(message, code)
  return ServingError(message, code)




def predict_files(server: str, model_name: str, inputs: Sequence[str], *,
                  signature: str = "serving_default", batch_size: int = 32, n_best: int = 0,
                  timeout: float = 10.0, max_message_mb: float = 64) -> format_lib.Run:
  """Predicts every image of `inputs` (files, folders, globs) through the server, in batches
  of `batch_size` (one request each). Refused or unreadable files are counted in
  `failures`; a server that cannot be reached raises ServingError."""
  paths, failures = format_lib.expand_paths(inputs)
  return format_lib.predict_paths(
      lambda data: predict(server, model_name, signature, data, timeout, max_message_mb),
      paths, batch_size=batch_size, n_best=n_best, failures=failures)


def run(server: str, model_name: str, inputs: Sequence[str], *,
        signature: str = "serving_default", batch_size: int = 32, n_best: int = 0,
        timeout: float = 10.0, max_message_mb: float = 64, output: str | None = None,
        as_json: bool = False) -> int:
  """What `python -m cnn_rnn_tf.serving.client` does; returns its exit code."""
  return format_lib.run_and_emit(
      lambda: predict_files(server, model_name, inputs, signature=signature,
                            batch_size=batch_size, n_best=n_best, timeout=timeout,
                            max_message_mb=max_message_mb),
      output=output, as_json=as_json, errors=(ServingError,))
