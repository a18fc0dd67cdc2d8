"""Weights files that do not fit the config's model: one WeightsFileError naming the file, the
first layer that differs, the expected and found shapes and the field that likely differs;
no weight values printed (Keras' own error prints whole variables)."""

import re

import h5py
import keras
import numpy as np
import pytest

from cnn_rnn_tf import backbones
from cnn_rnn_tf import weights_files

FILTERS = (4, 4, 8, 8)


def _no_arrays(message: str) -> None:
  """No array repr or run of printed floats in `message`."""
  assert "array(" not in message and "value=" not in message, message
  assert not re.search(r"\[\[", message), message
  assert not re.search(r"-?\d\.\d{4,}", message), message
  assert len(message) < 1200, message


@pytest.fixture(scope="module")
def small_cnn_file(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("w") / "backbone.weights.h5")
  backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS).save_weights(path)
  return path


def test_a_fitting_file_loads_its_weights(small_cnn_file):
  model = backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS,
                                   weights=small_cnn_file)
  with h5py.File(small_cnn_file) as f:
    kernel = f["layers/conv2d/vars/0"][()]
  np.testing.assert_array_equal(model.get_layer("conv1").kernel.numpy(), kernel)


def test_the_recorded_layout_is_the_one_save_weights_writes(small_cnn_file, tmp_path):
  model = backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS)
  inputs = keras.Input((16, 16, 3))
  nested = keras.Model(inputs, keras.layers.Dense(2)(model(inputs)))  # a model in a model
  for m in (model, nested):
    path = str(tmp_path / f"{m.name}.weights.h5")
    m.save_weights(path)
    kind, written = weights_files.read_layers(path)
    assert kind == "keras3"
    recorded = weights_files._keras3_recorded(m)  # pylint: disable=protected-access  (no fallback)
    assert sorted(recorded) == sorted(written) and len(written) > 5


def test_small_cnn_file_of_other_filters_names_layer_shapes_and_field(small_cnn_file):
  with pytest.raises(weights_files.WeightsFileError) as e:
    backbones.build_backbone("small_cnn", image_size=16, filters=(4, 4, 16, 8),
                             weights=small_cnn_file)
  message = str(e.value)
  assert isinstance(e.value, ValueError)
  assert small_cnn_file in message
  # conv3 is the first layer of the model's order whose shapes differ (bn3 sorts before it
  # in the file, but comes after it in the model).
  assert "'conv3'" in message, message
  assert "(3, 3, 4, 16)" in message and "(3, 3, 4, 8)" in message, message
  assert "model.small_cnn_filters" in message and "[4, 4, 16, 8]" in message
  _no_arrays(message)


def test_a_file_of_another_architecture_names_the_first_missing_layer(tmp_path):
  inputs = keras.Input((3,))
  other = keras.Model(inputs, keras.layers.Dense(5, name="dense_a")(inputs))
  path = str(tmp_path / "other.weights.h5")
  other.save_weights(path)
  with pytest.raises(weights_files.WeightsFileError) as e:
    backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS, weights=path)
  message = str(e.value)
  assert path in message and "model.backbone" in message, message
  # The model's first layer with weights, in the model's order: conv1.
  assert "'conv1'" in message and "(3, 3, 3, 4)" in message and "is not in the file" in message
  _no_arrays(message)


def test_a_legacy_h5_file_of_another_model(tmp_path):
  # A legacy-format .h5 (as keras.applications' ImageNet files) of a small dense model, for
  # a keras.applications backbone (their ImageNet files are in this format).
  inputs = keras.Input((3,))
  other = keras.Model(inputs, keras.layers.Dense(5, name="dense_a")(inputs))
  path = str(tmp_path / "other.h5")
  other.save(path)  # legacy HDF5: the model's weights under model_weights/
  kind, layers = weights_files.read_layers(path)
  assert kind == "legacy" and layers[0].shapes == ((3, 5), (5,))
  with pytest.raises(weights_files.WeightsFileError) as e:
    backbones.build_backbone("mobilenet_v3_large", image_size=32, weights=path)
  message = str(e.value)
  assert path in message and "(3, 3, 3, 16)" in message and "(3, 5)" in message, message
  assert "'dense_a'" in message, message
  _no_arrays(message)


def test_a_truncated_file(small_cnn_file, tmp_path):
  data = open(small_cnn_file, "rb").read()
  path = str(tmp_path / "cut.weights.h5")
  with open(path, "wb") as f:
    f.write(data[:len(data) // 2])
  with pytest.raises(weights_files.WeightsFileError, match="cannot be read.*truncated") as e:
    backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS, weights=path)
  assert path in str(e.value)
  _no_arrays(str(e.value))


@pytest.mark.parametrize("content", [b"", b"not weights at all\n" * 50])
def test_a_file_that_is_not_hdf5(tmp_path, content):
  path = str(tmp_path / "backbone.weights.h5")
  with open(path, "wb") as f:
    f.write(content)
  with pytest.raises(weights_files.WeightsFileError, match="is not an HDF5 file") as e:
    backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS, weights=path)
  assert path in str(e.value)


def test_a_keras3_file_named_like_a_legacy_one(small_cnn_file, tmp_path):
  path = str(tmp_path / "backbone.h5")
  with open(path, "wb") as f:
    f.write(open(small_cnn_file, "rb").read())
  with pytest.raises(weights_files.WeightsFileError, match=r"rename it to \*\.weights\.h5"):
    backbones.build_backbone("small_cnn", image_size=16, filters=FILTERS, weights=path)
