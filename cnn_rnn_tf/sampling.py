"""Seeded ancestral sampling of label paths, in TF ops (the `expected_f1` decoder's samples).

    seeds = sampling.image_seeds(features, seed=0)           # uint32 [B]: per image
    sets = sampling.sample_sets(step, step.initial_state(features), num_labels=K,
                                num_samples=50, max_length=L, min_length=0, seeds=seeds)
    # bool [B, num_samples, K]: each sample's label set

The draws use the same step function and token masks as the beam (`decoding.py`): a label
never twice, END masked until `min_length`, only END after `max_length`. Each draw's random
numbers are keyed by (image seed, sample, step, token), so a set does not depend on the batch
it is drawn in; a draw leaves the batch once it has drawn END.
"""

from __future__ import annotations

from typing import Any, Callable

import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.decoding import NEG, add_beam_dim, check_lengths, flatten_beam_dim, token_mask


def _mix32(x: tf.Tensor) -> tf.Tensor:
  """A 32-bit integer hash (lowbias32): uint32 -> uint32, elementwise."""
  x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))
  x = x * tf.constant(0x7FEB352D, tf.uint32)
  x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(15, tf.uint32)))
  x = x * tf.constant(0x846CA68B, tf.uint32)
  return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(16, tf.uint32)))


def image_seeds(features, seed: int) -> tf.Tensor:
  """uint32 [B]: one sampling seed per image, from its features' bytes and `seed`.

  The samples of an image then depend on the image (and the seed) only, not on the batch it
  came in: evaluation and a served SavedModel draw the same sets for the same features.
  """
  fingerprint = tf.fingerprint(tf.convert_to_tensor(features, tf.float32))  # uint8 [B, 8]
  fingerprint = tf.bitcast(tf.reshape(fingerprint, [-1, 2, 4]), tf.uint32)  # [B, 2]
  salt = _mix32(tf.constant(seed % 2**32, tf.uint32) + tf.constant(0x9E3779B9, tf.uint32))
  return _mix32(tf.bitwise.bitwise_xor(fingerprint[:, 0], _mix32(fingerprint[:, 1] + salt)))


def _uniform(seeds, t, num_tokens: int) -> tf.Tensor:
  """float32 [B, M, num_tokens] in (0, 1) from seeds uint32 [B, M] and the step t."""
  key = _mix32(seeds + _mix32(tf.cast(t, tf.uint32) + tf.constant(0x85EBCA6B, tf.uint32)))
  tokens = tf.cast(tf.range(num_tokens), tf.uint32) * tf.constant(0xC2B2AE35, tf.uint32)
  bits = _mix32(tf.bitwise.bitwise_xor(key[..., tf.newaxis], tokens))  # [B, M, T]
  return (tf.cast(tf.bitwise.right_shift(bits, tf.constant(8, tf.uint32)), tf.float32)
          + 0.5) * (1.0 / 2**24)


def sample_sets(step_fn: Callable, init_state: Any, *, num_labels: int, num_samples: int,
                max_length: int, min_length: int = 0, seeds) -> tf.Tensor:
  """bool [B, M, K]: M label sets per image drawn from the model, label by label.

  Each step draws the next token from the step's softmax renormalised over the allowed
  tokens (no label twice, END not before `min_length` labels, only END after `max_length`)
  with the Gumbel-max trick, until END. Same masking as the beam search, so a sampled path
  is one the beam could return.

  The B * M draws run as one batch in one tf.while_loop, and a draw leaves the batch when it
  draws END: each step runs `step_fn` on the draws still going only (about the mean path
  length + 1 steps' worth of rows instead of max_length + 1). The uniforms of a draw at step
  t depend on its seed, t and the token only (`_uniform`), so which other draws share its
  batch changes no draw.

  Args:
    step_fn, init_state, num_labels, max_length, min_length: as `beam_search`; every tensor
      of the state has the batch in its first dimension.
    num_samples: M >= 1.
    seeds: uint32 [B], one per image (`image_seeds`): the same seed, the same sets.
  """
  if num_samples < 1:
    raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
  length = check_lengths(num_labels, max_length, min_length)
  k, m = num_labels, num_samples
  end_id = vocab_lib.end_id_of(k)
  batch = tf.shape(tf.nest.flatten(init_state)[0])[0]
  draw_seeds = tf.reshape(_mix32(tf.cast(seeds, tf.uint32)[:, tf.newaxis]
                                 + tf.cast(tf.range(m), tf.uint32)[tf.newaxis, :]
                                 * tf.constant(0x9E3779B9, tf.uint32)), [-1])  # [B * M]
  state = tf.nest.map_structure(lambda x: flatten_beam_dim(add_beam_dim(x, m)), init_state)

  def body(t, rows, last, used, state):
    # rows int32 [A]: the draws still going, as indices into B * M; last [A]; state [A, ...].
    log_probs, state = step_fn(last, state)  # [A, K + 1]
    mine = tf.gather(used, rows)  # [A, K]
    masked = tf.where(token_mask(mine, t, min_length, length), NEG,
                      tf.cast(log_probs, tf.float32))
    gumbel = -tf.math.log(-tf.math.log(_uniform(tf.gather(draw_seeds, rows), t, k + 1)))
    tok = tf.argmax(masked + gumbel, axis=-1, output_type=tf.int32)  # [A]
    going = tf.not_equal(tok, end_id)  # [A]
    used = tf.tensor_scatter_nd_update(used, rows[:, tf.newaxis], tf.logical_or(
        mine, tf.logical_and(going[:, tf.newaxis], tf.one_hot(tok, k) > 0)))
    keep = tf.where(going)[:, 0]  # [A']
    state = tf.nest.map_structure(lambda x: tf.gather(x, keep), state)
    return t + 1, tf.gather(rows, keep), tf.gather(tok, keep), used, state

  rows = tf.range(batch * m)
  loop_vars = (tf.constant(0), rows, tf.fill([batch * m], tf.constant(vocab_lib.start_id_of(k))),
               tf.zeros([batch * m, k], tf.bool), state)
  going_shape = lambda x: tf.TensorShape([None]).concatenate(x.shape[1:])
  invariants = (tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([None]),
                tf.TensorShape([None, k]), tf.nest.map_structure(going_shape, state))
  _, _, _, used, _ = tf.while_loop(
      lambda t, rows, *_: tf.logical_and(t <= length, tf.size(rows) > 0), body, loop_vars,
      shape_invariants=invariants, maximum_iterations=length + 1)
  return tf.reshape(used, [batch, m, k])
