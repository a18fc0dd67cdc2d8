"""Greedy and beam search over label paths, in TensorFlow ops (paper section 3.3).

Both run as one `tf.while_loop` batched over images x beams (no Python loop over steps at
run time, no py_function), so they work inside a `tf.function` with an input signature and
inside an exported SavedModel that TF Serving runs.

    step = model.CNNRNNStep(head)
    result = beam_search(step, step.initial_state(features), num_labels=K,
                         beam_size=3, max_length=10, min_length=0)
    result.labels          # int32 [B, max_length], label ids, -1 padded
    result.num_labels      # int32 [B]
    result.path_log_prob   # float32 [B]
    result.label_scores    # float32 [B, K]

`step_fn(prev_ids [M], state) -> (log_probs [M, K + 1], state)` scores the K labels and END
(id K) given the previous label (START = K + 1 at the first step); `state` is any nest of
tensors with a leading batch dimension M.

The search (paper 3.3):
  * keep the N best intermediate paths; extend each by its N most probable next tokens
    (N x N paths). An extension by END moves the path to the candidate set C (the N best
    candidates are kept); of the other extensions the N best stay intermediate.
  * a label never appears twice in a path; END is masked until `min_length` labels; after
    `max_length` labels only END is allowed (so every path ends).
  * stop when the best intermediate path is less probable than the best candidate: every
    extension only lowers a path's probability, so none can beat it any more.
  * the answer is the best path in C. With beam_size=1 this is exactly greedy decoding.
Path probability: the product of the model's softmax probabilities of the path's labels and
END (no renormalisation after masking).

Ranking score (for AP and MAP@10, which need a score for every label): `label_scores[k]` is
the highest probability label k gets at any step of the returned path (its END step
included), i.e. max_t P(k | I, l_1..l_{t-1}) along the best path. A label of the path scores
at least its own step's probability; labels the path never took still get a ranking.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import tensorflow as tf

NEG = -1.0e30  # log-probability of an impossible path (finite: avoids inf - inf = NaN)
_DEAD = NEG / 2


class DecodeResult(NamedTuple):
  labels: tf.Tensor  # int32 [B, L], -1 padded
  num_labels: tf.Tensor  # int32 [B]
  path_log_prob: tf.Tensor  # float32 [B]
  label_scores: tf.Tensor  # float32 [B, K]


def check_lengths(num_labels: int, max_length: int, min_length: int) -> int:
  """Validates the lengths; returns the effective max length min(max_length, K)."""
  if num_labels < 1:
    raise ValueError(f"num_labels must be >= 1, got {num_labels}.")
  if max_length < 1:
    raise ValueError(f"max_length must be >= 1, got {max_length}.")
  length = min(max_length, num_labels)
  if not 0 <= min_length <= length:
    raise ValueError(f"min_length must be in [0, min(max_length, num_labels)] = [0, {length}], "
                     f"got {min_length}.")
  return length


def _token_mask(used, t, num_labels, min_length, max_length):
  """True where a token is forbidden. used: bool [..., K] -> [..., K + 1]."""
  too_long = t >= max_length
  labels_off = tf.logical_or(used, too_long)  # [..., K]
  end_off = tf.fill(tf.shape(used[..., :1]), t < min_length)  # [..., 1]
  return tf.concat([labels_off, end_off], axis=-1)


def greedy_search(step_fn: Callable, init_state: Any, *, num_labels: int, max_length: int,
                  min_length: int = 0) -> DecodeResult:
  """The most probable next token at every step until END. Same outputs as `beam_search`."""
  length = check_lengths(num_labels, max_length, min_length)
  k = num_labels
  batch = tf.shape(tf.nest.flatten(init_state)[0])[0]

  def body(t, last, done, seq, logp, used, scores, state):
    log_probs, new_state = step_fn(last, state)  # [B, K + 1]
    log_probs = tf.cast(log_probs, tf.float32)
    masked = tf.where(_token_mask(used, t, k, min_length, length), NEG, log_probs)
    tok = tf.argmax(masked, axis=-1, output_type=tf.int32)  # [B]
    is_end = tf.equal(tok, k)
    active = tf.logical_not(done)
    step_lp = tf.reduce_max(masked, axis=-1)
    logp = tf.where(active, logp + step_lp, logp)
    scores = tf.where(active[:, None], tf.maximum(scores, tf.exp(log_probs[:, :k])), scores)
    write = tf.logical_and(active, tf.logical_not(is_end))  # [B]
    seq = tf.where(write[:, None] & tf.equal(tf.range(length)[None, :], t), tok[:, None], seq)
    used = tf.logical_or(used, tf.logical_and(write[:, None], tf.one_hot(tok, k) > 0))
    done = tf.logical_or(done, is_end)
    return t + 1, tok, done, seq, logp, used, scores, new_state

  loop_vars = (
      tf.constant(0), tf.fill([batch], tf.constant(k + 1, tf.int32)), tf.zeros([batch], tf.bool),
      tf.fill([batch, length], tf.constant(-1, tf.int32)), tf.zeros([batch], tf.float32),
      tf.zeros([batch, k], tf.bool), tf.zeros([batch, k], tf.float32), init_state)
  _, _, _, seq, logp, _, scores, _ = tf.while_loop(
      lambda t, last, done, *_: tf.logical_and(t <= length,
                                               tf.logical_not(tf.reduce_all(done))),
      body, loop_vars, maximum_iterations=length + 1)
  num = tf.reduce_sum(tf.cast(seq >= 0, tf.int32), axis=1)
  return DecodeResult(seq, num, logp, scores)


def _gather_beams(x, idx):
  """x [B, N, ...], idx int32 [B, M] -> [B, M, ...]."""
  return tf.gather(x, idx, batch_dims=1)


def beam_search(step_fn: Callable, init_state: Any, *, num_labels: int, beam_size: int,
                max_length: int, min_length: int = 0) -> DecodeResult:
  """Beam search over label paths; see the module docstring for the algorithm.

  Args:
    step_fn: (prev_ids int32 [M], state) -> (log_probs [M, K + 1], state).
    init_state: nest of [B, ...] tensors, the state before the first step.
    num_labels: K. END = K, START = K + 1.
    beam_size: N >= 1.
    max_length: at most this many labels per path (capped at K).
    min_length: END is not allowed before this many labels.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
  length = check_lengths(num_labels, max_length, min_length)
  k_lab, n = num_labels, beam_size
  ext = min(n, k_lab + 1)  # extensions per beam
  batch = tf.shape(tf.nest.flatten(init_state)[0])[0]

  def tile(x):  # [B, ...] -> [B * N, ...]
    x = tf.repeat(x[:, None], n, axis=1)
    return tf.reshape(x, tf.concat([[batch * n], tf.shape(x)[2:]], 0))

  def gather_state(x, parent):  # [B * N, ...] by parent [B, N]
    shape = tf.shape(x)
    x = tf.reshape(x, tf.concat([[batch, n], shape[1:]], 0))
    return tf.reshape(_gather_beams(x, parent), shape)

  def body(t, last, a_seq, a_logp, a_used, a_scores, state, f_seq, f_logp, f_scores, f_len):
    log_probs, new_state = step_fn(tf.reshape(last, [-1]), state)
    log_probs = tf.reshape(tf.cast(log_probs, tf.float32), [batch, n, k_lab + 1])
    masked = tf.where(_token_mask(a_used, t, k_lab, min_length, length), NEG, log_probs)
    top_lp, top_ids = tf.math.top_k(masked, ext)  # [B, N, E]
    total = a_logp[..., None] + top_lp  # [B, N, E]
    is_end = tf.equal(top_ids, k_lab)
    scores = tf.maximum(a_scores, tf.exp(log_probs[..., :k_lab]))  # [B, N, K]

    # Paths ending here join the candidate set C; keep its N best.
    end_logp = tf.reshape(tf.where(is_end, total, NEG), [batch, n * ext])
    src = tf.repeat(tf.range(n), ext)[None, :] + tf.zeros([batch, 1], tf.int32)  # [B, N*E]
    c_logp = tf.concat([f_logp, end_logp], axis=1)  # [B, N + N*E]
    c_seq = tf.concat([f_seq, _gather_beams(a_seq, src)], axis=1)
    c_scores = tf.concat([f_scores, _gather_beams(scores, src)], axis=1)
    c_len = tf.concat([f_len, tf.fill([batch, n * ext], t)], axis=1)
    f_logp, keep = tf.math.top_k(c_logp, n)  # [B, N]
    f_seq, f_scores, f_len = (_gather_beams(x, keep) for x in (c_seq, c_scores, c_len))

    # The N best other extensions stay intermediate.
    alive_logp = tf.reshape(tf.where(is_end, NEG, total), [batch, n * ext])
    a_logp, flat = tf.math.top_k(alive_logp, n)  # [B, N]
    parent = flat // ext
    tok = _gather_beams(tf.reshape(top_ids, [batch, n * ext]), flat)  # [B, N]
    write = tf.equal(tf.range(length), t)[None, None, :]  # [1, 1, L]
    a_seq = tf.where(write, tok[..., None], _gather_beams(a_seq, parent))
    a_used = tf.logical_or(_gather_beams(a_used, parent), tf.one_hot(tok, k_lab) > 0)
    a_scores = _gather_beams(scores, parent)
    state = tf.nest.map_structure(lambda x: gather_state(x, parent), new_state)
    return t + 1, tok, a_seq, a_logp, a_used, a_scores, state, f_seq, f_logp, f_scores, f_len

  def cond(t, last, a_seq, a_logp, *rest):
    f_logp = rest[-3]
    best_alive = tf.reduce_max(a_logp, axis=1)  # [B]
    done = tf.logical_or(best_alive < _DEAD, best_alive < tf.reduce_max(f_logp, axis=1))
    return tf.logical_and(t <= length, tf.logical_not(tf.reduce_all(done)))

  first = tf.concat([tf.zeros([batch, 1]), tf.fill([batch, n - 1], NEG)], axis=1)  # one live beam
  loop_vars = (
      tf.constant(0),
      tf.fill([batch, n], tf.constant(k_lab + 1, tf.int32)),  # START
      tf.fill([batch, n, length], tf.constant(-1, tf.int32)),
      first,
      tf.zeros([batch, n, k_lab], tf.bool),
      tf.zeros([batch, n, k_lab], tf.float32),
      tf.nest.map_structure(tile, init_state),
      tf.fill([batch, n, length], tf.constant(-1, tf.int32)),
      tf.fill([batch, n], tf.constant(NEG, tf.float32)),
      tf.zeros([batch, n, k_lab], tf.float32),
      tf.zeros([batch, n], tf.int32),
  )
  out = tf.while_loop(cond, body, loop_vars, maximum_iterations=length + 1)
  f_seq, f_logp, f_scores, f_len = out[-4:]
  best = tf.argmax(f_logp, axis=1, output_type=tf.int32)[:, None]  # [B, 1]
  return DecodeResult(
      labels=_gather_beams(f_seq, best)[:, 0],
      num_labels=_gather_beams(f_len, best)[:, 0],
      path_log_prob=_gather_beams(f_logp, best)[:, 0],
      label_scores=_gather_beams(f_scores, best)[:, 0])


def decode(step_fn: Callable, init_state: Any, *, num_labels: int, beam_size: int,
           max_length: int, min_length: int = 0) -> DecodeResult:
  """Greedy for beam_size 1 (cheaper, same answer), beam search otherwise."""
  if beam_size == 1:
    return greedy_search(step_fn, init_state, num_labels=num_labels, max_length=max_length,
                         min_length=min_length)
  return beam_search(step_fn, init_state, num_labels=num_labels, beam_size=beam_size,
                     max_length=max_length, min_length=min_length)
