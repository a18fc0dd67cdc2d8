r"""A TEST STAND-IN for the TF Serving binary: PredictionService.Predict over gRPC in Python;
the library of

  python -m cnn_rnn_tf.serving.server --port=8500 --model_name=cnn_rnn \
      --model_base_path=export/models/cnn_rnn

The real server is `tensorflow_model_server` (the `tensorflow/serving` Docker image; see
export/README.md). It cannot be installed where this project's tests run (no Docker, no
binary), so the tests stand this server in for it: it serves the same gRPC API, from
tensorflow-serving-api's generated service code, so that the client and the export are
exercised over a real loopback connection. It is not meant for production: one model, the
newest version only (loaded once at start, no polling), no batching, no REST, no warmup.

What it does as TF Serving does:
  * loads the newest numeric version folder under the base path (`tf.saved_model.load`);
  * runs `model_spec.signature_name` (empty: serving_default) on the request's inputs;
  * errors: unknown model name or version -> NOT_FOUND; unknown signature ->
    FAILED_PRECONDITION "Serving signature key ... not found."; missing, extra or
    mistyped inputs -> INVALID_ARGUMENT; an error of the model (tf.errors.OpError, e.g.
    InvalidArgumentError for an image that does not decode) -> the same gRPC code with
    TensorFlow's message. The server keeps serving after any of them.
It binds to 127.0.0.1 only.

    server, port = serve(model_name="cnn_rnn", model_base_path="export/models/cnn_rnn")
    ...
    server.stop(grace=None)
"""

from __future__ import annotations

from concurrent import futures
import os
import re

from absl import logging
import grpc
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

HOST = "127.0.0.1"


def latest_version(model_base_path: str) -> int:
  """The largest numeric folder name under the base path (TF Serving's default policy)."""
  if not tf.io.gfile.isdir(model_base_path):
    raise FileNotFoundError(f"Model base path {model_base_path!r} is not a folder.")
  versions = [int(n.rstrip("/")) for n in tf.io.gfile.listdir(model_base_path)
              if re.fullmatch(r"\d+/?", n)]
  if not versions:
    raise FileNotFoundError(f"No numeric version folder under {model_base_path!r}.")
  return max(versions)


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
  """Predict for one model; Classify, Regress, ... answer UNIMPLEMENTED (the base class)."""

  def __init__(self, model_name: str, model_base_path: str):
    self.model_name = model_name
    self.version = latest_version(model_base_path)
    path = os.path.join(model_base_path, str(self.version))
    self.model = tf.saved_model.load(path)
    logging.info("Loaded %s version %d from %s: signatures %s.", model_name, self.version,
                 path, sorted(self.model.signatures))

  def Predict(self, request, context):  # pylint: disable=invalid-name
    spec = request.model_spec
    if spec.name != self.model_name:
      context.abort(grpc.StatusCode.NOT_FOUND,
                    f"Servable not found for request: Latest({spec.name})")
    if spec.HasField("version") and spec.version.value != self.version:
      context.abort(grpc.StatusCode.NOT_FOUND, f"Servable not found for request: "
                    f"Specific({spec.name}, {spec.version.value})")
    signature = spec.signature_name or "serving_default"
    if signature not in self.model.signatures:
      context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                    f'Serving signature key "{signature}" not found.')
    fn = self.model.signatures[signature]
    specs = fn.structured_input_signature[1]  # {input name: TensorSpec}
    if set(request.inputs) != set(specs):
      context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                    f"Request inputs {sorted(request.inputs)} do not match the inputs "
                    f"{sorted(specs)} of signature {signature!r}.")
    inputs = {}
    for key, proto in request.inputs.items():
      if proto.dtype != specs[key].dtype.as_datatype_enum:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"Input {key!r} has dtype {tf.as_dtype(proto.dtype).name}, signature "
                      f"{signature!r} expects {specs[key].dtype.name}.")
      try:
        inputs[key] = tf.constant(tf.make_ndarray(proto), dtype=specs[key].dtype)
      except (TypeError, ValueError) as e:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"Input {key!r}: {e}")
      if not specs[key].shape.is_compatible_with(inputs[key].shape):
        context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                      f"Input {key!r} has shape {inputs[key].shape.as_list()}, signature "
                      f"{signature!r} expects {specs[key].shape}{_shape_hint(key)}.")
    try:
      outputs = fn(**inputs)
    except tf.errors.OpError as e:
      context.abort(_grpc_code(e), e.message)
    response = predict_pb2.PredictResponse()
    response.model_spec.name = self.model_name
    response.model_spec.version.value = self.version
    response.model_spec.signature_name = signature
    for key, value in outputs.items():
      response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
    return response


def _shape_hint(key: str) -> str:
  if key == "image_bytes":
    return ("; send a batch of encoded images as a 1-D string tensor [batch] (one image: "
            "shape [1], not a scalar)")
  if key == "images":
    return "; send RGB pixels as float32 [batch, height, width, 3]"
  return ""


def _grpc_code(error: tf.errors.OpError) -> grpc.StatusCode:
  """TF's error codes are gRPC's (both follow google.rpc.Code)."""
  for code in grpc.StatusCode:
    if code.value[0] == error.error_code:
      return code
  return grpc.StatusCode.INTERNAL


def serve(model_name: str, model_base_path: str, port: int = 0, max_message_mb: int = 64,
          threads: int = 4) -> tuple[grpc.Server, int]:
  """Starts serving on 127.0.0.1:port (0: a free one); returns (server, bound port)."""
  servicer = PredictionServicer(model_name, model_base_path)
  limit = int(max_message_mb * 1024 * 1024)
  server = grpc.server(futures.ThreadPoolExecutor(max_workers=threads), options=[
      ("grpc.max_send_message_length", limit), ("grpc.max_receive_message_length", limit)])
  prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(servicer, server)
  bound = server.add_insecure_port(f"{HOST}:{port}")
  if not bound:
    raise OSError(f"Cannot bind {HOST}:{port}.")
  server.start()
  return server, bound




def run(model_name: str, model_base_path: str, port: int = 8500, max_message_mb: int = 64,
        threads: int = 4) -> None:
  """What `python -m cnn_rnn_tf.serving.server` does: serve until killed."""
  server, bound = serve(model_name, model_base_path, port, max_message_mb, threads)
  print(f"Serving model {model_name!r} from {model_base_path} at {HOST}:{bound} "
        "(test stand-in for tensorflow_model_server)", flush=True)
  server.wait_for_termination()
