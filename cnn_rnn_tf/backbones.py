"""Image backbones: RGB images in 0..255 -> one feature vector per image, from one registry.

Every backbone is a Keras functional model with the same contract, so the data pipeline,
the feature cache, the trainer and the export treat them alike:

    backbone = build_backbone("resnet50", weights="imagenet")   # any name in BACKBONES
    features = backbone(images)   # images float32 [B, H, W, 3] RGB in 0..255 -> float32 [B, D]
    REGISTRY["resnet50"].feature_dim                              # 2048

The backbone's own preprocessing (VGG16, ResNet: caffe-style RGB->BGR and ImageNet mean
subtraction, their `preprocess_input`; EfficientNetV2, ConvNeXt, MobileNetV3: the rescaling
layer Keras builds into the model; small CNN: scaling to 0..1) is *inside* the model. The
data pipeline and the exported SavedModel therefore only ever resize to
`backbone_image_size(name, ...)` and hand over 0..255 RGB floats; nobody can forget or
duplicate the preprocessing.

Each entry of `REGISTRY` is one `Backbone` record: its builder, preprocessing, feature layer,
feature dimension, default image size (and whether the size is fixed), the ImageNet weights
file Keras would fetch (name and hash, as in `keras.applications`' download call), the
Grad-CAM layer and the published work that used it. Nothing else in the package branches on
a backbone's name; adding a backbone is one entry here plus its test (BUILD.md, "Extending").

Backbones:
  vgg16               the paper's: `keras.applications.VGG16`, fc7 (layer `fc2`, 4096-d,
                      after ReLU), 224x224 (its fc layers fix the size).
  resnet50, resnet101 `keras.applications.ResNet50/101`, include_top=False, global average
                      pooling (2048-d); 224 by default, any size >= 32.
  efficientnetv2_s    `keras.applications.EfficientNetV2S` (1280-d); 384 by default; its
                      batch norms' inference as one fused op (`fast_layers`).
  convnext_tiny       `keras.applications.ConvNeXtTiny` (768-d, after its final layer norm),
                      with its depthwise convs and pointwise Dense + GELU in the faster,
                      equal layers of `fast_layers` (the same weights files load).
  mobilenet_v3_large  `keras.applications.MobileNetV3Large` (960-d, the pooled last conv).
  small_cnn           three conv + batch-norm + pool blocks and a fourth conv
                      (`filters`, default 32, 64, 128, 128; config field
                      model.small_cnn_filters), global average pooling and a 256-d dense
                      layer; trains from scratch at low resolution (64x64 by default).

Weights (`model.backbone_weights`):
  "imagenet"  the Keras file `REGISTRY[name].weights_file` in Keras' cache
              (`~/.keras/models/`, or $KERAS_HOME/models), checked against its hash. Nothing
              downloads: a missing file stops the build with a message naming the file, the
              folder to copy it into and the URL it comes from.
  None        random initialization (the only choice besides a file for small_cnn).
  a path      a local weights file of the same model (Keras .h5 or .weights.h5; small_cnn:
              the `backbone.weights.h5` a run that trained the backbone writes).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
from typing import Callable, Sequence

import keras
from keras import layers

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import weights_files
from cnn_rnn_tf import fast_layers

# ImageNet channel means in BGR order, as in keras.applications' caffe preprocessing.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_KERAS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"
# The small CNN's filters per conv (three blocks, then the last conv): the config's default,
# defined once there; the demo sets a thinner one (demo_config: model.small_cnn_filters).
SMALL_CNN_FILTERS = config_lib.SMALL_CNN_FILTERS


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class CaffePreprocess(layers.Layer):
  """RGB 0..255 -> BGR minus the ImageNet mean (VGG16's and ResNet's `preprocess_input`)."""

  def call(self, images):  # [B, H, W, 3]
    bgr = images[..., ::-1]
    return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Backbone:
  """One registry entry (see the module docstring), built with keyword arguments."""
  # (preprocessed images [B, S, S, 3], weights file or None, filters or None, this record)
  # -> features [B, D]
  build: Callable
  # The preprocessing layer put in front of `build` (None: built into the Keras model).
  preprocess: Callable[[], layers.Layer] | None
  # What the preprocessing equals: keras.applications.<family>.preprocess_input.
  preprocess_input: Callable
  feature_layer: str  # where the features are taken
  feature_dim: int  # D
  image_size: int  # the default input size S
  grad_cam_layer: str  # the last conv feature map [B, h, w, C], in the backbone or nested
  published: str  # who used it (README's "choosing a backbone" table)
  fixed_size: bool = False  # True: only `image_size` (VGG16's fc layers)
  # The ImageNet file in ~/.keras/models/ (None: no ImageNet weights), its md5 (32 hex
  # digits) or sha256 (64) from keras.applications, and where Keras would download it from
  # (for the offline message).
  weights_file: str | None = None
  weights_hash: str | None = None
  weights_url: str | None = None
  # small_cnn: the conv widths are a config field, and its weights files are of the whole
  # backbone model (loaded by build_backbone, not by `build`).
  takes_filters: bool = False
  # keras.applications model (its weights loaded) -> the same function in faster layers,
  # with the same weights (`fast_layers`); None: the model as Keras builds it.
  speedup: Callable[[keras.Model], keras.Model] | None = None


def _application(constructor):
  """A builder for a keras.applications model, include_top=False, global average pooled.

  Keras names some layers by a process-wide counter (MobileNetV3's last activation,
  ConvNeXt's final layer norm); the builder renames the feature layer (the last) and the
  Grad-CAM layer (the one before the pooling) so the registry's names always find them.
  Weights files load by layer order, not by these names, into the stock Keras model, before
  the entry's `speedup` (if any) rebuilds it with faster layers and the same weights.
  """

  def build(x, weights, filters, entry):
    del filters
    app = constructor(include_top=False, weights=None, input_shape=tuple(x.shape[1:]),
                      pooling="avg")
    names = [layer.name for layer in app.layers]
    if entry.feature_layer not in names:
      app.layers[-1].name = entry.feature_layer
    if entry.grad_cam_layer not in names:
      kinds = [type(layer).__name__ for layer in app.layers]
      app.layers[kinds.index("GlobalAveragePooling2D") - 1].name = entry.grad_cam_layer
    load = functools.partial(weights_files.load, path=weights, what="model.backbone_weights",
                             fields="model.backbone (the file is of another architecture)")
    if entry.speedup is None:
      if weights is not None:
        load(app)
      return app(x)  # [B, D]
    # A file of the stock model (the ImageNet ones) loads before the speedup; a .weights.h5
    # that a run saved from the faster model (keyed by its layers' classes) loads after it.
    loaded = True
    try:
      if weights is not None:
        load(app)
    except weights_files.WeightsFileError:
      loaded = False
    app = entry.speedup(app)
    if not loaded:
      load(app)
    return app(x)  # [B, D]

  build.__name__ = f"build_{constructor.__name__}"
  return build


def _vgg16_fc7(x, weights, filters, entry):
  del filters
  vgg = keras.applications.VGG16(include_top=True, weights=None, input_shape=(224, 224, 3))
  if weights is not None:
    weights_files.load(vgg, weights, what="model.backbone_weights",
                       fields="model.backbone (the file is of another architecture)")
  return keras.Model(vgg.input, vgg.get_layer(entry.feature_layer).output, name="vgg16")(x)


def _small_cnn(x, weights, filters, entry):
  """[B, S, S, 3] in 0..1 -> [B, 256]: (conv 3x3, BN, ReLU, max pool) x 3, conv, GAP, dense.

  A weights file is loaded by `build_backbone` into the whole backbone model.
  """
  del weights
  for i, width in enumerate(filters[:3]):
    x = layers.Conv2D(width, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
    # Synchronized: with several replicas the statistics cover the global batch, so
    # training does not depend on how the batch is split.
    x = layers.BatchNormalization(synchronized=True, name=f"bn{i + 1}")(x)
    x = layers.ReLU(name=f"relu{i + 1}")(x)
    x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)  # S/2, S/4, S/8
  x = layers.Conv2D(filters[3], 3, padding="same", activation="relu", name="last_conv")(x)
  x = layers.GlobalAveragePooling2D(name="gap")(x)  # [B, filters[3]]
  return layers.Dense(entry.feature_dim, activation="relu", name=entry.feature_layer)(x)


def _caffe():
  return CaffePreprocess(name="caffe_preprocess")


def _unit_scale():
  return layers.Rescaling(1.0 / 255, name="rescale")


def _resnet(constructor, **fields) -> Backbone:
  """A ResNet entry: caffe preprocessing, 2048-d `avg_pool` features, 224 px by default."""
  return Backbone(build=_application(constructor), preprocess=_caffe,
                  preprocess_input=keras.applications.resnet.preprocess_input,
                  feature_layer="avg_pool", feature_dim=2048, image_size=224,
                  weights_url=_KERAS_URL + "resnet/", grad_cam_layer="conv5_block3_out",
                  **fields)


def _rescaling_app(constructor, family: str, **fields) -> Backbone:
  """An entry whose Keras model rescales its own input (no preprocessing layer in front).

  `family`: its keras.applications module (`efficientnet_v2`), which also names the folder
  of its weights under _KERAS_URL.
  """
  return Backbone(build=_application(constructor), preprocess=None,
                  preprocess_input=getattr(keras.applications, family).preprocess_input,
                  weights_url=_KERAS_URL + family + "/", **fields)


_apps = keras.applications
REGISTRY: dict[str, Backbone] = {
    "vgg16": Backbone(
        build=_vgg16_fc7, preprocess=_caffe, preprocess_input=_apps.vgg16.preprocess_input,
        feature_layer="fc2", feature_dim=4096, image_size=224, fixed_size=True,
        weights_file="vgg16_weights_tf_dim_ordering_tf_kernels.h5",
        weights_hash="64373286793e3c8b2b4e3219cbf3544b", weights_url=_KERAS_URL + "vgg16/",
        grad_cam_layer="block5_conv3",
        published="CNN-RNN (Wang et al. 2016): VOC 2007 mAP 84.0"),
    "resnet50": _resnet(
        _apps.ResNet50, weights_file="resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="4d473c1dd8becc155b73f8504c6f6626",
        published="a common smaller baseline encoder in multi-label papers"),
    "resnet101": _resnet(
        _apps.ResNet101, weights_file="resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5",
        weights_hash="88cf7a10940856eca736dc7b7e228a21",
        published="ML-GCN, ASL, Query2Label at 448 px; orderless RNN at 288 px"),
    "efficientnetv2_s": _rescaling_app(
        _apps.EfficientNetV2S, "efficientnet_v2", feature_layer="avg_pool", feature_dim=1280,
        image_size=384, weights_file="efficientnetv2-s_notop.h5",
        weights_hash="af0682fb74e8c54910f2d4393339c070", grad_cam_layer="top_activation",
        published="none of the results cited here; ImageNet accuracy per FLOP",
        speedup=fast_layers.fused_batch_norm),
    "convnext_tiny": _rescaling_app(
        _apps.ConvNeXtTiny, "convnext", feature_layer="head_layernorm", feature_dim=768,
        image_size=224, weights_file="convnext_tiny_notop.h5",
        weights_hash="d547c096cabd03329d7be5562c5e14798aa39ed24b474157cef5e85ab9e49ef1",
        grad_cam_layer="convnext_tiny_stage_3_block_2_identity",
        published="none of the results cited here; a modern pure-conv encoder",
        speedup=fast_layers.convnext),
    "mobilenet_v3_large": _rescaling_app(
        _apps.MobileNetV3Large, "mobilenet_v3", feature_layer="avg_pool", feature_dim=960,
        image_size=224, weights_file="weights_mobilenet_v3_large_224_1.0_float_no_top_v2.h5",
        weights_hash="07fb09a5933dd0c8eaafa16978110389", grad_cam_layer="top_activation",
        published="none of the results cited here; low serving latency"),
    "small_cnn": Backbone(
        build=_small_cnn, preprocess=_unit_scale, preprocess_input=lambda x: x / 255.0,
        feature_layer="fc", feature_dim=256, image_size=64, grad_cam_layer="last_conv",
        published="none (this package's demo)", takes_filters=True),
}
BACKBONES = tuple(REGISTRY)


def get(name: str) -> Backbone:
  """The registry entry of `name`; a clear error for an unknown one."""
  if name not in REGISTRY:
    raise ValueError(f"Unknown backbone {name!r}; expected one of {BACKBONES}.")
  return REGISTRY[name]


def describe(name: str, filters: Sequence[int] | None = None) -> str:
  """The backbone's architecture as a short string for cache keys: "vgg16",
  "small_cnn[32,64,128,128]" (the filters change the model, not only its weights)."""
  if not get(name).takes_filters:
    return name
  return f"{name}[{','.join(str(int(f)) for f in _filters(name, filters))}]"


def backbone_image_size(name: str, image_size: int | None = None) -> int:
  """The square input size of a backbone: its default, or `image_size` unless it is fixed."""
  entry = get(name)
  if entry.fixed_size:
    if image_size not in (None, entry.image_size):
      raise ValueError(f"{name} takes {entry.image_size}x{entry.image_size} images (its fc "
                       f"layers fix the size), got image_size={image_size}.")
    return entry.image_size
  return image_size or entry.image_size


@contextlib.contextmanager
def dtype_policy(policy: str | None):
  """Temporarily sets Keras' global dtype policy (e.g. 'mixed_bfloat16') while building."""
  if policy is None:
    yield
    return
  old = keras.config.dtype_policy()
  keras.config.set_dtype_policy(policy)
  try:
    yield
  finally:
    keras.config.set_dtype_policy(old)


def imagenet_weights_path(name: str) -> str:
  """The local ImageNet weights file of a backbone, checked; never downloads.

  Raises:
    ValueError: the backbone has no ImageNet weights (small_cnn).
    FileNotFoundError: the file is not in Keras' cache; the message says what to copy where.
    ValueError: the file's hash is not the one keras.applications expects.
  """
  entry = get(name)
  if entry.weights_file is None:
    raise ValueError(f"{name} has no ImageNet weights; use weights=None or a weights file "
                     "(such as <workdir>/backbone.weights.h5).")
  folders = _keras_model_dirs()
  for folder in folders:
    path = os.path.join(folder, entry.weights_file)
    if os.path.exists(path):
      break
  else:
    raise FileNotFoundError(
        f"{name}: ImageNet weights file {entry.weights_file!r} not found in "
        f"{' or '.join(folders)}. Nothing is downloaded at run time: copy the file into "
        f"{folders[0]}/ (from {entry.weights_url}{entry.weights_file}, or from any machine where "
        "keras.applications built this model with weights='imagenet'), or set "
        "model.backbone_weights to a local file of these weights.")
  expected = entry.weights_hash
  digest = (hashlib.sha256() if len(expected) == 64 else hashlib.md5())
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 22), b""):
      digest.update(block)
  if digest.hexdigest() != expected:
    raise ValueError(f"{name}: ImageNet weights file {path} has hash {digest.hexdigest()}, "
                     f"expected {expected} (keras.applications'); the copy is damaged or "
                     "another file: copy it again.")
  return path


def _keras_model_dirs() -> list[str]:
  """Where Keras' `get_file` keeps models: $KERAS_HOME or ~/.keras, else /tmp/.keras."""
  home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
  return [os.path.join(home, "models"), os.path.join("/tmp", ".keras", "models")]


def _weights_path(name: str, weights: str | None) -> str | None:
  """weights ("imagenet" | None | "none" | path) -> a local file to load, or None."""
  if weights in (None, "none", "None", ""):
    return None
  if weights == "imagenet":
    return imagenet_weights_path(name)
  if not os.path.exists(os.path.expanduser(weights)):
    hint = ("a run that trained the backbone writes <workdir>/backbone.weights.h5"
            if get(name).weights_file is None else
            f"use 'imagenet' (Keras cache ~/.keras/models/{get(name).weights_file}), None, "
            "or a path")
    raise FileNotFoundError(f"{name} weights file {weights!r} does not exist ({hint}).")
  return os.path.expanduser(weights)


def _filters(name: str, filters: Sequence[int] | None) -> tuple[int, ...] | None:
  """small_cnn: the filters (default SMALL_CNN_FILTERS), checked; others: None (ignored)."""
  if not get(name).takes_filters:
    return None
  filters = tuple(SMALL_CNN_FILTERS if filters is None else filters)
  if len(filters) != 4 or any(int(f) < 1 for f in filters):
    raise ValueError(f"{name} filters must be 4 positive integers (3 blocks and the last "
                     f"conv), got {filters!r}.")
  return tuple(int(f) for f in filters)


def build_backbone(name: str, *, weights: str | None = None, image_size: int | None = None,
                   trainable: bool = False, policy: str | None = None,
                   filters: Sequence[int] | None = None) -> keras.Model:
  """Builds a backbone: float32 images [B, S, S, 3] in 0..255 -> float32 features [B, D].

  Args:
    name: a key of `REGISTRY` ("vgg16", "resnet50", ..., "small_cnn").
    weights: "imagenet" (the local Keras file, never downloaded; see the module docstring),
      None (random), or a local weights file of this backbone: for keras.applications
      backbones the Keras model's own (.h5 or .weights.h5); for small_cnn a file of this
      backbone model, such as the `backbone.weights.h5` a run that trained it writes.
    image_size: input size S; None: the entry's default (vgg16 requires 224).
    trainable: False freezes the backbone (the paper's setting).
    policy: Keras dtype policy for the backbone, e.g. "mixed_bfloat16"; features are
      always returned as float32.
    filters: small_cnn's four conv widths (default `SMALL_CNN_FILTERS`; config field
      model.small_cnn_filters); ignored by the other backbones.
  """
  entry = get(name)
  size = backbone_image_size(name, image_size)
  filters = _filters(name, filters)
  path = _weights_path(name, weights)
  with dtype_policy(policy):
    images = keras.Input((size, size, 3), dtype="float32", name="images")
    x = entry.preprocess()(images) if entry.preprocess else images
    features = entry.build(x, None if entry.takes_filters else path, filters, entry)  # [B, D]
    features = layers.Activation("linear", dtype="float32", name="features")(features)
  model = keras.Model(images, features, name=f"{name}_backbone")
  if entry.takes_filters and path is not None:
    weights_files.load(model, path, what="model.backbone_weights",
                       fields=f"model.small_cnn_filters (here {list(filters)}) or model.backbone")
  model.trainable = trainable
  return model
