"""Faster layers for keras.applications backbones: the same weights, the same function.

`benchmarks/profile.py` showed where ConvNeXt's time went on the CPU, and each layer here
replaces one Keras layer by the same computation in ops that TensorFlow's oneDNN kernels run
well. Every replacement keeps the layer's name, its weights (names, order, shapes) and its
config, so a Keras ImageNet weights file of the stock model loads unchanged:

  GroupedAsDepthwiseConv2D  a Conv2D with groups == filters == input channels (ConvNeXt's
                            7x7 depthwise conv), which Keras' TensorFlow backend runs as an
                            XLA-compiled grouped convolution (about 100x slower here), as
                            `tf.nn.depthwise_conv2d` with the same [kh, kw, 1, C] kernel
  FusedInferenceBatchNormalization
                            a BatchNormalization whose inference is one FusedBatchNormV3
                            op (EfficientNetV2: no float32 round trip of bfloat16 inputs)
  PointwiseDense            a Dense on a feature map [B, H, W, C] as one 2-D matmul
                            [B*H*W, C] x [C, D] with `tf.nn.bias_add`, optionally followed
                            by the exact (erf) GELU on the same 2-D tensor: TensorFlow's
                            remapper fuses MatMul + BiasAdd + GELU into one oneDNN op
                            (the 4-D Dense leaves an unfused AddV2 and a separate GELU pass)

    app = keras.applications.ConvNeXtTiny(weights=None, ...)
    app.load_weights(path)                   # any file the stock model reads
    model = fast_layers.convnext(app)        # the same weights

`convnext` rebuilds the model with `keras.models.clone_model`: each pointwise Dense followed
by a GELU activation layer takes the GELU in (`gelu=True`) and that activation layer becomes
linear, under its own name. The functions are equal; the float32 features match the stock
model's to float rounding (tests/test_backbones.py states the tolerance).
"""

from __future__ import annotations

import keras
from keras import layers
import tensorflow as tf


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class GroupedAsDepthwiseConv2D(layers.Conv2D):
  """Conv2D(groups=C, filters=C) on C channels, as a depthwise convolution (same weights)."""

  def call(self, inputs):  # [B, H, W, C]
    kernel = keras.ops.cast(self.kernel, self.compute_dtype)  # [kh, kw, 1, C]
    kh, kw, _, channels = kernel.shape
    outputs = tf.nn.depthwise_conv2d(
        inputs, tf.reshape(kernel, [kh, kw, channels, 1]), strides=[1, *self.strides, 1],
        padding=self.padding.upper(), dilations=self.dilation_rate)
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, keras.ops.cast(self.bias, self.compute_dtype))
    return self.activation(outputs) if self.activation is not None else outputs


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class PointwiseDense(layers.Dense):
  """Dense on [..., C] as a 2-D matmul + bias_add (+ exact GELU when `gelu`); same weights."""

  def __init__(self, units, gelu: bool = False, **kwargs):
    super().__init__(units, **kwargs)
    self.gelu = gelu

  def call(self, inputs, training=None):  # [B, ..., C] -> [B, ..., units]
    del training
    kernel = keras.ops.cast(self.kernel, self.compute_dtype)  # [C, units]
    outputs = tf.matmul(tf.reshape(inputs, [-1, inputs.shape[-1]]), kernel)  # [N, units]
    if self.use_bias:
      outputs = tf.nn.bias_add(outputs, keras.ops.cast(self.bias, self.compute_dtype))
    if self.gelu:
      outputs = tf.nn.gelu(outputs, approximate=False)
    if self.activation is not None:
      outputs = self.activation(outputs)
    inner = list(inputs.shape[1:-1])
    shape = ([-1, *inner, self.units] if None not in inner else
             tf.concat([tf.shape(inputs)[:-1], [self.units]], axis=0))
    return tf.reshape(outputs, shape)

  def get_config(self):
    return {**super().get_config(), "gelu": self.gelu}


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class FusedInferenceBatchNormalization(layers.BatchNormalization):
  """BatchNormalization whose inference on [B, H, W, C] is one FusedBatchNormV3 op (same
  weights): oneDNN runs it on bfloat16 inputs with float32 statistics (Keras' own casts the
  input to float32 and back) and TensorFlow's remapper can fuse it with the convolution
  before it. Training (`training=True` on a trainable layer) is Keras' own."""

  def call(self, inputs, training=None, mask=None):
    if ((training and self.trainable) or mask is not None or len(inputs.shape) != 4
        or self.axis not in (-1, 3) or self.epsilon <= 1.001e-5):  # the op's least epsilon
      return super().call(inputs, training=training, mask=mask)
    channels = inputs.shape[-1]
    ones, zeros = tf.ones([channels], tf.float32), tf.zeros([channels], tf.float32)
    outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
        inputs, ones if self.gamma is None else tf.cast(self.gamma.value, tf.float32),
        zeros if self.beta is None else tf.cast(self.beta.value, tf.float32),
        mean=tf.cast(self.moving_mean.value, tf.float32),
        variance=tf.cast(self.moving_variance.value, tf.float32), epsilon=self.epsilon,
        is_training=False)
    return outputs


def _is_gelu(layer) -> bool:
  return (type(layer) is layers.Activation  # pylint: disable=unidiomatic-typecheck
          and getattr(layer.activation, "__name__", "") == "gelu")


def _gelu_inputs(model: keras.Model) -> dict[str, str]:
  """{Dense layer name: the exact-GELU Activation layer that is its only consumer}."""
  consumers = {}
  for layer in model.layers:
    for node in layer._inbound_nodes:  # pylint: disable=protected-access
      for tensor in node.input_tensors:
        consumers.setdefault(tensor._keras_history.operation.name, []).append(layer)  # pylint: disable=protected-access
  return {name: users[0].name for name, users in consumers.items()
          if len(users) == 1 and _is_gelu(users[0])
          and type(model.get_layer(name)) is layers.Dense}  # pylint: disable=unidiomatic-typecheck


def convnext(model: keras.Model) -> keras.Model:
  """A keras.applications ConvNeXt with the layers above, and its weights (module docstring).

  Layers that are not replaced are copied (the nested stem and downsampling models too);
  every layer takes a copy of the weights of the one it stands for. Load a weights file into
  `model` first: every format the stock model reads then works.
  """
  fused = _gelu_inputs(model)
  absorbed = set(fused.values())

  def replace(layer):
    config = layer.get_config()
    if (type(layer) is layers.Conv2D and layer.groups > 1  # pylint: disable=unidiomatic-typecheck
        and layer.groups == layer.filters):
      return GroupedAsDepthwiseConv2D.from_config(config)
    if type(layer) is layers.Dense:  # pylint: disable=unidiomatic-typecheck
      return PointwiseDense.from_config({**config, "gelu": layer.name in fused})
    if layer.name in absorbed:
      return layers.Activation("linear", name=layer.name, dtype=layer.dtype_policy)
    return None

  return _rebuild(model, replace)


def fused_batch_norm(model: keras.Model) -> keras.Model:
  """A keras.applications model (EfficientNetV2) with FusedInferenceBatchNormalization in
  place of each BatchNormalization, and its weights (as `convnext`)."""
  return _rebuild(model, lambda layer: (
      FusedInferenceBatchNormalization.from_config(layer.get_config())
      if type(layer) is layers.BatchNormalization else None))  # pylint: disable=unidiomatic-typecheck


def _rebuild(model: keras.Model, replace) -> keras.Model:
  """`model` with `replace(layer)` (a new layer, or None: a copy of it) for each of its
  layers; every new layer takes a copy of the weights of the one it stands for. No layer is
  shared with `model`: a shared layer would have a node in both graphs, and a model cut out
  of the new one (Grad-CAM's `analysis.attention.activation_model`) would then reach the old
  graph's layers too, under the same names."""
  replaced = {}  # new layer -> the layer it stands for

  def clone(layer):
    new = replace(layer)
    if new is None:
      new = layer.__class__.from_config(layer.get_config())
    replaced[new] = layer
    return new

  fast = keras.models.clone_model(model, clone_function=clone)
  for new, old in replaced.items():
    if getattr(old, "weights", None):  # layers with weights (not ops such as Add)
      new.set_weights(old.get_weights())
  return fast
