"""tf.data image pipeline: a source's split -> batches of resized RGB images and multi-hot labels.

    ds = image_dataset(source, "trainval", vocab, image_size=224, batch_size=32,
                       training=True, seed=0, augment=False, start_step=0)
    # {'image': float32 [B, S, S, 3] RGB in 0..255, 'labels': float32 [B, K], 'key': string [B]}

The backbone model does its own preprocessing (see cnn_rnn_tf/backbones.py); this pipeline
only decodes and resizes with `images.decode_rgb` and `images.resize` (JPEG, PNG, GIF, BMP,
still WebP; grayscale, RGBA and palette become RGB; at most `max_pixels` pixels, checked on
the header before decoding; bilinear to S x S, aspect ratio not kept: the functions the
exported model uses too, so training and serving see the same pixels) and, with `augment`,
flips and crops. An image that fails names its example key in the error.

Order of the operations, and why:

    source.examples(split)        undecoded images (bytes or paths), label ids, keys
    -> labels to vocab multi-hot  cheap, before the shuffle buffer
    -> training: shuffle + repeat (`training_stream`), then skip start_step * batch_size
    -> read + decode + resize (+ augment)   parallel; only what is actually used is decoded
    -> batch -> prefetch

Training (`training=True`): epoch e is the split shuffled with a seed made from (`seed`, e);
epochs follow one another forever (`repeat`). `start_step=N` drops exactly the first N *
batch_size examples of that stream *before* decoding; whole epochs are not even read, so
resuming at step N gives the same data position as never having stopped. The order depends
on `seed` only (not on TensorFlow's global seed). `deterministic=False` lets the parallel
decoding hand out images in the order they finish (faster; an image may then land in a
neighbouring batch; which examples a resume skips is unaffected).

Evaluation (`training=False`): the source's order, no shuffle, one pass, the last partial
batch kept.

Distribution: the auto-shard policy is DATA, so `MultiWorkerMirroredStrategy` can shard it
(every worker reads the whole stream and keeps its share of the batches).

Labels of the data that `vocab` lacks (a vocab from another run): `BadDataError` naming the
example, or, with the source's `skip_bad_examples`, skipped and counted in
`source.skipped["label_not_in_vocab"]`.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Callable, NamedTuple

from absl import logging
import tensorflow as tf

from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import options as options_lib
from cnn_rnn_tf.data import sources as sources_lib

# Changes to how images become pixels change the features: the feature cache key has this.
# (images.decode_rgb + images.resize give the same pixels as the v1 decode_image + float
# resize did, tests/test_images.py.) v2: JPEGs are turned upright by their EXIF orientation
# (images.orient), so features cached before then are rebuilt.
PREPROCESSING = "decode_image-rgb-exif_orientation/backbones.resize_images/v2"
# Graph-level seed of the per-epoch shuffles (see training_stream).
_GRAPH_SEED = 20160627
# Augmentation: resize to S * 8 / 7 (256 for 224), then a random S x S crop and flip.
_AUGMENT_RESIZE = 8 / 7


class Subset(NamedTuple):
  """The examples of a split to keep: `keep(key)` -> bool tensor, and how many it keeps."""
  keep: Callable[[tf.Tensor], tf.Tensor]
  num_examples: int


@dataclasses.dataclass(frozen=True)
class ImageDatasetOptions:
  """How `image_dataset` makes batches of a split; the fields are the keywords of its call.

  Args:
    image_size: S, the side of the square output images.
    batch_size: examples per batch.
    training: shuffle (and by default repeat and drop the remainder).
    seed: shuffle and augmentation seed; None: a different order every time.
    augment: random crop and horizontal flip (training only).
    repeat: loop over the split forever; default: `training`.
    start_step: skip the first start_step * batch_size examples of the stream, undecoded.
    drop_remainder: drop the last partial batch; default: `training`.
    shuffle_buffer: size of the shuffle buffer (of undecoded images).
    deterministic: False lets parallel decoding reorder elements a little (faster).
    max_pixels: an image whose header gives more pixels fails before decoding, naming its
      key (config data.max_image_pixels; the CSV check finds such files up front).
    subset: only the examples whose key it keeps (before shuffling, so the stream is that
      of a split of `subset.num_examples` examples).
  """
  image_size: int
  batch_size: int
  training: bool
  seed: int | None = 0
  augment: bool = False
  repeat: bool | None = None
  start_step: int = 0
  drop_remainder: bool | None = None
  shuffle_buffer: int = 2048
  deterministic: bool = True
  max_pixels: int | None = images_lib.DEFAULT_MAX_PIXELS
  subset: Subset | None = None


def image_dataset(source: sources_lib.Source, split: str, vocab: vocab_lib.LabelVocab,
                  options: ImageDatasetOptions | None = None, **fields) -> tf.data.Dataset:
  """Batches of decoded images of one split (see the module docstring).

      image_dataset(source, "test", vocab, image_size=224, batch_size=32, training=False)
      image_dataset(source, "test", vocab, ImageDatasetOptions(224, 32, training=False))

  Args:
    source: a `sources.Source`.
    split: a split name of the source (e.g. "trainval", "test").
    vocab: the label vocabulary; `labels` are multi-hot in its ids.
    options: an `ImageDatasetOptions`; or give its fields as keywords (`fields`), which
      also override the fields of `options`.

  Returns:
    {'image': float32 [B, S, S, 3] in 0..255, 'labels': float32 [B, K], 'key': string [B]}.
  """
  o = (ImageDatasetOptions(**fields) if options is None
       else dataclasses.replace(options, **fields))
  if o.image_size <= 0 or o.batch_size <= 0:
    raise ValueError(f"image_size and batch_size must be positive, got {o.image_size}, "
                     f"{o.batch_size}.")
  repeat = o.training if o.repeat is None else o.repeat
  drop_remainder = o.training if o.drop_remainder is None else o.drop_remainder
  ds, num_examples = labeled_examples(source, split, vocab)
  if o.subset is not None:
    ds = ds.filter(lambda x: o.subset.keep(x["key"]))
    num_examples = o.subset.num_examples
  skip = int(o.start_step) * o.batch_size
  if o.training:
    ds = training_stream(ds, num_examples=num_examples, seed=o.seed,
                         shuffle_buffer=o.shuffle_buffer, repeat=repeat, skip=skip)
  else:
    ds = ds.repeat() if repeat else ds
    ds = ds.skip(skip) if skip else ds
  ds = ds.enumerate(start=skip)  # the element's position in the stream: augmentation seed
  return batch_and_finish(ds, o.batch_size, drop_remainder, o.deterministic,
                          map_fn=_decoder(source, o))


def _decoder(source: sources_lib.Source, o: ImageDatasetOptions) -> Callable:
  """(position in the stream, example) -> the example with its image decoded and resized."""
  seed = random.randrange(2**31) if o.seed is None else o.seed
  augment = o.augment and o.training

  def decode(i, example):
    encoded = source.read_image(example["image"])
    image = images_lib.decode_rgb(encoded, max_pixels=o.max_pixels, name=example["key"])
    if augment:
      image = augment_image(image, o.image_size, tf.stack([tf.cast(seed, tf.int64), i]))
    else:
      image = images_lib.resize(image, o.image_size)
    return {"image": image, "labels": example["labels"], "key": example["key"]}

  return decode


def labeled_examples(source: sources_lib.Source, split: str,
                     vocab: vocab_lib.LabelVocab) -> tuple[tf.data.Dataset, int]:
  """The split with vocab multi-hot labels, and its number of examples.

  Returns:
    ({'image': string [], 'labels': float32 [K], 'key': string []} dataset, count).
  """
  index = source.index(split)
  # source label id -> vocab id, -1 where the vocab lacks the label.
  vocab_ids = {name: i for i, name in enumerate(vocab.names)}
  to_vocab = [vocab_ids.get(name, -1) for name in source.label_names]
  missing = []
  for i, ids in enumerate(index.label_ids):
    lacking = [source.label_names[j] for j in ids if to_vocab[j] < 0]
    if lacking:
      missing.append(sources_lib.Problem(
          sources_lib.LABEL_NOT_IN_VOCAB, index.where[i],
          f"label(s) {lacking} not in the vocabulary ({vocab.num_labels} labels)"))
  num_examples = len(index.keys) - len(missing)
  if missing:
    header = f"{source.name} split {split!r} against the given vocabulary"
    if not source.skip_bad_examples:
      raise sources_lib.BadDataError(
          sources_lib.format_problems(missing, header, sources_lib.SKIP_HINT), missing)
    source.set_skipped(split, sources_lib.LABEL_NOT_IN_VOCAB, len(missing))
    logging.warning("%s", sources_lib.format_problems(missing, header + ": skipped"))
  if num_examples <= 0:
    raise sources_lib.BadDataError(f"{source.name} split {split!r} has no usable example "
                                   f"(skipped: {source.skipped_in(split)}).")

  table = tf.constant(to_vocab, tf.int32)  # [num_source_labels]: source id -> vocab id or -1
  k = vocab.num_labels

  def to_multi_hot(example):
    ids = tf.gather(table, example["label_ids"])  # [n]
    known = tf.reduce_all(ids >= 0)
    hot = tf.reduce_sum(tf.one_hot(ids, k, dtype=tf.float32), axis=0)  # [K]; -1 -> zeros
    hot = tf.minimum(hot, 1.0)
    return {"image": example["image"], "labels": tf.ensure_shape(hot, [k]),
            "key": example["key"], "known": known}

  ds = source.examples(split).map(to_multi_hot, num_parallel_calls=options_lib.PARALLELISM)
  if missing:
    ds = ds.filter(lambda x: x["known"])
  ds = ds.map(lambda x: {"image": x["image"], "labels": x["labels"], "key": x["key"]})
  return ds, num_examples


def training_stream(ds: tf.data.Dataset, *, num_examples: int, seed: int | None,
                    shuffle_buffer: int, repeat: bool = True, skip: int = 0) -> tf.data.Dataset:
  """Epoch e: `ds` shuffled with seed (seed, e); epochs in a row; the first `skip` dropped.

  Whole epochs before `skip` are never read: the stream starts at epoch skip // n and drops
  skip % n elements of it. `num_examples` (n) must be the exact number of elements of `ds`.
  """
  if num_examples <= 0:
    raise ValueError(f"num_examples must be positive, got {num_examples}.")
  buffer = max(1, min(int(shuffle_buffer), num_examples))
  if seed is None:
    ds = ds.shuffle(buffer, reshuffle_each_iteration=True)
    return (ds.repeat() if repeat else ds).skip(skip)
  first_epoch, offset = divmod(int(skip), num_examples)
  if not repeat and first_epoch > 0:
    return ds.take(0)
  seed = int(seed)

  def one_epoch(epoch):
    # A graph-level seed of our own for this function's graph: the order then depends on
    # `seed` alone, not on TF's global seed, and TF's seed helper never has to compare the
    # tensor op seed with 0 (it does when the global seed is 0, and fails in graph mode).
    tf.compat.v1.set_random_seed(_GRAPH_SEED)
    epoch_seed = tf.constant(seed, tf.int64) * 1_000_003 + epoch
    return ds.shuffle(buffer, seed=epoch_seed, reshuffle_each_iteration=False)

  epochs = (tf.data.Dataset.counter(first_epoch) if repeat
            else tf.data.Dataset.range(first_epoch, first_epoch + 1))
  return epochs.flat_map(one_epoch).skip(offset)


def augment_image(image: tf.Tensor, image_size: int, seed: tf.Tensor) -> tf.Tensor:
  """uint8 [H, W, 3] -> float32 [S, S, 3]: resize to S * 8/7, random S x S crop, random flip.

  `seed` is an int64 [2] tensor; the same seed gives the same crop and flip.
  """
  big = int(round(image_size * _AUGMENT_RESIZE))
  image = images_lib.resize(image, big)  # [S', S', 3]
  seeds = tf.random.experimental.stateless_split(seed, 2)  # [2, 2]
  image = tf.image.stateless_random_crop(image, [image_size, image_size, 3], seed=seeds[0])
  return tf.image.stateless_random_flip_left_right(image, seed=seeds[1])


def batch_and_finish(ds: tf.data.Dataset, batch_size: int, drop_remainder: bool,
                     deterministic: bool = True, map_fn: Callable | None = None,
                     batch_map_fn: Callable | None = None) -> tf.data.Dataset:
  """Optional parallel map, batch, optional map of whole batches, prefetch, the common options.

  `map_fn` runs per element (before batching); `batch_map_fn` once per batch (after it),
  which is much cheaper where the work vectorizes (parsing records: one op per batch).
  """
  if map_fn is not None:
    ds = ds.map(map_fn, num_parallel_calls=options_lib.PARALLELISM, deterministic=deterministic)
  ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  if batch_map_fn is not None:
    ds = ds.map(batch_map_fn)
  ds = ds.prefetch(options_lib.PREFETCH_BATCHES)
  return ds.with_options(options_lib.dataset_options())
