"""The one input builder of training, evaluation and benchmarks: a config and a split -> batches.

    from cnn_rnn_tf import data as data_lib
    cache_dir = workdir.feature_cache_dir(w, config.data.cache_dir)
    ds = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=cache_dir,
                              start_step=step)
    # {'features': float32 [B, D]  (or 'image': float32 [B, S, S, 3] in 0..255),
    #  'labels': float32 [B, K] multi-hot, 'key': string [B]}

Images or features (`uses_feature_cache(config)`): the paper's frozen backbone
(model.train_backbone=False) with data.cache_features=True trains and evaluates on the
backbone's features, extracted once per split into `cache_dir` (feature_cache.py); otherwise
the batches hold decoded, resized images (pipeline.py).

training=True: repeated, shuffled with config.seed, positioned after `start_step` batches,
last partial batch dropped, data.augment applied (images), data.deterministic honoured.
training=False: one pass in the source's order, the last partial batch kept, never augmented.

Parts of a split (`part`): "all" (every example), "fit" (all but the calibration part) and
"calibration": a deterministic fraction `data.calibration_fraction` of the examples, those
whose key hashes (`tf.strings.to_hash_bucket_fast`, a fingerprint: the same on every machine
and run) into the lowest buckets (`in_calibration_part`). The trainer reads the "fit" part of
`data.train_split`, for both heads alike (the same training data for the CNN-RNN and BCE, so
they stay comparable); the bce head's thresholds are fitted on the "calibration" part
(`calibration.py`). The part is chosen from the stream of the split, after the feature cache:
the cache holds the whole split, and one cache serves every fraction.
"""

from __future__ import annotations

import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import feature_cache
from cnn_rnn_tf.data import pipeline
from cnn_rnn_tf.data import sources as sources_lib

ALL, FIT, CALIBRATION = "all", "fit", "calibration"


class EmptyPartError(ValueError):
  """A part of a split ("calibration", "fit") holds no example (a small split)."""
PARTS = (ALL, FIT, CALIBRATION)
_HASH_BUCKETS = 1_000_000


def in_calibration_part(keys, fraction: float) -> tf.Tensor:
  """bool, shaped like `keys` (string): the example is in the calibration part."""
  if not 0 <= fraction < 1:
    raise ValueError(f"data.calibration_fraction must be in [0, 1), got {fraction!r}.")
  buckets = tf.strings.to_hash_bucket_fast(keys, _HASH_BUCKETS)
  return buckets < int(round(fraction * _HASH_BUCKETS))


def part_filter(part: str, fraction: float):
  """A predicate on a string key tensor for `part`, or None for every example."""
  if part not in PARTS:
    raise ValueError(f"part must be one of {PARTS}, got {part!r}.")
  if part == ALL:
    return None
  if part == CALIBRATION:
    return lambda key: in_calibration_part(key, fraction)
  return lambda key: tf.logical_not(in_calibration_part(key, fraction))


def part_size(source: sources_lib.Source, split: str, vocab: vocab_lib.LabelVocab,
              part: str, fraction: float) -> int:
  """Examples of `part` of the split, as the pipeline yields them (labels in `vocab`)."""
  index = source.index(split)
  vocab_names = set(vocab.names)
  keys = [k for k, ids in zip(index.keys, index.label_ids)
          if all(source.label_names[i] in vocab_names for i in ids)]
  keep = part_filter(part, fraction)
  if keep is None or not keys:
    return len(keys)
  return int(tf.reduce_sum(tf.cast(keep(tf.constant(keys, tf.string)), tf.int32)))


def uses_feature_cache(config) -> bool:
  """The paper's frozen setting: the head trains and evaluates on cached backbone features."""
  return not config.model.train_backbone and bool(config.data.cache_features)


def dataset_for(config, split: str, vocab: vocab_lib.LabelVocab, *, training: bool,
                cache_dir: str | None, source: sources_lib.Source | None = None,
                start_step: int = 0, batch_size: int | None = None,
                part: str = ALL) -> tf.data.Dataset:
  """Batches of one split as the config says (see the module docstring).

  Args:
    config: the full config (data.*, model.*, train.batch_size, seed).
    split: a split name of the source (config.data.train_split, config.data.eval_split, ...).
    vocab: the label vocabulary; `labels` are multi-hot in its ids.
    training: the training stream (repeat, shuffle, drop remainder) or one ordered pass.
    cache_dir: where feature caches go (workdir.feature_cache_dir(workdir,
      config.data.cache_dir)); only read when `uses_feature_cache(config)`.
    source: the data source, if the caller has one (its skip counts are then updated);
      default `sources.get_source(config.data)`.
    start_step: batches of the stream to skip (resume); training only.
    batch_size: default config.train.batch_size (global).
    part: "all", "fit" (without the calibration part) or "calibration" (see the module
      docstring); with data.calibration_fraction = 0, "fit" is the whole split.

  Returns:
    {'features' or 'image', 'labels', 'key'} batches.
  """
  source = source if source is not None else sources_lib.get_source(config.data)
  batch_size = int(batch_size or config.train.batch_size)
  if not training and start_step:
    raise ValueError(f"start_step={start_step} is only for the training stream "
                     "(training=True); evaluation reads the split once from its start.")
  fraction = float(config.data.get("calibration_fraction", 0.0) or 0.0)
  subset = None
  if part != ALL:
    keep = part_filter(part, fraction)
    if fraction == 0 and part == CALIBRATION:
      raise ValueError("part='calibration' needs data.calibration_fraction > 0, got 0.")
    if fraction > 0:
      size = part_size(source, split, vocab, part, fraction)
      if size == 0:
        raise EmptyPartError(
            f"The {part!r} part of split {split!r} of {source.name} is empty "
            f"(data.calibration_fraction={fraction} of {source.num_examples(split)} "
            "examples); change data.calibration_fraction.")
      subset = pipeline.Subset(keep, size)
  if uses_feature_cache(config):
    if not cache_dir:
      raise ValueError("dataset_for needs cache_dir with a frozen backbone and "
                       "data.cache_features=True (e.g. workdir.feature_cache_dir(w, "
                       "config.data.cache_dir)).")
    path = feature_cache.build(
        source, split, vocab, config.model.backbone, config.model.backbone_weights,
        config.model.image_size, cache_dir=cache_dir, precision=config.data.precision,
        batch_size=batch_size, max_pixels=config.data.max_image_pixels,
        filters=config.model.small_cnn_filters)
    return feature_cache.feature_dataset(
        path, batch_size=batch_size, training=training, seed=config.seed, repeat=training,
        start_step=start_step, drop_remainder=training, subset=subset)
  return pipeline.image_dataset(
      source, split, vocab,
      image_size=backbones.backbone_image_size(config.model.backbone, config.model.image_size),
      batch_size=batch_size, training=training, seed=config.seed,
      augment=bool(config.data.augment) and training, repeat=training, start_step=start_step,
      drop_remainder=training, shuffle_buffer=config.data.shuffle_buffer,
      deterministic=bool(config.data.deterministic) or not training,
      max_pixels=config.data.max_image_pixels, subset=subset)
