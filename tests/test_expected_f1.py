"""The expected-F1 (GFM) decoder against brute force, and ancestral sampling."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import expected_f1


def _f1(y, h):
  if not y.any() and not h.any():
    return 1.0
  return 2.0 * np.sum(y & h) / (y.sum() + h.sum())


def _all_sets(k):
  return np.array(list(itertools.product([False, True], repeat=k)))  # [2^K, K]


def _size_joint(sets, prob):
  """The definition: p[k, s - 1] = P(y_k = 1, |y| = s), by enumeration."""
  k = sets.shape[1]
  p = np.zeros((k, k))
  for y, q in zip(sets, prob):
    for label in np.flatnonzero(y):
      p[label, y.sum() - 1] += q
  return p, prob[~sets.any(axis=1)].sum()


@pytest.mark.parametrize("k,seed", [(3, 0), (4, 1), (5, 2), (5, 3), (6, 4)])
def test_gfm_finds_the_set_of_maximal_expected_f1_by_brute_force(k, seed):
  rng = np.random.default_rng(seed)
  sets = _all_sets(k)
  probs = []
  for _ in range(4):  # 4 images, each a random joint over all 2^K sets (peaked, correlated)
    q = rng.dirichlet(np.full(len(sets), 0.3))
    probs.append(q)
  p = np.stack([_size_joint(sets, q)[0] for q in probs])
  p_empty = np.array([_size_joint(sets, q)[1] for q in probs])
  chosen, expected = expected_f1.gfm(p, p_empty)
  for b, q in enumerate(probs):
    brute = np.array([sum(qy * _f1(y, h) for y, qy in zip(sets, q)) for h in sets])
    assert expected[b].numpy() == pytest.approx(brute.max(), abs=1e-5)
    got = chosen[b].numpy()
    index = int(np.flatnonzero((sets == got).all(axis=1))[0])
    assert brute[index] == pytest.approx(brute.max(), abs=1e-5)


def test_gfm_prefers_the_empty_set_when_it_is_most_likely():
  k = 3
  sets = _all_sets(k)
  q = np.full(len(sets), 0.02)
  q[0] = 1.0 - q[1:].sum()  # the empty set is almost certain
  p, p_empty = _size_joint(sets, q)
  chosen, expected = expected_f1.gfm(p[None], [p_empty])
  assert not chosen.numpy().any()
  assert expected.numpy()[0] == pytest.approx(p_empty)


def test_size_joint_of_samples_counts_labels_by_set_size():
  sets = np.array([[[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 1, 0]]], bool)  # one image, M = 4
  p, p_empty = expected_f1.size_joint_from_sets(sets)
  want = np.zeros((3, 3))
  want[0, 0] = 0.25  # label 0 in the 1-label set
  want[0, 1] = want[1, 1] = 0.5  # labels 0 and 1 in the two 2-label sets
  np.testing.assert_allclose(p.numpy()[0], want)
  assert p_empty.numpy()[0] == pytest.approx(0.25)


@pytest.mark.parametrize("k", [1, 4, 6])
def test_size_joint_of_independent_labels_equals_enumeration(k):
  rng = np.random.default_rng(k)
  marg = rng.uniform(0.01, 0.99, size=(3, k))
  sets = _all_sets(k)
  p, p_empty = expected_f1.size_joint_independent(marg)
  for b in range(3):
    q = np.prod(np.where(sets, marg[b], 1 - marg[b]), axis=1)
    want, want_empty = _size_joint(sets, q)
    np.testing.assert_allclose(p.numpy()[b], want, atol=1e-6)
    assert p_empty.numpy()[b] == pytest.approx(want_empty, abs=1e-6)


class _ConstantStep:
  """A step function whose next-token distribution is fixed: log_probs [K + 1] every step."""

  def __init__(self, log_probs):
    self.log_probs = tf.constant(log_probs, tf.float32)

  def __call__(self, prev_ids, state):
    return tf.repeat(self.log_probs[tf.newaxis], tf.shape(prev_ids)[0], axis=0), state


def _sample(step, features, seed, m=8, k=4, **kw):
  seeds = decoding.image_seeds(features, seed)
  state = {"x": tf.convert_to_tensor(features, tf.float32)}
  return decoding.sample_sets(step, state, num_labels=k, num_samples=m, max_length=k,
                              seeds=seeds, **kw).numpy()


def test_samples_are_reproducible_by_seed_and_independent_of_the_batch():
  step = _ConstantStep(np.log([0.3, 0.2, 0.2, 0.1, 0.2]))
  features = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
  a = _sample(step, features, seed=1)
  np.testing.assert_array_equal(a, _sample(step, features, seed=1))
  assert not np.array_equal(a, _sample(step, features, seed=2))
  # Image 3 alone draws what it drew in the batch of 5.
  np.testing.assert_array_equal(a[3:4], _sample(step, features[3:4], seed=1))
  assert not np.array_equal(a[0], a[1])  # other images, other draws


def test_sample_frequencies_follow_the_model():
  # First token: labels 0..2 and END with probabilities 0.5, 0.3, 0.1, 0.1; the sampler may
  # stop at END before any label (min_length 0).
  probs = np.array([0.5, 0.3, 0.1, 0.1])
  step = _ConstantStep(np.log(probs))
  features = np.zeros((1, 2), np.float32)
  sets = _sample(step, features, seed=0, m=4000, k=3)[0]  # [M, K]
  empty = ~sets.any(axis=1)
  assert empty.mean() == pytest.approx(0.1, abs=0.02)
  # P(label 0 in the set) by enumeration of the renormalised sequential draws.
  def p_contains(label, used=(), prob=1.0):
    allowed = [i for i in range(4) if i not in used]
    z = probs[allowed].sum()
    total = 0.0
    for i in allowed:
      pi = prob * probs[i] / z
      if i == 3:
        continue
      total += pi if i == label else p_contains(label, used + (i,), pi)
    return total
  for label in range(3):
    assert sets[:, label].mean() == pytest.approx(p_contains(label), abs=0.03)


def test_min_length_and_max_length_bound_the_sampled_sets():
  step = _ConstantStep(np.log([0.1, 0.1, 0.1, 0.1, 0.6]))
  features = np.random.default_rng(1).normal(size=(3, 2)).astype(np.float32)
  sizes = _sample(step, features, seed=0, m=50, k=4, min_length=2).sum(axis=-1)
  assert sizes.min() >= 2
  seeds = decoding.image_seeds(features, 0)
  sets = decoding.sample_sets(step, {"x": tf.constant(features)}, num_labels=4, num_samples=50,
                              max_length=1, seeds=seeds).numpy()
  assert sets.sum(axis=-1).max() <= 1
