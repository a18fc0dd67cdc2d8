r"""Data sources: where the examples of a split come from, and the dataset's label names.

A config value picks the source (a plain dict, no registry):

    source = get_source(config.data)      # SOURCES[config.data.source](config.data)
    source.name                # "voc2007" | "coco2014" | "csv" | "synthetic_scenes"
    source.label_names         # all label names, in the source's own order
    vocab = LabelVocab.from_label_sets(source.train_label_sets(), all_names=source.label_names)
    source.num_examples("test")            # after skipping
    source.skipped                         # {"missing_file": 2, ...}, all splits used so far
    ds = source.examples("test")   # {'image': string, 'label_ids': int32 [n], 'key': string}

`examples` yields *undecoded* images (the encoded bytes for TFDS sources, the file path for
CSV; `source.read_image(image)` turns either into encoded bytes), so that the pipeline
(`pipeline.image_dataset`) can shuffle and skip before it pays for decoding. `label_ids` are
indices into `source.label_names`, distinct; the pipeline maps them to vocab ids.

Splits (the config's `data.train_split` / `data.eval_split` names -> the source's own):

  voc2007           "trainval" -> TFDS "train+validation" (5011 images; the paper trains on
                    it), "test" -> "test" (4952, the paper evaluates on it); "train" and
                    "validation" are the TFDS halves of trainval.
  coco2014          "train" (82783), "validation" (40504; the paper's evaluation split; "val"
                    also accepted). TFDS "test" has no annotations and is refused.
  csv               "train" reads `data.train_csv`; "eval", "test" and "validation" read
                    `data.eval_csv`.
  synthetic_scenes  "train", "test".

## voc2007 (TFDS `voc/2007`)

`data.voc_labels` picks the TFDS label field. Default "labels": every class with at least one
annotated object, "difficult" objects included; the paper does not say, and this is what most
multi-label code trains on. "labels_no_difficult" leaves out classes whose only objects are
difficult; an image whose objects are all difficult then has an empty label set, and is kept
(its target is just END; it is a negative for every class in evaluation).

## coco2014 (TFDS `coco/2014`)

An image's labels are the distinct classes of its objects (crowd regions included). Images
without any object annotation (about 1% of train and of val) follow `data.coco_empty_images`:
"skip" (default; left out and counted in `source.skipped["empty_labels"]`, whatever
`skip_bad_examples` says: it is a policy, not an error) or "keep" (empty label set, target END).
Label names are COCO's 80 category names, in TFDS order (category id order).

## csv: a user's own images (the Planet format)

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

## synthetic_scenes

The project's own TFDS builder (`cnn_rnn_tf.data.synthetic_scenes`), builder config
`data.synthetic_config` ("default" 64x64, "small" 32x32), drawn with `data.synthetic_seed`
(another seed: other images, a derived builder config such as `default_seed1`). Generated
into `data.data_dir` on first use, offline. `data.synthetic_labels`: "objects" (the 20
labels) or "scene" (the scene type only, one label per image: another task on other images,
for a backbone that never saw the object labels, the demo's transfer protocol T).

## Offline TFDS data (voc2007, coco2014)

TFDS keeps prepared datasets in `data.data_dir` (None: `$TFDS_DATA_DIR` or
`~/tensorflow_datasets`). Once `<data_dir>/voc/2007/5.0.0/` (or `coco/2014/1.1.0/`) exists,
nothing is downloaded again. To prepare them without network, put the original archives,
under exactly these names (TFDS verifies their size and SHA-256), in one folder and set
`data.manual_dir` to it (without it, TFDS looks in `<data_dir>/downloads/manual/`):

  voc2007   VOCtrainval_06-Nov-2007.tar, VOCtest_06-Nov-2007.tar
  coco2014  train2014.zip, val2014.zip, test2014.zip, test2015.zip,
            annotations_trainval2014.zip, image_info_test2014.zip, image_info_test2015.zip
            (the builder prepares all its splits, so the two test archives are needed too)

The source then calls `builder.download_and_prepare(download_config=
tfds.download.DownloadConfig(manual_dir=data.manual_dir, try_download_gcs=False))`; the
archives are extracted under `<data_dir>/downloads/extracted/` (VOC ~1 GB, COCO ~45 GB of
free space). If an archive is missing, the error lists what was expected where.
"""

from __future__ import annotations

import codecs
import collections
import csv
import dataclasses
import importlib
import os
from typing import Any, Mapping, Sequence

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import options as options_lib
from cnn_rnn_tf.data import tfds_prepare

# Reasons an example is skipped; the keys of `Source.skipped`.
MALFORMED_ROW = "malformed_row"
BAD_LABEL = "bad_label"
EMPTY_LABELS = "empty_labels"
UNKNOWN_LABEL = "unknown_label"
MISSING_FILE = "missing_file"
UNDECODABLE_IMAGE = "undecodable_image"
# Set by the pipeline: a label of the data that the vocab it was given does not have.
LABEL_NOT_IN_VOCAB = "label_not_in_vocab"

_MAX_LISTED_PROBLEMS = 10


class BadDataError(ValueError):
  """Bad examples in a split (data.skip_bad_examples=False). `problems`: all of them."""

  def __init__(self, message: str, problems: Sequence["Problem"] = ()):
    super().__init__(message)
    self.problems = list(problems)


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad example: why (a skip reason), where (file and line, or dataset and key), what."""
  reason: str
  where: str
  detail: str

  def __str__(self):
    return f"{self.where}: {self.detail} [{self.reason}]"


@dataclasses.dataclass
class SplitIndex:
  """The kept examples of a split, in the order `Source.examples` yields them."""
  keys: list[str]  # one per example
  label_ids: list[tuple[int, ...]]  # distinct ids into Source.label_names, ascending
  where: list[str]  # human-readable location of each example, for error messages


def format_problems(problems: Sequence[Problem], header: str, hint: str = "") -> str:
  """A multi-line message: header, the first problems, how many there are in all."""
  lines = [f"{header}: {len(problems)} bad example(s)."]
  lines += [f"  {p}" for p in problems[:_MAX_LISTED_PROBLEMS]]
  if len(problems) > _MAX_LISTED_PROBLEMS:
    lines.append(f"  ... and {len(problems) - _MAX_LISTED_PROBLEMS} more.")
  if hint:
    lines.append(hint)
  return "\n".join(lines)


SKIP_HINT = ("Fix the data, or set data.skip_bad_examples=True to skip such examples "
             "(they are then counted in source.skipped and logged).")


class Source:
  """Base class: a dataset's label names and, per split, an index and a tf.data stream.

  Subclasses set `name`, `split_names` and implement `label_names`, `_build_index(split)`
  and `examples(split)`; `read_image` and `cache_key` have defaults.
  """

  name: str = ""
  # Split names this source accepts (the keys), and what each one means to it.
  split_names: Mapping[str, str] = {}

  def __init__(self, config):
    self.config = config
    self.skip_bad_examples = bool(config.skip_bad_examples)
    self._indexes: dict[str, SplitIndex] = {}
    self._skipped: dict[str, dict[str, int]] = {}  # split -> reason -> count

  # ---- What the trainer uses. ----

  @property
  def label_names(self) -> list[str]:
    raise NotImplementedError

  @property
  def train_split(self) -> str:
    return str(self.config.train_split)

  def train_label_sets(self) -> list[set[str]]:
    """One set of label names per example of the training split (`data.train_split`)."""
    names = self.label_names
    return [{names[i] for i in ids} for ids in self.index(self.train_split).label_ids]

  def num_examples(self, split: str) -> int:
    """Examples of `split` that `examples(split)` yields (bad ones skipped)."""
    return len(self.index(split).keys)

  @property
  def skipped(self) -> dict[str, int]:
    """Skipped examples so far, reason -> count, summed over the splits used."""
    total = collections.Counter()
    for per_reason in self._skipped.values():
      total.update(per_reason)
    return {k: v for k, v in sorted(total.items()) if v}

  def skipped_in(self, split: str) -> dict[str, int]:
    """Skipped examples of one split, reason -> count."""
    return {k: v for k, v in sorted(self._skipped.get(split, {}).items()) if v}

  def set_skipped(self, split: str, reason: str, count: int) -> None:
    """Records how many examples of `split` are skipped for `reason` (idempotent: sets)."""
    self._skipped.setdefault(split, {})[reason] = int(count)

  def index(self, split: str) -> SplitIndex:
    """The split's keys and label ids (computed once; finds and handles bad data)."""
    self.check_split(split)
    if split not in self._indexes:
      self._indexes[split] = self._build_index(split)
    return self._indexes[split]

  def examples(self, split: str) -> tf.data.Dataset:
    """{'image': string [] (see read_image), 'label_ids': int32 [n], 'key': string []}."""
    raise NotImplementedError

  def read_image(self, image: tf.Tensor) -> tf.Tensor:
    """The `image` of an example -> encoded image bytes (TFDS: already bytes)."""
    return image

  def cache_key(self, split: str) -> dict[str, Any]:
    """Everything about the source that changes the examples of `split` (feature cache)."""
    return {"name": self.name, "skip_bad_examples": self.skip_bad_examples}

  def check_split(self, split: str) -> None:
    if split not in self.split_names:
      raise ValueError(f"Source {self.name!r} has no split {split!r}; expected one of "
                       f"{sorted(self.split_names)} ({self._split_help()}).")

  def _split_help(self) -> str:
    return ", ".join(f"{k}: {v}" for k, v in self.split_names.items())

  def _build_index(self, split: str) -> SplitIndex:
    raise NotImplementedError

  def _handle_problems(self, split: str, problems: Sequence[Problem], header: str) -> None:
    """Raises on bad data, or (skip mode) counts and logs it."""
    if not problems:
      return
    if not self.skip_bad_examples:
      raise BadDataError(format_problems(problems, header, SKIP_HINT), problems)
    counts = collections.Counter(p.reason for p in problems)
    for reason, count in counts.items():
      self.set_skipped(split, reason, count)
    logging.warning("%s", format_problems(
        problems, f"{header}: skipped (data.skip_bad_examples=True), "
        + ", ".join(f"{r}={c}" for r, c in sorted(counts.items()))))


# ---------------------------------------------------------------------------------------------
# TFDS sources.
# ---------------------------------------------------------------------------------------------


def _choice(config, field: str, allowed: Sequence[str]) -> str:
  """`config.<field>` as a str, refused unless it is one of `allowed` (named in the error)."""
  value = str(config[field])
  if value not in allowed:
    raise ValueError(f"data.{field} must be one of {tuple(allowed)}, got {value!r}.")
  return value


class TfdsSource(Source):
  """A TFDS dataset; subclasses name it and say where its labels and keys are."""

  tfds_name: str = ""
  # Archives that the offline (manual_dir) preparation needs, for the error message.
  manual_files: Sequence[str] = ()
  # What to do with examples without labels: "keep" or "skip" (counted as empty_labels).
  empty_images: str = "keep"

  def __init__(self, config):
    super().__init__(config)
    self.data_dir = config.data_dir or None
    self.manual_dir = config.manual_dir or None
    self._builder = tfds.builder(self.tfds_name, data_dir=self.data_dir)
    self._prepare()

  def _prepare(self) -> None:
    download_config = tfds.download.DownloadConfig(
        manual_dir=self.manual_dir or None, try_download_gcs=False)
    try:
      self._builder = tfds_prepare.prepare(
          lambda: tfds.builder(self.tfds_name, data_dir=self.data_dir), download_config,
          builder=self._builder)
    except Exception as e:  # Network, missing or wrong archives: add what to do offline.
      manual_dir = self.manual_dir or os.path.join(
          os.fspath(self._builder.data_dir_root), "downloads", "manual")
      raise RuntimeError(
          f"Could not prepare TFDS dataset {self.tfds_name!r} in data_dir "
          f"{os.fspath(self._builder.data_dir_root)!r}: {type(e).__name__}: {e}\n"
          f"Offline, put the original archives {', '.join(self.manual_files)} into "
          f"{manual_dir!r} (data.manual_dir), or point data.data_dir to a folder that "
          f"already holds the prepared dataset. See cnn_rnn_tf/data/sources.py.") from e

  @property
  def builder(self):
    return self._builder

  @property
  def label_names(self) -> list[str]:
    return list(self._label_feature().names)

  def _label_feature(self) -> tfds.features.ClassLabel:
    raise NotImplementedError

  def _label_decoding(self) -> dict[str, Any]:
    """The PartialDecoding spec of the label feature(s)."""
    raise NotImplementedError

  def _raw_label_ids(self, example) -> tf.Tensor:
    """int64 [n] label ids of a partially decoded example (may repeat)."""
    raise NotImplementedError

  def _key(self, example) -> tf.Tensor:
    if "image/filename" in self._builder.info.features:
      return example["image/filename"]
    return example["tfds_id"]

  def _read(self, split: str, with_image: bool, skip_empty: bool) -> tf.data.Dataset:
    spec = dict(self._label_decoding())
    decoders = None
    if "image/filename" in self._builder.info.features:
      spec["image/filename"] = True
    if with_image:
      spec["image"] = True
      decoders = {"image": tfds.decode.SkipDecoding()}  # encoded bytes; pipeline decodes
    ds = self._builder.as_dataset(
        split=self.split_names[split], shuffle_files=False,
        decoders=tfds.decode.PartialDecoding(spec, decoders=decoders),
        read_config=tfds.ReadConfig(add_tfds_id=True))

    def convert(example):
      ids = tf.unique(tf.reshape(self._raw_label_ids(example), [-1]))[0]
      out = {"label_ids": tf.cast(tf.sort(ids), tf.int32), "key": self._key(example)}
      if with_image:
        out["image"] = example["image"]
      return out

    ds = ds.map(convert, num_parallel_calls=options_lib.PARALLELISM)
    if skip_empty:
      ds = ds.filter(lambda x: tf.size(x["label_ids"]) > 0)
    return ds

  def examples(self, split: str) -> tf.data.Dataset:
    self.index(split)  # Counts the skipped examples.
    return self._read(split, with_image=True, skip_empty=self.empty_images == "skip")

  def _build_index(self, split: str) -> SplitIndex:
    keys, label_ids, where = [], [], []
    total = 0
    ds = self._read(split, with_image=False, skip_empty=False).ragged_batch(4096).with_options(
        options_lib.dataset_options())
    for batch in ds.as_numpy_iterator():
      ids = batch["label_ids"]
      ids = ids.to_list() if hasattr(ids, "to_list") else [list(r) for r in ids]
      for key, row in zip(batch["key"], ids):
        total += 1
        if not row and self.empty_images == "skip":
          continue
        key = key.decode("utf-8")
        keys.append(key)
        label_ids.append(tuple(int(i) for i in row))
        where.append(f"{self.tfds_name} {self.split_names[split]} example {key!r}")
    if self.empty_images == "skip":
      self.set_skipped(split, EMPTY_LABELS, total - len(keys))
      if total > len(keys):
        logging.info("%s %s: skipped %d of %d images without labels (%s).", self.name,
                     split, total - len(keys), total, self._empty_images_field())
    return SplitIndex(keys, label_ids, where)

  def _empty_images_field(self) -> str:
    return "data.coco_empty_images='skip'"

  def cache_key(self, split: str) -> dict[str, Any]:
    return {**super().cache_key(split), "tfds": self.tfds_name,
            "version": str(self._builder.version), "tfds_split": self.split_names[split],
            "empty_images": self.empty_images}


class Voc2007Source(TfdsSource):
  """PASCAL VOC 2007 (TFDS `voc/2007`); `data.voc_labels`: labels | labels_no_difficult."""

  name = "voc2007"
  tfds_name = "voc/2007"
  manual_files = ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar")
  split_names = {"trainval": "train+validation", "test": "test", "train": "train",
                 "validation": "validation"}
  LABEL_FIELDS = ("labels", "labels_no_difficult")

  def __init__(self, config):
    self.label_field = _choice(config, "voc_labels", self.LABEL_FIELDS)
    super().__init__(config)

  def _label_feature(self):
    return self._builder.info.features[self.label_field].feature

  def _label_decoding(self):
    return {self.label_field: True}

  def _raw_label_ids(self, example):
    return example[self.label_field]

  def cache_key(self, split):
    return {**super().cache_key(split), "voc_labels": self.label_field}


class Coco2014Source(TfdsSource):
  """MS-COCO 2014 (TFDS `coco/2014`); labels = distinct object classes of the image."""

  name = "coco2014"
  tfds_name = "coco/2014"
  manual_files = ("train2014.zip", "val2014.zip", "test2014.zip", "test2015.zip",
                  "annotations_trainval2014.zip", "image_info_test2014.zip",
                  "image_info_test2015.zip")
  split_names = {"train": "train", "validation": "validation", "val": "validation"}
  EMPTY_IMAGES = ("skip", "keep")

  def __init__(self, config):
    self.empty_images = _choice(config, "coco_empty_images", self.EMPTY_IMAGES)
    super().__init__(config)

  def _label_feature(self):
    return self._builder.info.features["objects"]["label"]

  def _label_decoding(self):
    return {"objects": {"label": True}}

  def _raw_label_ids(self, example):
    return example["objects"]["label"]


class SyntheticScenesSource(TfdsSource):
  """The project's synthetic multi-label scenes (TFDS builder `synthetic_scenes`)."""

  name = "synthetic_scenes"
  split_names = {"train": "train", "test": "test"}

  LABELS = ("objects", "scene")

  def __init__(self, config):
    importlib.import_module("cnn_rnn_tf.data.synthetic_scenes")  # registers the builder
    self.builder_config = str(config.synthetic_config)
    self.labels = _choice(config, "synthetic_labels", self.LABELS)
    seed = int(config.synthetic_seed)
    # Another seed is another set of images (a derived builder config, e.g. "default_seed1").
    self.tfds_name = f"synthetic_scenes/{self.builder_config}" + (f"/seed={seed}" if seed else "")
    super().__init__(config)

  def _prepare(self):
    # Generated locally: nothing to download, so no manual_dir advice on failure.
    self._builder = tfds_prepare.prepare(
        lambda: tfds.builder(self.tfds_name, data_dir=self.data_dir),
        tfds.download.DownloadConfig(try_download_gcs=False), builder=self._builder)

  def _label_feature(self):
    if self.labels == "scene":
      return self._builder.info.features["scene"]
    return self._builder.info.features["labels"].feature

  def _label_decoding(self):
    return {self.labels if self.labels == "scene" else "labels": True}

  def _raw_label_ids(self, example):
    return example["scene"] if self.labels == "scene" else example["labels"]

  def cache_key(self, split):
    return {**super().cache_key(split), "labels": self.labels}


# ---------------------------------------------------------------------------------------------
# CSV source.
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Row:
  line: int  # line number in the file (the header is line 1)
  image: str  # as written in the CSV: the key
  path: str  # absolute
  labels: tuple[str, ...]  # distinct, in order of appearance


class CsvSource(Source):
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
    self._parsed: dict[str, tuple[list[_Row], list[Problem]]] = {}
    self._label_names: list[str] | None = None
    self._paths: dict[str, list[str]] = {}  # split -> absolute image paths of the index

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
        raise BadDataError(f"{path}: no labels at all in column {self.labels_column!r}.")
    return self._label_names

  def _parse(self, path: str) -> tuple[list[_Row], list[Problem]]:
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
        raise BadDataError(f"{path} line {line}: header: {error}")
      if not "".join(fields).strip():
        continue  # blank lines before the header
      header = [h.strip() for h in fields]
      break
    if header is None:
      raise BadDataError(f"{path}: empty file; expected a header with columns "
                         f"{self.image_column!r} and {self.labels_column!r}.")
    for column, field in ((self.image_column, "data.image_column"),
                          (self.labels_column, "data.labels_column")):
      if column not in header:
        raise BadDataError(f"{path} line {line}: no column {column!r} ({field}); "
                           f"the header has {header}.")
    image_col, labels_col = header.index(self.image_column), header.index(self.labels_column)
    for line, fields, error in lines:
      where = f"{path} line {line}"
      if error is not None:
        problems.append(Problem(MALFORMED_ROW, where, error))
        continue
      if not fields or (len(fields) == 1 and not fields[0].strip()):
        continue  # A blank line is not an example.
      if len(fields) != len(header):
        problems.append(Problem(MALFORMED_ROW, where,
                                f"{len(fields)} fields, expected {len(header)} ({header}): "
                                f"{fields!r}"))
        continue
      image = fields[image_col].strip()
      if not image:
        problems.append(Problem(MALFORMED_ROW, where,
                                f"empty image path in column {self.image_column!r}"))
        continue
      try:
        labels = tuple(dict.fromkeys(
            name for name in (vocab_lib.clean_label(s)
                              for s in fields[labels_col].split(self.label_separator))
            if name))
      except vocab_lib.BadLabelError as e:
        problems.append(Problem(BAD_LABEL, where, f"image {image!r}, column "
                                f"{self.labels_column!r}: {e}"))
        continue
      if not labels and self.empty_labels == "error":
        problems.append(Problem(
            EMPTY_LABELS, where,
            f"image {image!r} has no labels in column {self.labels_column!r} "
            "(data.csv_empty_labels='keep' allows that)"))
        continue
      rows.append(_Row(line, image, os.path.join(folder, image), labels))
    self._parsed[path] = (rows, problems)
    return rows, problems

  def _build_index(self, split: str) -> SplitIndex:
    path = self.csv_path(split)
    rows, problems = self._parse(path)
    problems = list(problems)
    known = {n: i for i, n in enumerate(self.label_names)}
    good = []
    for row in rows:
      unknown = [label for label in row.labels if label not in known]
      if unknown:
        problems.append(Problem(
            UNKNOWN_LABEL, f"{path} line {row.line}",
            f"image {row.image!r}: unknown label(s) {unknown} (not in the labels of "
            f"{self.train_csv or self.eval_csv!r})"))
      elif not os.path.isfile(row.path):
        problems.append(Problem(MISSING_FILE, f"{path} line {row.line}",
                                f"image {row.image!r} does not exist ({row.path})"))
      else:
        good.append(row)
    if problems and not self.skip_bad_examples:
      # Fail fast: the image check below can take a while, and these errors stand anyway.
      self._handle_problems(split, problems, f"{path}")
    undecodable = _check_images([r.path for r in good], self.check_images, self.max_pixels)
    kept = []
    for i, row in enumerate(good):
      if i in undecodable:
        problems.append(Problem(UNDECODABLE_IMAGE, f"{path} line {row.line}",
                                f"image {row.image!r} ({row.path}) cannot be decoded: "
                                f"{undecodable[i]}"))
      else:
        kept.append(row)
    problems.sort(key=lambda p: int(p.where.rsplit(" ", 1)[1]))
    self._handle_problems(split, problems, f"{path}")
    if not kept:
      raise BadDataError(f"{path}: no usable example (skipped: {self.skipped_in(split)}).")
    self._paths[split] = [r.path for r in kept]
    return SplitIndex(
        keys=[r.image for r in kept],
        label_ids=[tuple(sorted(known[n] for n in r.labels)) for r in kept],
        where=[f"{path} line {r.line} (image {r.image!r})" for r in kept])

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


def _csv_lines(path: str, encoding: str):
  """(line number, fields or None, error or None) per physical line of a CSV file.

  Lines are split on b"\n" (a trailing "\r" is dropped), decoded with `encoding` (a UTF-8
  BOM at the start is skipped) and parsed alone with `csv.reader(strict=True)`; a line that
  does not decode or parse yields its error text instead of fields.
  """
  with open(path, "rb") as f:
    for number, raw in enumerate(f, start=1):
      raw = raw.rstrip(b"\n")
      raw = raw[:-1] if raw.endswith(b"\r") else raw
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
        yield number, None, f"CSV quoting fault ({e}): {text!r}"
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
        message = images_lib.error_message(e)
        bad[i] = message[len(p) + 2:] if message.startswith(p + ": ") else message
  return bad


SOURCES = {
    "voc2007": Voc2007Source,
    "coco2014": Coco2014Source,
    "csv": CsvSource,
    "synthetic_scenes": SyntheticScenesSource,
}


def get_source(config) -> Source:
  """The source that `config.source` names, configured by the rest of `config` (config.data)."""
  name = str(config.source)
  if name not in SOURCES:
    raise ValueError(f"Unknown data.source {name!r}; expected one of {sorted(SOURCES)}.")
  return SOURCES[name](config)
