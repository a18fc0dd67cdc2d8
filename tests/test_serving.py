"""gRPC serving: cnn_rnn_tf.serving.{client,format,server} against an export.

The TF Serving binary (tensorflow_model_server, the tensorflow/serving image) cannot be
installed where these tests run. `cnn_rnn_tf.serving.server` STANDS IN for it: a
PredictionService server from tensorflow-serving-api's generated gRPC code, started here
as a subprocess on 127.0.0.1 and a free port. The client cannot tell the difference: it
speaks the same PredictionService.Predict protocol it speaks to TF Serving.
"""

import json
import pathlib
import socket
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import prediction_service_pb2_grpc

from cnn_rnn_tf import export_lib
from cnn_rnn_tf import predict
from cnn_rnn_tf.serving import client
from cnn_rnn_tf.serving import format as format_lib
from cnn_rnn_tf.serving import server as server_lib
import export_fixtures

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = "cnn_rnn"


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def fake_outputs():
  return {
      "labels": np.array([[2, 0, -1], [-1, -1, -1]], np.int32),
      "label_names": np.array([[b"car", b"person", b""], [b"", b"", b""]], object),
      "num_labels": np.array([2, 0], np.int32),
      "path_log_prob": np.array([-0.5, -0.25], np.float32),
      "label_scores": np.array([[0.9, 0.1, 0.8, 0.05], [0.2, 0.3, 0.1, 0.0]], np.float32),
  }


def test_format_text_and_json():
  outputs = fake_outputs()
  assert format_lib.to_text(["a.jpg", "b.png"], outputs).splitlines() == [
      "a.jpg: car 0.800, person 0.900  (path log-prob -0.500)",
      "b.png: (no labels)  (path log-prob -0.250)",
  ]
  records = json.loads(format_lib.to_json(["a.jpg", "b.png"], outputs))
  assert records[0]["labels"] == ["car", "person"] and records[0]["label_ids"] == [2, 0]
  assert records[0]["scores"] == pytest.approx([0.8, 0.9])
  assert records[1]["labels"] == [] and len(records[1]["label_scores"]) == 4
  merged = format_lib.merge_outputs([outputs, outputs])
  assert merged["labels"].shape == (4, 3)
  with pytest.raises(ValueError, match="3 images but 2 results"):
    format_lib.to_text(["a", "b", "c"], outputs)


def test_request_inputs():
  images = list(export_fixtures.encoded_images().values())[:3]
  (batch,) = format_lib.request_inputs("serving_default", images)
  assert batch["image_bytes"].shape == (3,) and batch["image_bytes"][1] == images[1]
  per_image = format_lib.request_inputs("predict_images", images)
  assert [b["images"].shape for b in per_image] == [(1, 40, 56, 3), (1, 33, 20, 3),
                                                    (1, 25, 25, 3)]
  with pytest.raises(ValueError, match="not image files"):
    format_lib.request_inputs("predict_features", images)
  with pytest.raises(ValueError, match="Image 1 does not decode"):
    format_lib.request_inputs("predict_images", [images[0], b"junk"])


def test_client_says_when_the_server_is_unreachable():
  with pytest.raises(client.ServingError, match="Cannot reach a model server") as e:
    client.predict(f"127.0.0.1:{free_port()}", MODEL, "serving_default", [b"x"], timeout=5)
  assert e.value.code == grpc.StatusCode.UNAVAILABLE


def test_latest_version(tmp_path):
  for name in ("1", "3", "tmp-4-abc", "20"):
    (tmp_path / name).mkdir()
  assert server_lib.latest_version(str(tmp_path)) == 20
  with pytest.raises(FileNotFoundError, match="No numeric version"):
    server_lib.latest_version(str(tmp_path / "tmp-4-abc"))


# ---- Slow: a server subprocess and the binaries. ----


@pytest.fixture(scope="module")
def model_base(tmp_path_factory):
  workdir = export_fixtures.make_workdir(tmp_path_factory.mktemp("run") / "cnn_rnn")
  base = tmp_path_factory.mktemp("models") / MODEL
  export_lib.export(workdir, str(base))
  return base


@pytest.fixture(scope="module")
def server(model_base, tmp_path_factory):
  """host:port of a stand-in PredictionService server (subprocess) serving the export."""
  port = free_port()
  log = tmp_path_factory.mktemp("server") / "server.log"
  with open(log, "w") as log_file:
    process = subprocess.Popen(
        [sys.executable, "-m", "cnn_rnn_tf.serving.server", f"--port={port}",
         f"--model_name={MODEL}", f"--model_base_path={model_base}"],
        cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT)
  address = f"127.0.0.1:{port}"
  try:
    with grpc.insecure_channel(address) as channel:
      deadline = time.monotonic() + 90
      while True:
        assert process.poll() is None, f"server exited: {log.read_text()[-3000:]}"
        try:
          grpc.channel_ready_future(channel).result(timeout=1)
          break
        except grpc.FutureTimeoutError:
          assert time.monotonic() < deadline, f"server not up: {log.read_text()[-3000:]}"
    yield address
    assert process.poll() is None, f"the server died: {log.read_text()[-3000:]}"
  finally:
    process.terminate()
    try:
      process.wait(timeout=20)
    except subprocess.TimeoutExpired:
      process.kill()


def run_binary(module, *args):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)


@pytest.mark.slow
def test_client_binary_prints_what_predict_prints(server, model_base, tmp_path):
  paths = export_fixtures.write_images(tmp_path, export_fixtures.encoded_images())
  local = run_binary("cnn_rnn_tf.predict", f"--saved_model={model_base / '1'}", "--json",
                     *paths)
  assert local.returncode == 0, local.stderr[-3000:]
  remote = run_binary("cnn_rnn_tf.serving.client", f"--server={server}",
                      f"--model_name={MODEL}", "--timeout=30", "--max_message_mb=16",
                      "--json", *paths)
  assert remote.returncode == 0, remote.stderr[-3000:]
  assert remote.stdout == local.stdout
  records = json.loads(remote.stdout)
  assert [r["image"] for r in records] == paths
  assert any(len(r["labels"]) >= 2 for r in records)

  # The text output, and the predict_images signature, through the functions.
  model = predict.load(str(model_base / "1"))
  images = [pathlib.Path(p).read_bytes() for p in paths]
  for signature in ("serving_default", "predict_images"):
    got = client.predict(server, MODEL, signature, images, timeout=30, max_message_mb=16)
    want = predict.predict(model, images, signature)
    assert format_lib.to_text(paths, got) == format_lib.to_text(paths, want)


@pytest.mark.slow
def test_bad_requests_get_grpc_errors_and_the_server_keeps_serving(server):
  images = list(export_fixtures.encoded_images().values())
  with pytest.raises(client.ServingError, match=r"image_bytes\[1\] does not decode") as e:
    client.predict(server, MODEL, "serving_default", [images[0], b"corrupt!"], timeout=30)
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  with pytest.raises(client.ServingError, match="Invalid JPEG data") as e:
    client.predict(server, MODEL, "serving_default", [images[1][:200]], timeout=30)
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  with pytest.raises(client.ServingError, match="serves no model 'nope'") as e:
    client.predict(server, "nope", "serving_default", images, timeout=30)
  assert e.value.code == grpc.StatusCode.NOT_FOUND
  with pytest.raises(client.ServingError, match="has no signature 'predict_nothing'") as e:
    client.predict(server, MODEL, "predict_nothing", images, timeout=30)
  assert e.value.code == grpc.StatusCode.FAILED_PRECONDITION
  with pytest.raises(client.ServingError, match="over the size limit") as e:
    client.predict(server, MODEL, "serving_default", [export_fixtures.large_image()],
                   timeout=30, max_message_mb=0.05)
  assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED

  empty = client.predict(server, MODEL, "serving_default", [], timeout=30)
  assert empty["labels"].shape == (0, 6) and empty["label_names"].shape == (0, 6)
  large = client.predict(server, MODEL, "serving_default",
                         [export_fixtures.large_image(), images[-1]], timeout=60)
  assert large["num_labels"].shape == (2,)


@pytest.mark.slow
def test_warmup_requests_succeed_on_the_server(server, model_base):
  requests = export_lib.read_warmup_requests(str(model_base / "1"))
  with grpc.insecure_channel(server) as channel:
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    for request in requests:
      request.model_spec.name = MODEL
      response = stub.Predict(request, timeout=30)
      batch = request.inputs["image_bytes"].tensor_shape.dim[0].size
      assert tf.make_ndarray(response.outputs["num_labels"]).shape == (batch,)
      assert response.model_spec.version.value == 1


@pytest.mark.slow
def test_client_binary_error_exit(server, tmp_path):
  (path,) = export_fixtures.write_images(tmp_path, {"a.png": b"\x89PNG but broken"})
  result = run_binary("cnn_rnn_tf.serving.client", f"--server={server}", "--model_name=nope",
                      path)
  assert result.returncode == 1
  assert "error: The model server at" in result.stderr and "no model 'nope'" in result.stderr
