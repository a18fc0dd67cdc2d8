"""What `cnn_rnn_tf.predict` and `cnn_rnn_tf.serving.client` share: inputs, batches, output.

    paths, missing = format.expand_paths(["photos/", "more/*.jpg", "one.png"])
    run = format.predict_paths(predict_fn, paths, batch_size=32)   # batched, progress bar
    run.records    # one dict per predicted image (see `results`)
    run.failures   # [(path, message)]: unreadable or undecodable files, the rest predicted
    print(format.to_text(run.records, n_best=3))
    format.write_output("out.csv", run)                    # or out.jsonl

`predict_fn(images_bytes: list[bytes]) -> outputs` is the one part that differs: a loaded
SavedModel (`serving.local`) or a PredictionService (`serving.client_lib`); it raises
`BadInputError` when the model refuses the inputs (INVALID_ARGUMENT), and a batch that
fails so is retried image by image, so that one bad file costs only itself.

Inputs (`expand_paths`): files, folders (searched recursively for files with an image
extension, `IMAGE_EXTENSIONS`) and globs (`*`, `?`, `[`; `**` recursive).

Text, one line per image (score: `label_scores` of that label, the model's ranking score),
and with n_best > 0 the N best label sets of the beam (`paths`, `paths_log_prob`) below it:

    a.jpg: person 0.912, dog 0.801  (path log-prob -0.532)
      1. person dog  (log-prob -0.532)
      2. person  (log-prob -1.204)
    b.png: (no labels)  (path log-prob -0.105)

A bce export has no path: its lines lack "(path log-prob ...)" and the n-best list (an
output a head lacks is optional, `PATH_KEYS`, `NBEST_KEYS`).

JSON (`to_json`) / JSON Lines (`--output=X.jsonl`): one object per image: image, labels
(names in path order), label_ids, scores (of the path's labels), path_log_prob (cnn_rnn),
label_scores (all K, in id order), and with n_best > 0 `n_best`: [{labels, label_ids,
log_prob}] best first. A failed image: {image, error}. CSV (`--output=X.csv`): columns
image, labels, scores (both ';'-joined), path_log_prob (empty without a path), n_best (JSON
of the n-best list, when asked for), error.
"""

from __future__ import annotations

import csv
import glob
import json
import math
import os
import sys
from typing import Callable, NamedTuple, Sequence

import numpy as np
import tensorflow as tf

from cnn_rnn_tf import image_files
from cnn_rnn_tf import images
from cnn_rnn_tf import progress

OUTPUT_KEYS = ("labels", "label_names", "num_labels", "label_scores")  # every export's
PATH_KEYS = ("path_log_prob",)  # a head with a path (cnn_rnn; older bce exports too)
NBEST_KEYS = ("paths", "paths_log_prob", "paths_label_names")  # exports since the n-best
IMAGE_EXTENSIONS = images.EXTENSIONS  # the formats `images` reads
OUTPUT_FORMATS = (".csv", ".jsonl")
_DIGITS = 6  # JSON floats: enough to compare, stable across float32 -> float64 printing


class BadInputError(ValueError):
  """The model refused the images of a request (INVALID_ARGUMENT); the message says why."""


class Run(NamedTuple):
  records: list  # one dict per predicted image, in input order
  failures: list  # [(path, message)] in input order
  n_best: int


def expand_paths(args: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
  """Files, folders (recursive, by image extension) and globs -> (image paths, failures).

  A path that does not exist, a folder without images and a glob that matches nothing are
  failures (path, message); duplicates are dropped, the order is kept (folders sorted).
  """
  paths, failures, seen = [], [], set()

  def add(path):
    if path not in seen:
      seen.add(path)
      paths.append(path)

  def add_folder(folder):
    found = [os.path.join(root, name)
             for root, _, names in os.walk(folder) for name in names
             if name.lower().endswith(IMAGE_EXTENSIONS)]
    for path in sorted(found):
      add(path)
    return len(found)

  for arg in args:
    if os.path.isdir(arg):
      if not add_folder(arg):
        failures.append((arg, f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in the "
                              "folder or below it"))
    elif os.path.isfile(arg):
      add(arg)
    elif glob.has_magic(arg):
      matches = sorted(glob.glob(arg, recursive=True))
      count = 0
      for match in matches:
        if os.path.isdir(match):
          count += add_folder(match)
        elif match.lower().endswith(IMAGE_EXTENSIONS):
          add(match)
          count += 1
      if not count:
        failures.append((arg, "the pattern matches no image file"))
    else:
      failures.append((arg, "no such file or folder"))
  return paths, failures


def check_batch(images_bytes) -> list[bytes]:
  """A batch of encoded images as a list of bytes; a scalar or a rank-2 array is refused
  with a hint (the signatures take image_bytes string [batch])."""
  if isinstance(images_bytes, (bytes, str)):
    raise ValueError("image_bytes must be a batch (a list, or an array of shape [batch]) of "
                     "encoded images, got a single one: wrap it in a list, [image].")
  array = np.asarray(images_bytes, dtype=object)
  if array.ndim != 1:
    raise ValueError(f"image_bytes must have shape [batch], got shape {list(array.shape)}: "
                     "flatten it (e.g. .reshape(-1)) or send the images as one list.")
  return [bytes(b) for b in array]


def request_inputs(signature: str, images_bytes: Sequence[bytes]) -> list[dict]:
  """Encoded images -> the input dicts of one or more requests to `signature`.

  serving_default (and any unknown name, for the server to judge): one request, the bytes as
  `image_bytes` object [N]. predict_images: the images decoded here to float32 RGB [1, H, W, 3],
  one request each (their sizes differ).
  """
  images_bytes = check_batch(images_bytes)
  if signature == "predict_images":
    return [{"images": decode_rgb(b, i)[np.newaxis]} for i, b in enumerate(images_bytes)]
  if signature == "predict_features":
    raise ValueError("predict_features takes backbone features [batch, D], not image files; "
                     "use --signature=serving_default or predict_images.")
  return [{"image_bytes": np.array(images_bytes, dtype=object).reshape([len(images_bytes)])}]


def decode_rgb(data: bytes, index: int = 0) -> np.ndarray:
  """Encoded image -> float32 [H, W, 3] RGB in 0..255, as the export decodes it
  (`images.decode_rgb`: format and size limit checked first)."""
  try:
    image = images.decode_rgb(tf.constant(data), name=f"Image {index}")
  except (tf.errors.InvalidArgumentError, ValueError) as e:
    raise BadInputError(f"Image {index} does not decode: {image_files.error_message(e)}") from None
  return image.numpy().astype(np.float32)


def merge_outputs(outputs: Sequence[dict]) -> dict:
  """Concatenates the outputs of several requests along the batch axis."""
  if len(outputs) == 1:
    return dict(outputs[0])
  return {k: np.concatenate([o[k] for o in outputs], axis=0) for k in outputs[0]}


def predict_paths(predict_fn: Callable[[list], dict], paths: Sequence[str], *,
                  batch_size: int = 32, n_best: int = 0,
                  failures: Sequence[tuple[str, str]] = ()) -> Run:
  """Predicts `paths` in batches of `batch_size` with a progress bar; see the module doc.

  A file that cannot be read, or that the model refuses, is a failure (path, message); the
  others are still predicted. Other errors (server down, ...) propagate.
  """
  if batch_size < 1:
    raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
  records, failed = [], list(failures)
  with progress.bar(total=len(paths), desc="predict", unit="img") as bar:
    for start in range(0, len(paths), batch_size):
      names, datas = [], []
      for path in paths[start:start + batch_size]:
        try:
          datas.append(image_files.read_file(path))
          names.append(path)
        except image_files.ImageError as e:
          failed.append((path, str(e)))
      for group in _predict_group(predict_fn, names, datas, failed):
        records.extend(group)
      bar.update(len(paths[start:start + batch_size]))
  return Run(records, failed, n_best)


def _predict_group(predict_fn, names, datas, failed):
  if not names:
    return
  try:
    yield results(names, predict_fn(datas))
  except BadInputError as e:
    if len(names) == 1:
      failed.append((names[0], str(e)))
      return
    for name, data in zip(names, datas):  # find the bad ones; the rest still count
      yield from _predict_group(predict_fn, [name], [data], failed)


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
    record = {
        "image": str(name),
        "labels": [_text(s) for s in outputs["label_names"][b][:n]],
        "label_ids": ids,
        "scores": [round(float(scores[i]), _DIGITS) for i in ids],
        "label_scores": [round(float(s), _DIGITS) for s in scores],
    }
    if all(k in outputs for k in PATH_KEYS):
      record["path_log_prob"] = round(float(outputs["path_log_prob"][b]), _DIGITS)
    if all(k in outputs for k in NBEST_KEYS):
      record["n_best"] = [
          {"labels": [_text(s) for s, i in zip(names_j, ids_j) if i >= 0],
           "label_ids": [int(i) for i in ids_j if i >= 0],
           "log_prob": round(float(lp), _DIGITS)}
          for ids_j, names_j, lp in zip(outputs["paths"][b], outputs["paths_label_names"][b],
                                        outputs["paths_log_prob"][b])
          if math.isfinite(float(lp))]
    records.append(record)
  return records


def _with_n_best(record: dict, n_best: int) -> dict:
  record = dict(record)
  if n_best > 0 and "n_best" in record:
    record["n_best"] = record["n_best"][:n_best]
  else:
    record.pop("n_best", None)
  return record


def to_text(records: Sequence[dict], n_best: int = 0) -> str:
  lines = []
  for r in records:
    path = ", ".join(f"{label} {score:.3f}" for label, score in zip(r["labels"], r["scores"]))
    log_prob = (f"  (path log-prob {r['path_log_prob']:.3f})" if "path_log_prob" in r
                else "")
    lines.append(f"{r['image']}: {path or '(no labels)'}{log_prob}")
    for j, alt in enumerate(_with_n_best(r, n_best).get("n_best", ()), 1):
      lines.append(f"  {j}. {' '.join(alt['labels']) or '(no labels)'}  "
                   f"(log-prob {alt['log_prob']:.3f})")
  return "\n".join(lines)


def to_json(records: Sequence[dict], n_best: int = 0) -> str:
  return json.dumps([_with_n_best(r, n_best) for r in records], indent=2)


def check_output_path(path: str) -> str:
  """`path` if it ends in .csv or .jsonl, else ValueError naming it."""
  if not path.lower().endswith(OUTPUT_FORMATS):
    raise ValueError(f"--output={path!r}: expected a file name ending in .csv or .jsonl.")
  return path


def write_output(path: str, run: Run) -> None:
  """Writes the run's records and failures to `path` (.csv or .jsonl, by its extension)."""
  check_output_path(path)
  rows = [_with_n_best(r, run.n_best) for r in run.records]
  rows += [{"image": p, "error": m} for p, m in run.failures]
  folder = os.path.dirname(path)
  if folder:
    os.makedirs(folder, exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    if path.lower().endswith(".jsonl"):
      for row in rows:
        f.write(json.dumps(row) + "\n")
      return
    columns = ["image", "labels", "scores", "path_log_prob"]
    columns += ["n_best"] * (run.n_best > 0) + ["error"]
    writer = csv.DictWriter(f, columns)
    writer.writeheader()
    for row in rows:
      out = {"image": row["image"], "error": row.get("error", "")}
      if "error" not in row:
        out.update(labels=";".join(row["labels"]),
                   scores=";".join(f"{s:.6g}" for s in row["scores"]),
                   path_log_prob=row.get("path_log_prob", ""))
        if run.n_best > 0:
          out["n_best"] = json.dumps(row.get("n_best", []))
      writer.writerow(out)


def failure_report(run: Run) -> str:
  """'error: N of M images failed:' then one line per failure; '' when none failed."""
  if not run.failures:
    return ""
  total = len(run.records) + len(run.failures)
  return "\n".join([f"error: {len(run.failures)} of {total} inputs failed:"] +
                   [f"  {path}: {message}" for path, message in run.failures])


def _text(value) -> str:
  return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def emit(run: Run, output: str | None = None, as_json: bool = False) -> int:
  """What the binaries do with a run: write `output` or print text / JSON on stdout, name the
  failures on stderr; returns the exit code (1 when any input failed)."""
  if output:
    write_output(output, run)
    print(f"Wrote {len(run.records)} results and {len(run.failures)} failures to {output}.")
  elif run.records:
    print((to_json if as_json else to_text)(run.records, run.n_best))
  report = failure_report(run)
  if report:
    print(report, file=sys.stderr)
  return 1 if run.failures else 0


def run_and_emit(make_run: Callable[[], Run], *, output: str | None = None,
                 as_json: bool = False, errors: tuple = ()) -> int:
  """The binaries' whole job: check --output, `make_run()`, `emit`; returns the exit code.

  FileNotFoundError, ValueError and `errors` (e.g. the client's ServingError) are printed
  as one `error: ...` line on stderr (exit code 1) instead of a traceback.
  """
  try:
    if output:
      check_output_path(output)
    run = make_run()
  except (FileNotFoundError, ValueError) + tuple(errors) as e:
    print(f"error: {e}", file=sys.stderr)
    return 1
  return emit(run, output=output, as_json=as_json)
