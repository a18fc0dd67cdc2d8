"""Writes what a CNN-RNN learned as files: Markdown, JSON and PNG overlays.

    md = write_visualizations(workdir, out_dir, images=images)   # images uint8 [N, H, W, 3]
    visualize_workdir(workdir, image_patterns=["photos/*.jpg"])  # the binary's one call

Files written into `out_dir`: label_neighbours.{json,md}; per image `imageNN.png` (the image)
and `imageNN_stepT_<label>.png` (T = 1.. along the predicted path: the attention of step T
over the image, its peak marked +); images.json (predicted path, step probabilities,
joint-space neighbours, attention files and peaks per image); visualize.md (the Markdown,
links relative to out_dir).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import image_files
from cnn_rnn_tf.analysis import attention
from cnn_rnn_tf.analysis import common
from cnn_rnn_tf.analysis import hit_rate
from cnn_rnn_tf.analysis import neighbours


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


def _gather_images(images, image_paths) -> tuple[list[np.ndarray], list[str]]:
  """`images` (array or list) then the files of `image_paths`: (uint8 [H, W, 3] list, names)."""
  all_images, sources = [], []
  if images is not None:
    images = list(images) if isinstance(images, (list, tuple)) else list(np.asarray(images))
    all_images += [np.asarray(im) for im in images]
    sources += [f"images[{i}]" for i in range(len(images))]
  for path in image_paths or ():
    all_images.append(image_files.load_rgb(path))  # errors name the file
    sources.append(os.path.basename(path))
  return all_images, sources


def _image_record(out_dir, i, image, source, path, maps, log_probs, joint_nb, names) -> dict:
  """Writes image i's PNG and one overlay PNG per step; returns its images.json record.

  maps: float32 [L, h, w], log_probs: float32 [L] of its path (label ids).
  """
  image = np.asarray(image)
  image_file = f"image{i:02d}.png"
  _save_image(image, os.path.join(out_dir, image_file))
  upsampled = attention.upsample_maps(maps[:len(path)], image.shape[:2])  # [L_i, H, W]
  files, peaks, probs = [], [], []
  for t, label in enumerate(path):
    prob = float(np.exp(log_probs[t]))
    peak = attention.map_peak(maps[t])
    file = f"image{i:02d}_step{t + 1}_{_slug(names[label])}.png"
    title = f"{t + 1}. {names[label]} (p={prob:.2f})" + ("" if peak else ", map 0")
    _save_overlay(image, upsampled[t], title, peak, os.path.join(out_dir, file))
    files.append(file)
    peaks.append(None if peak is None else [float(peak[0]), float(peak[1])])
    probs.append(prob)
  return {"source": source, "image_file": image_file,
          "predicted": [names[l] for l in path], "step_probability": probs,
          "joint_neighbours": [[n, d] for n, d in joint_nb],
          "attention_files": files, "attention_peaks_yx": peaks}


def _write_text(path: str, text: str) -> None:
  with tf.io.gfile.GFile(path, "w") as f:
    f.write(text)


def write_visualizations(workdir, out_dir: str, images=None,
                         image_paths: Sequence[str] | None = None, num_neighbours: int = 3,
                         metric: str = "cosine", markdown_dir: str | None = None,
                         method: str = "grad_cam", checkpoint: str = "auto") -> str:
  """Writes the label neighbours and, per image, neighbours, path and attention PNGs.

  Args:
    workdir: a trained CNN-RNN workdir (config.json, labels.txt, checkpoints/), or what
      `common.load_cnn_rnn` returned for it.
    out_dir: where the files go (created); see the module docstring for the list.
    images: uint8 [N, H, W, 3] (or a list of [H, W, 3]), or None.
    image_paths: image files, shown after `images`.
    num_neighbours: neighbours per label and per image.
    metric: "cosine" or "euclidean".
    markdown_dir: the folder the returned Markdown will live in; its links are relative to
      it. Default: the parent of out_dir (the demo's report.md sits beside `visualize/`).
    method: the attention method, one of attention.METHODS (default "grad_cam").
    checkpoint: "auto" | "latest" | "best" | a path (`workdir.load_trained`'s rule).

  Returns:
    A Markdown snippet (### sections, a table, image links). out_dir/visualize.md holds the
    same text with links relative to out_dir.
  """
  neighbours.check_metric(metric)
  attention.check_method(method)
  trained = common.load_cnn_rnn(workdir, checkpoint)
  config, vocab, backbone, head = trained.config, trained.vocab, trained.backbone, trained.head
  all_images, sources = _gather_images(images, image_paths)
  tf.io.gfile.makedirs(out_dir)

  label_nb = neighbours.label_neighbours(head, vocab, num_neighbours, metric)
  _write_text(os.path.join(out_dir, "label_neighbours.json"), json.dumps(
      {"metric": metric, "excluded": ["END", "START"],
       "neighbours": {n: [[m, d] for m, d in nb] for n, nb in label_nb.items()}}, indent=2))

  records = []
  act_model = attention.activation_model(backbone)
  _, h, w, _ = act_model.output_shape[0]
  conv_info = f"`{attention.last_conv_layer(backbone)}` ({h}x{w})"
  if all_images:
    inputs = attention.model_inputs(backbone, all_images)  # [N, S, S, 3]
    _, features = attention.conv_and_features(act_model, inputs)  # [N, D]
    paths = common.predict_paths(head, features, **common.decode_args(config))
    joint_nb = neighbours.joint_from_features(head, vocab, features, num_neighbours, metric)
    maps, log_probs = attention.attention_and_log_probs(
        act_model, head, inputs, paths, method)  # [N, L, h, w], [N, L]
    records = [_image_record(out_dir, i, all_images[i], sources[i], paths[i], maps[i],
                             log_probs[i], joint_nb[i], vocab.names)
               for i in range(len(all_images))]
  _write_text(os.path.join(out_dir, "images.json"), json.dumps(
      {"metric": metric, "last_conv_layer": attention.last_conv_layer(backbone),
       "attention_method": method, "images": records}, indent=2))
  _write_text(os.path.join(out_dir, "label_neighbours.md"),
              _markdown(label_nb, metric, [], conv_info, method, ""))
  _write_text(os.path.join(out_dir, "visualize.md"),
              _markdown(label_nb, metric, records, conv_info, method, ""))
  if markdown_dir is None:
    markdown_dir = os.path.dirname(os.path.abspath(out_dir))
  prefix = os.path.relpath(os.path.abspath(out_dir), os.path.abspath(markdown_dir))
  prefix = "" if prefix == "." else prefix.replace(os.sep, "/") + "/"
  return _markdown(label_nb, metric, records, conv_info, method, prefix)


def visualize_workdir(workdir: str, *, image_patterns: Sequence[str] = (),
                      out_dir: str | None = None, num_neighbours: int = 3,
                      metric: str = "cosine", method: str = "grad_cam", num_images: int = 4,
                      hit_rate_images: int = 0, split: str | None = None,
                      checkpoint: str = "auto") -> dict[str, Any]:
  """What `python -m cnn_rnn_tf.visualize` does (its flags are these arguments).

  Image files (`image_patterns`: paths or globs) or, without them, the first `num_images`
  images of a synthetic_scenes workdir's `split` (default: the config's eval split); then
  `write_visualizations` into `out_dir` (default <workdir>/visualize) and, if
  `hit_rate_images` > 0, the attention box hit rate into out_dir/hit_rate.json.

  Returns:
    {"markdown": path of visualize.md, "hit_rate": the `attention_box_hit_rate` dict (its
     "split" and "method" included) or None, "hit_rate_file": its JSON file or None}.
  """
  image_paths = [p for pattern in image_patterns
                 for p in (sorted(tf.io.gfile.glob(pattern)) or [pattern])]
  out_dir = out_dir or os.path.join(workdir, "visualize")
  trained = common.load_cnn_rnn(workdir, checkpoint)  # the one read of the workdir
  config = trained.config
  split = split or config.data.eval_split
  images = None
  if not image_paths and config.data.source == "synthetic_scenes" and num_images > 0:
    examples = hit_rate.synthetic_examples(config, split, num_images)
    images = np.stack([e["image"] for e in examples])
  write_visualizations(trained, out_dir, images=images, image_paths=image_paths,
                       num_neighbours=num_neighbours, metric=metric, markdown_dir=out_dir,
                       method=method, checkpoint=checkpoint)
  out = {"markdown": os.path.join(out_dir, "visualize.md"), "hit_rate": None,
         "hit_rate_file": None}
  if hit_rate_images > 0:
    out["hit_rate"] = hit_rate.attention_box_hit_rate(trained, split, hit_rate_images, method)
    out["hit_rate_file"] = os.path.join(out_dir, "hit_rate.json")
    _write_text(out["hit_rate_file"], json.dumps(out["hit_rate"], indent=2))
  return out
