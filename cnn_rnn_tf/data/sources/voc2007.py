"""PASCAL VOC 2007 (TFDS `voc/2007`): the paper's VOC source (`data.source="voc2007"`).

    source = sources.get_source(config.data)   # config.data.source = "voc2007"
    source.label_names   # the 20 VOC classes, in TFDS order

Splits: "trainval" -> TFDS "train+validation" (5011 images; the paper trains on it), "test"
-> "test" (4952, the paper evaluates on it); "train" and "validation" are the TFDS halves of
trainval.

`data.voc_labels` picks the TFDS label field. Default "labels": every class with at least one
annotated object, "difficult" objects included; the paper does not say, and this is what most
multi-label code trains on. "labels_no_difficult" leaves out classes whose only objects are
difficult; an image whose objects are all difficult then has an empty label set, and is kept
(its target is just END; it is a negative for every class in evaluation).

Offline preparation (the archives VOCtrainval_06-Nov-2007.tar and VOCtest_06-Nov-2007.tar in
`data.manual_dir`): see `tfds_source.py`.
"""

from __future__ import annotations

from cnn_rnn_tf.data.sources import tfds_source


class Voc2007Source(tfds_source.TfdsSource):
  """PASCAL VOC 2007 (TFDS `voc/2007`); `data.voc_labels`: labels | labels_no_difficult."""

  name = "voc2007"
  tfds_name = "voc/2007"
  manual_files = ("VOCtrainval_06-Nov-2007.tar", "VOCtest_06-Nov-2007.tar")
  split_names = {"trainval": "train+validation", "test": "test", "train": "train",
                 "validation": "validation"}
  LABEL_FIELDS = ("labels", "labels_no_difficult")

  def __init__(self, config):
    self.label_field = tfds_source.choice(config, "voc_labels", self.LABEL_FIELDS)
    super().__init__(config)

  def _label_feature(self):
    return self._builder.info.features[self.label_field].feature

  def _label_decoding(self):
    return {self.label_field: True}

  def _raw_label_ids(self, example):
    return example[self.label_field]

  def cache_key(self, split):
    return {**super().cache_key(split), "voc_labels": self.label_field}
