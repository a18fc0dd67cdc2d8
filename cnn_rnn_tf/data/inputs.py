"""The one input builder of training, evaluation and benchmarks: a config and a split -> batches.

    from cnn_rnn_tf import data as data_lib
    ds = data_lib.dataset_for(config, "train", vocab, training=True,
                              cache_dir=workdir.feature_cache_dir(config, w), start_step=step)
    # {'features': float32 [B, D]  (or 'image': float32 [B, S, S, 3] in 0..255),
    #  'labels': float32 [B, K] multi-hot, 'key': string [B]}

Images or features (`uses_feature_cache(config)`): the paper's frozen backbone
(model.train_backbone=False) with data.cache_features=True trains and evaluates on the
backbone's features, extracted once per split into `cache_dir` (feature_cache.py); otherwise
the batches hold decoded, resized images (pipeline.py).

training=True: repeated, shuffled with config.seed, positioned after `start_step` batches,
last partial batch dropped, data.augment applied (images), data.deterministic honoured.
training=False: one pass in the source's order, the last partial batch kept, never augmented.
"""

from __future__ import annotations

import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import feature_cache
from cnn_rnn_tf.data import pipeline
from cnn_rnn_tf.data import sources as sources_lib


def uses_feature_cache(config) -> bool:
  """The paper's frozen setting: the head trains and evaluates on cached backbone features."""
  return not config.model.train_backbone and bool(config.data.cache_features)


def dataset_for(config, split: str, vocab: vocab_lib.LabelVocab, *, training: bool,
                cache_dir: str | None, source: sources_lib.Source | None = None,
                start_step: int = 0, batch_size: int | None = None) -> tf.data.Dataset:
  """Batches of one split as the config says (see the module docstring).

  Args:
    config: the full config (data.*, model.*, train.batch_size, seed).
    split: a split name of the source (config.data.train_split, config.data.eval_split, ...).
    vocab: the label vocabulary; `labels` are multi-hot in its ids.
    training: the training stream (repeat, shuffle, drop remainder) or one ordered pass.
    cache_dir: where feature caches go (workdir.feature_cache_dir(config, workdir)); only
      read when `uses_feature_cache(config)`.
    source: the data source, if the caller has one (its skip counts are then updated);
      default `sources.get_source(config.data)`.
    start_step: batches of the stream to skip (resume); training only.
    batch_size: default config.train.batch_size (global).

  Returns:
    {'features' or 'image', 'labels', 'key'} batches.
  """
  source = source if source is not None else sources_lib.get_source(config.data)
  batch_size = int(batch_size or config.train.batch_size)
  if not training and start_step:
    raise ValueError(f"start_step={start_step} is only for the training stream "
                     "(training=True); evaluation reads the split once from its start.")
  if uses_feature_cache(config):
    if not cache_dir:
      raise ValueError("dataset_for needs cache_dir with a frozen backbone and "
                       "data.cache_features=True (e.g. workdir.feature_cache_dir(config, w)).")
    path = feature_cache.build(
        source, split, vocab, config.model.backbone, config.model.backbone_weights,
        config.model.image_size, cache_dir=cache_dir, precision=config.data.precision,
        batch_size=batch_size, max_pixels=config.data.max_image_pixels)
    return feature_cache.feature_dataset(
        path, batch_size=batch_size, training=training, seed=config.seed, repeat=training,
        start_step=start_step, drop_remainder=training)
  return pipeline.image_dataset(
      source, split, vocab,
      image_size=backbones.backbone_image_size(config.model.backbone, config.model.image_size),
      batch_size=batch_size, training=training, seed=config.seed,
      augment=bool(config.data.augment) and training, repeat=training, start_step=start_step,
      drop_remainder=training, shuffle_buffer=config.data.shuffle_buffer,
      deterministic=bool(config.data.deterministic) or not training,
      max_pixels=config.data.max_image_pixels)
