"""Image backbones: RGB images in 0..255 -> one feature vector per image.

Every backbone is a Keras functional model with the same contract, so the data pipeline,
the feature cache, the trainer and the export treat them alike:

    backbone = build_backbone("vgg16", weights="imagenet")     # or "small_cnn"
    features = backbone(images)   # images float32 [B, H, W, 3] RGB in 0..255 -> [B, D]

The backbone's own preprocessing (VGG16: caffe-style RGB->BGR and ImageNet mean subtraction;
small CNN: scaling to 0..1) is a layer *inside* the model. The data pipeline and the
exported SavedModel therefore only ever resize to `backbone_image_size(name, ...)` and
hand over 0..255 RGB floats; nobody can forget or duplicate the preprocessing.

Backbones:
  vgg16      `keras.applications.VGG16`, fc7 (layer `fc2`, 4096-d, after ReLU), 224x224.
             weights: "imagenet" (Keras' cache `~/.keras/models/
             vgg16_weights_tf_dim_ordering_tf_kernels.h5`, downloaded only if missing),
             None (random init), or a path to a local weights file (.h5 or .weights.h5).
  small_cnn  three conv + batch-norm + pool blocks (16, 32, 64 filters), a 64-filter conv,
             global average pooling and a 256-d dense layer; trains from scratch at low
             resolution (the demo, 64x64). Before 2026-12-03 it had 32/64/128/128 filters:
             3x slower to train on a 2-core CPU for the demo's budget; old weights files of
             it do not load into this one.
             weights: None or a file a previous run wrote (`backbone.weights.h5`).

`LAST_CONV_LAYER[name]` names the last convolutional layer, for Grad-CAM.
"""

from __future__ import annotations

import contextlib
import os

import keras
from keras import layers

BACKBONES = ("vgg16", "small_cnn")
LAST_CONV_LAYER = {"vgg16": "block5_conv3", "small_cnn": "last_conv"}
FEATURE_DIM = {"vgg16": 4096, "small_cnn": 256}
# ImageNet channel means in BGR order, as in keras.applications' caffe preprocessing.
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class CaffePreprocess(layers.Layer):
  """RGB 0..255 -> BGR minus the ImageNet mean (VGG16's `preprocess_input`, mode caffe)."""

  def call(self, images):  # [B, H, W, 3]
    bgr = images[..., ::-1]
    return bgr - keras.ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=bgr.dtype)


def backbone_image_size(name: str, image_size: int | None = None) -> int:
  """The square input size of a backbone: VGG16 is 224 (its fc layers fix it)."""
  _check_name(name)
  if name == "vgg16":
    if image_size not in (None, 224):
      raise ValueError(f"vgg16 takes 224x224 images (fc6 fixes it), got image_size={image_size}.")
    return 224
  return image_size or 64


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


def build_backbone(name: str, *, weights: str | None = None, image_size: int | None = None,
                   trainable: bool = False, policy: str | None = None) -> keras.Model:
  """Builds a backbone: float32 images [B, S, S, 3] in 0..255 -> float32 features [B, D].

  Args:
    name: "vgg16" or "small_cnn".
    weights: vgg16: "imagenet", None, or a local VGG16 weights file (Keras' .h5);
      small_cnn: None (random) or a weights file of this backbone model, such as the
      `backbone.weights.h5` a run that trained the backbone writes into its workdir.
    image_size: input size S; vgg16 requires 224 (the default), small_cnn defaults to 64.
    trainable: False freezes the backbone (the paper's setting).
    policy: Keras dtype policy for the backbone, e.g. "mixed_bfloat16"; features are
      always returned as float32.
  """
  _check_name(name)
  size = backbone_image_size(name, image_size)
  with dtype_policy(policy):
    images = keras.Input((size, size, 3), dtype="float32", name="images")
    if name == "vgg16":
      features = _vgg16_fc7(images, weights)
    else:
      features = _small_cnn(images)
    features = layers.Activation("linear", dtype="float32", name="features")(features)
  model = keras.Model(images, features, name=f"{name}_backbone")
  if name == "small_cnn" and weights not in (None, "none"):
    if not os.path.exists(weights):
      raise FileNotFoundError(
          f"small_cnn weights file {weights!r} does not exist (a run that trained the backbone "
          "writes <workdir>/backbone.weights.h5).")
    model.load_weights(weights)
  model.trainable = trainable
  return model


def _vgg16_fc7(images, weights):
  if weights not in (None, "none", "imagenet") and not os.path.exists(weights):
    raise FileNotFoundError(
        f"VGG16 weights file {weights!r} does not exist. Use 'imagenet' (Keras cache "
        "~/.keras/models/vgg16_weights_tf_dim_ordering_tf_kernels.h5), None, or a path.")
  vgg = keras.applications.VGG16(
      include_top=True, weights=None if weights == "none" else weights,
      input_shape=(224, 224, 3))
  fc7 = keras.Model(vgg.input, vgg.get_layer("fc2").output, name="vgg16")
  return fc7(CaffePreprocess(name="caffe_preprocess")(images))  # [B, 4096]


def _small_cnn(images):
  """[B, S, S, 3] -> [B, 256]: (conv 3x3, batch norm, ReLU, max pool) x 3, conv, GAP, dense."""
  x = layers.Rescaling(1.0 / 255, name="rescale")(images)
  for i, filters in enumerate((16, 32, 64)):
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"conv{i + 1}")(x)
    # Synchronized: with several replicas the statistics cover the global batch, so
    # training does not depend on how the batch is split.
    x = layers.BatchNormalization(synchronized=True, name=f"bn{i + 1}")(x)
    x = layers.ReLU(name=f"relu{i + 1}")(x)
    x = layers.MaxPooling2D(2, name=f"pool{i + 1}")(x)  # S/2, S/4, S/8
  x = layers.Conv2D(64, 3, padding="same", activation="relu", name="last_conv")(x)
  x = layers.GlobalAveragePooling2D(name="gap")(x)  # [B, 64]
  return layers.Dense(FEATURE_DIM["small_cnn"], activation="relu", name="fc")(x)  # [B, 256]


def _check_name(name):
  if name not in BACKBONES:
    raise ValueError(f"Unknown backbone {name!r}; expected one of {BACKBONES}.")
