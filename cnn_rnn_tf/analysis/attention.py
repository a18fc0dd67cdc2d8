"""Attention per step of a CNN-RNN path (paper Fig. 10): Grad-CAM and occlusion maps.

    maps = attention_maps(backbone, head, images, paths)   # float32 [N, L, h, w] in [0, 1]
    upsample_maps(maps[0], (H, W))                         # [L, H, W] for overlays
    map_peak(maps[0, 0])                                   # (y, x) normalized, or None

Definitions (Fig. 10, modern counterpart; the paper averaged deconvnet reconstructions of all
softmax nodes). One map per label of the path (the END step has none), in path order, on an
h x w grid = the last conv layer's (`backbones.REGISTRY[name].grad_cam_layer`; small_cnn at
64x64: 8x8, at 32x32: 4x4; vgg16: 14x14; the ImageNet backbones at 224: 7x7), in [0, 1]
(divided by its maximum; an all-zero map stays zero).
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
                  Every backbone but VGG16 ends in global average pooling, so this is CAM with the
                  gradient as class weights.
  grad_cam_logit  Grad-CAM of the step's logit of l_t (the original Grad-CAM's pre-softmax
                  class score): evidence for l_t alone; the prefix acts only through h.
  occlusion       map[i, j] = max(0, s - s with grid cell (i, j) painted in the image's
                  mean colour), the same s as grad_cam; no linearization, so it is the
                  faithful reference, at the price of 1 + h * w backbone passes per image
                  (cheap for small_cnn; 197 VGG16 passes per image: use a GPU).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.analysis import common

# Attention methods (module docstring): Grad-CAM of the step's log-probability (default) or
# of its logit; occlusion of one cell at a time (slower: h * w forward passes per image).
METHODS = ("grad_cam", "grad_cam_logit", "occlusion")


def check_method(method: str) -> None:
  if method not in METHODS:
    raise ValueError(f"Unknown attention method {method!r}; expected one of {METHODS}.")


def _backbone_name(backbone: keras.Model) -> str:
  name = backbone.name.removesuffix("_backbone")
  if name not in backbones.REGISTRY:
    raise ValueError(f"Backbone model {backbone.name!r} is not one of "
                     f"{[b + '_backbone' for b in backbones.BACKBONES]} "
                     "(backbones.build_backbone names them so).")
  return name


def last_conv_layer(backbone: keras.Model) -> str:
  """The name of the layer whose activations Grad-CAM reads."""
  return backbones.REGISTRY[_backbone_name(backbone)].grad_cam_layer


def activation_model(backbone: keras.Model) -> keras.Model:
  """images [B, S, S, 3] -> (last conv activations [B, h, w, C], features [B, D]), one pass.

  small_cnn: the conv layer is in the backbone's own graph. vgg16 and the other
  keras.applications backbones: it sits in the nested model ("vgg16", "resnet50", ...); that
  model is split in two outputs and the backbone's layers (a chain:
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


def model_inputs(backbone: keras.Model, images) -> tf.Tensor:
  """Images (an array [N, H, W, 3] or a list of [H, W, 3]) -> float32 [N, S, S, 3], 0..255."""
  size = backbone.input_shape[1]
  if isinstance(images, (list, tuple)):
    for i, image in enumerate(images):
      if np.ndim(image) != 3 or np.shape(image)[-1] != 3:
        raise ValueError(f"Image {i} must be [H, W, 3] RGB, got shape {np.shape(image)}.")
    if not images:
      return tf.zeros([0, size, size, 3], tf.float32)
    return tf.concat([images_lib.resize(np.asarray(im)[None], size) for im in images], 0)
  images = np.asarray(images)
  if images.ndim != 4 or images.shape[-1] != 3:
    raise ValueError(f"images must be [N, H, W, 3] RGB, got shape {images.shape}.")
  return images_lib.resize(images, size)  # [N, S, S, 3]


def conv_and_features(act_model: keras.Model, inputs: tf.Tensor):
  """Batched forward pass: (conv [N, h, w, C], features [N, D]) as float32 tensors."""
  convs, feats = [], []
  for i in range(0, int(inputs.shape[0]), common.BATCH):
    conv, feat = act_model(inputs[i:i + common.BATCH], training=False)
    convs.append(tf.cast(conv, tf.float32))
    feats.append(tf.cast(feat, tf.float32))
  if not convs:
    conv_shape = [0] + list(act_model.output_shape[0][1:])
    return tf.zeros(conv_shape), tf.zeros([0, act_model.output_shape[1][-1]])
  return tf.concat(convs, 0), tf.concat(feats, 0)


def clean_paths(paths, num_paths: int, num_labels: int) -> list[list[int]]:
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
  num_labels = common.num_labels(head)
  start_id = num_labels + 1
  n_images = len(paths)
  longest = max((len(p) for p in paths), default=0)
  _, h, w, _ = act_model.output_shape[0]
  maps = np.zeros([n_images, longest, h, w], np.float32)
  log_probs = np.zeros([n_images, longest], np.float32)
  rows = [(n, t) for n, path in enumerate(paths) for t in range(len(path))]  # (image, step)
  for i in range(0, len(rows), common.BATCH):
    chunk = rows[i:i + common.BATCH]
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
                    training=False)["logits"]  # [R, T, K + 1]
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
  num_labels = common.num_labels(head)
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
    _, features = conv_and_features(act_model, tf.constant(np.stack(batch)))  # [1 + hw, D]
    input_ids = np.array([[num_labels + 1] + path[:-1]] * len(batch), np.int32)  # [1 + hw, L]
    logits = head({"image_features": features, "input_ids": tf.constant(input_ids)},
                  training=False)["logits"]  # [1 + hw, L, K + 1]
    step_lp = tf.nn.log_softmax(tf.cast(logits, tf.float32), axis=-1).numpy()
    target = step_lp[:, np.arange(len(path)), path]  # [1 + hw, L]
    drop = np.maximum(target[0] - target[1:], 0.0).T.reshape(len(path), h, w)  # [L, h, w]
    peak = drop.max(axis=(1, 2), keepdims=True)
    maps[n, :len(path)] = np.divide(drop, peak, out=np.zeros_like(drop), where=peak > 0)
    log_probs[n, :len(path)] = target[0]
  return maps, log_probs


def attention_and_log_probs(act_model, head, inputs, paths, method):
  """(maps [N, L, h, w], log_probs [N, L]) by `method`, one of METHODS."""
  check_method(method)
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
  common.check_cnn_rnn(head)
  num_labels = common.num_labels(head)
  inputs = model_inputs(backbone, images)
  paths = clean_paths(paths, int(inputs.shape[0]), num_labels)
  return attention_and_log_probs(activation_model(backbone), head, inputs, paths, method)[0]


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
