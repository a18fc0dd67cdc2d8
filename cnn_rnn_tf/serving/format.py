"""What `cnn_rnn_tf.predict` and `cnn_rnn_tf.serving.client` share: inputs and printed output.

    batches = format.request_inputs("serving_default", [jpeg_bytes, png_bytes])
    # [{"image_bytes": object [2]}]: one request (predict_images: one per image)
    outputs = format.merge_outputs([run(b) for b in batches])     # dict of NumPy, [N, ...]
    print(format.to_text(["a.jpg", "b.png"], outputs))
    print(format.to_json(["a.jpg", "b.png"], outputs))

Both binaries build their requests and print their answers only through this module, so the
same images give the same output locally and through a server.

Text, one line per image (score: `label_scores` of that label, the model's ranking score):

    a.jpg: person 0.912, dog 0.801  (path log-prob -0.532)
    b.png: (no labels)  (path log-prob -0.105)

JSON: a list with one object per image: image, labels (names in path order), label_ids,
scores (of the path's labels), path_log_prob, label_scores (all K, in id order).
"""

from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import tensorflow as tf

OUTPUT_KEYS = ("labels", "label_names", "num_labels", "path_log_prob", "label_scores")
_DIGITS = 6  # JSON floats: enough to compare, stable across float32 -> float64 printing


def request_inputs(signature: str, images_bytes: Sequence[bytes]) -> list[dict]:
  """Encoded images -> the input dicts of one or more requests to `signature`.

  serving_default (and any unknown name, for the server to judge): one request, the bytes as
  `image_bytes` object [N]. predict_images: the images decoded here to float32 RGB [1, H, W, 3],
  one request each (their sizes differ).
  """
  images_bytes = [bytes(b) for b in images_bytes]
  if signature == "predict_images":
    return [{"images": decode_rgb(b, i)[np.newaxis]} for i, b in enumerate(images_bytes)]
  if signature == "predict_features":
    raise ValueError("predict_features takes backbone features [batch, D], not image files; "
                     "use --signature=serving_default or predict_images.")
  return [{"image_bytes": np.array(images_bytes, dtype=object).reshape([len(images_bytes)])}]


def decode_rgb(data: bytes, index: int = 0) -> np.ndarray:
  """Encoded image -> float32 [H, W, 3] RGB in 0..255, as the export decodes it."""
  try:
    image = tf.io.decode_image(data, channels=3, expand_animations=False)
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise ValueError(f"Image {index} does not decode as JPEG / PNG / GIF / BMP: "
                     f"{getattr(e, 'message', e)}") from None
  return image.numpy().astype(np.float32)


def merge_outputs(outputs: Sequence[dict]) -> dict:
  """Concatenates the outputs of several requests along the batch axis."""
  if len(outputs) == 1:
    return dict(outputs[0])
  return {k: np.concatenate([o[k] for o in outputs], axis=0) for k in outputs[0]}


def results(names: Sequence[str], outputs: dict) -> list[dict]:
  """One plain-Python record per image (see the module docstring)."""
  missing = [k for k in OUTPUT_KEYS if k not in outputs]
  if missing:
    raise ValueError(f"Outputs lack {missing}; got {sorted(outputs)}.")
  if len(names) != len(outputs["num_labels"]):
    raise ValueError(f"{len(names)} images but {len(outputs['num_labels'])} results.")
  records = []
  for b, name in enumerate(names):
    n = int(outputs["num_labels"][b])
    ids = [int(i) for i in outputs["labels"][b][:n]]
    scores = outputs["label_scores"][b]
    records.append({
        "image": str(name),
        "labels": [_text(s) for s in outputs["label_names"][b][:n]],
        "label_ids": ids,
        "scores": [round(float(scores[i]), _DIGITS) for i in ids],
        "path_log_prob": round(float(outputs["path_log_prob"][b]), _DIGITS),
        "label_scores": [round(float(s), _DIGITS) for s in scores],
    })
  return records


def to_text(names: Sequence[str], outputs: dict) -> str:
  lines = []
  for r in results(names, outputs):
    path = ", ".join(f"{label} {score:.3f}" for label, score in zip(r["labels"], r["scores"]))
    lines.append(f"{r['image']}: {path or '(no labels)'}  "
                 f"(path log-prob {r['path_log_prob']:.3f})")
  return "\n".join(lines)


def to_json(names: Sequence[str], outputs: dict) -> str:
  return json.dumps(results(names, outputs), indent=2)


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)
