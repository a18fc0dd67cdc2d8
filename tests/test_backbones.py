"""Backbones (cnn_rnn_tf.backbones): contract, freezing, and VGG16 from a local weights file."""

import json
import os
import pathlib
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import backbones


def test_small_cnn_contract_and_freezing():
  frozen = backbones.build_backbone("small_cnn", image_size=32)
  assert frozen.input_shape == (None, 32, 32, 3)
  assert frozen.output_shape == (None, backbones.REGISTRY["small_cnn"].feature_dim)
  assert not frozen.trainable_weights
  tuned = backbones.build_backbone("small_cnn", image_size=32, trainable=True)
  assert tuned.trainable_weights
  assert tuned.get_layer(backbones.REGISTRY["small_cnn"].grad_cam_layer)


def test_small_cnn_filters_default_and_demo():
  """Issue 18 item 5: the package default is 32/64/128/128 again; the demo's thin CNN
  (16/32/64/64) is its config's `model.small_cnn_filters`, so the demo model is unchanged."""
  from cnn_rnn_tf import config_checks, config_lib, demo_config  # pylint: disable=g-import-not-at-top

  def widths(model):
    return [model.get_layer(n).filters for n in ("conv1", "conv2", "conv3", "last_conv")]

  assert widths(backbones.build_backbone("small_cnn", image_size=16)) == [32, 64, 128, 128]
  assert tuple(config_lib.default_config().model.small_cnn_filters) == (32, 64, 128, 128)
  demo = demo_config.get_config("")
  assert tuple(demo.model.small_cnn_filters) == (16, 32, 64, 64)
  thin = backbones.build_backbone("small_cnn", image_size=16,
                                  filters=demo.model.small_cnn_filters)
  assert widths(thin) == [16, 32, 64, 64]
  assert config_checks.problems(config_lib.default_config()) == []
  bad = config_lib.default_config()
  bad.model.small_cnn_filters = (16, 32, 64)
  assert any("model.small_cnn_filters" in p for p in config_checks.problems(bad))
  with pytest.raises(ValueError, match="4 positive"):
    backbones.build_backbone("small_cnn", filters=(8, 8))


def test_config_lib_mirrors_the_registry():
  """config_lib checks configs without TensorFlow from its own copy of two record fields."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  assert config_lib.BACKBONES == backbones.BACKBONES
  for name, entry in backbones.REGISTRY.items():
    fixed = entry.image_size if entry.fixed_size else None
    assert config_lib.BACKBONE_FACTS[name] == (fixed, entry.weights_file is not None), name


def test_caffe_preprocessing_matches_keras_applications():
  images = np.random.default_rng(0).uniform(0, 255, (2, 4, 4, 3)).astype("float32")
  want = keras.applications.vgg16.preprocess_input(images.copy())
  np.testing.assert_allclose(backbones.CaffePreprocess()(images), want, rtol=1e-5)


def test_bad_arguments_are_named():
  with pytest.raises(ValueError, match="'resnet'"):
    backbones.build_backbone("resnet")
  with pytest.raises(ValueError, match="224"):
    backbones.backbone_image_size("vgg16", 64)
  with pytest.raises(FileNotFoundError, match="no_such.h5"):
    backbones.build_backbone("vgg16", weights="/no_such.h5")


@pytest.mark.slow
def test_vgg16_loads_a_local_weights_file(tmp_path):
  """Random VGG16 weights saved to a file and loaded through `weights=path` match exactly."""
  vgg = keras.applications.VGG16(weights=None, include_top=True)
  path = str(tmp_path / "vgg16_random.weights.h5")
  vgg.save_weights(path)
  from_file = backbones.build_backbone("vgg16", weights=path)
  images = np.random.default_rng(1).uniform(0, 255, (2, 224, 224, 3)).astype("float32")
  fc7 = keras.Model(vgg.input, vgg.get_layer("fc2").output)
  want = fc7(keras.applications.vgg16.preprocess_input(images.copy()))
  got = from_file(images)
  assert got.shape == (2, 4096)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
  # And a backbone with other random weights gives other features: the file was really used.
  other = backbones.build_backbone("vgg16", weights=None)
  assert not np.allclose(other(images), want, atol=1e-3)


# ---- The keras.applications entries (issue 19): random weights, 32x32 images. ----

APPLICATIONS = ("resnet50", "resnet101", "efficientnetv2_s", "convnext_tiny",
                "mobilenet_v3_large")
FAST = ("resnet50", "mobilenet_v3_large")  # the others run with the slow tests
SIZE = 32  # the smallest input keras.applications accepts without weights
ENTRIES = [pytest.param(n, marks=() if n in FAST else pytest.mark.slow) for n in APPLICATIONS]


def test_every_entry_is_tested_here():
  """A new registry entry needs its test: add it to APPLICATIONS (BUILD.md, Extending)."""
  assert set(backbones.BACKBONES) == set(APPLICATIONS) | {"vgg16", "small_cnn"}


@pytest.fixture(scope="module")
def built():
  """name -> its backbone at SIZE, built once per module (they take seconds each)."""
  models = {}

  def get(name):
    if name not in models:
      keras.utils.set_random_seed(0)
      models[name] = backbones.build_backbone(name, image_size=SIZE)
    return models[name]

  return get


def application(backbone):
  """The keras.applications model nested in a backbone."""
  (app,) = [layer for layer in backbone.layers if isinstance(layer, keras.Model)]
  return app


def images_at(size, n=2, seed=0):
  return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


@pytest.mark.parametrize("name", ENTRIES)
def test_features_preprocessing_and_grad_cam_layer(name, built):
  from cnn_rnn_tf.analysis import attention  # pylint: disable=g-import-not-at-top
  entry = backbones.REGISTRY[name]
  model = built(name)
  images = images_at(SIZE)
  features = model(images)
  assert features.shape == (2, entry.feature_dim) and features.dtype == "float32"
  assert not model.trainable_weights  # frozen unless trainable=True
  # The preprocessing inside the model is the family's preprocess_input: the nested Keras
  # model applied to preprocess_input(images) gives the same features.
  app = application(model)
  want = app(entry.preprocess_input(images.copy()))
  np.testing.assert_allclose(features, want, rtol=1e-4, atol=1e-4)
  # ... and it is not skipped: raw 0..255 pixels give other features.
  if entry.preprocess is not None:
    assert not np.allclose(app(images), want, atol=1e-3)
  assert app.get_layer(entry.feature_layer).output.shape[-1] == entry.feature_dim
  # Grad-CAM reads a [B, h, w, C] map of the nested model and gives the same features.
  conv, again = attention.activation_model(model)(images)
  assert attention.last_conv_layer(model) == entry.grad_cam_layer
  assert len(conv.shape) == 4 and conv.shape[0] == 2
  np.testing.assert_allclose(again, features, rtol=1e-4, atol=1e-4)


def _same_inputs_same_weights(stock, fast, shape):
  """Builds both layers on `shape`, copies stock's weights into fast; checks they line up."""
  stock.build(shape)
  fast.build(shape)
  assert [(w.name, tuple(w.shape)) for w in fast.weights] == [
      (w.name, tuple(w.shape)) for w in stock.weights]
  fast.set_weights(stock.get_weights())


@pytest.mark.parametrize("policy", [None, "mixed_bfloat16"])
def test_fast_layers_equal_the_keras_layers(policy):
  """fast_layers' depthwise conv and pointwise Dense (+ exact GELU) equal Keras' own layers,
  eagerly and compiled (where TensorFlow fuses MatMul + BiasAdd + GELU)."""
  from cnn_rnn_tf import fast_layers  # pylint: disable=g-import-not-at-top
  x = np.random.default_rng(0).normal(size=(2, 6, 5, 8)).astype("float32")
  tol = dict(rtol=1e-5, atol=1e-5) if policy is None else dict(rtol=3e-2, atol=3e-2)
  with backbones.dtype_policy(policy):
    conv = keras.layers.Conv2D(8, 7, padding="same", groups=8, name="dw")
    fast_conv = fast_layers.GroupedAsDepthwiseConv2D.from_config(conv.get_config())
    dense = keras.layers.Dense(12, name="pw")
    fast_dense = fast_layers.PointwiseDense.from_config({**dense.get_config(), "gelu": True})
  _same_inputs_same_weights(conv, fast_conv, x.shape)
  _same_inputs_same_weights(dense, fast_dense, x.shape)
  conv.bias.assign(np.linspace(-1, 1, 8))
  fast_conv.bias.assign(np.linspace(-1, 1, 8))
  for run in (lambda f, v: f(v), lambda f, v: tf.function(f)(tf.constant(v))):
    got = run(lambda v: fast_dense(fast_conv(v)), x)
    want = run(lambda v: keras.activations.gelu(dense(conv(v)), approximate=False), x)
    assert got.shape == (2, 6, 5, 12) and got.dtype == want.dtype
    np.testing.assert_allclose(np.float32(got), np.float32(want), **tol)
  with backbones.dtype_policy(policy):
    bn = keras.layers.BatchNormalization(name="bn")
    fast_bn = fast_layers.FusedInferenceBatchNormalization.from_config(bn.get_config())
  _same_inputs_same_weights(bn, fast_bn, x.shape)
  rng = np.random.default_rng(1)
  stats = [rng.uniform(0.5, 1.5, 8), rng.normal(size=8), rng.normal(size=8),
           rng.uniform(0.5, 1.5, 8)]  # gamma, beta, moving mean, moving variance
  bn.set_weights(stats)
  fast_bn.set_weights(stats)
  for training in (False, True):  # inference: the fused op; training: Keras' own
    got, want = fast_bn(x, training=training), bn(x, training=training)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(np.float32(got), np.float32(want), **tol)


SPEEDUP_TOLERANCE = dict(rtol=1e-4, atol=1e-4)  # float32 features of the faster layers
# The entries with a `speedup` (fast_layers) and their stock Keras models.
STOCK = {"convnext_tiny": keras.applications.ConvNeXtTiny,
         "efficientnetv2_s": keras.applications.EfficientNetV2S}


def test_every_speedup_is_checked_against_its_stock_model():
  assert {n for n, e in backbones.REGISTRY.items() if e.speedup is not None} == set(STOCK)


@pytest.mark.slow
@pytest.mark.parametrize("name,suffix", [(n, s) for n in STOCK for s in (".weights.h5", ".h5")])
def test_faster_layers_load_stock_weights_files_and_equal_the_stock_model(name, suffix,
                                                                         tmp_path):
  """An entry's faster layers (fast_layers) read a weights file of the stock Keras model
  (the native format, and the legacy .h5 of the ImageNet files) and give its features."""
  from keras.src.legacy.saving import legacy_h5_format  # pylint: disable=g-import-not-at-top
  import h5py  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import fast_layers  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(3)
  stock = STOCK[name](include_top=False, weights=None, pooling="avg",
                      input_shape=(SIZE, SIZE, 3))
  rng = np.random.default_rng(5)
  for layer in stock.layers:  # batch-norm statistics other than 0 and 1 (mildly: random
    if isinstance(layer, keras.layers.BatchNormalization):  # weights amplify them)
      layer.moving_mean.assign(rng.normal(0, 0.01, layer.moving_mean.shape))
      layer.moving_variance.assign(rng.uniform(0.95, 1.05, layer.moving_variance.shape))
  path = str(tmp_path / f"stock{suffix}")
  if suffix == ".h5":  # the layout of convnext_tiny_notop.h5, efficientnetv2-s_notop.h5
    with h5py.File(path, "w") as f:
      legacy_h5_format.save_weights_to_hdf5_group(f, stock)
  else:
    stock.save_weights(path)
  model = backbones.build_backbone(name, weights=path, image_size=SIZE)
  app = application(model)
  assert any(type(layer).__module__ == fast_layers.__name__ for layer in app.layers)
  assert [tuple(w.shape) for w in app.weights] == [tuple(w.shape) for w in stock.weights]
  images = images_at(SIZE, n=3, seed=4)
  want = stock(images).numpy()
  np.testing.assert_allclose(model(images), want, **SPEEDUP_TOLERANCE)
  compiled = tf.function(lambda x: model(x, training=False))
  np.testing.assert_allclose(compiled(tf.constant(images)), want, **SPEEDUP_TOLERANCE)
  # The file was really read: the stock model's random weights, not the backbone's own.
  assert not np.allclose(backbones.build_backbone(name, image_size=SIZE)(images), want,
                         atol=1e-3)


def test_imagenet_weights_never_download(tmp_path, monkeypatch):
  """weights="imagenet" with the file missing fails naming the file; nothing downloads."""
  monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
  monkeypatch.setattr(backbones, "_keras_model_dirs", lambda: [str(tmp_path / "keras/models")])
  for name in APPLICATIONS + ("vgg16",):
    with pytest.raises(FileNotFoundError,
                       match=backbones.REGISTRY[name].weights_file.replace(".", r"\.")):
      backbones.build_backbone(name, weights="imagenet", image_size=None)
  with pytest.raises(ValueError, match="small_cnn has no ImageNet weights"):
    backbones.build_backbone("small_cnn", weights="imagenet")
  # A file of the right name but not keras.applications' (hash) is refused, not replaced.
  (tmp_path / "keras/models").mkdir(parents=True)
  (tmp_path / "keras/models" / backbones.REGISTRY["resnet50"].weights_file).write_bytes(b"x")
  with pytest.raises(ValueError, match="damaged"):
    backbones.imagenet_weights_path("resnet50")


def _csv_source(folder):
  """A CSV source of the export fixtures' images (a few files), and its vocabulary."""
  from cnn_rnn_tf import config_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import data as data_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  import export_fixtures  # pylint: disable=g-import-not-at-top
  names = [n for n in export_fixtures.encoded_images() if n != "tiny.png"]
  export_fixtures.write_images(folder / "img", export_fixtures.encoded_images())
  labels = ["cat", "dog", "cat dog", "dog", "cat", "dog"]
  csv = folder / "train.csv"
  csv.write_text("image_name,tags\n" + "".join(
      f"img/{n},{labels[i % len(labels)]}\n" for i, n in enumerate(names)))
  config = config_lib.default_config().data
  config.update(dict(source="csv", train_csv=str(csv), eval_csv=str(csv)))
  source = data_lib.get_source(config)
  return source, vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                      all_names=source.label_names)


@pytest.mark.parametrize("name", [  # writes two weights files: only the smallest is fast
    pytest.param(n, marks=() if n == "mobilenet_v3_large" else pytest.mark.slow)
    for n in APPLICATIONS])
def test_cache_of_one_weights_file_is_not_reused_for_another(name, built, tmp_path):
  from cnn_rnn_tf.data import feature_cache  # pylint: disable=g-import-not-at-top
  model = built(name)
  app = application(model)
  original = app.get_weights()
  files = {}
  for tag, scale in (("a", 1.0), ("b", 1.5)):
    app.set_weights([w * scale for w in original])
    files[tag] = str(tmp_path / f"{name}_{tag}.weights.h5")
    app.save_weights(files[tag])
  source, vocab = _csv_source(tmp_path)
  calls = {"a": 0, "b": 0}
  features = {}

  def build(tag):
    app.set_weights([w * (1.0 if tag == "a" else 1.5) for w in original])

    def backbone(images, training=False):
      calls[tag] += 1
      return model(images, training=training)

    path = feature_cache.build(source, "train", vocab, name, files[tag], SIZE,
                               cache_dir=str(tmp_path / "cache"), precision="off",
                               backbone=backbone, verbose=0)
    features[tag] = np.concatenate([batch["features"].numpy() for batch in
                                    feature_cache.feature_dataset(path, batch_size=64,
                                                                training=False)])
    return path

  try:
    path_a = build("a")
    assert calls["a"] > 0
    assert build("a") == path_a and calls["b"] == 0  # the same weights: reused
    path_b = build("b")
    assert path_b != path_a and calls["b"] > 0  # other weights: extracted again
  finally:
    app.set_weights(original)
  dim = backbones.REGISTRY[name].feature_dim
  assert features["a"].shape == (len(source.train_label_sets()), dim)
  assert not np.allclose(features["a"], features["b"], rtol=1e-2, atol=0)
  keys = [feature_cache.cache_key(source, "train", vocab, name, w, SIZE, "off")
          for w in (files["a"], files["b"], "imagenet", None)]
  assert len({json.dumps(k, sort_keys=True) for k in keys}) == 4
  other_size = feature_cache.cache_key(source, "train", vocab, name, "imagenet", 64, "off")
  assert json.dumps(other_size, sort_keys=True) != json.dumps(keys[2], sort_keys=True)


# ---- End to end: a frozen head on cached features, fine-tuning, export (slow). ----

ROOT = pathlib.Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
  return str(tmp_path_factory.mktemp("tfds"))


def _runlocal(tfds_dir, name, **model):
  from helpers import load_config_file  # pylint: disable=g-import-not-at-top
  config = load_config_file(ROOT / "configs" / "demo.py", "runlocal")
  config.data.data_dir = tfds_dir
  config.model.update(dict(backbone=name, image_size=SIZE, **model))
  config.train.update(dict(num_steps=2, checkpoint_every=2, eval_every=-1, log_every=1))
  return config


@pytest.mark.slow
@pytest.mark.parametrize("name", APPLICATIONS)
def test_frozen_head_trains_on_cached_features_and_evaluates(name, built, tfds_dir, tmp_path):
  from cnn_rnn_tf import evaluate_lib, train_lib  # pylint: disable=g-import-not-at-top
  weights = str(tmp_path / f"{name}.weights.h5")
  application(built(name)).save_weights(weights)
  config = _runlocal(tfds_dir, name, backbone_weights=weights, train_backbone=False)
  config.data.cache_features = True
  workdir = str(tmp_path / "run")
  result = train_lib.train(config, workdir)
  assert result["step"] == 2 and np.isfinite(result["loss"])
  metrics = evaluate_lib.evaluate(workdir)
  assert metrics["num_images"] > 0 and 0.0 <= metrics["top3"]["OF1"] <= 1.0


@pytest.mark.slow
def test_fine_tuning_changes_the_backbone(tfds_dir, tmp_path):
  """train_backbone=True: the backbone's trainable weights move between two checkpoints."""
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config = _runlocal(tfds_dir, "mobilenet_v3_large", backbone_weights=None,
                     train_backbone=True)
  config.train.update(dict(checkpoint_every=1, learning_rate=1e-2))
  workdir = str(tmp_path / "run")
  train_lib.train(config, workdir)
  steps = [workdir_lib.load_trained(workdir, os.path.join(workdir, "checkpoints", f"ckpt-{s}"))
           for s in (1, 2)]
  kernels = [[w.numpy() for w in t.backbone.trainable_weights] for t in steps]
  assert kernels[0] and any(not np.allclose(a, b) for a, b in zip(*kernels))


_RELOAD = textwrap.dedent("""
    import sys
    sys.modules["cnn_rnn_tf"] = None  # the export must not need the project's code
    import numpy as np
    import tensorflow as tf
    export_dir, images_path, out_path = sys.argv[1:4]
    images = list(np.load(images_path, allow_pickle=True)["images"])
    eager = tf.saved_model.load(export_dir).signatures["serving_default"]
    labels = eager(image_bytes=tf.constant(images))["labels"].numpy()
    # As TF Serving loads it: a TF1 graph and session.
    with tf.compat.v1.Session(graph=tf.Graph()) as session:
      meta = tf.compat.v1.saved_model.loader.load(session, ["serve"], export_dir)
      signature = meta.signature_def["serving_default"]
      graph_labels = session.run(signature.outputs["labels"].name,
                                 {signature.inputs["image_bytes"].name: images})
    np.savez(out_path, eager=labels, graph=graph_labels)
""")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["resnet50", "mobilenet_v3_large"])
def test_export_reloads_without_the_package_with_predicts_labels(name, tmp_path):
  """Export (three signatures, the beam inside) -> predict, a package-free reload (eager and
  a TF1 graph session, as TF Serving) and the in-memory model give the same labels; the
  graph holds only registered ops and no Python."""
  from tensorflow.python.framework import op_def_registry  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import export_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.serving import local  # pylint: disable=g-import-not-at-top
  import export_fixtures  # pylint: disable=g-import-not-at-top
  from test_export import decoded, in_memory  # pylint: disable=g-import-not-at-top
  workdir = export_fixtures.make_workdir(tmp_path / "run", backbone=name, image_size=SIZE,
                                         backbone_scale=1.0)
  export_dir = export_lib.export(workdir, str(tmp_path / "models" / name))
  model = local.load(export_dir)
  assert set(model.signatures) >= {"serving_default", "predict_images", "predict_features"}
  images = [v for k, v in sorted(export_fixtures.encoded_images().items())]
  predicted = local.predict(model, images)["labels"]
  from_features, features_of = in_memory(workdir)
  features = features_of(decoded(images))
  assert np.isfinite(features).all()
  np.testing.assert_array_equal(predicted, from_features(features)["labels"])
  got = model.signatures["predict_features"](features=features)["labels"].numpy()
  np.testing.assert_array_equal(got, predicted)

  np.savez(tmp_path / "images.npz", images=np.array(images, dtype=object))
  script = tmp_path / "reload.py"
  script.write_text(_RELOAD)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run([sys.executable, str(script), export_dir, str(tmp_path / "images.npz"),
                           str(tmp_path / "out.npz")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  out = np.load(tmp_path / "out.npz")
  np.testing.assert_array_equal(out["eager"], predicted)
  np.testing.assert_array_equal(out["graph"], predicted)

  ops = export_fixtures.graph_ops(export_dir)
  assert "While" in ops or "StatelessWhile" in ops  # the beam search is in the graph
  assert not ops & {"PyFunc", "PyFuncStateless", "EagerPyFunc"}
  assert not sorted(op for op in ops if op_def_registry.get(op) is None)


@pytest.mark.parametrize("dataset", ["voc2007", "coco2014"])
def test_modern_protocol_config_variants(dataset):
  """configs/<dataset>.py:resnet101 is ResNet-101 fine-tuned at 448 px; valid; combines."""
  from cnn_rnn_tf import config_checks  # pylint: disable=g-import-not-at-top
  from helpers import load_config_file  # pylint: disable=g-import-not-at-top
  path = ROOT / "configs" / f"{dataset}.py"
  config = load_config_file(path, "resnet101")
  assert (config.model.backbone, config.model.image_size) == ("resnet101", 448)
  assert config.model.train_backbone and not config.data.cache_features
  assert config.data.source == dataset and config_checks.problems(config) == []
  both = load_config_file(path, "resnet101,paper")
  assert both.model.backbone == "resnet101" and both.model.side_loss_weight == 0.0
  assert load_config_file(path, "").model.backbone == "vgg16"
  with pytest.raises(ValueError, match="nope"):
    load_config_file(path, "resnet101,nope")
