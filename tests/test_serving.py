"""Serving: cnn_rnn_tf.serving.{local,client_lib,format,server_lib} and their binaries.

The TF Serving binary (tensorflow_model_server, the tensorflow/serving image) cannot be
installed where these tests run. `cnn_rnn_tf.serving.server` STANDS IN for it: a
PredictionService server from tensorflow-serving-api's generated gRPC code, started here
as a subprocess on 127.0.0.1 and a free port. The client cannot tell the difference: it
speaks the same PredictionService.Predict protocol it speaks to TF Serving.
"""

import csv
import json
import pathlib
import socket
import struct
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from cnn_rnn_tf import export_inputs
from cnn_rnn_tf import export_lib
from cnn_rnn_tf.serving import client_lib as client
from cnn_rnn_tf.serving import format as format_lib
from cnn_rnn_tf.serving import local
from cnn_rnn_tf.serving import server_lib
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
      "paths": np.array([[[2, 0, -1], [2, -1, -1]], [[-1, -1, -1], [-1, -1, -1]]], np.int32),
      "paths_label_names": np.array([[[b"car", b"person", b""], [b"car", b"", b""]],
                                     [[b"", b"", b""], [b"", b"", b""]]], object),
      "paths_log_prob": np.array([[-0.5, -1.5], [-0.25, -np.inf]], np.float32),
  }


def test_outputs_without_a_path_read_as_a_bce_export_gives_them(tmp_path):
  """A bce export has no path_log_prob and no paths: optional, like the n-best outputs."""
  outputs = {k: v for k, v in fake_outputs().items()
             if k not in format_lib.PATH_KEYS + format_lib.NBEST_KEYS}
  records = format_lib.results(["a.jpg", "b.png"], outputs)
  assert format_lib.to_text(records, n_best=2).splitlines() == [
      "a.jpg: car 0.800, person 0.900", "b.png: (no labels)"]
  assert all("path_log_prob" not in r and "n_best" not in r for r in records)
  run = format_lib.Run(records, [], 0)
  format_lib.write_output(str(tmp_path / "out.csv"), run)
  with open(tmp_path / "out.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert [row["path_log_prob"] for row in table] == ["", ""]
  assert table[0]["labels"] == "car;person"
  with pytest.raises(ValueError, match="lack.*label_scores"):
    format_lib.results(["a.jpg"], {k: v for k, v in outputs.items() if k != "label_scores"})


def test_format_text_and_json():
  outputs = fake_outputs()
  records = format_lib.results(["a.jpg", "b.png"], outputs)
  assert format_lib.to_text(records).splitlines() == [
      "a.jpg: car 0.800, person 0.900  (path log-prob -0.500)",
      "b.png: (no labels)  (path log-prob -0.250)",
  ]
  assert format_lib.to_text(records, n_best=2).splitlines() == [
      "a.jpg: car 0.800, person 0.900  (path log-prob -0.500)",
      "  1. car person  (log-prob -0.500)",
      "  2. car  (log-prob -1.500)",
      "b.png: (no labels)  (path log-prob -0.250)",
      "  1. (no labels)  (log-prob -0.250)",  # the -inf slot is not shown
  ]
  parsed = json.loads(format_lib.to_json(records))
  assert parsed[0]["labels"] == ["car", "person"] and parsed[0]["label_ids"] == [2, 0]
  assert parsed[0]["scores"] == pytest.approx([0.8, 0.9])
  assert parsed[1]["labels"] == [] and len(parsed[1]["label_scores"]) == 4
  assert "n_best" not in parsed[0]
  parsed = json.loads(format_lib.to_json(records, n_best=1))
  assert parsed[0]["n_best"] == [{"labels": ["car", "person"], "label_ids": [2, 0],
                                  "log_prob": -0.5}]
  merged = format_lib.merge_outputs([outputs, outputs])
  assert merged["labels"].shape == (4, 3)
  with pytest.raises(ValueError, match="3 images but 2 results"):
    format_lib.results(["a", "b", "c"], outputs)


def test_expand_paths_files_folders_globs(tmp_path):
  for name in ("a/1.jpg", "a/b/2.PNG", "a/b/notes.txt", "c/3.webp", "4.bmp"):
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"x")
  (tmp_path / "empty").mkdir()
  paths, failures = format_lib.expand_paths([
      str(tmp_path / "a"), str(tmp_path / "c" / "*.webp"), str(tmp_path / "4.bmp"),
      str(tmp_path / "a" / "1.jpg"), str(tmp_path / "missing.jpg"), str(tmp_path / "empty"),
      str(tmp_path / "*.gif")])
  rel = [str(pathlib.Path(p).relative_to(tmp_path)) for p in paths]
  assert rel == ["a/1.jpg", "a/b/2.PNG", "c/3.webp", "4.bmp"]  # no duplicate, no .txt
  assert [(pathlib.Path(p).name, m.split()[0]) for p, m in failures] == [
      ("missing.jpg", "no"), ("empty", "no"), ("*.gif", "the")]


def test_batches_continue_past_bad_files_and_outputs_are_written(tmp_path):
  """One refused image costs only itself: its batch is retried image by image."""
  names = [f"{i}.png" for i in range(5)]
  for name in names:
    (tmp_path / name).write_bytes(b"bad" if name == "3.png" else b"good")
  calls = []

  def predict_fn(datas):
    calls.append(len(datas))
    if b"bad" in datas:
      raise format_lib.BadInputError(f"image_bytes[{datas.index(b'bad')}]: corrupt")
    outputs = fake_outputs()
    return {k: np.repeat(v[:1], len(datas), axis=0) for k, v in outputs.items()}

  paths = [str(tmp_path / n) for n in names] + [str(tmp_path / "gone.png")]
  run = format_lib.predict_paths(predict_fn, paths, batch_size=2, n_best=2)
  assert [pathlib.Path(r["image"]).name for r in run.records] == [
      "0.png", "1.png", "2.png", "4.png"]
  assert [(pathlib.Path(p).name, m) for p, m in run.failures][0] == ("3.png",
                                                                   "image_bytes[0]: corrupt")
  assert pathlib.Path(run.failures[1][0]).name == "gone.png"
  assert "gone.png: cannot read" in run.failures[1][1]
  assert calls == [2, 2, 1, 1, 1]  # batch (2, 3) failed, then 2 and 3 alone, then 4
  assert "2 of 6 inputs failed" in format_lib.failure_report(run)

  format_lib.write_output(str(tmp_path / "out.jsonl"), run)
  rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
  assert [r.get("labels") for r in rows[:4]] == [["car", "person"]] * 4
  assert rows[0]["n_best"][1] == {"labels": ["car"], "label_ids": [2], "log_prob": -1.5}
  assert rows[4]["image"].endswith("3.png") and "corrupt" in rows[4]["error"]
  format_lib.write_output(str(tmp_path / "out.csv"), run)
  with open(tmp_path / "out.csv", newline="") as f:
    table = list(csv.DictReader(f))
  assert list(table[0]) == ["image", "labels", "scores", "path_log_prob", "n_best", "error"]
  assert table[0]["labels"] == "car;person" and table[0]["error"] == ""
  assert float(table[0]["path_log_prob"]) == -0.5
  assert table[5]["image"].endswith("gone.png") and table[5]["labels"] == ""
  with pytest.raises(ValueError, match="out.txt.*csv or .jsonl"):
    format_lib.write_output(str(tmp_path / "out.txt"), run)


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
  by_predict = run_binary("cnn_rnn_tf.predict", f"--saved_model={model_base / '1'}", "--json",
                          *paths)
  assert by_predict.returncode == 0, by_predict.stderr[-3000:]
  remote = run_binary("cnn_rnn_tf.serving.client", f"--server={server}",
                      f"--model_name={MODEL}", "--timeout=30", "--max_message_mb=16",
                      "--json", *paths)
  assert remote.returncode == 0, remote.stderr[-3000:]
  assert remote.stdout == by_predict.stdout
  records = json.loads(remote.stdout)
  assert [r["image"] for r in records] == paths
  assert any(len(r["labels"]) >= 2 for r in records)

  # The text output, and the predict_images signature, through the functions.
  model = local.load(str(model_base / "1"))
  images = [pathlib.Path(p).read_bytes() for p in paths]
  for signature in ("serving_default", "predict_images"):
    got = client.predict(server, MODEL, signature, images, timeout=30, max_message_mb=16)
    want = local.predict(model, images, signature)
    assert (format_lib.to_text(format_lib.results(paths, got), n_best=3) ==
            format_lib.to_text(format_lib.results(paths, want), n_best=3))


@pytest.mark.slow
def test_bad_requests_get_grpc_errors_and_the_server_keeps_serving(server):
  images = list(export_fixtures.encoded_images().values())
  with pytest.raises(client.ServingError, match=r"image_bytes\[1\]: not a JPEG") as e:
    client.predict(server, MODEL, "serving_default", [images[0], b"corrupt!"], timeout=30)
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  with pytest.raises(client.ServingError, match=r"image_bytes\[1\]: (its jpeg data does not "
                                                r"decode|.*cut short)") as e:
    client.predict(server, MODEL, "serving_default", [images[0], images[1][:200]], timeout=30)
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  # Issue 20: a 20000x20000 GIF frame under a header patched to 10x10 (it decoded, 3.95 GB
  # for 3 of them): refused from its image descriptor, the element named.
  from test_images import gif_bytes  # pylint: disable=g-import-not-at-top
  patched = bytearray(gif_bytes(20000, 20000))
  patched[6:10] = struct.pack("<HH", 10, 10)
  with pytest.raises(client.ServingError, match=r"image_bytes\[1\]: image of 20000x20000") as e:
    client.predict(server, MODEL, "serving_default", [images[0], bytes(patched)], timeout=60)
  assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT
  # A scalar image_bytes (the client refuses one; a raw request can send it): the export's
  # own shape check answers, naming the input and the shape (whichever server runs it).
  request = predict_pb2.PredictRequest()
  request.model_spec.name = MODEL
  request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto(images[0], dtype=tf.string))
  with grpc.insecure_channel(server) as channel:
    with pytest.raises(grpc.RpcError) as e:
      prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
  assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
  assert "image_bytes must have shape [batch]" in e.value.details(), e.value.details()
  assert "got shape []" in e.value.details()
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
  requests = export_inputs.read_warmup_requests(str(model_base / "1"))
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


def _folder_with_a_truncated_jpeg(tmp_path):
  images = export_fixtures.encoded_images()
  paths = export_fixtures.write_images(tmp_path / "photos", images)
  jpeg = next(p for p in paths if p.endswith(".jpg"))
  bad = tmp_path / "photos" / "sub" / "truncated.jpg"
  bad.parent.mkdir()
  bad.write_bytes(pathlib.Path(jpeg).read_bytes()[:300])
  return paths, str(bad)


def test_local_predict_files_names_a_truncated_jpeg_and_goes_on(model_base, tmp_path):
  paths, bad = _folder_with_a_truncated_jpeg(tmp_path)
  run = local.predict_files(str(model_base / "1"), [str(tmp_path / "photos")], batch_size=3,
                            n_best=2)
  assert sorted(r["image"] for r in run.records) == sorted(paths)
  assert [p for p, _ in run.failures] == [bad]
  assert all(len(r["n_best"]) >= 1 for r in run.records)


@pytest.mark.slow
def test_predict_binary_over_a_folder_and_a_glob(model_base, tmp_path):
  """Issue 12: a folder with a corrupt file: the others are written, the bad one named,
  exit code 1; --output csv / jsonl; --n_best=3 shows the beam's label sets."""
  paths, bad = _folder_with_a_truncated_jpeg(tmp_path)
  out = tmp_path / "labels.jsonl"
  result = run_binary("cnn_rnn_tf.predict", f"--saved_model={model_base / '1'}",
                      f"--output={out}", "--n_best=3", "--batch_size=2",
                      str(tmp_path / "photos"))
  assert result.returncode == 1, result.stderr[-3000:]
  assert f"{bad}: " in result.stderr and "1 of" in result.stderr
  rows = [json.loads(line) for line in out.read_text().splitlines()]
  assert sorted(r["image"] for r in rows if "error" not in r) == sorted(paths)
  assert [r["image"] for r in rows if "error" in r] == [bad]
  assert all(1 <= len(r["n_best"]) <= 3 for r in rows if "error" not in r)

  text = run_binary("cnn_rnn_tf.predict", f"--saved_model={model_base / '1'}", "--n_best=3",
                    str(tmp_path / "photos" / "*.png"))
  assert text.returncode == 0, text.stderr[-3000:]
  lines = text.stdout.splitlines()
  assert sum(not line.startswith(" ") for line in lines) == sum(p.endswith(".png")
                                                                 for p in paths)
  assert any(line.startswith("  1. ") for line in lines)
