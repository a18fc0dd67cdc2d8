"""Beam and greedy search (cnn_rnn_tf.decoding) on tiny CNN-RNN heads."""

import itertools

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import decoding
from cnn_rnn_tf import model as model_lib
from helpers import tiny_head

K = 4


def _features(n, seed=1):
  return np.random.default_rng(seed).normal(size=(n, 6)).astype("float32")


def _paths_log_prob(step, feature, paths):
  """log P(path, END | image) of each of `paths` (equal lengths), replayed one step at a time
  from START (eager, all the paths as one batch): float [len(paths)]."""
  paths = np.asarray(paths, np.int32).reshape(len(paths), -1)  # [P, m]
  tokens = np.concatenate([paths, np.full((len(paths), 1), K, np.int32)], axis=1)  # + END
  state = step.initial_state(np.repeat(feature[None], len(paths), axis=0))
  prev, total = np.full(len(paths), K + 1, np.int32), np.zeros(len(paths))
  for t in range(tokens.shape[1]):
    log_probs, state = step(tf.constant(prev), state)  # [P, K + 1]
    total += log_probs.numpy()[np.arange(len(paths)), tokens[:, t]]
    prev = tokens[:, t]
  return total


def _path_log_prob(step, feature, path):
  """log P(path, END | image) of one path."""
  return float(_paths_log_prob(step, feature, [list(path)])[0])


def _exhaustive_best(step, feature, max_length, min_length):
  """(best (log-prob, path) over every path of min_length..max_length labels, their count)."""
  scored = []
  for m in range(min_length, max_length + 1):
    paths = list(itertools.permutations(range(K), m))
    scored += zip(_paths_log_prob(step, feature, paths), paths)
  return max(scored), len(scored)


@pytest.mark.parametrize("seed,min_length", [(0, 0), (1, 0), (2, 2), (3, 1)])
def test_wide_beam_equals_exhaustive_search(seed, min_length):
  step = model_lib.head_step(tiny_head(num_labels=K, seed=seed))
  feats = _features(3, seed=seed + 10)
  (_, _), num_paths = _exhaustive_best(step, feats[0], K, min_length)
  result = decoding.beam_search(step, step.initial_state(feats), num_labels=K,
                                beam_size=num_paths, max_length=K, min_length=min_length)
  for i in range(3):
    (best_lp, best_path), _ = _exhaustive_best(step, feats[i], K, min_length)
    n = int(result.num_labels[i])
    assert tuple(result.labels[i, :n].numpy()) == best_path
    assert np.all(result.labels[i, n:].numpy() == -1)
    np.testing.assert_allclose(result.path_log_prob[i], best_lp, rtol=1e-4, atol=1e-4)


def _greedy_reference(step, feature, max_length, min_length):
  state = step.initial_state(feature[None])
  prev, path = K + 1, []
  while True:
    log_probs, state = step(tf.constant([prev]), state)
    lp = log_probs[0].numpy().copy()
    lp[path] = -np.inf
    if len(path) < min_length:
      lp[K] = -np.inf
    if len(path) == max_length:
      lp[:K] = -np.inf
    token = int(np.argmax(lp))
    if token == K:
      return path
    path.append(token)
    prev = token


@pytest.mark.parametrize("seed", [0, 4])
def test_beam_one_equals_greedy(seed):
  step = model_lib.head_step(tiny_head(num_labels=K, seed=seed))
  feats = _features(5, seed)
  greedy = decoding.greedy_search(step, step.initial_state(feats), num_labels=K, max_length=3)
  beam1 = decoding.beam_search(step, step.initial_state(feats), num_labels=K, beam_size=1,
                               max_length=3)
  np.testing.assert_array_equal(greedy.labels, beam1.labels)
  np.testing.assert_array_equal(greedy.num_labels, beam1.num_labels)
  np.testing.assert_allclose(greedy.path_log_prob, beam1.path_log_prob, rtol=1e-5)
  np.testing.assert_allclose(greedy.label_scores, beam1.label_scores, rtol=1e-5)
  for i in range(5):
    ref = _greedy_reference(step, feats[i], 3, 0)
    assert list(greedy.labels[i, :len(ref)].numpy()) == ref
    assert int(greedy.num_labels[i]) == len(ref)


@pytest.mark.parametrize("beam_size,min_length", [(1, 3), (3, 2), (5, 4)])
def test_min_length_and_no_repeats(beam_size, min_length):
  step = model_lib.head_step(tiny_head(num_labels=K, seed=7))
  feats = _features(8, 7)
  result = decoding.beam_search(step, step.initial_state(feats), num_labels=K,
                                beam_size=beam_size, max_length=K, min_length=min_length)
  for i in range(8):
    n = int(result.num_labels[i])
    assert n >= min_length
    path = result.labels[i, :n].numpy()
    assert len(set(path)) == n and np.all((path >= 0) & (path < K))


def test_max_length_is_honoured():
  step = model_lib.head_step(tiny_head(num_labels=K, seed=2))
  feats = _features(6, 2)
  result = decoding.beam_search(step, step.initial_state(feats), num_labels=K, beam_size=3,
                                max_length=2, min_length=2)
  assert result.labels.shape == (6, 2)
  np.testing.assert_array_equal(result.num_labels, 2)


def test_batch_equals_one_by_one():
  step = model_lib.head_step(tiny_head(num_labels=K, seed=5))
  feats = _features(6, 5)
  batch = decoding.beam_search(step, step.initial_state(feats), num_labels=K, beam_size=3,
                               max_length=K)
  for i in range(6):
    one = decoding.beam_search(step, step.initial_state(feats[i:i + 1]), num_labels=K,
                               beam_size=3, max_length=K)
    np.testing.assert_array_equal(one.labels[0], batch.labels[i])
    np.testing.assert_allclose(one.path_log_prob[0], batch.path_log_prob[i], rtol=1e-5)
    # atol: probabilities near 0 (1e-12) differ in the last bits between batch sizes.
    np.testing.assert_allclose(one.label_scores[0], batch.label_scores[i], rtol=1e-5,
                               atol=1e-7)


def test_label_scores_are_max_probability_along_the_path():
  step = model_lib.head_step(tiny_head(num_labels=K, seed=3))
  feats = _features(4, 3)
  result = decoding.beam_search(step, step.initial_state(feats), num_labels=K, beam_size=2,
                                max_length=K)
  for i in range(4):
    path = list(result.labels[i, :int(result.num_labels[i])].numpy())
    state = step.initial_state(feats[i:i + 1])
    prev, best = K + 1, np.zeros(K)
    for token in path + [K]:
      log_probs, state = step(tf.constant([prev]), state)
      best = np.maximum(best, np.exp(log_probs[0, :K].numpy()))
      prev = token
    np.testing.assert_allclose(result.label_scores[i], best, rtol=1e-5, atol=1e-7)


def test_runs_in_tf_function_with_input_signature():
  step = model_lib.head_step(tiny_head(num_labels=K, seed=1))

  @tf.function(input_signature=[tf.TensorSpec([None, 6], tf.float32)], autograph=False)
  def run(features):
    return decoding.beam_search(step, step.initial_state(features), num_labels=K,
                                beam_size=3, max_length=K)._asdict()

  feats = _features(3)
  eager = decoding.beam_search(step, step.initial_state(feats), num_labels=K, beam_size=3,
                               max_length=K)
  graph = run(feats)
  np.testing.assert_array_equal(graph["labels"], eager.labels)
  assert run(np.zeros((0, 6), np.float32))["labels"].shape == (0, K)


def test_bad_arguments_name_the_value():
  step = model_lib.head_step(tiny_head(num_labels=K))
  init = step.initial_state(_features(1))
  with pytest.raises(ValueError, match="beam_size"):
    decoding.beam_search(step, init, num_labels=K, beam_size=0, max_length=3)
  with pytest.raises(ValueError, match="min_length"):
    decoding.beam_search(step, init, num_labels=K, beam_size=2, max_length=2, min_length=3)


def test_beam_helpers_add_flatten_unflatten_gather():
  x = tf.reshape(tf.range(6), [2, 3])  # [batch 2, 3]
  beams = decoding.add_beam_dim(x, 4)  # [2, 4, 3]
  assert beams.shape == (2, 4, 3)
  np.testing.assert_array_equal(beams[:, 2], x)
  flat = decoding.flatten_beam_dim(beams)  # [8, 3]
  np.testing.assert_array_equal(flat[5], x[1])
  np.testing.assert_array_equal(decoding.unflatten_beam_dim(flat, 2, 4), beams)
  seq = tf.constant([[10, 11, 12], [20, 21, 22]])  # [batch 2, beam 3]
  np.testing.assert_array_equal(
      decoding.gather_beams(seq, tf.constant([[2, 0], [1, 1]])), [[12, 10], [21, 21]])


@pytest.mark.parametrize("seed,beam,min_length", [(0, 3, 0), (4, 5, 1), (6, 2, 0)])
def test_n_best_paths_are_the_candidate_set_best_first(seed, beam, min_length):
  step = model_lib.head_step(tiny_head(num_labels=K, seed=seed))
  feats = _features(3, seed=seed + 20)
  result = decoding.beam_search(step, step.initial_state(feats), num_labels=K,
                                beam_size=beam, max_length=K, min_length=min_length)
  paths, lp = result.paths.numpy(), result.paths_log_prob.numpy()
  assert paths.shape == (3, beam, K) and paths.dtype == np.int32 and lp.shape == (3, beam)
  np.testing.assert_array_equal(paths[:, 0], result.labels)
  np.testing.assert_array_equal(lp[:, 0], result.path_log_prob)
  for i in range(3):
    assert np.all(np.diff(lp[i]) <= 0), lp[i]  # best first
    seen = set()
    for j in range(beam):
      if np.isinf(lp[i, j]):
        assert np.all(paths[i, j] == -1)
        continue
      path = [int(t) for t in paths[i, j] if t >= 0]
      assert len(set(path)) == len(path) >= min_length
      assert tuple(path) not in seen  # candidates are distinct paths
      seen.add(tuple(path))
      np.testing.assert_allclose(lp[i, j], _path_log_prob(step, feats[i], path), rtol=1e-4,
                                 atol=1e-4)


def test_greedy_n_best_is_the_one_path():
  step = model_lib.head_step(tiny_head(num_labels=K, seed=1))
  result = decoding.greedy_search(step, step.initial_state(_features(2)), num_labels=K,
                                  max_length=3)
  np.testing.assert_array_equal(result.paths[:, 0], result.labels)
  np.testing.assert_array_equal(result.paths_log_prob[:, 0], result.path_log_prob)
