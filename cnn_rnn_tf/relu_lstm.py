"""The ReLU-LSTM of the CNN-RNN paper (Wang et al. 2016, section 3.1), as a Keras layer.

Equations (docs/method.md "ReLU-LSTM"), state r = the memory, input w:

    z    = w @ kernel + r(t-1) @ recurrent_kernel + bias      # [B, 4 * units]
    i, f, x~, o = split(z)            # gate order (input, forget, candidate, output), as LSTMCell
    i_t = gate(i);  f_t = gate(f);  o_t = gate(o);  x_t = act(x~)
    r(t) = f_t * r(t-1) + i_t * x_t
    o(t) = r(t) * o_t                 # the output: no squashing nonlinearity

Unlike a textbook LSTM, the gates read the memory r(t-1) (there is no separate hidden
state) and the output is r(t) * o_t, not o_t * tanh(c). `activation` (the candidate) is
ReLU and `gate_activation` is sigmoid by default: the paper's "ReLU" read literally for the
gates would leave them unbounded.

Two ways to call it, with the same weights:

    lstm = ReLULSTM(512, return_sequences=True)
    outputs = lstm(inputs, mask=mask)          # [B, T, D] -> [B, T, 512]; training (teacher forcing)
    output, r = lstm.step(w, r_prev)           # [B, D], [B, 512] -> [B, 512], [B, 512]; decoding

A masked step (mask False) keeps the memory unchanged and outputs zeros (Keras' RNN masking).
"""

from __future__ import annotations

import keras
from keras import activations, initializers, layers, ops, regularizers


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class ReLULSTMCell(layers.Layer):
  """One step of the ReLU-LSTM; the single state is the memory r.

  Args:
    units: size of the memory r and of the output.
    activation: candidate activation (default "relu").
    gate_activation: input / forget / output gate activation (default "sigmoid").
    kernel_initializer, recurrent_initializer, bias_initializer: as in LSTMCell.
    unit_forget_bias: add 1 to the forget gate's bias at initialization.
    kernel_regularizer, recurrent_regularizer: optional regularizers.

  Call arguments:
    inputs: [B, D]. states: [r] with r [B, units].
  Returns:
    (output [B, units], [r_new [B, units]]).
  """

  def __init__(self, units, activation="relu", gate_activation="sigmoid",
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
               recurrent_regularizer=None, **kwargs):
    super().__init__(**kwargs)
    if not isinstance(units, int) or units <= 0:
      raise ValueError(f"units must be a positive int, got {units!r}.")
    self.units = units
    self.activation = activations.get(activation)
    self.gate_activation = activations.get(gate_activation)
    self.kernel_initializer = initializers.get(kernel_initializer)
    self.recurrent_initializer = initializers.get(recurrent_initializer)
    self.bias_initializer = initializers.get(bias_initializer)
    self.unit_forget_bias = unit_forget_bias
    self.kernel_regularizer = regularizers.get(kernel_regularizer)
    self.recurrent_regularizer = regularizers.get(recurrent_regularizer)
    self.state_size = units
    self.output_size = units

  def build(self, input_shape):
    input_dim = input_shape[-1]
    self.kernel = self.add_weight(
        shape=(input_dim, 4 * self.units), name="kernel",
        initializer=self.kernel_initializer, regularizer=self.kernel_regularizer)
    self.recurrent_kernel = self.add_weight(
        shape=(self.units, 4 * self.units), name="recurrent_kernel",
        initializer=self.recurrent_initializer, regularizer=self.recurrent_regularizer)
    if self.unit_forget_bias:
      base = self.bias_initializer

      def bias_initializer(shape, dtype=None):
        return ops.concatenate([
            base((self.units,), dtype=dtype),
            initializers.get("ones")((self.units,), dtype=dtype),
            base((self.units * 2,), dtype=dtype),
        ])
    else:
      bias_initializer = self.bias_initializer
    self.bias = self.add_weight(shape=(4 * self.units,), name="bias", initializer=bias_initializer)

  def call(self, inputs, states, training=False):
    r_prev = states[0] if isinstance(states, (list, tuple)) else states  # [B, units]
    z = ops.matmul(inputs, self.kernel) + ops.matmul(r_prev, self.recurrent_kernel) + self.bias
    zi, zf, zc, zo = ops.split(z, 4, axis=-1)  # 4 x [B, units]
    i = self.gate_activation(zi)
    f = self.gate_activation(zf)
    o = self.gate_activation(zo)
    x = self.activation(zc)
    r = f * r_prev + i * x  # [B, units]
    return r * o, [r]

  def get_initial_state(self, batch_size=None):
    return [ops.zeros((batch_size, self.units), dtype=self.compute_dtype)]

  def get_config(self):
    config = super().get_config()
    config.update({
        "units": self.units,
        "activation": activations.serialize(self.activation),
        "gate_activation": activations.serialize(self.gate_activation),
        "kernel_initializer": initializers.serialize(self.kernel_initializer),
        "recurrent_initializer": initializers.serialize(self.recurrent_initializer),
        "bias_initializer": initializers.serialize(self.bias_initializer),
        "unit_forget_bias": self.unit_forget_bias,
        "kernel_regularizer": regularizers.serialize(self.kernel_regularizer),
        "recurrent_regularizer": regularizers.serialize(self.recurrent_regularizer),
    })
    return config


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class ReLULSTM(layers.RNN):
  """The ReLU-LSTM over a sequence (Keras RNN with a `ReLULSTMCell`), plus `step`.

  Args:
    units, activation, gate_activation, initializers, regularizers: see `ReLULSTMCell`.
    return_sequences: True returns [B, T, units], False only the last output.
    return_state: also return the final memory r.

  Call arguments:
    inputs: [B, T, D]. mask: optional bool [B, T]; masked steps keep the memory.
    initial_state: optional [r0] with r0 [B, units] (default zeros).

  Example:

    lstm = ReLULSTM(8, return_sequences=True)
    y = lstm(keras.random.normal((2, 5, 3)))           # [2, 5, 8]
    out, r = lstm.step(keras.random.normal((2, 3)), keras.ops.zeros((2, 8)))
  """

  def __init__(self, units, activation="relu", gate_activation="sigmoid",
               kernel_initializer="glorot_uniform", recurrent_initializer="orthogonal",
               bias_initializer="zeros", unit_forget_bias=True, kernel_regularizer=None,
               recurrent_regularizer=None, return_sequences=False, return_state=False,
               zero_output_for_mask=True, **kwargs):
    cell = ReLULSTMCell(
        units, activation=activation, gate_activation=gate_activation,
        kernel_initializer=kernel_initializer, recurrent_initializer=recurrent_initializer,
        bias_initializer=bias_initializer, unit_forget_bias=unit_forget_bias,
        kernel_regularizer=kernel_regularizer, recurrent_regularizer=recurrent_regularizer,
        dtype=kwargs.get("dtype"), name="relu_lstm_cell")
    super().__init__(cell, return_sequences=return_sequences, return_state=return_state,
                     zero_output_for_mask=zero_output_for_mask, **kwargs)

  @property
  def units(self):
    return self.cell.units

  def step(self, inputs, state):
    """One decoding step with explicit state: [B, D], [B, units] -> (out [B, units], r [B, units])."""
    output, [r] = self.cell(inputs, [state])
    return output, r

  def get_config(self):
    config = super().get_config()
    config.pop("cell", None)
    cell_config = self.cell.get_config()
    for key in ("name", "dtype", "trainable"):
      cell_config.pop(key, None)
    config.update(cell_config)
    return config

  @classmethod
  def from_config(cls, config):
    return cls(**config)
