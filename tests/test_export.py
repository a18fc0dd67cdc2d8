"""SavedModel export for TF Serving (cnn_rnn_tf.export_lib, cnn_rnn_tf.export).

The export is compared with the in-memory model: inference.predict_from_features on
backbone(images.resize(images.decode_rgb(bytes))), the computation evaluation runs.
"""

import ast
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from cnn_rnn_tf import backbones
from cnn_rnn_tf import export_inputs
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.serving import local
import export_fixtures

ROOT = pathlib.Path(__file__).resolve().parent.parent
PY_FUNC_OPS = {"PyFunc", "PyFuncStateless", "EagerPyFunc"}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  return export_fixtures.make_workdir(tmp_path_factory.mktemp("run") / "cnn_rnn")


@pytest.fixture(scope="module")
def export_dir(workdir, tmp_path_factory):
  return export_lib.export(workdir, str(tmp_path_factory.mktemp("models") / "cnn_rnn"))


@pytest.fixture(scope="module")
def loaded(export_dir):
  return tf.saved_model.load(export_dir)


def in_memory(workdir):
  """(features_fn, decode_fn): the in-memory model's path from images to outputs."""
  config, vocab, backbone, head, *_ = workdir_lib.load_trained(workdir)
  size = backbones.backbone_image_size(config.model.backbone, config.model.image_size)

  def from_features(features):
    out = inference.predict_from_features(
        head, features, beam_size=config.decode.beam_size,
        max_length=config.decode.max_length, min_length=config.decode.min_length)
    out = {k: v.numpy() for k, v in out.items()}
    out["label_names"] = np.array([[vocab.names[i] if i >= 0 else "" for i in row]
                                   for row in out["labels"]], dtype=object)
    return out

  def features_of(images):  # list of [H, W, 3] arrays, any sizes
    resized = tf.concat([images_lib.resize(np.asarray(im)[None], size)
                         for im in images], axis=0)
    return backbone(resized, training=False).numpy()

  return from_features, features_of


def decoded(image_bytes):
  return [tf.io.decode_image(b, channels=3, expand_animations=False).numpy()
          for b in image_bytes]


def assert_same(got, want):
  np.testing.assert_array_equal(got["labels"], want["labels"])
  np.testing.assert_array_equal(got["num_labels"], want["num_labels"])
  np.testing.assert_array_equal(np.asarray(got["label_names"]).astype(str),
                                np.asarray(want["label_names"]).astype(str))
  assert ("path_log_prob" in got) == ("path_log_prob" in want)
  if "path_log_prob" in want:  # a head with a path (cnn_rnn)
    np.testing.assert_allclose(got["path_log_prob"], want["path_log_prob"], rtol=1e-4,
                               atol=1e-5)
  np.testing.assert_allclose(got["label_scores"], want["label_scores"], rtol=1e-4, atol=1e-6)


def numpy_outputs(out):
  return {k: v.numpy() for k, v in out.items()}


def test_layout_assets_and_config(export_dir, workdir):
  base = pathlib.Path(export_dir).parent
  assert pathlib.Path(export_dir).name == "1"
  assert sorted(p.name for p in base.iterdir()) == ["1"]  # no temp folder left
  root = pathlib.Path(export_dir)
  assert (root / "saved_model.pb").is_file()
  assert (root / "variables" / "variables.index").is_file()
  assert (root / "assets" / "labels.txt").read_text().split() == list(export_fixtures.LABELS)
  config = json.loads((root / "assets.extra" / "config.json").read_text())
  assert config == json.loads((pathlib.Path(workdir) / "config.json").read_text())
  assert (root / "assets.extra" / "tf_serving_warmup_requests").stat().st_size > 0


def test_three_signatures_match_the_in_memory_model(loaded, workdir):
  from_features, features_of = in_memory(workdir)
  images = list(export_fixtures.encoded_images().values())

  got = numpy_outputs(loaded.signatures["serving_default"](image_bytes=tf.constant(images)))
  want = from_features(features_of(decoded(images)))
  assert_same(got, want)
  assert got["labels"].dtype == np.int32 and got["labels"].shape == (len(images), 6)
  assert got["label_scores"].shape == (len(images), len(export_fixtures.LABELS))
  assert got["num_labels"].max() >= 2, "fixture weights should give multi-label paths"
  assert len({tuple(r) for r in got["labels"]}) >= 2, "paths should differ between images"

  pixels = np.random.default_rng(0).uniform(0, 255, (3, 45, 29, 3)).astype(np.float32)
  got = numpy_outputs(loaded.signatures["predict_images"](images=tf.constant(pixels)))
  assert_same(got, from_features(features_of(list(pixels))))

  features = features_of(decoded(images))
  got = numpy_outputs(loaded.signatures["predict_features"](features=tf.constant(features)))
  assert_same(got, from_features(features))


def test_local_predict_matches_the_signature(export_dir, loaded, tmp_path):
  images = export_fixtures.encoded_images()
  out = local.predict(loaded, list(images.values()))
  want = numpy_outputs(loaded.signatures["serving_default"](
      image_bytes=tf.constant(list(images.values()))))
  np.testing.assert_array_equal(out["labels"], want["labels"])
  # predict_images decodes here and sends pixels: the same labels.
  by_pixels = local.predict(loaded, list(images.values()), signature="predict_images")
  np.testing.assert_array_equal(by_pixels["labels"], out["labels"])
  with pytest.raises(ValueError, match="no signature 'nope'"):
    local.predict(loaded, list(images.values()), signature="nope")
  with pytest.raises(ValueError, match="wrap it in a list"):
    local.predict(loaded, images["rgb.png"])  # a scalar
  with pytest.raises(ValueError, match=r"shape \[batch\], got shape \[1, 2\]"):
    local.predict(loaded, np.array([[images["rgb.png"], images["rgb.png"]]], dtype=object))


def test_n_best_outputs_are_the_beams_candidates_best_first(loaded, workdir):
  from_features, features_of = in_memory(workdir)
  images = list(export_fixtures.encoded_images().values())
  got = numpy_outputs(loaded.signatures["serving_default"](image_bytes=tf.constant(images)))
  want = from_features(features_of(decoded(images)))
  beam = json.loads((pathlib.Path(workdir) / "config.json").read_text())["decode"]["beam_size"]
  assert got["paths"].dtype == np.int32 and got["paths"].shape == (len(images), beam, 6)
  assert got["paths_log_prob"].shape == (len(images), beam)
  assert got["paths_label_names"].shape == (len(images), beam, 6)
  np.testing.assert_array_equal(got["paths"], want["paths"])
  np.testing.assert_allclose(got["paths_log_prob"], want["paths_log_prob"], rtol=1e-4,
                             atol=1e-5)
  np.testing.assert_array_equal(got["paths"][:, 0], got["labels"])
  np.testing.assert_array_equal(got["paths_log_prob"][:, 0], got["path_log_prob"])
  assert np.all(np.diff(got["paths_log_prob"], axis=1) <= 0)
  names = got["paths_label_names"].astype(str)
  labels = list(export_fixtures.LABELS)
  vocab = workdir_lib.load_vocab(workdir)
  for i, j, t in zip(*np.nonzero(got["paths"] >= 0)):
    assert names[i, j, t] == vocab.names[got["paths"][i, j, t]] and names[i, j, t] in labels
  assert np.all(names[got["paths"] < 0] == "")


def test_nan_inputs_are_refused_naming_the_element(loaded):
  pixels = np.full((3, 8, 8, 3), 100.0, np.float32)
  pixels[2, 3, 4, 1] = np.nan
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"images\[2\] has NaN or Inf"):
    loaded.signatures["predict_images"](images=tf.constant(pixels))
  features = np.zeros((2, 256), np.float32)
  features[1, 7] = np.inf
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"features\[1\] has NaN or Inf"):
    loaded.signatures["predict_features"](features=tf.constant(features))
  out = loaded.signatures["predict_features"](features=tf.constant(features[:1]))
  assert out["labels"].shape == (1, 6)


@pytest.mark.parametrize("signature, key, shape, received", [
    ("serving_default", "image_bytes", [], "[]"),  # one image, not wrapped in a list
    ("serving_default", "image_bytes", [1, 1], "[1, 1]"),
    ("predict_images", "images", [8, 8, 3], "[8, 8, 3]"),  # one image without the batch
    ("predict_images", "images", [1, 8, 8, 4], "[1, 8, 8, 4]"),  # RGBA
    ("predict_features", "features", [256], "[256]"),
    ("predict_features", "features", [2, 3], "[2, 3]"),  # another backbone's features
])
def test_input_of_the_wrong_shape_is_refused_naming_it(loaded, signature, key, shape,
                                                       received):
  """Issue 13: a signature's input spec is not enforced when it is called (nor by TF
  Serving): the export checks the shape itself, naming the input, the shape expected and
  the one received."""
  expected = {"image_bytes": r"\[batch\] \(a vector of encoded images; one image is \[1\]\)",
              "images": r"\[batch, height, width, 3\]", "features": r"\[batch, 256\]"}[key]
  png = export_fixtures.encoded_images()["rgb.png"]
  value = tf.fill(shape, tf.constant(png)) if key == "image_bytes" else tf.zeros(shape)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=rf"{key} must have shape {expected}.*, got shape {re.escape(received)}"):
    loaded.signatures[signature](**{key: value})
  good = {"image_bytes": tf.constant([png, png]), "images": tf.zeros([2, 8, 8, 3]),
          "features": tf.zeros([2, 256])}[key]
  out = loaded.signatures[signature](**{key: good})  # a valid batch still works
  assert out["labels"].shape == (2, 6) and out["num_labels"].shape == (2,)


def test_images_without_height_or_width_are_refused_naming_the_shape(loaded):
  for shape in ([1, 0, 0, 3], [2, 5, 0, 3]):
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=re.escape(f"images must have height and width >= 1, got shape "
                                       f"{shape}.".replace("'", ""))):
      loaded.signatures["predict_images"](images=tf.zeros(shape))


def test_empty_batch_gives_empty_outputs(loaded):
  inputs = {"serving_default": {"image_bytes": tf.constant([], tf.string)},
            "predict_images": {"images": tf.zeros([0, 7, 9, 3])},
            "predict_features": {"features": tf.zeros([0, 256])}}
  for name, kwargs in inputs.items():
    out = loaded.signatures[name](**kwargs)
    assert out["labels"].shape == (0, 6), name
    assert out["label_names"].shape == (0, 6), name
    assert out["num_labels"].shape == (0,) and out["path_log_prob"].shape == (0,), name
    assert out["label_scores"].shape == (0, 6), name
    assert out["paths"].shape[0] == 0 and out["paths_log_prob"].shape[0] == 0, name


@pytest.mark.parametrize("bad, message", [
    (b"not an image at all", r"image_bytes\[1\]: not a JPEG, PNG, GIF, BMP or still WebP"),
    (b"", r"image_bytes\[1\]: "),
    ("truncated_png", r"image_bytes\[1\]: its png data does not decode \(corrupt or truncated"),
    ("truncated_jpeg", r"image_bytes\[1\]: its jpeg data does not decode \(corrupt or trunc"),
])
def test_undecodable_image_fails_the_request(loaded, bad, message):
  good = export_fixtures.encoded_images()["rgb.png"]
  if bad == "truncated_png":
    bad = good[:60]
  if bad == "truncated_jpeg":  # cut in the scan data: the header is whole
    bad = export_fixtures.encode(export_fixtures.random_pixels(64, 64, 3), "jpeg")
    bad = bad[:len(bad) // 2]
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    loaded.signatures["serving_default"](image_bytes=tf.constant([good, bad]))
  # The model still answers afterwards.
  out = loaded.signatures["serving_default"](image_bytes=tf.constant([good]))
  assert out["labels"].shape == (1, 6)


def test_one_pixel_and_very_large_images(loaded, workdir):
  from_features, features_of = in_memory(workdir)
  tiny = export_fixtures.encode(export_fixtures.random_pixels(1, 1, 3), "png")
  large = export_fixtures.large_image(2400, 3200)
  images = [tiny, large]
  got = numpy_outputs(loaded.signatures["serving_default"](image_bytes=tf.constant(images)))
  assert_same(got, from_features(features_of(decoded(images))))


def test_warmup_records_parse_and_succeed(export_dir, loaded):
  requests = export_inputs.read_warmup_requests(export_dir)
  assert len(requests) >= 2
  for request in requests:
    assert request.model_spec.signature_name == "serving_default"
    images = tf.make_ndarray(request.inputs["image_bytes"])
    out = loaded.signatures["serving_default"](image_bytes=tf.constant(images))
    assert out["num_labels"].shape == (len(images),)


def test_graph_has_only_registered_ops_and_no_py_func(export_dir):
  ops = export_fixtures.graph_ops(export_dir)
  assert "While" in ops or "StatelessWhile" in ops  # the beam search is in the graph
  assert "LookupTableFindV2" in ops  # label_names
  assert not ops & PY_FUNC_OPS
  unregistered = sorted(op for op in ops if op_def_registry.get(op) is None)
  assert not unregistered, f"ops not in TF's registered op set: {unregistered}"


def test_versions_increase_and_are_never_overwritten(workdir, tmp_path):
  base = str(tmp_path / "models")
  assert export_lib.next_version(base) == 1
  first = export_lib.export(workdir, base, beam_size=1, max_length=2, min_length=1)
  assert first == os.path.join(base, "1")
  config = json.loads(pathlib.Path(first, "assets.extra", "config.json").read_text())
  assert {k: config["decode"][k] for k in ("beam_size", "max_length", "min_length")} == {
      "beam_size": 1, "max_length": 2, "min_length": 1}
  out = tf.saved_model.load(first).signatures["serving_default"](
      image_bytes=tf.constant(list(export_fixtures.encoded_images().values())))
  assert out["labels"].shape[1] == 2 and min(out["num_labels"].numpy()) >= 1
  with pytest.raises(ValueError, match="min_length"):
    export_lib.export(workdir, base, min_length=7)  # more than the 6 labels
  assert sorted(os.listdir(base)) == ["1"]
  os.makedirs(os.path.join(base, "7"))
  with pytest.raises(FileExistsError, match="7"):
    export_lib.export(workdir, base, version=7)
  assert export_lib.next_version(base) == 8


def test_two_exports_racing_for_one_version_name_the_path(workdir, tmp_path, monkeypatch):
  base = tmp_path / "models"
  real_validate = export_lib.validate

  def other_export_wins(export_dir):  # another export publishes version 1 meanwhile
    real_validate(export_dir)
    shutil.copytree(export_dir, base / "1")

  monkeypatch.setattr(export_lib, "validate", other_export_wins)
  with pytest.raises(FileExistsError, match=f"{base / '1'}.*another export"):
    export_lib.export(workdir, str(base))
  assert sorted(p.name for p in base.iterdir()) == ["1"]  # the winner, no temp folder


def test_failure_while_writing_leaves_no_version(workdir, tmp_path, monkeypatch):
  base = tmp_path / "models"

  def broken(export_dir):
    assert pathlib.Path(export_dir).name.startswith(export_lib.TMP_PREFIX)
    raise RuntimeError("disk full (simulated)")

  monkeypatch.setattr(export_lib, "validate", broken)
  with pytest.raises(RuntimeError, match="simulated"):
    export_lib.export(workdir, str(base))
  assert list(base.iterdir()) == []  # no version, and the temp folder is cleaned up


def test_bce_head_exports_and_matches(tmp_path):
  workdir = export_fixtures.make_workdir(tmp_path / "bce", head="bce")
  path = export_lib.export(workdir, str(tmp_path / "models"))
  loaded = tf.saved_model.load(path)
  from_features, features_of = in_memory(workdir)
  images = list(export_fixtures.encoded_images().values())
  got = numpy_outputs(loaded.signatures["serving_default"](image_bytes=tf.constant(images)))
  assert_same(got, from_features(features_of(decoded(images))))
  # Only what the head has: no path, so no path_log_prob and no paths.
  assert sorted(got) == sorted(export_lib.output_keys(workdir_lib.load_config(workdir)))
  assert not set(export_lib.PATH_OUTPUT_KEYS) & set(got)
  assert set(export_lib.PATH_OUTPUT_KEYS) <= set(export_lib.output_keys(
      export_fixtures.demo_config(head="cnn_rnn")))


def test_export_and_serving_do_not_import_the_trainer():
  """Export knows the model, not the trainer (nor the data pipeline)."""
  forbidden = ("cnn_rnn_tf.train_lib", "cnn_rnn_tf.evaluate_lib", "cnn_rnn_tf.data")
  files = ["cnn_rnn_tf/export_lib.py", "cnn_rnn_tf/export.py", "cnn_rnn_tf/predict.py",
           "cnn_rnn_tf/inference.py", "cnn_rnn_tf/model.py", "cnn_rnn_tf/decoding.py",
           *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cnn_rnn_tf/serving").glob("*.py"))]
  for name in files:
    tree = ast.parse((ROOT / name).read_text())
    for node in ast.walk(tree):
      if isinstance(node, ast.Import):
        modules = [a.name for a in node.names]
      elif isinstance(node, ast.ImportFrom):
        modules = [f"{node.module}.{a.name}" for a in node.names]
      else:
        continue
      for module in modules:
        assert not module.startswith(forbidden), f"{name} imports {module}"


def test_libraries_import_no_binary():
  """serving/ and the export library import no binary (binaries import libraries)."""
  binaries = {"cnn_rnn_tf.predict", "cnn_rnn_tf.export", "cnn_rnn_tf.train",
              "cnn_rnn_tf.evaluate", "cnn_rnn_tf.visualize", "cnn_rnn_tf.demo",
              "cnn_rnn_tf.serving.client", "cnn_rnn_tf.serving.server"}
  libraries = ["cnn_rnn_tf/export_lib.py", "cnn_rnn_tf/serving/local.py",
               "cnn_rnn_tf/serving/client_lib.py", "cnn_rnn_tf/serving/server_lib.py",
               "cnn_rnn_tf/serving/format.py", "cnn_rnn_tf/serving/__init__.py"]
  for name in libraries:
    for node in ast.walk(ast.parse((ROOT / name).read_text())):
      if isinstance(node, ast.Import):
        modules = {a.name for a in node.names}
      elif isinstance(node, ast.ImportFrom):
        modules = {node.module} | {f"{node.module}.{a.name}" for a in node.names}
      else:
        continue
      assert not modules & binaries, f"{name} imports the binary {modules & binaries}"
  # ... and defines no flags: importing a library leaves absl's flags as they were.
  code = ("import tensorflow; from absl import flags; before = set(flags.FLAGS); "
          "import cnn_rnn_tf.export_lib, "
          "cnn_rnn_tf.serving.local, cnn_rnn_tf.serving.client_lib, "
          "cnn_rnn_tf.serving.server_lib; assert set(flags.FLAGS) == before, "
          "set(flags.FLAGS) - before")
  subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True)


def test_image_limit_is_built_into_the_export(loaded):
  """A header over max_pixels (40 M) is refused naming the index and the size, before any
  decode; predict_images refuses such arrays too."""
  good = export_fixtures.encoded_images()["rgb.png"]
  huge = export_fixtures.huge_png(20000, 20000, header_only=True)
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match=r"image_bytes\[2\]: image of 20000x20000 = 400000000 pixels .*"
                           r"over the limit of 40000000"):
    loaded.signatures["serving_default"](image_bytes=tf.constant([good, good, huge]))
  with pytest.raises(tf.errors.InvalidArgumentError, match="40000001 pixels > 40000000"):
    loaded.signatures["predict_images"](images=tf.zeros([0, 1, 40_000_001, 3]))


_MEMORY_PROBE = textwrap.dedent("""
    import resource, sys
    import tensorflow as tf
    export_dir, good_path, huge_path = sys.argv[1:4]
    model = tf.saved_model.load(export_dir)
    fn = model.signatures["serving_default"]
    good, huge = open(good_path, "rb").read(), open(huge_path, "rb").read()
    fn(image_bytes=tf.constant([good]))  # warm: graphs built, weights in memory
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    try:
      fn(image_bytes=tf.constant([good, huge, huge]))
      print("ANSWERED")
    except tf.errors.InvalidArgumentError as e:
      print("REFUSED", " ".join(e.message.split())[:2000])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print("GROWTH_KB", after - before)
""")


@pytest.mark.slow
def test_huge_png_costs_under_1gb_of_peak_memory(export_dir, tmp_path):
  """Issue 13: a 20000x20000 PNG (1.2 GB decoded) through serving_default, peak RSS growth
  measured in a fresh process (resource.getrusage ru_maxrss), not timed."""
  good = tmp_path / "good.png"
  good.write_bytes(export_fixtures.encoded_images()["rgb.png"])
  huge = tmp_path / "huge.png"
  huge.write_bytes(export_fixtures.huge_png(20000, 20000))
  result = subprocess.run([sys.executable, "-c", _MEMORY_PROBE, export_dir, str(good),
                           str(huge)], capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
  assert "REFUSED" in lines and "20000x20000" in lines["REFUSED"], result.stdout
  growth_mb = int(lines["GROWTH_KB"]) / 1024
  print(f"peak RSS growth: {growth_mb:.1f} MB")
  assert growth_mb < 1024, f"peak RSS grew by {growth_mb:.0f} MB"


# ---- Slow: subprocesses. ----

_FRESH_PROCESS = textwrap.dedent("""
    import os, sys
    sys.modules["cnn_rnn_tf"] = None  # the export must not need the project's code
    try:
      import cnn_rnn_tf
      raise SystemExit("cnn_rnn_tf is importable; the test would prove nothing")
    except ImportError:
      pass
    import numpy as np
    import tensorflow as tf
    export_dir, inputs_dir, out_path = sys.argv[1:4]
    model = tf.saved_model.load(export_dir)
    names = sorted(os.listdir(os.path.join(inputs_dir, "images")))
    images = [open(os.path.join(inputs_dir, "images", n), "rb").read() for n in names]
    arrays = np.load(os.path.join(inputs_dir, "arrays.npz"))
    results = {}
    calls = {"serving_default": {"image_bytes": tf.constant(images)},
             "predict_images": {"images": tf.constant(arrays["images"])},
             "predict_features": {"features": tf.constant(arrays["features"])}}
    for signature, kwargs in calls.items():
      for key, value in model.signatures[signature](**kwargs).items():
        value = value.numpy()
        results[f"{signature}/{key}"] = value.astype(str) if value.dtype == object else value
    np.savez(out_path, **results)
    print("modules:", sorted(m for m in sys.modules if m.startswith("cnn_rnn_tf")))
""")


@pytest.mark.slow
def test_loads_in_a_process_that_cannot_import_cnn_rnn_tf(export_dir, workdir, tmp_path):
  from_features, features_of = in_memory(workdir)
  images = export_fixtures.encoded_images()
  names = sorted(images)
  export_fixtures.write_images(tmp_path / "inputs" / "images", images)
  pixels = np.random.default_rng(1).uniform(0, 255, (2, 64, 48, 3)).astype(np.float32)
  features = features_of(decoded([images[n] for n in names]))
  np.savez(tmp_path / "inputs" / "arrays.npz", images=pixels, features=features)
  script = tmp_path / "fresh.py"
  script.write_text(_FRESH_PROCESS)
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(
      [sys.executable, str(script), export_dir, str(tmp_path / "inputs"),
       str(tmp_path / "out.npz")], cwd=cwd, env=env, capture_output=True, text=True,
      timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "modules: ['cnn_rnn_tf']" in result.stdout  # only the None placeholder
  out = np.load(tmp_path / "out.npz")
  want = {"serving_default": from_features(features),
          "predict_images": from_features(features_of(list(pixels))),
          "predict_features": from_features(features)}
  for signature, expected in want.items():
    got = {k.split("/")[1]: out[k] for k in out.files if k.startswith(signature + "/")}
    assert_same(got, expected)


@pytest.mark.slow
def test_saved_model_cli_lists_the_signatures(export_dir):
  cli = pathlib.Path(sys.executable).parent / "saved_model_cli"
  result = subprocess.run([str(cli), "show", "--dir", export_dir, "--all"],
                          capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  shown = result.stdout
  blocks = {}
  for block in shown.split("signature_def[")[1:]:
    name = block[1:block.index("']")]
    blocks[name] = block
  # The inputs have unknown rank: a signature's shape is not enforced when it is called, so
  # the export checks it in the graph (test_input_of_the_wrong_shape_is_refused_naming_it);
  # export/README.md states the shapes: image_bytes [batch], images [batch, H, W, 3], ...
  for signature, input_key, dtype in [("serving_default", "image_bytes", "DT_STRING"),
                                      ("predict_images", "images", "DT_FLOAT"),
                                      ("predict_features", "features", "DT_FLOAT")]:
    block = blocks[signature]
    inputs, outputs = block.split("contains the following output(s):")
    assert f"inputs['{input_key}']" in inputs
    assert f"dtype: {dtype}" in inputs and "shape: unknown_rank" in inputs, inputs
    for key, out_dtype, out_shape in [("labels", "DT_INT32", "(-1, 6)"),
                                      ("label_names", "DT_STRING", "(-1, 6)"),
                                      ("num_labels", "DT_INT32", "(-1)"),
                                      ("path_log_prob", "DT_FLOAT", "(-1)"),
                                      ("label_scores", "DT_FLOAT", "(-1, 6)")]:
      part = outputs.split(f"outputs['{key}']")[1].split("name:")[0]
      assert out_dtype in part and out_shape in part, (signature, key, part)
  readme = (ROOT / "export" / "README.md").read_text()
  assert "`image_bytes` string `[batch]`" in readme and "must have shape [batch]" in readme


def _numeric(base):
  return sorted(p.name for p in pathlib.Path(base).iterdir() if p.name.isdigit())


@pytest.mark.slow
def test_killed_export_leaves_no_version_and_the_next_gets_the_next_number(
    workdir, export_dir, tmp_path):
  base = tmp_path / "models"
  shutil.copytree(export_dir, base / "1")
  command = [sys.executable, "-m", "cnn_rnn_tf.export", f"--workdir={workdir}",
             f"--export_base={base}"]
  process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL)
  try:
    # Kill as soon as the temp folder has content: the SavedModel is being written.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and process.poll() is None:
      tmp = [p for p in base.iterdir() if p.name.startswith(export_lib.TMP_PREFIX)]
      if tmp and any(tmp[0].iterdir()):
        break
      time.sleep(0.005)
    assert process.poll() is None, "the export finished before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
  finally:
    if process.poll() is None:
      process.kill()
  assert process.returncode == -signal.SIGKILL
  assert _numeric(base) == ["1"]  # the killed one published nothing
  assert [p.name for p in base.iterdir() if p.name.startswith(export_lib.TMP_PREFIX)]

  assert export_lib.export(workdir, str(base)) == str(base / "2")
  assert _numeric(base) == ["1", "2"]
  assert tf.saved_model.load(str(base / "2")).signatures["serving_default"] is not None


# ---- Calibrated BCE: the thresholds travel inside the SavedModel. ----

_THRESHOLDS_PROBE = textwrap.dedent("""
    import sys
    sys.modules["cnn_rnn_tf"] = None  # the export must not need the project's code
    import numpy as np
    import tensorflow as tf
    export_dir, features_path, out_path = sys.argv[1:4]
    model = tf.saved_model.load(export_dir)
    out = model.signatures["predict_features"](features=tf.constant(np.load(features_path)))
    np.savez(out_path, **{k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy())
                          for k, v in out.items()})
""")


def _probe_without_the_package(export_dir, features, tmp_path):
  """predict_features of the export on `features`, in a process that cannot import the
  package (`_THRESHOLDS_PROBE`); its outputs as NumPy (strings decoded)."""
  np.save(tmp_path / "features.npy", features)
  script = tmp_path / "probe.py"
  script.write_text(_THRESHOLDS_PROBE)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  cwd = tmp_path / "cwd"
  cwd.mkdir()
  result = subprocess.run([sys.executable, str(script), export_dir,
                           str(tmp_path / "features.npy"), str(tmp_path / "out.npz")],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  return np.load(tmp_path / "out.npz")


def _calibrated_workdir(tmp_path):
  """A bce workdir with thresholds.json: per class the median probability of 12 images."""
  workdir = export_fixtures.make_workdir(tmp_path / "bce", head="bce")
  config, vocab, backbone, head, *_ = workdir_lib.load_trained(workdir)
  size = backbones.backbone_image_size(config.model.backbone, config.model.image_size)
  pixels = np.random.default_rng(3).uniform(0, 255, (12, size, size, 3)).astype(np.float32)
  features = backbone(pixels, training=False).numpy()  # [12, D]
  probs = tf.sigmoid(head(features)).numpy()  # [12, K]
  thresholds = np.median(probs, axis=0).astype(np.float32)  # [K]
  workdir_lib.save_thresholds(workdir, vocab.names, thresholds, step=config.train.num_steps)
  return workdir, config, vocab, features, probs, thresholds


def _expected_sets(probs, thresholds, max_length):
  return [[int(j) for j in np.argsort(-p, kind="stable") if p[j] >= thresholds[j]][:max_length]
          for p in probs]


@pytest.mark.slow
def test_calibrated_thresholds_are_applied_by_the_export_loaded_without_the_package(tmp_path):
  workdir, config, vocab, features, probs, thresholds = _calibrated_workdir(tmp_path)
  length = min(config.decode.max_length, vocab.num_labels)
  want = _expected_sets(probs, thresholds, length)
  at_half = _expected_sets(probs, np.full_like(thresholds, 0.5), length)
  assert want != at_half  # the thresholds change the label sets, or the test proves nothing
  below_half = [(i, j) for i, s in enumerate(want) for j in s if probs[i, j] < 0.5]
  assert below_half  # some label with p < 0.5 is predicted (its threshold is lower)

  path = export_lib.export(workdir, str(tmp_path / "models"))
  baked = json.load(open(os.path.join(path, "assets.extra", export_lib.THRESHOLDS_FILE)))
  assert baked == pytest.approx(dict(zip(vocab.names, thresholds.tolist())))
  os.remove(workdir_lib.thresholds_path(workdir))  # the export must not read the workdir
  out = _probe_without_the_package(path, features, tmp_path)
  np.testing.assert_allclose(out["label_scores"], probs, rtol=1e-4, atol=1e-6)
  for i, expected in enumerate(want):
    n = int(out["num_labels"][i])
    assert out["labels"][i, :n].tolist() == expected, (i, probs[i], thresholds)
    assert out["label_names"][i, :n].tolist() == [vocab.names[j] for j in expected]
    assert out["labels_threshold"][i, :n].tolist() == expected
  assert "paths" not in out.files  # a bce export has no path


def test_export_without_thresholds_keeps_one_half(tmp_path):
  workdir, config, vocab, features, probs, thresholds = _calibrated_workdir(tmp_path)
  os.remove(workdir_lib.thresholds_path(workdir))
  path = export_lib.export(workdir, str(tmp_path / "models"))
  assert not os.path.exists(os.path.join(path, "assets.extra", export_lib.THRESHOLDS_FILE))
  out = tf.saved_model.load(path).signatures["predict_features"](
      features=tf.constant(features))
  length = min(config.decode.max_length, vocab.num_labels)
  want = _expected_sets(probs, np.full_like(thresholds, 0.5), length)
  for i, expected in enumerate(want):
    n = int(out["num_labels"][i])
    assert out["labels"][i, :n].numpy().tolist() == expected


def _as_masks(ids, num_labels):
  """int [B, L] label ids, -1 padded -> bool [B, K]."""
  masks = np.zeros((len(ids), num_labels), bool)
  for i, row in enumerate(ids):
    masks[i, [j for j in row if j >= 0]] = True
  return masks


@pytest.mark.slow
@pytest.mark.parametrize("head", ["cnn_rnn", "bce"])
def test_named_decoders_of_the_export_loaded_without_the_package_equal_evaluates(tmp_path,
                                                                                 head):
  """Each decoder's labels_<name> output of the export, run in a process that cannot import
  the package, is the set evaluate counts for that decoder (rule all_<name>)."""
  workdir = export_fixtures.make_workdir(tmp_path / head, head=head)
  config, vocab, backbone, model, *_ = workdir_lib.load_trained(workdir)
  size = backbones.backbone_image_size(config.model.backbone, config.model.image_size)
  pixels = np.random.default_rng(4).uniform(0, 255, (16, size, size, 3)).astype(np.float32)
  features = backbone(pixels, training=False).numpy()  # [16, D]
  pred = inference.predict_from_features(model, features, inference.decode_options(config))
  scores = pred["marginal_scores" if head == "cnn_rnn" else "label_scores"].numpy()
  thresholds = np.median(scores, axis=0).astype(np.float32)  # [K]
  workdir_lib.save_thresholds(workdir, vocab.names, thresholds, step=config.train.num_steps)
  # What evaluate counts: its predictions (thresholds and all) and the head's rule masks.
  pred = inference.predict_from_features(model, features, inference.decode_options(config),
                                         thresholds=thresholds)
  masks = inference.rule_masks(head, {k: v.numpy() for k, v in pred.items()},
                               vocab.num_labels, thresholds)
  rules = {"cnn_rnn": {"path": "all", "marginals": "all_marginals",
                       "expected_f1": "all_expected_f1"},
           "bce": {"threshold": "all_calibrated", "expected_f1": "all_expected_f1"}}[head]

  path = export_lib.export(workdir, str(tmp_path / "models"))
  out = _probe_without_the_package(path, features, tmp_path)
  assert {f"labels_{name}" for name in rules} <= set(out.files)
  differ = 0
  for name, rule in rules.items():
    got = _as_masks(out[f"labels_{name}"], vocab.num_labels)
    np.testing.assert_array_equal(got, masks[rule], err_msg=name)
    names = out[f"label_names_{name}"]
    assert all(names[i, t] == vocab.names[j] for i, t in zip(*np.nonzero(
        out[f"labels_{name}"] >= 0)) for j in [out[f"labels_{name}"][i, t]])
    differ += not np.array_equal(masks[rule], masks[next(iter(rules.values()))])
  assert differ, "the decoders should not all give the same sets, or the test proves little"
  np.testing.assert_array_equal(out["labels"], out[f"labels_{next(iter(rules))}"])


# ---- Planted-bug tests (issue 20): each fails if the named bug is put back. ----

def test_calibrated_thresholds_are_applied_by_the_export_in_process(tmp_path):
  """The fast twin of the slow test above: the SavedModel's predict_features picks each label
  whose probability reaches ITS thresholds.json value (not 0.5), loaded in this process."""
  workdir, config, vocab, features, probs, thresholds = _calibrated_workdir(tmp_path)
  length = min(config.decode.max_length, vocab.num_labels)
  want = _expected_sets(probs, thresholds, length)
  assert want != _expected_sets(probs, np.full_like(thresholds, 0.5), length)
  path = export_lib.export(workdir, str(tmp_path / "models"))
  out = tf.saved_model.load(path).signatures["predict_features"](
      features=tf.constant(features))
  np.testing.assert_allclose(out["label_scores"], probs, rtol=1e-4, atol=1e-6)
  got = [out["labels"][i, :int(out["num_labels"][i])].numpy().tolist()
         for i in range(len(want))]
  assert got == want, (probs, thresholds)


def test_export_falls_back_from_a_corrupt_latest_checkpoint(tmp_path, caplog):
  """Issue 20 item 7: a truncated latest checkpoint is named, the previous one exported; with
  none readable, the error gives the --checkpoint= hint (not a bare IndexError)."""
  workdir = export_fixtures.make_workdir(tmp_path / "run")
  trained = workdir_lib.load_trained(workdir)
  first = trained.checkpoint_path
  checkpoint = workdir_lib.make_checkpoint(trained.config, trained.backbone, trained.head)
  manager = tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(workdir), 2)
  bad = manager.save(checkpoint_number=int(first.rsplit("-", 1)[1]) + 1)
  data = tf.io.gfile.glob(bad + ".data-*")[0]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 3)
  with caplog.at_level("WARNING"):
    path = export_lib.export(workdir, str(tmp_path / "export"))
  assert bad in caplog.text and first in caplog.text
  config = json.loads((pathlib.Path(path) / "assets.extra" / "config.json").read_text())
  assert config["model"]["head"] == "cnn_rnn"
  data = tf.io.gfile.glob(first + ".data-*")[0]
  with open(data, "r+b") as f:
    f.truncate(os.path.getsize(data) // 3)
  with pytest.raises(workdir_lib.CorruptCheckpointError, match="--checkpoint="):
    export_lib.export(workdir, str(tmp_path / "export"))
