"""PASCAL VOC 2007 (TFDS `voc/2007`): the paper's VOC source (`data.source="voc2007"`).

    source = sources.get_source(config.data)   # config.data.source = "voc2007"
    source.label_names   # the 20 VOC classes, in TFDS order
    source.difficult_mask("test", keys, vocab.names)   # bool [N, K]: difficult-only classes

Splits: "trainval" -> TFDS "train+validation" (5011 images; the paper trains on it), "test"
-> "test" (4952, the paper evaluates on it); "train" and "validation" are the TFDS halves of
trainval.

"Difficult" objects. A class whose objects in an image are all marked difficult (TFDS: in
`labels` but not in `labels_no_difficult`) is a *difficult-only* entry of that image. Two
separate choices say what such an entry is:

- Training targets, `data.voc_labels` (the TFDS label field the examples carry). Default
  "labels": a difficult-only class is a positive (every class with an annotated object), as
  ML-GCN and most multi-label code train. "labels_no_difficult": it is not a target; an image
  whose objects are all difficult then has an empty label set and is kept (its target is
  just END).
- Evaluation, `data.voc_difficult` (`score_difficult`; named in metrics.json as
  "voc_difficult"). Default "ignore": the VOC devkit's rule (VOCevalcls: ground truth 0 of
  {1, 0, -1}), also that of ML-GCN's evaluation: the entry is left out of that class's AP and
  of every other metric (metrics.py's module docstring). "positive" counts it as a
  ground-truth label, "negative" as none (the conventions of `labels` and
  `labels_no_difficult`, whatever the training targets are).

Offline preparation (the archives VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar in
`data.manual_dir`): see `tfds_source.py`.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import tensorflow_datasets as tfds

from cnn_rnn_tf.data import options as options_lib
from cnn_rnn_tf.data.sources import tfds_source

# data.voc_difficult -> what a difficult-only (image, class) entry is in evaluation.
DIFFICULT_CONVENTIONS = {
    "ignore": "left out of the class's AP and of every count (the VOC devkit's rule)",
    "positive": "a ground-truth label (the TFDS field `labels`)",
    "negative": "not a ground-truth label (the TFDS field `labels_no_difficult`)",
}


def score_difficult(y_true: np.ndarray, difficult: np.ndarray,
                    convention: str) -> tuple[np.ndarray, np.ndarray | None]:
  """(ground truth, ignore mask or None) that evaluation scores, from the examples' labels
  y_true bool [N, K] and the difficult-only entries `difficult` bool [N, K]."""
  if convention not in DIFFICULT_CONVENTIONS:
    raise ValueError(f"data.voc_difficult must be one of {tuple(DIFFICULT_CONVENTIONS)}, "
                     f"got {convention!r}.")
  y_true, difficult = np.asarray(y_true, bool), np.asarray(difficult, bool)
  if convention == "ignore":
    return y_true & ~difficult, difficult
  return (y_true | difficult if convention == "positive" else y_true & ~difficult), None


def eval_labels(pred: Mapping[str, np.ndarray], convention: str) -> tuple[np.ndarray,
                                                                         np.ndarray | None, dict]:
  """(y_true, ignore, what metrics.json records) of `predict_models`' output: the VOC
  convention (data.voc_difficult) applied when `pred` has the difficult-only entries
  ("difficult"), else as is."""
  if "difficult" not in pred:
    return pred["y_true"], None, {}
  convention = str(convention)
  y_true, ignore = score_difficult(pred["y_true"], pred["difficult"], convention)
  return y_true, ignore, {"voc_difficult": convention,
                          "difficult_entries": int(np.sum(pred["difficult"]))}


class Voc2007Source(tfds_source.TfdsSource):
  """PASCAL VOC 2007 (TFDS `voc/2007`); `data.voc_labels`: labels | labels_no_difficult;
  `data.voc_difficult`: ignore | positive | negative."""

  name = "voc2007"
  tfds_name = "voc/2007"
  manual_files = ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar")
  split_names = {"trainval": "train+validation", "test": "test", "train": "train",
                 "validation": "validation"}
  LABEL_FIELDS = ("labels", "labels_no_difficult")

  def __init__(self, config):
    self.label_field = tfds_source.choice(config, "voc_labels", self.LABEL_FIELDS)
    self.difficult = tfds_source.choice(config, "voc_difficult", tuple(DIFFICULT_CONVENTIONS))
    self._difficult_ids: dict[str, dict[str, tuple[int, ...]]] = {}
    super().__init__(config)

  def _label_feature(self):
    return self._builder.info.features[self.label_field].feature

  def _label_decoding(self):
    return {self.label_field: True}

  def _raw_label_ids(self, example):
    return example[self.label_field]

  def difficult_label_ids(self, split: str) -> dict[str, tuple[int, ...]]:
    """key -> the ids (into label_names) of its difficult-only classes (images with none are
    left out)."""
    self.check_split(split)
    if split not in self._difficult_ids:
      spec = {"labels": True, "labels_no_difficult": True, "image/filename": True}
      ds = self._builder.as_dataset(
          split=self.split_names[split], shuffle_files=False,
          decoders=tfds.decode.PartialDecoding(spec),
          read_config=tfds.ReadConfig(add_tfds_id=True))
      ds = ds.map(lambda ex: {"key": self._key(ex), "all": ex["labels"],
                              "easy": ex["labels_no_difficult"]})
      found = {}
      for batch in ds.ragged_batch(4096).with_options(
          options_lib.dataset_options()).as_numpy_iterator():
        for key, every, easy in zip(batch["key"], batch["all"], batch["easy"]):
          only = sorted(set(int(i) for i in every) - set(int(i) for i in easy))
          if only:
            found[key.decode("utf-8")] = tuple(only)
      self._difficult_ids[split] = found
    return self._difficult_ids[split]

  def difficult_mask(self, split: str, keys, names) -> np.ndarray:
    """bool [N, K]: [n, k] when class names[k] is difficult-only in the image keys[n]."""
    by_key = self.difficult_label_ids(split)
    column = {name: k for k, name in enumerate(names)}
    to_column = [column.get(name, -1) for name in self.label_names]  # -1: not in `names`
    mask = np.zeros((len(keys), len(names)), dtype=bool)
    for n, key in enumerate(keys):
      key = key.decode("utf-8") if isinstance(key, bytes) else str(key)
      for i in by_key.get(key, ()):
        if to_column[i] >= 0:
          mask[n, to_column[i]] = True
    return mask

  def cache_key(self, split):
    return {**super().cache_key(split), "voc_labels": self.label_field}
