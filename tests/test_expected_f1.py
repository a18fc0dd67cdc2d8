"""The expected-F1 (GFM) decoder against brute force, and ancestral sampling."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import sampling
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
  seeds = sampling.image_seeds(features, seed)
  state = {"x": tf.convert_to_tensor(features, tf.float32)}
  return sampling.sample_sets(step, state, num_labels=k, num_samples=m, max_length=k,
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
  seeds = sampling.image_seeds(features, 0)
  sets = sampling.sample_sets(step, {"x": tf.constant(features)}, num_labels=4, num_samples=50,
                              max_length=1, seeds=seeds).numpy()
  assert sets.sum(axis=-1).max() <= 1


def _sample_sets_every_step(step_fn, init_state, *, num_labels, num_samples, max_length,
                            min_length=0, seeds):
  """The sampler as it was before draws left the batch at END: every draw runs every step
  (its later tokens ignored). The reference the faster `sampling.sample_sets` must equal."""
  from cnn_rnn_tf import vocab as vocab_lib  # pylint: disable=g-import-not-at-top
  length = decoding.check_lengths(num_labels, max_length, min_length)
  k, m = num_labels, num_samples
  end_id = vocab_lib.end_id_of(k)
  batch = tf.shape(tf.nest.flatten(init_state)[0])[0]
  sample_seeds = sampling._mix32(  # pylint: disable=protected-access
      tf.cast(seeds, tf.uint32)[:, tf.newaxis]
      + tf.cast(tf.range(m), tf.uint32)[tf.newaxis, :] * tf.constant(0x9E3779B9, tf.uint32))
  state = tf.nest.map_structure(
      lambda x: decoding.flatten_beam_dim(decoding.add_beam_dim(x, m)), init_state)
  last = tf.fill([batch, m], tf.constant(vocab_lib.start_id_of(k)))
  done, used = tf.zeros([batch, m], tf.bool), tf.zeros([batch, m, k], tf.bool)
  for t in range(length + 1):
    log_probs, state = step_fn(decoding.flatten_beam_dim(last), state)
    log_probs = decoding.unflatten_beam_dim(tf.cast(log_probs, tf.float32), batch, m)
    masked = tf.where(decoding.token_mask(used, t, min_length, length),
                      decoding.NEG, log_probs)
    gumbel = -tf.math.log(-tf.math.log(sampling._uniform(sample_seeds, t, k + 1)))  # pylint: disable=protected-access
    last = tf.argmax(masked + gumbel, axis=-1, output_type=tf.int32)
    write = tf.logical_and(tf.logical_not(done), tf.not_equal(last, end_id))
    used = tf.logical_or(used, tf.logical_and(write[..., tf.newaxis], tf.one_hot(last, k) > 0))
    done = tf.logical_or(done, tf.equal(last, end_id))
  return used


@pytest.mark.parametrize("seed,min_length,max_length", [(0, 0, 5), (1, 2, 5), (2, 0, 3)])
def test_sampler_equals_the_every_step_sampler_for_the_same_seeds(seed, min_length,
                                                                  max_length):
  """Draws that leave the batch at END change no draw: the same sets as the sampler that ran
  every draw every step, for a CNN-RNN head whose step depends on the path so far."""
  from cnn_rnn_tf import model as model_lib  # pylint: disable=g-import-not-at-top
  from helpers import tiny_head  # pylint: disable=g-import-not-at-top
  k, m = 5, 40
  step = model_lib.head_step(tiny_head(num_labels=k, seed=seed, scale=1.0))
  features = np.random.default_rng(seed).normal(size=(6, 6)).astype(np.float32)
  seeds = sampling.image_seeds(features, seed)
  kw = dict(num_labels=k, num_samples=m, max_length=max_length, min_length=min_length,
            seeds=seeds)
  got = sampling.sample_sets(step, step.initial_state(features), **kw).numpy()
  want = _sample_sets_every_step(step, step.initial_state(features), **kw).numpy()
  sizes = got.sum(axis=-1)
  assert sizes.min() >= min_length and sizes.max() <= max_length
  assert len(set(sizes.ravel())) > 1  # draws of several lengths: some left the batch early
  np.testing.assert_array_equal(got, want)
  compiled = tf.function(lambda f: sampling.sample_sets(step, step.initial_state(f), **kw))
  np.testing.assert_array_equal(compiled(tf.constant(features)).numpy(), want)
