"""The order of the training sequence: fixed orders, `random`, and the orderless PLA / MLA.

    targets = label_order.ordered_targets(multi_hot, "rare_first", max_labels=None)
    # int32 [B, T]: labels, then END, -1 padded (frequent_first = vocab.sequence_targets)
    targets = label_order.ordered_targets(multi_hot, "random", seed=0, step=step)
    targets = label_order.aligned_targets(log_probs, predicted, present, "pla")
    # PLA / MLA: aligned to the model's own free-running pass (see `align`)

Label ids are in training frequency order (`vocab`), so `frequent_first` (the paper) is the
label ids ascending, `rare_first` the reverse, and `random` a new random order per example
per step, drawn from stateless keys of (seed, step, replica): reproducible, and different at
every step. `model.max_labels` first keeps the most frequent labels of each image; the order
is then applied to that set, so every order trains on the same labels.

PLA and MLA (Yazici et al., CVPR 2020, "Orderless Recurrent Models for Multi-label
Classification"): the model first runs T steps feeding back its own greedy predictions
(`model.py` does that pass); `log_probs[t]` is its distribution at step t and `predicted[t]`
the label it chose. The target sequence of an image with n true labels has n labels, then
END at step n:

  * PLA (predicted label alignment): a true label the model predicted at a step t < n stays
    the target of step t; the other true labels go to the other steps t < n by the assignment
    of least total cost, cost(t, l) = -log p_t(l) (scipy's `linear_sum_assignment`).
  * MLA (minimal loss alignment): all n true labels go to the steps 0..n-1 by the least-cost
    assignment.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize
import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib

ORDERS = ("frequent_first", "rare_first", "random", "pla", "mla")
FIXED_ORDERS = ("frequent_first", "rare_first", "random")
ALIGNED_ORDERS = ("pla", "mla")
ALIGN_INPUTS = ("predictions", "targets")


def check_order(order: str) -> None:
  if order not in ORDERS:
    raise ValueError(f"Unknown label order {order!r}; expected one of {ORDERS}.")


def cap_labels(multi_hot, max_labels: int | None = None) -> tf.Tensor:
  """bool [B, K]: the present labels, only the `max_labels` most frequent (lowest ids) kept."""
  present = tf.cast(multi_hot, tf.bool)  # [B, K]
  if max_labels is None:
    return present
  rank = tf.cumsum(tf.cast(present, tf.int32), axis=1)  # [B, K]: 1-based among present
  return tf.logical_and(present, rank <= max_labels)


def random_keys(shape, seed: int, step, replica=None) -> tf.Tensor:
  """float32 `shape` uniform keys from (seed, step, replica): stateless, so reproducible.

  `replica` defaults to this replica's id in a tf.distribute replica context (0 outside),
  so two replicas of one step draw different orders for their examples.
  """
  if replica is None:
    context = tf.distribute.get_replica_context()
    replica = context.replica_id_in_sync_group if context is not None else 0
  key = tf.stack([tf.cast(seed, tf.int64), tf.cast(step, tf.int64)])
  key = tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64))
  return tf.random.stateless_uniform(shape, seed=key, dtype=tf.float32)


def ordered_targets(multi_hot, order: str, *, max_labels: int | None = None, seed: int = 0,
                    step=0) -> tf.Tensor:
  """The present labels in `order` (a FIXED_ORDERS name), then END, -1 padded: int32 [B, T].

  T = (most labels of any image in the batch, capped at max_labels) + 1.
  """
  if order == "frequent_first":
    return vocab_lib.sequence_targets(multi_hot, max_labels)  # today's path, unchanged
  if order not in FIXED_ORDERS:
    raise ValueError(f"Label order {order!r} is not a fixed order; expected one of "
                     f"{FIXED_ORDERS} (pla and mla are aligned in the loss).")
  present = cap_labels(multi_hot, max_labels)  # [B, K]
  k = tf.shape(present)[1]
  ids = tf.cast(tf.range(k)[tf.newaxis, :], tf.float32)  # [1, K]
  if order == "rare_first":
    keys = -ids + tf.zeros_like(tf.cast(present, tf.float32))  # [B, K]
  else:  # random
    keys = random_keys(tf.shape(present), seed, step)  # [B, K] in [0, 1)
  # Present labels first, by key; absent ones after them (keys pushed past every present one).
  keys = tf.where(present, keys, 2.0 + tf.cast(k, tf.float32) + ids)
  order_ids = tf.argsort(keys, axis=1, stable=True)  # [B, K]
  return _with_end(order_ids, tf.reduce_sum(tf.cast(present, tf.int32), axis=1), k)


def _with_end(order_ids, counts, k) -> tf.Tensor:
  """[B, K] ids (first `counts` valid) -> [B, max count + 1]: labels, END, -1 padding."""
  t = tf.reduce_max(counts) + 1
  order_ids = tf.concat([order_ids, tf.zeros_like(order_ids[:, :1])], axis=1)[:, :t]  # [B, T]
  pos = tf.range(t)[tf.newaxis, :]  # [1, T]
  counts = counts[:, tf.newaxis]  # [B, 1]
  targets = tf.where(pos < counts, order_ids, tf.where(pos == counts, k, vocab_lib.PAD_ID))
  return tf.cast(targets, tf.int32)


# ---- PLA / MLA ----


def align(log_probs: np.ndarray, true_ids, predicted, mode: str, end_id: int) -> np.ndarray:
  """One example: int32 [n + 1], the aligned targets (n true labels, then END).

  Args:
    log_probs: [T, K + 1] (T >= n), the free-running pass's distribution at each step.
    true_ids: the n true label ids.
    predicted: [T] the label the pass chose at each step.
    mode: "pla" or "mla" (see the module docstring).
    end_id: K.
  """
  true_ids = [int(i) for i in true_ids]
  n = len(true_ids)
  targets = np.full(n + 1, end_id, np.int32)
  if n == 0:
    return targets
  fixed = {}  # step -> label
  if mode == "pla":
    for t in range(n):
      label = int(predicted[t])
      if label in true_ids and label not in fixed.values():
        fixed[t] = label
  elif mode != "mla":
    raise ValueError(f"Unknown alignment {mode!r}; expected 'pla' or 'mla'.")
  steps = [t for t in range(n) if t not in fixed]
  labels = [l for l in true_ids if l not in fixed.values()]
  for t, label in fixed.items():
    targets[t] = label
  if labels:
    cost = -np.asarray(log_probs, np.float64)[np.ix_(steps, labels)]  # [steps, labels]
    rows, cols = optimize.linear_sum_assignment(cost)
    for r, c in zip(rows, cols):
      targets[steps[r]] = labels[c]
  return targets


def align_batch(log_probs: np.ndarray, predicted: np.ndarray, present: np.ndarray,
                mode: str) -> np.ndarray:
  """`align` for each row: [B, T, K + 1], [B, T], bool [B, K] -> int32 [B, T], -1 padded.

  T must be >= (most true labels of any row) + 1.
  """
  if isinstance(mode, bytes):  # through tf.numpy_function
    mode = mode.decode()
  batch, steps, _ = log_probs.shape
  end_id = present.shape[1]
  out = np.full((batch, steps), vocab_lib.PAD_ID, np.int32)
  for b in range(batch):
    true_ids = np.flatnonzero(present[b])
    if len(true_ids) + 1 > steps:
      raise ValueError(f"Row {b} has {len(true_ids)} labels but the pass ran only {steps} "
                       "steps; it needs labels + 1.")
    row = align(log_probs[b], true_ids, predicted[b], mode, end_id)
    out[b, :len(row)] = row
  return out


def aligned_targets(log_probs, predicted, present, mode: str) -> tf.Tensor:
  """`align_batch` as a TF op (tf.numpy_function): int32 [B, T]; constants for the gradient.

  Args:
    log_probs: float [B, T, K + 1] of the free-running pass. predicted: int32 [B, T].
    present: bool [B, K], the (capped) true labels. mode: "pla" or "mla".
  """
  if mode not in ALIGNED_ORDERS:
    raise ValueError(f"Unknown alignment {mode!r}; expected one of {ALIGNED_ORDERS}.")
  log_probs = tf.stop_gradient(tf.cast(log_probs, tf.float32))
  targets = tf.numpy_function(
      align_batch, [log_probs, tf.cast(predicted, tf.int32), tf.cast(present, tf.bool), mode],
      tf.int32, stateful=False, name=f"{mode}_alignment")
  targets.set_shape(predicted.shape)
  return targets
