r"""A user's own images listed in CSV files (the Planet format): `data.source="csv"`.

    source = sources.get_source(config.data)   # config.data.source = "csv"
    source.csv_path("train")                    # data.train_csv

Splits: "train" reads `data.train_csv`; "eval", "test" and "validation" read `data.eval_csv`.

A CSV file with a header; one column holds the image path (relative to the CSV's folder, or
absolute), one the labels, separated by `data.label_separator` (default a space; repeated and
surrounding separators are ignored):

    image_name,tags
    images/0001.jpg,person dog
    /data/other/0002.png,car

Config: `data.train_csv`, `data.eval_csv`, `data.image_column` ("image_name"),
`data.labels_column` ("tags"), `data.label_separator` (" "). `label_names` are the labels of
the train CSV's well-formed rows, sorted (the eval CSV's when no train CSV is set). JPEG, PNG,
GIF, BMP and still WebP are read (`images.py`); grayscale, RGBA and palette become RGB. The
key of an example is its path as written in the CSV.

Bad data (each kind is found when a split is first used, before any training step):
  malformed_row      wrong number of fields, an empty image field, a quoting fault (each
                     physical line is parsed alone, strictly: a stray quote costs only its
                     own line), or bytes that are not `data.csv_encoding` (default utf-8)
  bad_label          a label with a control character, line break or double quote inside
                     (labels are stripped of whitespace and control characters at both ends,
                     `vocab.clean_label`, so a trailing \r is harmless)
  empty_labels       no label in the row; `data.csv_empty_labels="keep"` makes it a valid
                     example whose target is only END (e.g. NUS-WIDE images without concepts)
  unknown_label      an eval row's label that no train row has
  missing_file       the image file does not exist
  undecodable_image  the file is not an image TensorFlow can decode
By default they raise `BadDataError`, each problem named by the CSV file, the line and the
image (the first 10 listed, and their total; row and file problems are reported before the
slower image check runs). With `data.skip_bad_examples=True` the
rows are left out, counted per reason in `source.skipped` and logged (absl, warning) with
the first few of them. A header without the configured columns is always an error.

Image check (`data.check_images`): "decode" (default) decodes every image of the split once,
in parallel in tf.data (`images.decode_rgb`, the function the pipeline uses), so that a
corrupt or truncated file is caught before training, not in the middle of it: about 1.5 ms
per VOC-sized JPEG per core (5000 images: ~4 s on 2 cores). "header" only checks the format
(magic bytes) and the size in the header (`images.header_shape`; no decode); a file that is
corrupt after its header then stops training with an error naming its key (the CSV path).
Both refuse an image over `data.max_image_pixels` (by its header, before decoding) as
undecodable_image. Image files that change after the check are not re-checked.

### NUS-WIDE (81 concepts) as a CSV

From the NUS-WIDE distribution (`Concepts81.txt`, `ImageList/{Train,Test}Imagelist.txt`,
`Groundtruth/TrainTestLabels/Labels_<concept>_{Train,Test}.txt`, the images under `Flickr/`):

    import csv, pathlib
    root = pathlib.Path("NUS-WIDE")
    concepts = (root / "Concepts81.txt").read_text().split()
    for split in ("Train", "Test"):
      images = [l.strip().replace("\\", "/")
                for l in open(root / f"ImageList/{split}Imagelist.txt") if l.strip()]
      tags = [[] for _ in images]
      for c in concepts:
        flags = (root / f"Groundtruth/TrainTestLabels/Labels_{c}_{split}.txt").read_text().split()
        assert len(flags) == len(images), (c, split)
        for i, flag in enumerate(flags):
          if flag == "1":
            tags[i].append(c)
      with open(root / f"{split.lower()}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image_name", "tags"])
        for image, t in zip(images, tags):
          if t:  # ~1/4 of the images have none of the 81 concepts; the usual protocol drops them
            w.writerow([f"Flickr/{image}", " ".join(t)])

then `--config.data.source=csv --config.data.train_csv=NUS-WIDE/train.csv
--config.data.eval_csv=NUS-WIDE/test.csv --config.data.eval_split=test` (keep the images
without concepts and set `data.csv_empty_labels="keep"` for the other protocol). Images that
are missing from your copy of the Flickr archive are reported as `missing_file`.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import os
from typing import Sequence

from absl import logging
import tensorflow as tf

from cnn_rnn_tf import image_files
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import options as options_lib
from cnn_rnn_tf.data.sources import base
from cnn_rnn_tf.data.sources import hygiene


@dataclasses.dataclass
class _Row:
  line: int  # line number in the file (the header is line 1)
  image: str  # as written in the CSV: the key
  path: str  # absolute
  labels: tuple[str, ...]  # distinct, in order of appearance


class CsvSource(base.Source):
  """Images listed in CSV files (Planet format); see the module docstring."""

  name = "csv"
  split_names = {"train": "data.train_csv", "eval": "data.eval_csv",
                 "test": "data.eval_csv", "validation": "data.eval_csv"}
  EMPTY_LABELS = ("error", "keep")
  CHECK_IMAGES = ("decode", "header")

  def __init__(self, config):
    super().__init__(config)
    self.train_csv = str(config.train_csv or "")
    self.eval_csv = str(config.eval_csv or "")
    self.image_column = str(config.image_column)
    self.labels_column = str(config.labels_column)
    self.label_separator = str(config.label_separator)
    self.empty_labels = str(config.csv_empty_labels)
    self.check_images = str(config.check_images)
    self.max_pixels = config.max_image_pixels
    self.encoding = str(config.csv_encoding)
    try:
      ascii_compatible = "\n,\"".encode(self.encoding) == b"\n,\""
    except LookupError:
      raise ValueError(f"data.csv_encoding: unknown encoding {self.encoding!r}.") from None
    if not ascii_compatible:
      raise ValueError(f"data.csv_encoding={self.encoding!r} is not ASCII-compatible; "
                       "expected e.g. utf-8, latin-1 or cp1252 (convert UTF-16 files first).")
    if not self.label_separator:
      raise ValueError("data.label_separator must not be empty.")
    if self.empty_labels not in self.EMPTY_LABELS:
      raise ValueError(f"data.csv_empty_labels must be one of {self.EMPTY_LABELS}, "
                       f"got {self.empty_labels!r}.")
    if self.check_images not in self.CHECK_IMAGES:
      raise ValueError(f"data.check_images must be one of {self.CHECK_IMAGES}, "
                       f"got {self.check_images!r}.")
    if not self.train_csv and not self.eval_csv:
      raise ValueError("The csv source needs data.train_csv and/or data.eval_csv; "
                       "both are empty.")
    self._parsed: dict[str, tuple[list[_Row], list[base.Problem]]] = {}
    self._label_names: list[str] | None = None
    self._paths: dict[str, list[str]] = {}  # split -> absolute image paths of the index
    self.allow_overlap = bool(config.allow_overlap)

  def csv_path(self, split: str) -> str:
    self.check_split(split)
    path = self.train_csv if split == "train" else self.eval_csv
    if not path:
      raise ValueError(f"Split {split!r} of the csv source reads {self.split_names[split]}, "
                       "which is not set.")
    return path

  @property
  def label_names(self) -> list[str]:
    """Sorted labels of the train CSV's well-formed rows (of the eval CSV without one)."""
    if self._label_names is None:
      path = self.train_csv or self.eval_csv
      rows, _ = self._parse(path)
      self._label_names = sorted({label for row in rows for label in row.labels})
      if not self._label_names:
        raise base.BadDataError(f"{path}: no labels at all in column {self.labels_column!r}.")
    return self._label_names

  def _parse(self, path: str) -> tuple[list[_Row], list[base.Problem]]:
    """Well-formed rows and the row-level problems (malformed, bad or empty labels) of a CSV.

    Each physical line is parsed on its own with the csv module in strict mode, so a quoting
    fault is a malformed_row at its own line and never swallows the lines after it (a field
    cannot span lines: neither paths nor labels hold line breaks).
    """
    if path in self._parsed:
      return self._parsed[path]
    if not os.path.isfile(path):
      raise FileNotFoundError(f"CSV file {path!r} does not exist.")
    folder = os.path.dirname(os.path.abspath(path))
    rows, problems = [], []
    lines = _csv_lines(path, self.encoding)
    header = None
    for line, fields, error in lines:
      if error is not None:
        raise base.BadDataError(f"{path} line {line}: header: {error}")
      if not "".join(fields).strip():
        continue  # blank lines before the header
      header = [h.strip() for h in fields]
      break
    if header is None:
      raise base.BadDataError(f"{path}: empty file; expected a header with columns "
                         f"{self.image_column!r} and {self.labels_column!r}.")
    for column, field in ((self.image_column, "data.image_column"),
                          (self.labels_column, "data.labels_column")):
      if column not in header:
        raise base.BadDataError(f"{path} line {line}: no column {column!r} ({field}); "
                                f"the header has {base.shown(header)}.")
    image_col, labels_col = header.index(self.image_column), header.index(self.labels_column)
    for line, fields, error in lines:
      where = f"{path} line {line}"
      if error is not None:
        problems.append(base.Problem(base.MALFORMED_ROW, where, error))
        continue
      if not fields or (len(fields) == 1 and not fields[0].strip()):
        continue  # A blank line is not an example.
      if len(fields) != len(header):
        problems.append(base.Problem(base.MALFORMED_ROW, where,
                                f"{len(fields)} fields, expected {len(header)} ({header}): "
                                f"{base.shown(fields)}"))
        continue
      image = fields[image_col].strip()
      if not image:
        problems.append(base.Problem(base.MALFORMED_ROW, where,
                                f"empty image path in column {self.image_column!r}"))
        continue
      try:
        labels = tuple(dict.fromkeys(
            name for name in (vocab_lib.clean_label(s)
                              for s in fields[labels_col].split(self.label_separator))
            if name))
      except vocab_lib.BadLabelError as e:
        problems.append(base.Problem(base.BAD_LABEL, where, f"image {base.shown(image)}, "
                                     f"column {self.labels_column!r}: {base.clip(str(e))}"))
        continue
      if not labels and self.empty_labels == "error":
        problems.append(base.Problem(
            base.EMPTY_LABELS, where,
            f"image {base.shown(image)} has no labels in column {self.labels_column!r} "
            "(data.csv_empty_labels='keep' allows that)"))
        continue
      rows.append(_Row(line, image, os.path.join(folder, image), labels))
    self._parsed[path] = (rows, problems)
    return rows, problems

  def _build_index(self, split: str) -> base.SplitIndex:
    path = self.csv_path(split)
    rows, problems = self._parse(path)
    problems = list(problems)
    self._check_hygiene(split, path, rows)
    known = {n: i for i, n in enumerate(self.label_names)}
    good = []
    for row in rows:
      unknown = [label for label in row.labels if label not in known]
      if unknown:
        problems.append(base.Problem(
            base.UNKNOWN_LABEL, f"{path} line {row.line}",
            f"image {base.shown(row.image)}: unknown label(s) {base.shown(unknown)} (not in "
            f"the labels of {self.train_csv or self.eval_csv!r})"))
      elif not os.path.isfile(row.path):
        problems.append(base.Problem(
            base.MISSING_FILE, f"{path} line {row.line}",
            f"image {base.shown(row.image)} does not exist ({base.clip(row.path)})"))
      else:
        good.append(row)
    if problems and not self.skip_bad_examples:
      # Fail fast: the image check below can take a while, and these errors stand anyway.
      self._handle_problems(split, problems, f"{path}")
    undecodable = _check_images([r.path for r in good], self.check_images, self.max_pixels)
    kept = []
    for i, row in enumerate(good):
      if i in undecodable:
        problems.append(base.Problem(
            base.UNDECODABLE_IMAGE, f"{path} line {row.line}",
            f"image {base.shown(row.image)} ({base.clip(row.path)}) cannot be decoded: "
            f"{undecodable[i]}"))
      else:
        kept.append(row)
    problems.sort(key=lambda p: int(p.where.rsplit(" ", 1)[1]))
    self._handle_problems(split, problems, f"{path}")
    if not kept:
      raise base.BadDataError(f"{path}: no usable example (skipped: {self.skipped_in(split)}).")
    self._paths[split] = [r.path for r in kept]
    return base.SplitIndex(
        keys=[r.image for r in kept],
        label_ids=[tuple(sorted(known[n] for n in r.labels)) for r in kept],
        where=[f"{path} line {r.line} (image {base.shown(r.image)})" for r in kept])

  def _check_hygiene(self, split: str, path: str, rows: Sequence[_Row]) -> None:
    """Counts the split's duplicate rows and (once) the train/eval overlap; warns or refuses."""
    repeats = hygiene.duplicates([_entry(path, row) for row in rows])
    self.set_hygiene("duplicate_rows", {**self.hygiene.get("duplicate_rows", {}),
                                        split: len(repeats)})
    if repeats:
      logging.warning("%s", base.format_listed(
          [f"{row.where} repeats {first.where}" for row, first in repeats],
          f"{path}: {len(repeats)} row(s) repeat an earlier row (same image and labels); "
          "they count twice in training or evaluation:"))
    if "train_eval_overlap" in self.hygiene or not (self.train_csv and self.eval_csv):
      return
    if not os.path.isfile(self.eval_csv) or not os.path.isfile(self.train_csv):
      return  # Named when the split that reads it is used.
    shared = hygiene.overlap([_entry(self.train_csv, r) for r in self._parse(self.train_csv)[0]],
                             [_entry(self.eval_csv, r) for r in self._parse(self.eval_csv)[0]])
    counts = collections.Counter(s.how for s in shared)
    self.set_hygiene("train_eval_overlap", {
        "same_path": counts[hygiene.SAME_PATH], "same_content": counts[hygiene.SAME_CONTENT]})
    if not shared:
      return
    header = (f"{len(shared)} image(s) of {self.eval_csv} are also in {self.train_csv} "
              f"({counts[hygiene.SAME_PATH]} by path, {counts[hygiene.SAME_CONTENT]} by "
              "content): evaluation on them measures memory, not generalization")
    if not self.allow_overlap:
      raise base.BadDataError(base.format_listed(
          shared, f"{header} (data.allow_overlap=False):",
          "Remove them from one of the files, or set data.allow_overlap=True to only warn."))
    logging.warning("%s", base.format_listed(
        shared, f"{header} (data.allow_overlap=True: a warning only):"))

  def examples(self, split: str) -> tf.data.Dataset:
    index = self.index(split)
    return tf.data.Dataset.from_tensor_slices({
        "image": tf.constant(self._paths[split], tf.string),
        "label_ids": tf.ragged.constant([list(ids) for ids in index.label_ids],
                                        dtype=tf.int32, ragged_rank=1),
        "key": tf.constant(index.keys, tf.string),
    })

  def read_image(self, image):
    return tf.io.read_file(image)

  def cache_key(self, split):
    path = self.csv_path(split)
    stat = os.stat(path)
    return {**super().cache_key(split), "csv": os.path.abspath(path), "csv_size": stat.st_size,
            "csv_mtime": stat.st_mtime, "label_names": self.label_names,
            "image_column": self.image_column, "labels_column": self.labels_column,
            "label_separator": self.label_separator, "csv_empty_labels": self.empty_labels,
            "check_images": self.check_images, "csv_encoding": self.encoding}


def _entry(path: str, row: _Row) -> hygiene.Entry:
  return hygiene.Entry(f"{path} line {row.line} (image {base.shown(row.image)})", row.path,
                       row.labels)


def _csv_lines(path: str, encoding: str):
  """(line number, fields or None, error or None) per physical line of a CSV file.

  Lines are split on b"\n" (a trailing "\r" is dropped), decoded with `encoding` (a UTF-8
  BOM at the start is skipped) and parsed alone with `csv.reader(strict=True)`; a line that
  does not decode or parse yields its error text instead of fields.
  """
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      raw = raw.removesuffix(b"\n").removesuffix(b"\r")
      if number == 1 and raw.startswith(codecs.BOM_UTF8) and codecs.lookup(
          encoding).name == "utf-8":
        raw = raw[len(codecs.BOM_UTF8):]
      try:
        text = raw.decode(encoding)
      except UnicodeDecodeError as e:
        yield number, None, (f"bytes {raw[e.start:e.end]!r} at column {e.start + 1} are not "
                             f"{encoding} (data.csv_encoding={encoding!r})")
        continue
      try:
        fields = next(csv.reader([text], strict=True), [])
      except csv.Error as e:
        yield number, None, f"CSV quoting fault ({e}): {base.shown(text)}"
        continue
      yield number, fields, None


def _check_images(paths: Sequence[str], mode: str,
                  max_pixels: int | None) -> dict[int, str]:
  """Index -> error message for each file that is not a usable image (`images` module).

  "decode": `images.decode_rgb` of every file, in parallel in tf.data; "header": the
  format and size check only (`images.header_shape`). Either refuses a file over
  `max_pixels` from its header, without decoding it.
  """
  if not paths:
    return {}

  def check(i, path):
    data = tf.io.read_file(path)
    if mode == "header":
      _, hw = images_lib.header_shape(data, max_pixels=max_pixels, name=path)
      return i, hw[0]
    return i, tf.shape(images_lib.decode_rgb(data, max_pixels=max_pixels, name=path))[0]

  # A failing element is dropped by ignore_errors, so the missing indices are the bad files.
  # Their messages come from one eager check each (the header check runs first: cheap).
  ds = tf.data.Dataset.from_tensor_slices((tf.range(len(paths)), tf.constant(list(paths))))
  ds = ds.map(check, num_parallel_calls=options_lib.PARALLELISM, deterministic=False)
  ds = ds.ignore_errors().batch(1024).with_options(options_lib.dataset_options())
  ok = set()
  for ids, _ in ds.as_numpy_iterator():
    ok.update(int(i) for i in ids)
  bad = {}
  for i, p in enumerate(paths):
    if i not in ok:
      try:
        check(tf.constant(i), tf.constant(p))
        bad[i] = "the check failed in tf.data but not when repeated"
      except (tf.errors.OpError, ValueError) as e:
        message = image_files.error_message(e)
        bad[i] = message[len(p) + 2:] if message.startswith(p + ": ") else message
  return bad
