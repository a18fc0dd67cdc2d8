"""MS-COCO 2014 (TFDS `coco/2014`): the paper's COCO source (`data.source="coco2014"`).

    source = sources.get_source(config.data)   # config.data.source = "coco2014"
    source.label_names   # COCO's 80 category names, in TFDS order (category id order)

Splits: "train" (82783), "validation" (40504; the paper's evaluation split; "val" also
accepted). TFDS "test" has no annotations and is refused.

An image's labels are the distinct classes of its objects (crowd regions included). Images
without any object annotation (about 1% of train and of val) follow `data.coco_empty_images`:
"skip" (default; left out and counted in `source.skipped["empty_labels"]`, whatever
`skip_bad_examples` says: it is a policy, not an error) or "keep" (empty label set, target END).
Label names are COCO's 80 category names, in TFDS order (category id order).

Offline preparation (seven archives in `data.manual_dir`, the two test ones included): see
`tfds_source.py`.
"""

from __future__ import annotations

from cnn_rnn_tf.data.sources import tfds_source


class Coco2014Source(tfds_source.TfdsSource):
  """MS-COCO 2014 (TFDS `coco/2014`); labels = distinct object classes of the image."""

  name = "coco2014"
  tfds_name = "coco/2014"
  manual_files = ("train2014.zip", "val2014.zip", "test2014.zip", "test2015.zip",
                  "annotations_trainval2014.zip", "image_info_test2014.zip",
                  "image_info_test2015.zip")
  split_names = {"train": "train", "validation": "validation", "val": "validation"}
  EMPTY_IMAGES = ("skip", "keep")

  def __init__(self, config):
    self.empty_images = tfds_source.choice(config, "coco_empty_images", self.EMPTY_IMAGES)
    super().__init__(config)

  def _label_feature(self):
    return self._builder.info.features["objects"]["label"]

  def _label_decoding(self):
    return {"objects": {"label": True}}

  def _raw_label_ids(self, example):
    return example["objects"]["label"]
