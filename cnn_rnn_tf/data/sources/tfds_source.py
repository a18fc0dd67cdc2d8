"""The common base of the TFDS sources (voc2007, coco2014, synthetic_scenes): reading a TFDS
split as undecoded examples, and preparing the dataset offline.

    class Voc2007Source(tfds_source.TfdsSource):
      name, tfds_name = "voc2007", "voc/2007"
      def _label_feature(self): ...     # the ClassLabel feature: label_names
      def _label_decoding(self): ...    # the PartialDecoding spec of the label field(s)
      def _raw_label_ids(self, example): ...  # int64 [n], may repeat

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

import os
from typing import Any, Sequence

from absl import logging
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_rnn_tf.data import options as options_lib
from cnn_rnn_tf.data import tfds_prepare
from cnn_rnn_tf.data.sources import base


def choice(config, field: str, allowed: Sequence[str]) -> str:
  """`config.<field>` as a str, refused unless it is one of `allowed` (named in the error)."""
  value = str(config[field])
  if value not in allowed:
    raise ValueError(f"data.{field} must be one of {tuple(allowed)}, got {value!r}.")
  return value


class TfdsSource(base.Source):
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
          f"already holds the prepared dataset. See cnn_rnn_tf/data/sources/tfds_source.py.") from e

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

  def _build_index(self, split: str) -> base.SplitIndex:
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
      self.set_skipped(split, base.EMPTY_LABELS, total - len(keys))
      if total > len(keys):
        logging.info("%s %s: skipped %d of %d images without labels (%s).", self.name,
                     split, total - len(keys), total, self._empty_images_field())
    return base.SplitIndex(keys, label_ids, where)

  def _empty_images_field(self) -> str:
    return "data.coco_empty_images='skip'"

  def cache_key(self, split: str) -> dict[str, Any]:
    return {**super().cache_key(split), "tfds": self.tfds_name,
            "version": str(self._builder.version), "tfds_split": self.split_names[split],
            "empty_images": self.empty_images}
