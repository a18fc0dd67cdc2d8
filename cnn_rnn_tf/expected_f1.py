"""The label set that maximizes expected example-based F1 (GFM), in TensorFlow ops.

For one image with true set y and predicted set h over K labels, example-based F1 is
F(y, h) = 2 |y n h| / (|y| + |h|), and F(empty, empty) = 1 (the convention of GFM and of
`metrics`' example F1). The best prediction under a distribution P(y) needs only the K x K
numbers p[k, s] = P(y_k = 1, |y| = s) (s = 1..K) and P(y = empty): Dembczynski, Waegeman,
Cheng, Hullermeier, "An exact algorithm for F-measure maximization", NIPS 2011 (GFM):

    delta[k, l] = sum_s p[k, s] * 2 / (s + l)            # l = 1..K, the size of h
    E[F(y, h)] = sum_{k in h} delta[k, |h|]              # for |h| >= 1;  P(empty) for h empty
    h*_l = the l labels with the largest delta[:, l];  h* = the best of h*_0 .. h*_K

Exact for any P; the distribution comes from one of two estimates:

    p, p_empty = size_joint_from_sets(sets)          # sets bool [B, M, K]: M samples of P(y|I)
    p, p_empty = size_joint_independent(probs)       # probs [B, K]: independent labels (BCE)
    chosen, expected = gfm(p, p_empty)               # bool [B, K], float32 [B]

The CNN-RNN's joint comes from ancestral samples (`sampling.sample_sets`); a BCE head's
labels are independent given the image, and its p is exact (a Poisson-binomial
distribution of the other labels' count).
"""

from __future__ import annotations

import tensorflow as tf


def size_joint_from_sets(sets) -> tuple[tf.Tensor, tf.Tensor]:
  """bool [B, M, K] samples -> (p float32 [B, K, K], p_empty float32 [B]).

  p[b, k, s - 1] = the fraction of the M samples that hold label k and have s labels.
  """
  sets = tf.cast(sets, tf.float32)  # [B, M, K]
  k = sets.shape[-1]
  size = tf.cast(tf.reduce_sum(sets, axis=-1), tf.int32)  # [B, M]
  size_one_hot = tf.one_hot(size - 1, k)  # [B, M, K(s)]; size 0 -> all zeros
  p = tf.einsum("bmk,bms->bks", sets, size_one_hot) / tf.cast(tf.shape(sets)[1], tf.float32)
  p_empty = tf.reduce_mean(tf.cast(tf.equal(size, 0), tf.float32), axis=1)  # [B]
  return p, p_empty


def size_joint_independent(probs) -> tuple[tf.Tensor, tf.Tensor]:
  """probs float [B, K] of independent labels -> (p float32 [B, K, K], p_empty float32 [B]).

  p[b, k, s - 1] = probs[b, k] * P(exactly s - 1 of the other labels), the count of the
  others by the Poisson-binomial recursion over the K labels (label k itself left out).
  """
  probs = tf.cast(tf.convert_to_tensor(probs), tf.float32)  # [B, K]
  batch, k = tf.shape(probs)[0], probs.shape[-1]
  eye = tf.eye(k, dtype=tf.bool)

  def add_label(counts, j):
    # counts [B, K(left-out label), K + 1(count)]: distribution of the count of labels < j,
    # for each left-out label. Label j joins every row but its own.
    q = tf.where(eye[j][tf.newaxis, :], 0.0, probs[:, j][:, tf.newaxis])  # [B, K]
    q = q[..., tf.newaxis]
    shifted = tf.pad(counts[..., :-1], [[0, 0], [0, 0], [1, 0]])
    return counts * (1.0 - q) + shifted * q

  start = tf.concat([tf.ones([batch, k, 1]), tf.zeros([batch, k, k])], axis=-1)
  counts = tf.foldl(add_label, tf.range(k), initializer=start)  # [B, K, K + 1]
  p = probs[..., tf.newaxis] * counts[..., :k]  # [B, K, K]: s - 1 others = s in all
  p_empty = tf.reduce_prod(1.0 - probs, axis=-1)  # [B]
  return p, p_empty


def gfm(p, p_empty) -> tuple[tf.Tensor, tf.Tensor]:
  """The set of maximal expected F1 and that expectation: bool [B, K], float32 [B].

  Args:
    p: float [B, K, K], p[b, k, s - 1] = P(y_k = 1, |y| = s).
    p_empty: float [B], P(y = empty).
  """
  p = tf.cast(p, tf.float32)
  k = p.shape[-1]
  sizes = tf.range(1, k + 1, dtype=tf.float32)
  weight = 2.0 / (sizes[:, tf.newaxis] + sizes[tf.newaxis, :])  # [K(s), K(l)]
  delta = tf.einsum("bks,sl->blk", p, weight)  # [B, K(l), K(k)]
  top, top_ids = tf.math.top_k(delta, k)  # [B, K(l), K], sorted descending
  # E[F] of the best set of size l: the sum of its l largest delta[:, l].
  best_of_size = tf.linalg.diag_part(tf.cumsum(top, axis=-1))  # [B, K(l)]
  expected = tf.concat([tf.cast(p_empty, tf.float32)[:, tf.newaxis], best_of_size], axis=1)
  size = tf.argmax(expected, axis=1, output_type=tf.int32)  # [B], 0 = the empty set
  ids = tf.gather(top_ids, tf.maximum(size - 1, 0), batch_dims=1)  # [B, K], by delta
  keep = tf.range(k)[tf.newaxis, :] < size[:, tf.newaxis]  # [B, K], the first `size`
  chosen = tf.reduce_any(
      tf.logical_and(tf.one_hot(ids, k) > 0, keep[..., tf.newaxis]), axis=1)  # [B, K]
  return chosen, tf.reduce_max(expected, axis=1)
