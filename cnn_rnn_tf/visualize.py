r"""See what a CNN-RNN learned: label neighbours, joint-space neighbours, attention per step.

The paper's sections 4.5 (Table 5: nearest labels in the label embedding; Fig. 9: nearest
labels of an image in the joint space) and 4.6 (Fig. 10: where the model looks at each step),
for a trained workdir:

  python -m cnn_rnn_tf.visualize --workdir=runs/demo/seed0/cnn_rnn \
      [--images a.png b.jpg ...] [--out_dir=runs/demo/seed0/cnn_rnn/visualize]

Without `--images`, a synthetic_scenes workdir shows the first `--num_images` (4) images of
its evaluation split. Does the attention find the objects? (synthetic_scenes only; writes
<out_dir>/hit_rate.json and prints it):

  python -m cnn_rnn_tf.visualize --workdir=runs/demo/seed0/cnn_rnn --hit_rate_images=200

From Python (the demo embeds the returned Markdown in its report.md):

  md = write_visualizations(workdir, out_dir, images=images)   # images uint8 [N, H, W, 3]
  label_neighbours(head, vocab, k=3)     # {name: [(name, distance), ...]}, nearest first
  joint_neighbours(backbone, head, vocab, images, k=3)   # [N] lists of (name, distance)
  attention_maps(backbone, head, images, paths)          # float32 [N, L, h, w] in [0, 1]
  attention_box_hit_rate(workdir, split="test", num_images=200)   # {"rate", "chance", ...}

Files written into `out_dir`: label_neighbours.{json,md}; per image `imageNN.png` (the image)
and `imageNN_stepT_<label>.png` (T = 1.. along the predicted path: the attention of step T
over the image, its peak marked +); images.json (predicted path, step probabilities,
joint-space neighbours, attention files and peaks per image); visualize.md (the Markdown,
links relative to out_dir).

Definitions
-----------
Label neighbours (Table 5): the rows 0..K-1 of U_l, the `label_embedding` layer's
`embeddings`. END (row K) and START (row K+1) are left out: they are tokens, not labels (END's
row is shaped by "stop here", whatever the image shows). Distance: cosine distance
1 - cos(w_a, w_b), in [0, 2] (default), or Euclidean (`metric="euclidean"`). Cosine because
scores are dot products U_l^T x_t: a row's norm acts as a label prior (frequent labels grow
longer rows), its direction is what the label means. The k nearest *other* labels, nearest
first (ties by id).

Joint-space neighbours (Fig. 9): the image's point is U^x_I I, the `image_projection` layer
on the backbone features (dropout off), the paper's "image embedding U^x_I I", compared with
the label rows 0..K-1 with the same distance. Note what it leaves out: the vector the model
scores at step t is x_t = h(U^x_o o(t) + U^x_I I), so the RNN term and the nonlinearity h
are not in it; these neighbours are the image's own contribution, the same at every step.
Beside them: the beam-search path (`inference.predict_from_features`, `config.decode`).

Attention (Fig. 10, modern counterpart; the paper averaged deconvnet reconstructions of all
softmax nodes). One map per label of the path (the END step has none), in path order, on an
h x w grid = the last conv layer's (`backbones.LAST_CONV_LAYER`; small_cnn at 64x64: 8x8,
at 32x32: 4x4; vgg16: 14x14), in [0, 1] (divided by its maximum; an all-zero map stays zero).
`attention_maps` pads the steps past a path's end with zero maps; `upsample_maps` resizes
maps bilinearly to an image's size for overlays and peaks. For step t of a path l_1..l_L the
head reads the prefix [START, l_1, .., l_{t-1}] (teacher forcing), so the map is
conditioned on the prefix. `method`:

  grad_cam        (default) Grad-CAM of s = log P(l_t | I, l_1..l_{t-1}), the step's
                  log-softmax at l_t: with A [h, w, C] the last conv activations,
                  alpha_c = mean_ij ds/dA_ijc, map = ReLU(sum_c alpha_c A_c). The log changes
                  nothing after the normalization (dp = p dlog p, p > 0) but keeps the
                  gradient from vanishing when p rounds to 1. The gradient of a probability
                  is evidence for l_t *against the step's alternatives*
                  (sum_k p_k (w_l - w_k) in the joint space), which the prefix changes.
                  Both backbones end in global average pooling, so this is CAM with the
                  gradient as class weights.
  grad_cam_logit  Grad-CAM of the step's logit of l_t (the original Grad-CAM's pre-softmax
                  class score): evidence for l_t alone; the prefix acts only through h.
  occlusion       map[i, j] = max(0, s - s with grid cell (i, j) painted in the image's
                  mean colour), the same s as grad_cam; no linearization, so it is the
                  faithful reference, at the price of 1 + h * w backbone passes per image
                  (cheap for small_cnn; 197 VGG16 passes per image: use a GPU).

Attention box hit rate (synthetic_scenes, whose `objects` carry boxes): over the first
`num_images` images of a split, for every step of the predicted path whose label is in the
image, the step's map's peak (`map_peak`: the centre of its highest cell, which is where the
map upsampled to the image size peaks; normalized coordinates) is a hit when it falls inside
one of that label's ground-truth boxes (ymin <= y <= ymax and xmin <= x <= xmax).
rate = hits / such steps. chance = the mean, over the same steps, of the fraction of pixel
centres inside that label's boxes: the hit rate of a peak drawn uniformly at random. An
all-zero map counts as a miss. Steps of labels not in the image (false positives) are not
scored; `by_step` splits the rate by position in the path.

Measured (200 test images) on configs/demo.py's end-to-end model (small_cnn at 64x64, 1500
steps, seed 0; 8x8 maps): the peak falls inside the predicted label's box in 66.7% of the
432 steps whose label is in the image, chance 7.5% (steps 1, 2, 3, 4: 76%, 52%, 71%, 69%);
grad_cam_logit 60.4%; occlusion 70.4% (29 s on 2 CPU cores; Grad-CAM 9 s). The attention
does move from object to object along the path.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

import keras
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import inference
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

METRICS = ("cosine", "euclidean")
# Attention methods (module docstring): Grad-CAM of the step's log-probability (default) or
# of its logit; occlusion of one cell at a time (slower: h * w forward passes per image).
METHODS = ("grad_cam", "grad_cam_logit", "occlusion")
_BATCH = 32  # images (or image x step rows) per forward pass


# ---------------------------------------------------------------------------------------------
# Neighbours in the label embedding and the joint space.
# ---------------------------------------------------------------------------------------------


def _label_rows(head: keras.Model) -> np.ndarray:
  """U_l rows 0..K-1 (the labels, without END and START): float32 [K, d]."""
  _check_cnn_rnn(head)
  layer = head.get_layer("label_embedding")
  table = keras.ops.convert_to_numpy(layer.embeddings).astype(np.float32)  # [K + 2, d]
  return table[: layer.num_labels]


def _distances(queries: np.ndarray, table: np.ndarray, metric: str) -> np.ndarray:
  """queries [Q, d], table [K, d] -> distances [Q, K]."""
  if metric == "cosine":
    q = queries / np.maximum(np.linalg.norm(queries, axis=1, keepdims=True), 1e-12)
    t = table / np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    return 1.0 - q @ t.T
  if metric == "euclidean":
    diff = queries[:, None, :] - table[None, :, :]  # [Q, K, d]
    return np.sqrt(np.sum(diff * diff, axis=-1))
  raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}.")


def _nearest(dist_row: np.ndarray, names: Sequence[str], k: int, skip: int | None = None):
  """The k smallest entries of one row as [(name, distance)], nearest first, ties by id."""
  order = [i for i in np.argsort(dist_row, kind="stable") if i != skip][:k]
  return [(names[i], float(dist_row[i])) for i in order]


def _check_k(k: int, available: int) -> int:
  if k < 1:
    raise ValueError(f"The number of neighbours must be >= 1, got {k}.")
  return min(k, available)


def label_neighbours(head: keras.Model, vocab: vocab_lib.LabelVocab, k: int = 3,
                     metric: str = "cosine") -> dict[str, list[tuple[str, float]]]:
  """Each label's k nearest other labels in U_l (paper Table 5), nearest first.

  Args:
    head: a built CNN-RNN head.
    vocab: its vocabulary (K names, in id order).
    k: neighbours per label (at most K - 1 are returned).
    metric: "cosine" (1 - cosine similarity) or "euclidean".

  Returns:
    {label name: [(neighbour name, distance), ...]} in vocabulary order.
  """
  table = _label_rows(head)  # [K, d]
  _check_vocab(vocab, table.shape[0])
  k = _check_k(k, vocab.num_labels - 1)
  dist = _distances(table, table, metric)  # [K, K]
  return {name: _nearest(dist[i], vocab.names, k, skip=i) for i, name in enumerate(vocab.names)}


def image_embeddings(head: keras.Model, features) -> np.ndarray:
  """U^x_I I: the `image_projection` of backbone features [N, D] -> float32 [N, d]."""
  _check_cnn_rnn(head)
  proj = head.get_layer("image_projection")
  return keras.ops.convert_to_numpy(proj(tf.convert_to_tensor(features, tf.float32))).astype(
      np.float32)


def joint_neighbours(backbone: keras.Model, head: keras.Model, vocab: vocab_lib.LabelVocab,
                     images, k: int = 3,
                     metric: str = "cosine") -> list[list[tuple[str, float]]]:
  """Each image's k nearest labels in the joint space (paper Fig. 9), nearest first.

  Args:
    backbone, head: the models of a workdir (`workdir.build_models` + `restore_weights`).
    vocab: the head's vocabulary.
    images: uint8 (or 0..255 float) [N, H, W, 3], or a list of [H, W, 3] of any sizes.
    k: neighbours per image (at most K).
    metric: "cosine" or "euclidean".

  Returns:
    N lists of (label name, distance between U^x_I I and the label's row of U_l).
  """
  _, features = _conv_and_features(activation_model(backbone), _model_inputs(backbone, images))
  return _joint_from_features(head, vocab, features, k, metric)


def _joint_from_features(head, vocab, features, k, metric):
  table = _label_rows(head)  # [K, d]
  _check_vocab(vocab, table.shape[0])
  k = _check_k(k, vocab.num_labels)
  dist = _distances(image_embeddings(head, features), table, metric)  # [N, K]
  return [_nearest(row, vocab.names, k) for row in dist]


# ---------------------------------------------------------------------------------------------
# Attention: Grad-CAM per step of a path.
# ---------------------------------------------------------------------------------------------


def _backbone_name(backbone: keras.Model) -> str:
  name = backbone.name.removesuffix("_backbone")
  if name not in backbones.LAST_CONV_LAYER:
    raise ValueError(f"Backbone model {backbone.name!r} is not one of "
                     f"{[b + '_backbone' for b in backbones.BACKBONES]} "
                     "(backbones.build_backbone names them so).")
  return name


def last_conv_layer(backbone: keras.Model) -> str:
  """The name of the layer whose activations Grad-CAM reads."""
  return backbones.LAST_CONV_LAYER[_backbone_name(backbone)]


def activation_model(backbone: keras.Model) -> keras.Model:
  """images [B, S, S, 3] -> (last conv activations [B, h, w, C], features [B, D]), one pass.

  small_cnn: the conv layer is in the backbone's own graph. vgg16: it sits in the nested
  model "vgg16"; that model is split in two outputs and the backbone's layers (a chain:
  preprocessing -> vgg16 -> features) are applied around it. Weights are shared, not copied.
  """
  last = last_conv_layer(backbone)
  if any(layer.name == last for layer in backbone.layers):
    return keras.Model(backbone.inputs, [backbone.get_layer(last).output, backbone.output],
                       name="grad_cam_backbone")
  images = keras.Input(backbone.input_shape[1:], name="images")
  x, conv = images, None
  for layer in backbone.layers[1:]:  # layers[0] is the InputLayer
    if isinstance(layer, keras.Model) and any(l.name == last for l in layer.layers):
      split = keras.Model(layer.inputs, [layer.get_layer(last).output, layer.output],
                          name=f"{layer.name}_split")
      conv, x = split(x)
    else:
      x = layer(x)
  if conv is None:
    raise ValueError(f"Layer {last!r} is neither in backbone {backbone.name!r} nor in one of "
                     f"its nested models: {[l.name for l in backbone.layers]}.")
  return keras.Model(images, [conv, x], name="grad_cam_backbone")


def _model_inputs(backbone: keras.Model, images) -> tf.Tensor:
  """Images (an array [N, H, W, 3] or a list of [H, W, 3]) -> float32 [N, S, S, 3], 0..255."""
  size = backbone.input_shape[1]
  if isinstance(images, (list, tuple)):
    for i, image in enumerate(images):
      if np.ndim(image) != 3 or np.shape(image)[-1] != 3:
        raise ValueError(f"Image {i} must be [H, W, 3] RGB, got shape {np.shape(image)}.")
    if not images:
      return tf.zeros([0, size, size, 3], tf.float32)
    return tf.concat([backbones.resize_images(np.asarray(im)[None], size) for im in images], 0)
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}.")
  return backbones.resize_images(images, size)  # [N, S, S, 3]


def _conv_and_features(act_model: keras.Model, inputs: tf.Tensor):
  """Batched forward pass: (conv [N, h, w, C], features [N, D]) as float32 tensors."""
  convs, feats = [], []
  for i in range(0, int(inputs.shape[0]), _BATCH):
    conv, feat = act_model(inputs[i:i + _BATCH], training=False)
    convs.append(tf.cast(conv, tf.float32))
    feats.append(tf.cast(feat, tf.float32))
  if not convs:
    conv_shape = [0] + list(act_model.output_shape[0][1:])
    return tf.zeros(conv_shape), tf.zeros([0, act_model.output_shape[1][-1]])
  return tf.concat(convs, 0), tf.concat(feats, 0)


def _clean_paths(paths, num_paths: int, num_labels: int) -> list[list[int]]:
  """Label ids per path, cut at the first -1 (padding) or END (= K)."""
  paths = [list(np.asarray(p, np.int64).reshape(-1)) for p in paths]
  if len(paths) != num_paths:
    raise ValueError(f"Got {len(paths)} paths for {num_paths} images; need one per image.")
  out = []
  for n, path in enumerate(paths):
    clean = []
    for t, label in enumerate(path):
      label = int(label)
      if label in (vocab_lib.PAD_ID, num_labels):
        break
      if not 0 <= label < num_labels:
        raise ValueError(f"Path {n} step {t + 1}: label id {label} is not a label id in "
                         f"[0, {num_labels}) (nor -1 or END = {num_labels}).")
      if label in clean:
        raise ValueError(f"Path {n}: label id {label} appears twice ({path}).")
      clean.append(label)
    out.append(clean)
  return out


def _grad_cam(act_model: keras.Model, head: keras.Model, inputs: tf.Tensor,
              paths: list[list[int]], logit: bool = False):
  """Grad-CAM maps and log-probabilities of every step of every path.

  `logit`: False differentiates log P(l_t | I, l_<t), True the step's logit of l_t.

  Returns:
    maps: float32 [N, L, h, w] in [0, 1], L = the longest path; zero past a path's end.
    log_probs: float32 [N, L], log P(l_t | I, l_<t); zero past a path's end.
  """
  num_labels = head.get_layer("label_embedding").num_labels
  start_id = num_labels + 1
  n_images = len(paths)
  longest = max((len(p) for p in paths), default=0)
  _, h, w, _ = act_model.output_shape[0]
  maps = np.zeros([n_images, longest, h, w], np.float32)
  log_probs = np.zeros([n_images, longest], np.float32)
  rows = [(n, t) for n, path in enumerate(paths) for t in range(len(path))]  # (image, step)
  for i in range(0, len(rows), _BATCH):
    chunk = rows[i:i + _BATCH]
    image_idx = np.array([n for n, _ in chunk])
    steps = np.array([t for _, t in chunk])
    targets = np.array([paths[n][t] for n, t in chunk])
    # Row r reads [START, l_1, .., l_{t-1}], then padding (the head is causal and masks it).
    input_ids = np.full([len(chunk), steps.max() + 1], vocab_lib.PAD_ID, np.int32)  # [R, T]
    for r, (n, t) in enumerate(chunk):
      input_ids[r, 0] = start_id
      input_ids[r, 1:t + 1] = paths[n][:t]
    with tf.GradientTape() as tape:
      conv, features = act_model(tf.gather(inputs, image_idx), training=False)  # [R, h, w, C]
      logits = head({"image_features": tf.cast(features, tf.float32),
                     "input_ids": tf.convert_to_tensor(input_ids)},
                    training=False)  # [R, T, K + 1]
      logits = tf.cast(logits, tf.float32)
      index = np.stack([np.arange(len(chunk)), steps, targets], axis=1)  # [R, 3]
      step_log_probs = tf.gather_nd(tf.nn.log_softmax(logits, axis=-1), index)  # [R]
      target = tf.gather_nd(logits, index) if logit else step_log_probs  # [R]
      total = tf.reduce_sum(target)  # rows are independent: d total / d conv_r = d target_r / ..
    grads = tf.cast(tape.gradient(total, conv), tf.float32)  # [R, h, w, C]
    alpha = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)  # [R, 1, 1, C]
    cam = tf.nn.relu(tf.reduce_sum(alpha * tf.cast(conv, tf.float32), axis=-1))  # [R, h, w]
    peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
    cam = tf.math.divide_no_nan(cam, peak).numpy()
    maps[image_idx, steps] = cam
    log_probs[image_idx, steps] = step_log_probs.numpy()
  return maps, log_probs


def _occlusion(act_model: keras.Model, head: keras.Model, inputs: tf.Tensor,
               paths: list[list[int]]):
  """Occlusion maps and log-probabilities of every step of every path (same outputs as
  `_grad_cam`): map[i, j] = max(0, log P(l_t | I, l_<t) - the same with cell (i, j) of an
  h x w grid painted in the image's mean colour), divided by its maximum."""
  num_labels = head.get_layer("label_embedding").num_labels
  _, h, w, _ = act_model.output_shape[0]
  size = int(inputs.shape[1])
  ys = np.round(np.linspace(0, size, h + 1)).astype(int)  # cell edges
  xs = np.round(np.linspace(0, size, w + 1)).astype(int)
  longest = max((len(p) for p in paths), default=0)
  maps = np.zeros([len(paths), longest, h, w], np.float32)
  log_probs = np.zeros([len(paths), longest], np.float32)
  for n, path in enumerate(paths):
    if not path:
      continue
    image = inputs[n].numpy()  # [S, S, 3]
    fill = image.mean(axis=(0, 1))  # [3]
    batch = [image]
    for i in range(h):
      for j in range(w):
        occluded = image.copy()
        occluded[ys[i]:ys[i + 1], xs[j]:xs[j + 1]] = fill
        batch.append(occluded)
    _, features = _conv_and_features(act_model, tf.constant(np.stack(batch)))  # [1 + hw, D]
    input_ids = np.array([[num_labels + 1] + path[:-1]] * len(batch), np.int32)  # [1 + hw, L]
    logits = head({"image_features": features, "input_ids": tf.constant(input_ids)},
                  training=False)  # [1 + hw, L, K + 1]
    step_lp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    target = step_lp[:, np.arange(len(path)), path]  # [1 + hw, L]
    drop = np.maximum(target[0] - target[1:], 0.0).T.reshape(len(path), h, w)  # [L, h, w]
    peak = drop.max(axis=(1, 2), keepdims=True)
    maps[n, :len(path)] = np.divide(drop, peak, out=np.zeros_like(drop), where=peak > 0)
    log_probs[n, :len(path)] = target[0]
  return maps, log_probs


def _attention(act_model, head, inputs, paths, method):
  """(maps [N, L, h, w], log_probs [N, L]) by `method`, one of METHODS."""
  _check_method(method)
  if method == "occlusion":
    return _occlusion(act_model, head, inputs, paths)
  return _grad_cam(act_model, head, inputs, paths, logit=method == "grad_cam_logit")


def attention_maps(backbone: keras.Model, head: keras.Model, images, paths,
                   method: str = "grad_cam") -> np.ndarray:
  """Attention of every step of every path: where its probability comes from.

  Args:
    backbone, head: the models of a workdir.
    images: uint8 (or 0..255 float) [N, H, W, 3], or a list of [H, W, 3] of any sizes.
    paths: N label-id sequences (e.g. `predict_from_features(...)["labels"]`, [N, L] -1
      padded); each is cut at the first -1 or END; a repeated label is an error.
    method: "grad_cam" (default: of log P(l_t | I, l_<t)), "grad_cam_logit" (of the step's
      logit of l_t) or "occlusion" (see the module docstring).

  Returns:
    float32 [N, L, h, w] in [0, 1] at the last conv resolution, L = the longest path;
    map [n, t] is where label l_t's probability at step t comes from, given the prefix
    l_1..l_{t-1}; steps past a path's end are zero.
  """
  _check_cnn_rnn(head)
  num_labels = head.get_layer("label_embedding").num_labels
  inputs = _model_inputs(backbone, images)
  paths = _clean_paths(paths, int(inputs.shape[0]), num_labels)
  return _attention(activation_model(backbone), head, inputs, paths, method)[0]


def upsample_maps(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Bilinear resize of maps [..., h, w] -> [..., H, W], still in [0, 1]."""
  maps = np.asarray(maps, np.float32)
  lead = maps.shape[:-2]
  flat = maps.reshape((-1,) + maps.shape[-2:] + (1,))  # [M, h, w, 1]
  if flat.shape[0] == 0:
    return np.zeros(lead + tuple(size), np.float32)
  out = tf.image.resize(flat, size, method="bilinear").numpy()[..., 0]  # [M, H, W]
  return np.clip(out, 0.0, 1.0).reshape(lead + tuple(size))


def map_peak(attention: np.ndarray) -> tuple[float, float] | None:
  """Where one map [h, w] peaks: its highest cell's centre, normalized (y, x); None if all 0.

  This is where the bilinearly upsampled map peaks too (between the pixels nearest the cell
  centre), except at the border, where the upsampled map is flat out to the image edge and
  a pixel argmax would drift to the edge (the first pixel of the plateau).
  """
  if not np.any(attention > 0):
    return None
  height, width = attention.shape
  y, x = np.unravel_index(int(np.argmax(attention)), attention.shape)
  return (y + 0.5) / height, (x + 0.5) / width


# ---------------------------------------------------------------------------------------------
# Attention against ground-truth boxes.
# ---------------------------------------------------------------------------------------------


def _inside(point: tuple[float, float], boxes: np.ndarray) -> bool:
  """point (y, x) normalized; boxes [n, 4] (ymin, xmin, ymax, xmax) normalized."""
  y, x = point
  return bool(np.any((boxes[:, 0] <= y) & (y <= boxes[:, 2]) & (boxes[:, 1] <= x) &
                     (x <= boxes[:, 3])))


def box_fraction(boxes: np.ndarray, size: tuple[int, int]) -> float:
  """The fraction of an image's pixel centres inside the union of boxes [n, 4] (normalized)."""
  height, width = size
  ys = (np.arange(height) + 0.5) / height  # [H]
  xs = (np.arange(width) + 0.5) / width  # [W]
  inside = np.zeros([height, width], bool)
  for ymin, xmin, ymax, xmax in np.asarray(boxes, np.float32).reshape(-1, 4):
    inside |= (((ymin <= ys) & (ys <= ymax))[:, None] & ((xmin <= xs) & (xs <= xmax))[None, :])
  return float(inside.mean())


def box_hit_rate(backbone: keras.Model, head: keras.Model, vocab: vocab_lib.LabelVocab,
                 examples: Sequence[dict], *, beam_size: int = 3, max_length: int = 10,
                 min_length: int = 0, method: str = "grad_cam") -> dict[str, Any]:
  """Does each step's attention peak fall inside its label's boxes? (module docstring).

  Args:
    backbone, head, vocab: a workdir's models and vocabulary.
    examples: dicts {"image": uint8 [H, W, 3], "objects": [(label name, bbox [4])]} with
      bbox (ymin, xmin, ymax, xmax) normalized; labels outside the vocabulary are ignored.
    beam_size, max_length, min_length: the beam search that predicts the paths.
    method: the attention method, one of METHODS.

  Returns:
    {"rate", "chance": floats (nan when no step qualifies), "steps": predicted steps whose
     label is in the image (the ones scored), "hits", "predicted_steps": all predicted
     steps, "zero_maps": scored steps whose map was all zero, "images",
     "by_step": {"1": {"rate", "chance", "steps"}, ...} (per position in the path)}.
  """
  _check_cnn_rnn(head)
  _check_method(method)
  act_model = activation_model(backbone)
  images = [np.asarray(e["image"]) for e in examples]
  inputs = _model_inputs(backbone, images)
  _, features = _conv_and_features(act_model, inputs)
  paths = _predict_paths(head, features, beam_size, max_length, min_length)
  maps, _ = _attention(act_model, head, inputs, paths, method)
  hits, fractions, steps_of, zero_maps = [], [], [], 0
  for n, (example, path) in enumerate(zip(examples, paths)):
    boxes_of = {}
    for name, bbox in example["objects"]:
      boxes_of.setdefault(name, []).append(np.asarray(bbox, np.float32))
    size = images[n].shape[:2]
    for t, label in enumerate(path):
      boxes = boxes_of.get(vocab.names[label])
      if not boxes:
        continue  # a false positive: no box to hit
      boxes = np.stack(boxes)  # [n, 4]
      peak = map_peak(maps[n, t])
      zero_maps += peak is None
      hits.append(peak is not None and _inside(peak, boxes))
      fractions.append(box_fraction(boxes, size))
      steps_of.append(t + 1)
  hits, fractions, steps_of = np.array(hits, bool), np.array(fractions), np.array(steps_of)
  mean = lambda v: float(np.mean(v)) if len(v) else float("nan")
  by_step = {str(t): {"rate": mean(hits[steps_of == t]), "chance": mean(fractions[steps_of == t]),
                      "steps": int(np.sum(steps_of == t))} for t in sorted(set(steps_of.tolist()))}
  return {"rate": mean(hits), "chance": mean(fractions), "steps": int(len(hits)),
          "hits": int(hits.sum()), "predicted_steps": int(sum(len(p) for p in paths)),
          "zero_maps": int(zero_maps), "images": len(examples), "by_step": by_step}


def synthetic_examples(config, split: str, num_images: int) -> list[dict]:
  """The first `num_images` examples of a synthetic_scenes split, for `box_hit_rate`.

  Reads `synthetic_scenes/<config.data.synthetic_config>` from `config.data.data_dir`
  (generated there first if missing: it is drawn locally, nothing is downloaded).
  """
  if config.data.source != "synthetic_scenes":
    raise ValueError(f"Ground-truth boxes need data.source 'synthetic_scenes', this workdir "
                     f"was trained on {config.data.source!r}.")
  if num_images < 1:
    raise ValueError(f"num_images must be >= 1, got {num_images}.")
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.data import synthetic_scenes  # pylint: disable=g-import-not-at-top,unused-import
  builder = tfds.builder(f"synthetic_scenes/{config.data.synthetic_config}",
                         data_dir=config.data.data_dir)
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  names = builder.info.features["objects"]["label"].names
  ds = builder.as_dataset(split=f"{split}[:{num_images}]", shuffle_files=False)
  return [{"image": e["image"],
           "objects": [(names[int(l)], b) for l, b in zip(e["objects"]["label"],
                                                         e["objects"]["bbox"])]}
          for e in tfds.as_numpy(ds)]


def attention_box_hit_rate(workdir: str, split: str = "test", num_images: int = 200,
                           method: str = "grad_cam") -> dict[str, Any]:
  """`box_hit_rate` of a synthetic_scenes workdir on the first `num_images` of `split`.

  Decodes with the workdir's `config.decode`; see `box_hit_rate` for the returned dict.
  """
  config = workdir_lib.load_config(workdir)
  examples = synthetic_examples(config, split, num_images)
  vocab, backbone, head = _load(workdir, config)
  result = box_hit_rate(backbone, head, vocab, examples, method=method,
                        **_decode_args(config))
  return {**result, "method": method, "split": split}


# ---------------------------------------------------------------------------------------------
# Files: PNGs, JSON, Markdown.
# ---------------------------------------------------------------------------------------------


def _load(workdir, config):
  vocab = workdir_lib.load_vocab(workdir)
  backbone, head = workdir_lib.build_models(config, vocab.num_labels)
  if model_lib.head_kind(head) != "cnn_rnn":
    raise ValueError(f"Workdir {workdir!r} has a {model_lib.head_kind(head)!r} head; "
                     "visualize needs a cnn_rnn head (label embedding, RNN steps).")
  workdir_lib.restore_weights(config, workdir, backbone, head)
  return vocab, backbone, head


def _decode_args(config) -> dict[str, int]:
  return dict(beam_size=int(config.decode.beam_size), max_length=int(config.decode.max_length),
              min_length=int(config.decode.min_length))


def _predict_paths(head, features, beam_size, max_length, min_length) -> list[list[int]]:
  out = inference.predict_from_features(head, features, beam_size=beam_size,
                                        max_length=max_length, min_length=min_length)
  labels = out["labels"].numpy()  # [N, L], -1 padded
  return [[int(l) for l in row if l >= 0] for row in labels]


def read_images(paths: Sequence[str]) -> list[np.ndarray]:
  """Image files (PNG, JPEG, GIF, BMP) -> uint8 [H, W, 3] RGB each."""
  out = []
  for path in paths:
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f"Image file {path!r} does not exist.")
    data = tf.io.read_file(path)
    try:
      image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as e:
      raise ValueError(f"Could not decode image file {path!r}: {e.message}") from None
    out.append(image.numpy())
  return out


def _slug(name: str) -> str:
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _save_image(image: np.ndarray, path: str) -> None:
  fig, ax = plt.subplots(figsize=(2.4, 2.6))
  ax.imshow(image.astype(np.uint8), interpolation="nearest")
  ax.set_title("image", fontsize=9)
  ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _save_overlay(image: np.ndarray, upsampled: np.ndarray, title: str, peak, path: str):
  """The image with one step's map [H, W] in [0, 1] over it, the peak marked +."""
  height, width = upsampled.shape
  fig, ax = plt.subplots(figsize=(2.4, 2.6))
  ax.imshow(image.astype(np.uint8), interpolation="nearest")
  ax.imshow(upsampled, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
  if peak is not None:
    ax.plot(peak[1] * width - 0.5, peak[0] * height - 0.5, "w+", markersize=12, mew=2)
  ax.set_title(title, fontsize=9)
  ax.axis("off")
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def _fmt_neighbours(pairs) -> str:
  return ", ".join(f"{name} {dist:.2f}" for name, dist in pairs)


_METHOD_TEXT = {"grad_cam": "Grad-CAM of log P(l_t | image, l_1..l_t-1)",
                "grad_cam_logit": "Grad-CAM of the logit of l_t at step t",
                "occlusion": "occlusion (the drop of log P(l_t | image, l_1..l_t-1) when a "
                             "cell is painted over) on the grid of"}


def _markdown(label_nb, metric, records, conv_info, method, link_prefix) -> str:
  link = lambda f: f"{link_prefix}{f}" if link_prefix else f
  lines = [
      "### Label embedding: nearest labels (paper Table 5)", "",
      f"{metric.capitalize()} distance between rows of the label embedding U_l "
      "(END and START left out).", "",
      "| label | nearest labels (distance) |", "|---|---|"]
  lines += [f"| {name} | {_fmt_neighbours(nb)} |" for name, nb in label_nb.items()]
  if records:
    lines += [
        "", "### Images: joint-space neighbours, predicted path, attention per step "
        "(paper Fig. 9, Fig. 10)", "",
        f"Joint-space neighbours: the labels nearest ({metric}) to the image embedding "
        "U^x_I I (before h, without the RNN term). Attention: "
        + _METHOD_TEXT[method] + " on the last conv layer "
        f"{conv_info}, upsampled; + marks the peak. One panel per step of the beam-search "
        "path, in order.", ""]
    for i, rec in enumerate(records):
      path = ", ".join(f"{l} ({p:.2f})" for l, p in zip(rec["predicted"],
                                                        rec["step_probability"])) or "(none)"
      lines += [f"**Image {i}** ({rec['source']}): predicted {path}; "
                f"joint-space neighbours: {_fmt_neighbours(rec['joint_neighbours'])}", ""]
      panels = [f"![image {i}]({link(rec['image_file'])})"]
      panels += [f"![step {t + 1}: {l}]({link(f)})"
                 for t, (l, f) in enumerate(zip(rec["predicted"], rec["attention_files"]))]
      lines += [" ".join(panels), ""]
  return "\n".join(lines).rstrip() + "\n"


def write_visualizations(workdir: str, out_dir: str, images=None,
                         image_paths: Sequence[str] | None = None, num_neighbours: int = 3,
                         metric: str = "cosine", markdown_dir: str | None = None,
                         method: str = "grad_cam") -> str:
  """Writes the label neighbours and, per image, neighbours, path and attention PNGs.

  Args:
    workdir: a trained CNN-RNN workdir (config.json, labels.txt, checkpoints/).
    out_dir: where the files go (created); see the module docstring for the list.
    images: uint8 [N, H, W, 3] (or a list of [H, W, 3]), or None.
    image_paths: image files, shown after `images`.
    num_neighbours: neighbours per label and per image.
    metric: "cosine" or "euclidean".
    markdown_dir: the folder the returned Markdown will live in; its links are relative to
      it. Default: the parent of out_dir (the demo's report.md sits beside `visualize/`).
    method: the attention method, one of METHODS (default "grad_cam").

  Returns:
    A Markdown snippet (### sections, a table, image links). out_dir/visualize.md holds the
    same text with links relative to out_dir.
  """
  if metric not in METRICS:
    raise ValueError(f"Unknown metric {metric!r}; expected one of {METRICS}.")
  _check_method(method)
  config = workdir_lib.load_config(workdir)
  vocab, backbone, head = _load(workdir, config)
  tf.io.gfile.makedirs(out_dir)

  label_nb = label_neighbours(head, vocab, num_neighbours, metric)  # {name: [(name, d)]}
  with tf.io.gfile.GFile(os.path.join(out_dir, "label_neighbours.json"), "w") as f:
    json.dump({"metric": metric, "excluded": ["END", "START"],
               "neighbours": {n: [[m, d] for m, d in nb] for n, nb in label_nb.items()}},
              f, indent=2)

  all_images, sources = [], []
  if images is not None:
    images = list(images) if isinstance(images, (list, tuple)) else list(np.asarray(images))
    all_images += [np.asarray(im) for im in images]
    sources += [f"images[{i}]" for i in range(len(images))]
  if image_paths:
    all_images += read_images(image_paths)
    sources += [os.path.basename(p) for p in image_paths]

  records = []
  act_model = activation_model(backbone)
  _, h, w, _ = act_model.output_shape[0]
  conv_info = f"`{last_conv_layer(backbone)}` ({h}x{w})"
  if all_images:
    inputs = _model_inputs(backbone, all_images)  # [N, S, S, 3]
    _, features = _conv_and_features(act_model, inputs)  # [N, D]
    paths = _predict_paths(head, features, **_decode_args(config))
    joint_nb = _joint_from_features(head, vocab, features, num_neighbours, metric)
    maps, log_probs = _attention(act_model, head, inputs, paths, method)  # [N, L, h, w], [N, L]
    for i, (image, path) in enumerate(zip(all_images, paths)):
      image = np.asarray(image)
      image_file = f"image{i:02d}.png"
      _save_image(image, os.path.join(out_dir, image_file))
      upsampled = upsample_maps(maps[i, :len(path)], image.shape[:2])  # [L_i, H, W]
      files, peaks, probs = [], [], []
      for t, label in enumerate(path):
        name = vocab.names[label]
        prob = float(np.exp(log_probs[i, t]))
        peak = map_peak(maps[i, t])
        file = f"image{i:02d}_step{t + 1}_{_slug(name)}.png"
        title = f"{t + 1}. {name} (p={prob:.2f})" + ("" if peak else ", map 0")
        _save_overlay(image, upsampled[t], title, peak, os.path.join(out_dir, file))
        files.append(file)
        peaks.append(None if peak is None else [float(peak[0]), float(peak[1])])
        probs.append(prob)
      records.append({"source": sources[i], "image_file": image_file,
                      "predicted": [vocab.names[l] for l in path], "step_probability": probs,
                      "joint_neighbours": [[n, d] for n, d in joint_nb[i]],
                      "attention_files": files, "attention_peaks_yx": peaks})
  with tf.io.gfile.GFile(os.path.join(out_dir, "images.json"), "w") as f:
    json.dump({"metric": metric, "last_conv_layer": last_conv_layer(backbone),
               "attention_method": method, "images": records}, f, indent=2)
  with tf.io.gfile.GFile(os.path.join(out_dir, "label_neighbours.md"), "w") as f:
    f.write(_markdown(label_nb, metric, [], conv_info, method, ""))
  with tf.io.gfile.GFile(os.path.join(out_dir, "visualize.md"), "w") as f:
    f.write(_markdown(label_nb, metric, records, conv_info, method, ""))
  if markdown_dir is None:
    markdown_dir = os.path.dirname(os.path.abspath(out_dir))
  prefix = os.path.relpath(os.path.abspath(out_dir), os.path.abspath(markdown_dir))
  prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
  return _markdown(label_nb, metric, records, conv_info, method, prefix)


# ---------------------------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------------------------


def _check_cnn_rnn(head: keras.Model) -> None:
  if model_lib.head_kind(head) != "cnn_rnn":
    raise ValueError(f"Needs a cnn_rnn head (label embedding, RNN steps), got {head.name!r}.")


def _check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"Unknown attention method {method!r}; expected one of {METHODS}.")


def _check_vocab(vocab: vocab_lib.LabelVocab, num_rows: int) -> None:
  if vocab.num_labels != num_rows:
    raise ValueError(f"The vocabulary has {vocab.num_labels} labels but the head's label "
                     f"embedding has {num_rows} label rows.")


# ---------------------------------------------------------------------------------------------
# Binary.
# ---------------------------------------------------------------------------------------------


def _define_flags():
  """Flags of the binary (defined only when run as one: the demo imports this module)."""
  from absl import flags  # pylint: disable=g-import-not-at-top
  flags.DEFINE_string("workdir", None, "A CNN-RNN workdir that cnn_rnn_tf.train wrote.")
  flags.DEFINE_multi_string("images", None, "Image files; `--images a.png b.png` or repeated "
                            "`--images=a.png --images=b.png` (globs allowed).")
  flags.DEFINE_string("out_dir", None, "Output folder (default: <workdir>/visualize).")
  flags.DEFINE_integer("num_neighbours", 3, "Neighbours per label and per image.")
  flags.DEFINE_enum("metric", "cosine", list(METRICS), "Distance in the embedding spaces.")
  flags.DEFINE_enum("method", "grad_cam", list(METHODS), "Attention method (see the module "
                    "docstring).")
  flags.DEFINE_integer("num_images", 4, "Without --images: show this many images of the "
                       "evaluation split (synthetic_scenes workdirs only).")
  flags.DEFINE_integer("hit_rate_images", 0, "If > 0: measure the attention box hit rate on "
                       "this many images of --split (synthetic_scenes workdirs only).")
  flags.DEFINE_string("split", None, "Split for the images and the hit rate (default: the "
                      "config's data.eval_split).")
  flags.mark_flag_as_required("workdir")


def main(argv):
  from absl import flags  # pylint: disable=g-import-not-at-top
  f = flags.FLAGS
  # `--images a.png b.png`: absl takes the first; the rest arrive as positional arguments.
  image_paths = [p for pattern in list(f.images or []) + list(argv[1:])
                 for p in (sorted(tf.io.gfile.glob(pattern)) or [pattern])]
  out_dir = f.out_dir or os.path.join(f.workdir, "visualize")
  config = workdir_lib.load_config(f.workdir)
  split = f.split or config.data.eval_split
  images = None
  if not image_paths and config.data.source == "synthetic_scenes" and f.num_images > 0:
    images = np.stack([e["image"] for e in synthetic_examples(config, split, f.num_images)])
  write_visualizations(f.workdir, out_dir, images=images, image_paths=image_paths,
                       num_neighbours=f.num_neighbours, metric=f.metric, markdown_dir=out_dir,
                       method=f.method)
  print(f"Wrote {os.path.join(out_dir, 'visualize.md')}")
  if f.hit_rate_images > 0:
    result = attention_box_hit_rate(f.workdir, split, f.hit_rate_images, f.method)
    with tf.io.gfile.GFile(os.path.join(out_dir, "hit_rate.json"), "w") as fh:
      json.dump(result, fh, indent=2)
    print(f"{f.method} peak inside the predicted label's box: {100 * result['rate']:.1f}% of "
          f"{result['steps']} steps (chance {100 * result['chance']:.1f}%) on {split}, "
          f"{result['images']} images -> {os.path.join(out_dir, 'hit_rate.json')}")


if __name__ == "__main__":
  from absl import app  # pylint: disable=g-import-not-at-top
  _define_flags()
  app.run(main)
