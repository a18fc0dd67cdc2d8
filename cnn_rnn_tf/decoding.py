"""Greedy and beam search over label paths (paper 3.3) and the free-running pass, in TF ops.

Seeded ancestral sampling, which uses the same masks, is in `sampling.py`.

Both run as one `tf.while_loop` batched over images x beams (no Python loop over steps at
run time, no py_function), so they work inside a `tf.function` with an input signature and
inside an exported SavedModel that TF Serving runs.

    step = model.head_step(head)
    result = beam_search(step, step.initial_state(features), num_labels=K,
                         beam_size=3, max_length=10, min_length=0)
    result.labels          # int32 [B, L], label ids, -1 padded   (L = min(max_length, K))
    result.num_labels      # int32 [B]
    result.path_log_prob   # float32 [B]
    result.label_scores    # float32 [B, K]
    result.paths           # int32 [B, N, L]: the N best finished paths, best first, -1 padded
    result.paths_log_prob  # float32 [B, N]: their log-probabilities, descending; -inf = none

`step_fn(prev_ids [M], state) -> (log_probs [M, K + 1], state)` scores the K labels and END
given the previous label (START at the first step; ids from `vocab`: END = K, START = K + 1);
`state` is any nest of tensors with a leading batch dimension M.

The search (paper 3.3; docs/method.md):
  * keep the N best intermediate paths; extend each by its N most probable next tokens
    (N x N paths). An extension by END moves the path to the candidate set C (the N best
    candidates are kept); of the other extensions the N best stay intermediate.
  * a label never appears twice in a path; END is masked until `min_length` labels; after
    `max_length` labels only END is allowed (so every path ends).
  * stop when the best intermediate path is less probable than the best candidate: every
    extension only lowers a path's probability, so none can beat it any more.
  * the answer is the best path in C; `paths` is all of C, best first. With beam_size=1 this
    is exactly greedy decoding.
Path probability: the product of the model's softmax probabilities of the path's labels and
END (no renormalisation after masking).

Ranking score (for AP and MAP@10, which need a score for every label): `label_scores[k]` is
the highest probability label k gets at any step of the returned path (its END step
included), i.e. max_t P(k | I, l_1..l_{t-1}) along the best path. A label of the path scores
at least its own step's probability; labels the path never took still get a ranking.

The loop state is a `BeamState`; the beam helpers follow flax's examples/wmt/decode.py
(`add_beam_dim`, `flatten_beam_dim`, `unflatten_beam_dim`, `gather_beams`).
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import tensorflow as tf

from cnn_rnn_tf import vocab as vocab_lib

NEG = -1.0e30  # log-probability of an impossible path (finite: avoids inf - inf = NaN)
_DEAD = NEG / 2


class DecodeResult(NamedTuple):
  labels: tf.Tensor  # int32: [batch, L], -1 padded
  num_labels: tf.Tensor  # int32: [batch]
  path_log_prob: tf.Tensor  # float32: [batch]
  label_scores: tf.Tensor  # float32: [batch, K]
  paths: tf.Tensor  # int32: [batch, N, L], the N best paths, best first, -1 padded
  paths_log_prob: tf.Tensor  # float32: [batch, N], descending, -inf for an empty slot


class BeamState(NamedTuple):
  """The beam search's loop state: the alive (intermediate) beams and the finished set C."""
  step: tf.Tensor  # int32: [], labels decoded so far (t)
  last_ids: tf.Tensor  # int32: [batch, beam], the token each beam read last (START at t = 0)
  alive_seq: tf.Tensor  # int32: [batch, beam, L], labels so far, -1 padded
  alive_log_prob: tf.Tensor  # float32: [batch, beam], NEG for an empty beam
  alive_used: tf.Tensor  # bool: [batch, beam, K], labels already in the path
  alive_scores: tf.Tensor  # float32: [batch, beam, K], max probability per label so far
  cache: Any  # nest of [batch * beam, ...]: the step function's state per beam
  finished_seq: tf.Tensor  # int32: [batch, beam, L]
  finished_log_prob: tf.Tensor  # float32: [batch, beam], NEG for an empty slot
  finished_scores: tf.Tensor  # float32: [batch, beam, K]
  finished_len: tf.Tensor  # int32: [batch, beam]


# Beam helpers (flax examples/wmt/decode.py).

def add_beam_dim(x: tf.Tensor, beam_size: int) -> tf.Tensor:
  """[batch, ...] -> [batch, beam, ...], the element repeated on every beam."""
  return tf.repeat(x[:, tf.newaxis], beam_size, axis=1)


def flatten_beam_dim(x: tf.Tensor) -> tf.Tensor:
  """[batch, beam, ...] -> [batch * beam, ...]."""
  shape = tf.shape(x)
  return tf.reshape(x, tf.concat([[shape[0] * shape[1]], shape[2:]], 0))


def unflatten_beam_dim(x: tf.Tensor, batch_size, beam_size: int) -> tf.Tensor:
  """[batch * beam, ...] -> [batch, beam, ...]."""
  return tf.reshape(x, tf.concat([[batch_size, beam_size], tf.shape(x)[1:]], 0))


def gather_beams(x: tf.Tensor, beam_indices: tf.Tensor) -> tf.Tensor:
  """x [batch, beam, ...], beam_indices int32 [batch, M] -> [batch, M, ...]."""
  return tf.gather(x, beam_indices, batch_dims=1)


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


def token_mask(used, t, min_length, max_length):
  """True where a token is forbidden. used: bool [..., K] -> [..., K + 1] (labels, END)."""
  too_long = t >= max_length
  labels_off = tf.logical_or(used, too_long)  # [..., K]
  end_off = tf.fill(tf.shape(used[..., :1]), t < min_length)  # [..., 1]
  return tf.concat([labels_off, end_off], axis=-1)


def greedy_search(step_fn: Callable, init_state: Any, *, num_labels: int, max_length: int,
                  min_length: int = 0) -> DecodeResult:
  """The most probable next token at every step until END. Same outputs as `beam_search`
  (with N = 1: `paths` is `labels[:, None]`)."""
  length = check_lengths(num_labels, max_length, min_length)
  k = num_labels
  end_id, start_id = vocab_lib.end_id_of(k), vocab_lib.start_id_of(k)
  batch = tf.shape(tf.nest.flatten(init_state)[0])[0]

  def body(t, last, done, seq, logp, used, scores, state):
    log_probs, new_state = step_fn(last, state)  # [B, K + 1]
    log_probs = tf.cast(log_probs, tf.float32)
    masked = tf.where(token_mask(used, t, min_length, length), NEG, log_probs)
    tok = tf.argmax(masked, axis=-1, output_type=tf.int32)  # [B]
    is_end = tf.equal(tok, end_id)
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
      tf.constant(0), tf.fill([batch], tf.constant(start_id, tf.int32)),
      tf.zeros([batch], tf.bool),
      tf.fill([batch, length], tf.constant(vocab_lib.PAD_ID, tf.int32)),
      tf.zeros([batch], tf.float32),
      tf.zeros([batch, k], tf.bool), tf.zeros([batch, k], tf.float32), init_state)
  _, _, _, seq, logp, _, scores, _ = tf.while_loop(
      lambda t, last, done, *_: tf.logical_and(t <= length,
                                               tf.logical_not(tf.reduce_all(done))),
      body, loop_vars, maximum_iterations=length + 1)
  num = tf.reduce_sum(tf.cast(seq >= 0, tf.int32), axis=1)
  return DecodeResult(seq, num, logp, scores, seq[:, tf.newaxis], logp[:, tf.newaxis])


def beam_search(step_fn: Callable, init_state: Any, *, num_labels: int, beam_size: int,
                max_length: int, min_length: int = 0) -> DecodeResult:
  """Beam search over label paths; see the module docstring for the algorithm.

  Args:
    step_fn: (prev_ids int32 [M], state) -> (log_probs [M, K + 1], state).
    init_state: nest of [B, ...] tensors, the state before the first step.
    num_labels: K. END and START ids come from `vocab` (K and K + 1).
    beam_size: N >= 1.
    max_length: at most this many labels per path (capped at K).
    min_length: END is not allowed before this many labels.
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
  length = check_lengths(num_labels, max_length, min_length)
  sizes = _BeamSizes(batch=tf.shape(tf.nest.flatten(init_state)[0])[0], beam=beam_size,
                     ext=min(beam_size, num_labels + 1), num_labels=num_labels, length=length)

  def cond(s: BeamState):
    best_alive = tf.reduce_max(s.alive_log_prob, axis=1)  # [B]
    done = tf.logical_or(best_alive < _DEAD,
                         best_alive < tf.reduce_max(s.finished_log_prob, axis=1))
    return tf.logical_and(s.step <= length, tf.logical_not(tf.reduce_all(done)))

  def body(s: BeamState):
    return (_beam_step(step_fn, s, sizes, min_length),)

  (out,) = tf.while_loop(cond, body, (_initial_beam_state(init_state, sizes),),
                         maximum_iterations=length + 1)
  # finished_* are sorted best first (top_k), so slot 0 is the answer.
  empty = out.finished_log_prob < _DEAD  # [B, N], slots no path reached
  return DecodeResult(
      labels=out.finished_seq[:, 0],
      num_labels=out.finished_len[:, 0],
      path_log_prob=out.finished_log_prob[:, 0],
      label_scores=out.finished_scores[:, 0],
      paths=tf.where(empty[..., None], vocab_lib.PAD_ID, out.finished_seq),  # [B, N, L]
      paths_log_prob=tf.where(empty, -float("inf"), out.finished_log_prob))  # [B, N]


class _BeamSizes(NamedTuple):
  batch: tf.Tensor  # int32 [], B
  beam: int  # N
  ext: int  # E = min(N, K + 1): extensions kept per beam and step
  num_labels: int  # K
  length: int  # L = min(max_length, K)


def _initial_beam_state(init_state: Any, z: _BeamSizes) -> BeamState:
  """One live beam per image (START read, log-probability 0), the others empty (NEG)."""
  batch, n, k = z.batch, z.beam, z.num_labels
  pad = tf.constant(vocab_lib.PAD_ID, tf.int32)
  return BeamState(
      step=tf.constant(0),
      last_ids=tf.fill([batch, n], tf.constant(vocab_lib.start_id_of(k), tf.int32)),
      alive_seq=tf.fill([batch, n, z.length], pad),
      alive_log_prob=tf.concat([tf.zeros([batch, 1]), tf.fill([batch, n - 1], NEG)], axis=1),
      alive_used=tf.zeros([batch, n, k], tf.bool),
      alive_scores=tf.zeros([batch, n, k], tf.float32),
      cache=tf.nest.map_structure(lambda x: flatten_beam_dim(add_beam_dim(x, n)), init_state),
      finished_seq=tf.fill([batch, n, z.length], pad),
      finished_log_prob=tf.fill([batch, n], tf.constant(NEG, tf.float32)),
      finished_scores=tf.zeros([batch, n, k], tf.float32),
      finished_len=tf.zeros([batch, n], tf.int32))


def _beam_step(step_fn: Callable, s: BeamState, z: _BeamSizes, min_length: int) -> BeamState:
  """One step: every alive beam extended by its E best tokens; END extensions join the
  candidate set C (its N best kept, best first), the N best others stay alive."""
  batch, n, ext, k = z.batch, z.beam, z.ext, z.num_labels
  log_probs, new_cache = step_fn(flatten_beam_dim(s.last_ids), s.cache)  # [B * N, K + 1]
  log_probs = unflatten_beam_dim(tf.cast(log_probs, tf.float32), batch, n)  # [B, N, K + 1]
  masked = tf.where(token_mask(s.alive_used, s.step, min_length, z.length), NEG, log_probs)
  top_lp, top_ids = tf.math.top_k(masked, ext)  # [B, N, E]
  total = s.alive_log_prob[..., None] + top_lp  # [B, N, E]
  is_end = tf.equal(top_ids, vocab_lib.end_id_of(k))  # [B, N, E]
  scores = tf.maximum(s.alive_scores, tf.exp(log_probs[..., :k]))  # [B, N, K]

  # Paths ending here join the candidate set C; keep its N best (sorted, best first).
  end_logp = tf.reshape(tf.where(is_end, total, NEG), [batch, n * ext])  # [B, N*E]
  src = tf.repeat(tf.range(n), ext)[None, :] + tf.zeros([batch, 1], tf.int32)  # [B, N*E]
  c_logp = tf.concat([s.finished_log_prob, end_logp], axis=1)  # [B, N + N*E]
  c_seq = tf.concat([s.finished_seq, gather_beams(s.alive_seq, src)], axis=1)
  c_scores = tf.concat([s.finished_scores, gather_beams(scores, src)], axis=1)
  c_len = tf.concat([s.finished_len, tf.fill([batch, n * ext], s.step)], axis=1)
  f_logp, keep = tf.math.top_k(c_logp, n)  # [B, N]

  # The N best other extensions stay intermediate.
  alive_logp = tf.reshape(tf.where(is_end, NEG, total), [batch, n * ext])  # [B, N*E]
  a_logp, flat = tf.math.top_k(alive_logp, n)  # [B, N]
  parent = flat // ext  # [B, N]
  tok = gather_beams(tf.reshape(top_ids, [batch, n * ext]), flat)  # [B, N]
  write = tf.equal(tf.range(z.length), s.step)[None, None, :]  # [1, 1, L]
  return BeamState(
      step=s.step + 1,
      last_ids=tok,
      alive_seq=tf.where(write, tok[..., None], gather_beams(s.alive_seq, parent)),
      alive_log_prob=a_logp,
      alive_used=tf.logical_or(gather_beams(s.alive_used, parent), tf.one_hot(tok, k) > 0),
      alive_scores=gather_beams(scores, parent),
      cache=tf.nest.map_structure(
          lambda x: flatten_beam_dim(gather_beams(unflatten_beam_dim(x, batch, n), parent)),
          new_cache),
      finished_seq=gather_beams(c_seq, keep),
      finished_log_prob=f_logp,
      finished_scores=gather_beams(c_scores, keep),
      finished_len=gather_beams(c_len, keep))


def decode(step_fn: Callable, init_state: Any, *, num_labels: int, beam_size: int,
           max_length: int, min_length: int = 0) -> DecodeResult:
  """Greedy for beam_size 1 (cheaper, same answer), beam search otherwise."""
  if beam_size == 1:
    return greedy_search(step_fn, init_state, num_labels=num_labels, max_length=max_length,
                         min_length=min_length)
  return beam_search(step_fn, init_state, num_labels=num_labels, beam_size=beam_size,
                     max_length=max_length, min_length=min_length)


# Ancestral sampling: M label sets per image from the model's own distribution.

def free_running_pass(step, features, num_steps, *, training: bool):
  """`step` (a CNNRNNStep) greedily on its own predictions for `num_steps` steps, never END
  nor a label twice (the orderless orders' pass, `losses.sequence_loss`): log_probs float32
  [B, T, K + 1] (differentiable), predicted int32 [B, T]."""
  features = tf.convert_to_tensor(features)
  batch, k = tf.shape(features)[0], step.num_labels
  state = step.initial_state(features, training=training)
  r_dtype = state["r"].dtype
  used = tf.one_hot(tf.fill([batch], step.end_id), k + 1) > 0  # [B, K + 1]: END excluded

  def body(t, prev, used, state, all_log_probs, all_predicted):
    log_probs, state = step(prev, state, training=training)  # [B, K + 1]
    state = {"r": tf.cast(state["r"], r_dtype), "image": state["image"]}
    predicted = tf.argmax(tf.where(used, -float("inf"), log_probs), axis=-1,
                          output_type=tf.int32)  # [B]
    used = tf.logical_or(used, tf.one_hot(predicted, k + 1) > 0)
    return (t + 1, predicted, used, state, all_log_probs.write(t, log_probs),
            all_predicted.write(t, predicted))

  loop_vars = (tf.constant(0), tf.fill([batch], tf.constant(step.start_id, tf.int32)), used,
               state, tf.TensorArray(tf.float32, size=num_steps),
               tf.TensorArray(tf.int32, size=num_steps))
  *_, all_log_probs, all_predicted = tf.while_loop(
      lambda t, *_: t < num_steps, body, loop_vars, maximum_iterations=num_steps)
  return tf.transpose(all_log_probs.stack(), [1, 0, 2]), tf.transpose(all_predicted.stack())
