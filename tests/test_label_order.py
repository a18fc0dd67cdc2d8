"""The training sequence's order (cnn_rnn_tf.label_order) and the losses that use it."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import label_order
from cnn_rnn_tf import losses
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib
from helpers import tiny_head

K = 6


def _fixed_steps(true_ids, predicted, n):
  """PLA's kept steps: t < n where a true label was first predicted."""
  fixed = {}
  for t in range(n):
    if predicted[t] in true_ids and predicted[t] not in fixed.values():
      fixed[t] = int(predicted[t])
  return fixed


def test_pla_and_mla_have_least_cost_against_brute_force():
  rng = np.random.default_rng(1)
  for _ in range(60):
    n = int(rng.integers(1, 5))
    true_ids = rng.choice(K, n, replace=False)
    log_probs = np.log(rng.dirichlet(np.ones(K + 1), size=n + 2))  # [T, K + 1]
    predicted = rng.integers(0, K, n + 2)
    for mode in ("pla", "mla"):
      targets = label_order.align(log_probs, true_ids, predicted, mode, end_id=K)
      assert targets[-1] == K and len(targets) == n + 1  # n labels, then END
      assert sorted(targets[:-1]) == sorted(true_ids)
      fixed = _fixed_steps(true_ids, predicted, n) if mode == "pla" else {}
      for t, label in fixed.items():
        assert targets[t] == label
      cost = -sum(log_probs[t, targets[t]] for t in range(n))
      best = min(-sum(log_probs[t, perm[t]] for t in range(n))
                 for perm in itertools.permutations(true_ids)
                 if all(perm[t] == l for t, l in fixed.items()))
      assert np.isclose(cost, best)


def test_pla_keeps_predicted_true_labels_where_mla_may_move_them():
  # Three true labels {0, 1, 2}; the pass predicted 2 at step 0, 5 (wrong) at step 1 and 1
  # at step 2. The least-cost matching (MLA) puts 0, 1, 2 at steps 0, 1, 2; PLA keeps 2 at
  # step 0 and 1 at step 2, and the one step left (1) gets the one label left (0).
  p = np.full((4, K + 1), 0.01)
  p[0, [0, 2]] = [0.9, 0.05]
  p[1, [1, 0]] = [0.6, 0.3]
  p[2, [2, 1, 0]] = [0.5, 0.2, 0.25]
  log_probs = np.log(p)
  predicted = [2, 5, 1, 3]
  pla = label_order.align(log_probs, [0, 1, 2], predicted, "pla", end_id=K)
  mla = label_order.align(log_probs, [0, 1, 2], predicted, "mla", end_id=K)
  np.testing.assert_array_equal(pla, [2, 0, 1, K])
  np.testing.assert_array_equal(mla, [0, 1, 2, K])
  # A true label predicted at step >= n is not kept (only steps < n hold labels).
  np.testing.assert_array_equal(
      label_order.align(log_probs[:2], [1], [5, 1], "pla", end_id=K), [1, K])
  np.testing.assert_array_equal(label_order.align(log_probs, [], predicted, "pla", K), [K])


def test_align_batch_pads_and_the_tf_op_matches_numpy():
  rng = np.random.default_rng(0)
  present = np.zeros((3, K), bool)
  present[0, [1, 4]] = True
  present[2, [0, 2, 3]] = True  # row 1: no label, target END only
  log_probs = np.log(rng.dirichlet(np.ones(K + 1), size=(3, 4))).astype("float32")
  predicted = rng.integers(0, K, (3, 4)).astype("int32")
  for mode in ("pla", "mla"):
    want = label_order.align_batch(log_probs, predicted, present, mode)
    assert want.shape == (3, 4)
    assert want[1].tolist() == [K, -1, -1, -1]
    assert want[0, 2] == K and want[0, 3] == -1 and want[2, 3] == K
    got = tf.function(label_order.aligned_targets, autograph=False)(
        tf.constant(log_probs), tf.constant(predicted), tf.constant(present), mode)
    np.testing.assert_array_equal(got, want)
  with pytest.raises(ValueError, match="Row 2 has 3 labels"):
    label_order.align_batch(log_probs[:, :3], predicted[:, :3], present, "pla")


MULTI_HOT = np.array([[1, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, 0], [0, 0, 0, 0, 0, 0]], np.float32)


def test_rare_first_is_the_reverse_of_frequent_first():
  frequent = label_order.ordered_targets(MULTI_HOT, "frequent_first").numpy()
  rare = label_order.ordered_targets(MULTI_HOT, "rare_first").numpy()
  np.testing.assert_array_equal(frequent, vocab_lib.sequence_targets(MULTI_HOT))
  np.testing.assert_array_equal(rare, [[5, 3, 2, 0, K], [4, 1, K, -1, -1],
                                       [K, -1, -1, -1, -1]])
  # max_labels keeps the most frequent labels, then orders them.
  np.testing.assert_array_equal(
      label_order.ordered_targets(MULTI_HOT, "rare_first", max_labels=2),
      [[2, 0, K], [4, 1, K], [K, -1, -1]])


def test_random_order_differs_between_steps_and_is_reproducible_per_seed():
  multi_hot = np.ones((8, K), np.float32)  # 720 orders per row
  def draw(seed, step):
    return label_order.ordered_targets(multi_hot, "random", seed=seed, step=step).numpy()
  first = draw(0, 0)
  assert first.shape == (8, K + 1) and (first[:, -1] == K).all()
  for row in first:
    assert sorted(row[:-1]) == list(range(K))
  np.testing.assert_array_equal(first, draw(0, 0))  # reproducible
  assert not np.array_equal(first, draw(0, 1))  # a new order at the next step
  assert not np.array_equal(first, draw(1, 0))  # another seed
  assert len({tuple(r) for r in first}) > 1  # per example, not one order for the batch
  # Absent labels never appear; END follows the present ones.
  sparse = label_order.ordered_targets(MULTI_HOT, "random", seed=0, step=3).numpy()
  assert sorted(sparse[0, :4]) == [0, 2, 3, 5] and sparse[0, 4] == K
  assert sorted(sparse[1, :2]) == [1, 4] and sparse[1, 2:].tolist() == [K, -1, -1]
  # The step may be a variable read inside a tf.function (the trainer's optimizer count).
  step = tf.Variable(0, dtype=tf.int64)
  fn = tf.function(lambda: label_order.ordered_targets(multi_hot, "random", seed=0, step=step))
  a = fn().numpy()
  step.assign_add(1)
  np.testing.assert_array_equal(a, first)
  np.testing.assert_array_equal(fn(), draw(0, 1))


def test_free_running_pass_feeds_back_its_own_predictions_without_repeats():
  head = tiny_head(num_labels=K, seed=4)
  feats = np.random.default_rng(2).normal(size=(3, 6)).astype("float32")
  log_probs, predicted = decoding.free_running_pass(model_lib.head_step(head), feats, K,
                                                     training=False)
  assert log_probs.shape == (3, K, K + 1)
  for row in predicted.numpy():
    assert sorted(row) == list(range(K))  # every label once, END never
  # The same logits as the teacher-forced head on START + its own predictions.
  inputs = np.concatenate([np.full((3, 1), K + 1), predicted[:, :-1]], axis=1)
  logits = head({"image_features": feats, "input_ids": inputs.astype("int32")}, training=False)["logits"]
  np.testing.assert_allclose(log_probs, tf.nn.log_softmax(logits), rtol=1e-4, atol=1e-5)
  # Each step's choice is the most probable label not yet chosen.
  for b in range(3):
    for t in range(K):
      allowed = [l for l in range(K) if l not in predicted[b, :t]]
      assert predicted[b, t] == max(allowed, key=lambda l: log_probs[b, t, l])


def test_aligned_loss_is_the_cross_entropy_of_the_aligned_targets():
  head = tiny_head(num_labels=K, seed=5)
  feats = np.random.default_rng(3).normal(size=(2, 6)).astype("float32")
  multi_hot = MULTI_HOT[:2]
  step = model_lib.head_step(head)
  log_probs, predicted = decoding.free_running_pass(step, feats, 5, training=False)
  for mode in ("pla", "mla"):
    targets = label_order.align_batch(log_probs.numpy(), predicted.numpy(), multi_hot > 0, mode)
    predictions = model_lib.head_loss(
        head, feats, multi_hot, training=False,
        options=losses.LossOptions(label_order=mode, align_inputs="predictions",
                                   side_loss_weight=0.0))
    want = [-sum(log_probs[b, t, l] for t, l in enumerate(targets[b]) if l >= 0)
            for b in range(2)]
    np.testing.assert_allclose(predictions, want, rtol=1e-5)
    # targets: the head teacher-forced on the aligned sequence.
    forced = model_lib.head_loss(
        head, feats, multi_hot, training=False,
        options=losses.LossOptions(label_order=mode, align_inputs="targets",
                                   side_loss_weight=0.0))
    inputs = vocab_lib.teacher_forcing_inputs(tf.constant(targets), K + 1)
    logits = head({"image_features": tf.constant(feats), "input_ids": inputs}, training=False)["logits"]
    np.testing.assert_allclose(forced, losses.cnn_rnn_loss(logits, targets), rtol=1e-5)


@pytest.mark.parametrize("order, align_inputs", [
    ("frequent_first", "predictions"), ("rare_first", "predictions"),
    ("random", "predictions"), ("pla", "predictions"), ("mla", "predictions"),
    ("pla", "targets"), ("mla", "targets")])
def test_a_few_training_steps_reduce_the_loss(order, align_inputs):
  """Each order trains under tf.function with dropout and max_labels (small shapes)."""
  # Dropout on, so the training passes draw masks as the trainer's do.
  head = tiny_head(num_labels=K, seed=0, scale=1.0, dropout=0.1)
  rng = np.random.default_rng(0)
  feats = tf.constant(rng.normal(size=(16, 6)).astype("float32"))
  multi_hot = tf.constant((rng.random((16, K)) < 0.4).astype("float32"))
  options = losses.LossOptions(label_order=order, align_inputs=align_inputs, seed=1)
  optimizer = keras.optimizers.Adam(0.03)
  variables = head.trainable_variables

  @tf.function
  def train_step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model_lib.head_loss(
          head, feats, multi_hot, training=True, max_labels=4, options=options,
          step=optimizer.iterations))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  def eval_loss():
    # The mean over a few steps (random: several orders), without dropout.
    return np.mean([model_lib.head_loss(head, feats, multi_hot, training=False, max_labels=4,
                                        options=options, step=s).numpy().mean()
                    for s in range(3)])

  before = eval_loss()
  for _ in range(30):
    train_step()
  assert eval_loss() < 0.8 * before
