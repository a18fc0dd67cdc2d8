"""The project's synthetic multi-label scenes as a source (`data.source="synthetic_scenes"`).

    source = sources.get_source(config.data)   # config.data.source = "synthetic_scenes"

Splits: "train", "test".

The project's own TFDS builder (`cnn_rnn_tf.data.synthetic_scenes`), builder config
`data.synthetic_config` ("default" 64x64, "small" 32x32), drawn with `data.synthetic_seed`
(another seed: other images, a derived builder config such as `default_seed1`). Generated
into `data.data_dir` on first use, offline. `data.synthetic_labels`: "objects" (the 20
labels) or "scene" (the scene type only, one label per image: another task on other images,
for a backbone that never saw the object labels, the demo's transfer protocol T).
"""

from __future__ import annotations

import importlib

import tensorflow_datasets as tfds

from cnn_rnn_tf.data import tfds_prepare
from cnn_rnn_tf.data.sources import tfds_source


class SyntheticScenesSource(tfds_source.TfdsSource):
  """The project's synthetic multi-label scenes (TFDS builder `synthetic_scenes`)."""

  name = "synthetic_scenes"
  split_names = {"train": "train", "test": "test"}

  LABELS = ("objects", "scene")

  def __init__(self, config):
    importlib.import_module("cnn_rnn_tf.data.synthetic_scenes")  # registers the builder
    self.builder_config = str(config.synthetic_config)
    self.labels = tfds_source.choice(config, "synthetic_labels", self.LABELS)
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
