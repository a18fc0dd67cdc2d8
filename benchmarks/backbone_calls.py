"""One serving or fine-tuning call of a freshly built backbone (benchmarks.profile, .backbones)."""

from __future__ import annotations

import tensorflow as tf

from cnn_rnn_tf import backbones

POLICIES = {"float32": None, "bfloat16": "mixed_bfloat16"}


def make_call(name: str, size: int, precision: str, mode: str, jit: bool):
  """A tf.function of one serving or fine-tuning call of a freshly built backbone."""
  model = backbones.build_backbone(name, weights=None, image_size=size,
                                   policy=POLICIES[precision],
                                   trainable=mode == "fine_tuning")
  if mode == "serving":
    return tf.function(lambda x: model(x, training=False), jit_compile=jit)

  def step(x):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model(x, training=True))
    grads = tape.gradient(loss, model.trainable_variables)
    return tf.add_n([tf.reduce_sum(tf.cast(g, tf.float32)) for g in grads])

  return tf.function(step, jit_compile=jit)
