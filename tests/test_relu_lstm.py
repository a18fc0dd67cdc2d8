"""ReLU-LSTM layer (cnn_rnn_tf.relu_lstm): golden values, sequence vs steps, masking, I/O."""

import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf.relu_lstm import ReLULSTM, ReLULSTMCell


def _numpy_relu_lstm(x, kernel, recurrent, bias, mask=None):
  """docs/method.md's ReLU-LSTM equations in NumPy. x [B, T, D] -> outputs [B, T, U], final r [B, U]."""
  b, t_len, _ = x.shape
  units = recurrent.shape[0]
  r = np.zeros((b, units))
  outs = np.zeros((b, t_len, units))
  sig = lambda z: 1 / (1 + np.exp(-z))
  for t in range(t_len):
    z = x[:, t] @ kernel + r @ recurrent + bias
    i, f, c, o = np.split(z, 4, axis=-1)
    r_new = sig(f) * r + sig(i) * np.maximum(c, 0)
    out = r_new * sig(o)
    if mask is not None:
      keep = mask[:, t, None]
      r_new = np.where(keep, r_new, r)
      out = np.where(keep, out, 0.0)
    r = r_new
    outs[:, t] = out
  return outs, r


def _layer_with_random_weights(units=5, input_dim=3, seed=0):
  layer = ReLULSTM(units, return_sequences=True, return_state=True)
  layer.build((None, None, input_dim))
  rng = np.random.default_rng(seed)
  weights = [rng.normal(0, 0.7, w.shape).astype("float32") for w in layer.get_weights()]
  layer.set_weights(weights)
  return layer, weights


def test_golden_against_numpy_equations():
  layer, (kernel, recurrent, bias) = _layer_with_random_weights()
  x = np.random.default_rng(1).normal(size=(2, 6, 3)).astype("float32")
  outputs, r = layer(x)
  want_out, want_r = _numpy_relu_lstm(x, kernel, recurrent, bias)
  np.testing.assert_allclose(outputs, want_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(r, want_r, rtol=1e-5, atol=1e-5)


def test_golden_with_constant_initializers():
  # All weights 0.1, input ones, 1 unit: every pre-activation z = 0.1 * D + 0.1 * r + 0.1.
  layer = ReLULSTM(1, kernel_initializer="ones", recurrent_initializer="ones",
                   bias_initializer="ones", unit_forget_bias=False, return_sequences=True)
  layer.build((None, None, 2))
  layer.set_weights([w * 0.1 for w in layer.get_weights()])
  out = layer(np.ones((1, 2, 2), np.float32)).numpy()[0, :, 0]
  sig = lambda z: 1 / (1 + np.exp(-z))
  r1 = sig(0.3) * 0.3  # f * 0 + i * relu(0.3)
  z2 = 0.3 + 0.1 * r1
  r2 = sig(z2) * r1 + sig(z2) * z2
  np.testing.assert_allclose(out, [r1 * sig(0.3), r2 * sig(z2)], rtol=1e-6)


def test_sequence_call_equals_repeated_steps():
  layer, _ = _layer_with_random_weights(seed=2)
  x = np.random.default_rng(3).normal(size=(4, 5, 3)).astype("float32")
  outputs, final = layer(x)
  r = np.zeros((4, 5), np.float32)
  for t in range(5):
    out, r = layer.step(x[:, t], r)
    np.testing.assert_allclose(out, outputs[:, t], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(r, final, rtol=1e-5, atol=1e-6)


def test_masked_steps_keep_the_memory():
  layer, (kernel, recurrent, bias) = _layer_with_random_weights(seed=4)
  x = np.random.default_rng(5).normal(size=(3, 5, 3)).astype("float32")
  mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 0, 1, 0, 1]], bool)
  outputs, r = layer(x, mask=mask)
  want_out, want_r = _numpy_relu_lstm(x, kernel, recurrent, bias, mask)
  np.testing.assert_allclose(outputs, want_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(r, want_r, rtol=1e-5, atol=1e-5)
  # A sequence padded at the end gives the same final memory as the short sequence.
  short_out, short_r = layer(x[1:2, :2])
  np.testing.assert_allclose(r[1], short_r[0], rtol=1e-5, atol=1e-6)


def test_serialization_round_trip(tmp_path):
  inputs = keras.Input((None, 3))
  outputs = ReLULSTM(4, activation="relu", gate_activation="hard_sigmoid",
                     return_sequences=True, name="lstm")(inputs)
  model = keras.Model(inputs, outputs)
  path = tmp_path / "m.keras"
  model.save(path)
  loaded = keras.models.load_model(path)
  x = np.random.default_rng(0).normal(size=(2, 3, 3)).astype("float32")
  np.testing.assert_allclose(model(x), loaded(x), rtol=1e-6)
  layer = loaded.get_layer("lstm")
  assert isinstance(layer, ReLULSTM) and layer.units == 4
  assert layer.cell.gate_activation.__name__ == "hard_sigmoid"
  config = ReLULSTM(3, return_sequences=True).get_config()
  assert ReLULSTM.from_config(config).get_config() == config


def test_weight_shapes_and_names():
  layer = ReLULSTM(7)
  layer.build((None, None, 3))
  shapes = {w.name: tuple(w.shape) for w in layer.weights}
  assert shapes == {"kernel": (3, 28), "recurrent_kernel": (7, 28), "bias": (28,)}
  # Forget-gate bias starts at 1 (unit_forget_bias), the others at 0.
  bias = layer.cell.bias.numpy()
  np.testing.assert_array_equal(bias[7:14], 1.0)
  np.testing.assert_array_equal(bias[:7], 0.0)


def test_gradients_reach_every_weight():
  layer, _ = _layer_with_random_weights(seed=6)
  x = tf.constant(np.random.default_rng(7).normal(size=(2, 4, 3)).astype("float32"))
  with tf.GradientTape() as tape:
    outputs, r = layer(x)
    loss = tf.reduce_sum(outputs ** 2) + tf.reduce_sum(r)
  grads = tape.gradient(loss, layer.trainable_weights)
  assert len(grads) == 3
  for w, g in zip(layer.trainable_weights, grads):
    assert g is not None and np.abs(g.numpy()).sum() > 0, w.name


def test_bad_units_named():
  import pytest
  with pytest.raises(ValueError, match="units"):
    ReLULSTMCell(0)


# Keras' own layer harness: build, call, symbolic call, serialization, training and the
# mixed_float16 policy, as keras' layer tests (keras/src/layers/rnn/lstm_test.py) call it.
from keras.src import testing as keras_testing  # noqa: E402


class ReLULSTMKerasHarnessTest(keras_testing.TestCase):

  def test_sequence_mode(self):
    self.run_layer_test(
        ReLULSTM, init_kwargs={"units": 3, "return_sequences": True},
        input_shape=(2, 4, 5), expected_output_shape=(2, 4, 3),
        expected_num_trainable_weights=3, expected_num_non_trainable_weights=0,
        supports_masking=True)

  def test_last_output_mode(self):
    self.run_layer_test(
        ReLULSTM, init_kwargs={"units": 3},
        input_shape=(2, 4, 5), expected_output_shape=(2, 3),
        expected_num_trainable_weights=3, expected_num_non_trainable_weights=0,
        supports_masking=True)
