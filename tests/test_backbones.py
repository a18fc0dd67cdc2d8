"""Backbones (cnn_rnn_tf.backbones): contract, freezing, and VGG16 from a local weights file."""

import keras
import numpy as np
import pytest

from cnn_rnn_tf import backbones


def test_small_cnn_contract_and_freezing():
  frozen = backbones.build_backbone("small_cnn", image_size=32)
  assert frozen.input_shape == (None, 32, 32, 3)
  assert frozen.output_shape == (None, backbones.FEATURE_DIM["small_cnn"])
  assert not frozen.trainable_weights
  tuned = backbones.build_backbone("small_cnn", image_size=32, trainable=True)
  assert tuned.trainable_weights
  assert tuned.get_layer(backbones.LAST_CONV_LAYER["small_cnn"])


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
