"""Feature cache: the frozen backbone's features of a split, extracted once, then read back.

The paper keeps the CNN frozen; its features are then a function of the image alone, so one
pass of the backbone over a split serves every later epoch and run:

    path = feature_cache.build(source, "trainval", vocab, "vgg16", "imagenet", 224,
                               precision="auto", cache_dir="/data/feature_cache")
    ds = feature_dataset(path, batch_size=64, training=True, seed=0, start_step=0)
    # {'features': float32 [B, D], 'labels': float32 [B, K], 'key': string [B]}

`feature_dataset` shuffles, repeats and skips exactly like `pipeline.image_dataset`
(`pipeline.training_stream`): start_step=N drops the first N * batch_size examples.

Layout: `<cache_dir>/<source>-<split>-<backbone>-<hash>/`, holding
  key.json                  the cache key (below); `hash` is the SHA-256 of it, canonical JSON
  shard-00000.tfrecord ...  tf.train.Example records: 'features' (float32 [D] as raw
                            little-endian bytes), 'labels' (float32 [K] multi-hot), 'key'
  meta.json                 counts, shapes, shard names, skipped examples, timing
The key covers everything the features and targets depend on: the source and its config
(`source.cache_key(split)`: TFDS name, version and split, voc_labels, coco_empty_images,
skip_bad_examples; for CSV the file's absolute path, size and mtime and the column
settings), the split, the backbone, its weights ("imagenet", "random", or a file's path, size
and SHA-256: a file retrained in place is another key), the input resolution, the precision
actually used, the image preprocessing (`pipeline.PREPROCESSING`) and the vocabulary (names
in id order). Change any of them and a new folder is built; nothing is ever overwritten. Not
covered: the contents of image files (a CSV's images edited in place; delete the folder), and
random weights (weights=None: two random networks get the same key; pass the same `backbone`
for all splits of a run).

Atomic: the folder is written as `<folder>.tmp-<host>-<pid>-<random>` and renamed when
complete, so a reader either sees a complete cache or none. A failed write removes its
temporary folder; one left by a killed process is removed by the next build on the same
host once that process is gone.

Precision (`data.precision`): "on" extracts under Keras' mixed_bfloat16 policy, "off" in
float32, "auto" picks bfloat16 where it is measurably faster on this machine (precision.py:
timed once per machine and backbone, cached); "bfloat16" / "float32" are taken as resolved.
A run passes its workdir's compute.json inference precision ("on" / "off",
`workdir.compute.with_compute`), so training and evaluate read the same cache folder and
nothing measures again. Features are stored as float32 either way; the key holds the
resolved precision. XLA (`data.jit`) does not apply to this one-pass extraction.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import socket
import time
import uuid
from typing import Any, Callable

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import process
from cnn_rnn_tf import progress
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import pipeline
from cnn_rnn_tf.data.precision import PRECISIONS  # pylint: disable=unused-import
from cnn_rnn_tf.data.precision import resolve_precision
from cnn_rnn_tf.data import sources as sources_lib
from cnn_rnn_tf.data.sources import hygiene

FORMAT_VERSION = 1
KEY_FILE = "key.json"
META_FILE = "meta.json"  # written last: its presence marks a complete cache
_TMP = ".tmp-"


def describe_weights(weights: str | None) -> Any:
  """The weights part of the cache key: "imagenet", "random" or the file's path and content."""
  if weights in (None, "none", "None", ""):
    return "random"
  if weights == "imagenet":
    return "imagenet"
  path = os.path.abspath(os.fspath(weights))
  if not os.path.exists(path):
    raise FileNotFoundError(f"Backbone weights file {weights!r} does not exist.")
  # The bytes, not the mtime: a backbone retrained in place (the demo's backbone.weights.h5)
  # can keep the size and, within one timestamp tick, the mtime. ~0.5 s per 500 MB.
  return {"path": path, "size": os.path.getsize(path), "sha256": hygiene.file_digest(path)}


def cache_key(source: sources_lib.Source, split: str, vocab: vocab_lib.LabelVocab,
              backbone_name: str, backbone_weights: str | None, image_size: int | None,
              precision: str, filters: tuple[int, ...] | None = None) -> dict[str, Any]:
  """Everything the cached features and targets depend on (see the module docstring)."""
  return {
      "format": FORMAT_VERSION,
      "source": source.cache_key(split),
      "split": split,
      "backbone": backbone_name,
      "weights": describe_weights(backbone_weights),
      "image_size": backbones.backbone_image_size(backbone_name, image_size),
      "precision": resolve_precision(precision, backbone_name, image_size, filters=filters),
      "preprocessing": pipeline.PREPROCESSING,
      "vocab": list(vocab.names),
  }


def cache_path(cache_dir: str, key: dict[str, Any]) -> str:
  """The folder of a key: <cache_dir>/<source>-<split>-<backbone>-<hash16>."""
  digest = hashlib.sha256(_canonical(key).encode("utf-8")).hexdigest()[:16]
  name = f"{key['source']['name']}-{key['split']}-{key['backbone']}-{digest}"
  return os.path.join(os.fspath(cache_dir), name.replace(os.sep, "_"))


def is_complete(path: str) -> bool:
  return os.path.isfile(os.path.join(path, META_FILE))


def read_meta(path: str) -> dict[str, Any]:
  """meta.json of a complete cache."""
  if not is_complete(path):
    raise FileNotFoundError(f"{path!r} is not a complete feature cache (no {META_FILE}).")
  with open(os.path.join(path, META_FILE)) as f:
    return json.load(f)


def build(source: sources_lib.Source, split: str, vocab: vocab_lib.LabelVocab,
          backbone_name: str, backbone_weights: str | None, image_size: int | None, *,
          cache_dir: str, precision: str = "auto", batch_size: int = 64,
          backbone: Callable | None = None, examples_per_shard: int = 1024,
          deterministic: bool = True, verbose: int = 1,
          max_pixels: int | None = images_lib.DEFAULT_MAX_PIXELS,
          filters: tuple[int, ...] | None = None) -> str:
  """Extracts the features of a split into a cache folder, or finds the complete one.

  Args:
    source, split, vocab: what to extract (see `pipeline.image_dataset`).
    backbone_name, backbone_weights, image_size: the backbone (`backbones.build_backbone`).
    cache_dir: parent folder of the cache folders.
    precision: "auto" | "on" | "off" (see the module docstring).
    batch_size: images per backbone call.
    backbone: optional, an already built backbone matching the three arguments above (and
      the precision), called as `backbone(images, training=False)`; a `keras.Model` is
      compiled with tf.function, any other callable is called as is. Built only if needed.
    examples_per_shard: records per TFRecord file.
    deterministic: passed to the image pipeline.
    verbose: 1 shows a progress bar (`progress.bar`: terminals only).
    max_pixels: the image limit (data.max_image_pixels), see `images.decode_rgb`.
    filters: small_cnn's conv widths (model.small_cnn_filters; `backbones.build_backbone`).

  Returns:
    The cache folder.
  """
  key = cache_key(source, split, vocab, backbone_name, backbone_weights, image_size,
                  precision, filters)
  path = cache_path(cache_dir, key)
  if is_complete(path):
    meta = read_meta(path)
    for reason, count in meta.get("skipped", {}).items():
      source.set_skipped(split, reason, count)
    logging.info("Feature cache: reusing %s (%d examples).", path, meta["num_examples"])
    return path

  os.makedirs(os.fspath(cache_dir), exist_ok=True)
  _remove_stale_temporaries(path)
  tmp = f"{path}{_TMP}{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
  os.makedirs(tmp)
  try:
    meta = _extract(_Extraction(
        source=source, split=split, vocab=vocab, key=key, backbone=backbone,
        backbone_name=backbone_name, backbone_weights=backbone_weights, batch_size=batch_size,
        examples_per_shard=examples_per_shard, deterministic=deterministic, verbose=verbose,
        max_pixels=max_pixels, filters=filters), tmp)
    with open(os.path.join(tmp, KEY_FILE), "w") as f:
      f.write(_canonical(key, indent=1))
    with open(os.path.join(tmp, META_FILE), "w") as f:
      json.dump(meta, f, indent=1, sort_keys=True)
    try:
      os.rename(tmp, path)
    except OSError:
      if not is_complete(path):  # Not a concurrent writer's finished copy: a real error.
        raise
      shutil.rmtree(tmp, ignore_errors=True)
  except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
  logging.info("Feature cache: wrote %s (%d examples, %.1f images/s).", path,
               meta["num_examples"], meta["images_per_second"])
  return path


@dataclasses.dataclass(frozen=True)
class _Extraction:
  """One extraction of `build`: what to read, the backbone, how to write (as `build`'s Args)."""
  source: sources_lib.Source
  split: str
  vocab: vocab_lib.LabelVocab
  key: dict[str, Any]  # cache_key(...): its image_size and precision are the resolved ones
  backbone: Callable | None
  backbone_name: str
  backbone_weights: str | None
  batch_size: int
  examples_per_shard: int
  deterministic: bool
  verbose: int
  max_pixels: int | None
  filters: tuple | None  # model.small_cnn_filters


def _backbone_call(job: _Extraction) -> Callable:
  """images float32 [b, S, S, 3] -> features [b, D]: the given backbone, or one built."""
  size, backbone = job.key["image_size"], job.backbone
  if backbone is None:
    policy = "mixed_bfloat16" if job.key["precision"] == "bfloat16" else None
    backbone = backbones.build_backbone(job.backbone_name, weights=job.backbone_weights,
                                        image_size=size, policy=policy,
                                        filters=job.filters)
  if isinstance(backbone, keras.Model):
    model = backbone
    return tf.function(lambda images: model(images, training=False),
                       input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
  return lambda images: backbone(images, training=False)


def _extract(job: _Extraction, folder: str) -> dict[str, Any]:
  """Writes the shards of `job` into `folder`; returns meta.json's contents."""
  source, split, vocab = job.source, job.split, job.vocab
  num_examples = source.num_examples(split)
  ds = pipeline.image_dataset(source, split, vocab, image_size=job.key["image_size"],
                              batch_size=job.batch_size, training=False,
                              deterministic=job.deterministic, max_pixels=job.max_pixels)
  call = _backbone_call(job)

  bar = (progress.bar(total=num_examples, desc=f"features {source.name}/{split}", unit="img")
         if job.verbose else None)
  writer, dim = _ShardWriter(folder, job.examples_per_shard), None
  start = time.time()
  try:
    for batch in ds:
      features = np.asarray(call(batch["image"]), dtype="<f4")  # [b, D]
      if features.ndim != 2 or features.shape[0] != batch["image"].shape[0]:
        raise ValueError(f"The backbone returned features of shape {features.shape} for "
                         f"images of shape {batch['image'].shape}; expected [batch, D].")
      dim = dim or features.shape[1]
      labels = batch["labels"].numpy()  # [b, K]
      for feature, label, k in zip(features, labels, batch["key"].numpy()):
        writer.write(_example(feature, label, k))
      if bar is not None:
        bar.update(len(labels))
  finally:
    if bar is not None:
      bar.close()
    writer.close()
  seconds = time.time() - start
  written, shards = writer.written, writer.shards
  if written != num_examples:
    raise RuntimeError(f"Feature cache {folder}: wrote {written} examples, the source "
                       f"announced {num_examples} for split {split!r}.")
  return {
      "num_examples": written,
      "feature_dim": int(dim),
      "num_labels": vocab.num_labels,
      "label_names": list(vocab.names),
      "shards": shards,
      "skipped": source.skipped_in(split),
      "precision": job.key["precision"],
      "seconds": round(seconds, 3),
      "images_per_second": round(written / max(seconds, 1e-9), 3),
      "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
  }


class _ShardWriter:
  """Records into `shard-00000.tfrecord`, ... of `folder`, `per_shard` records each."""

  def __init__(self, folder: str, per_shard: int):
    self.folder, self.per_shard = folder, per_shard
    self.shards: list[str] = []  # file names, in order
    self.written = 0
    self._writer, self._in_shard = None, 0

  def write(self, record: bytes) -> None:
    if self._writer is None or self._in_shard == self.per_shard:
      self.close()
      self.shards.append(f"shard-{len(self.shards):05d}.tfrecord")
      self._writer = tf.io.TFRecordWriter(os.path.join(self.folder, self.shards[-1]))
      self._in_shard = 0
    self._writer.write(record)
    self._in_shard += 1
    self.written += 1

  def close(self) -> None:
    if self._writer is not None:
      self._writer.close()
      self._writer = None


def _example(feature: np.ndarray, label: np.ndarray, key: bytes) -> bytes:
  return tf.train.Example(features=tf.train.Features(feature={
      "features": tf.train.Feature(bytes_list=tf.train.BytesList(value=[feature.tobytes()])),
      "labels": tf.train.Feature(float_list=tf.train.FloatList(value=label)),
      "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key])),
  })).SerializeToString()


_FILTER_CHUNK = 1024  # records per `subset` filter call


def feature_dataset(path: str, *, batch_size: int, training: bool, seed: int | None = 0,
                    repeat: bool | None = None, start_step: int = 0,
                    drop_remainder: bool | None = None, shuffle_buffer: int | None = None,
                    deterministic: bool = True,
                    subset: pipeline.Subset | None = None) -> tf.data.Dataset:
  """Batches of cached features; shuffling, repeating and skipping as in image_dataset.

  Args:
    path: a folder returned by `build`.
    batch_size, training, seed, repeat, start_step, drop_remainder, deterministic: as in
      `pipeline.image_dataset`.
    shuffle_buffer: default: the whole split, up to 512 MiB of features.
    subset: only the records whose key it keeps (`pipeline.image_dataset`).

  Returns:
    {'features': float32 [B, D], 'labels': float32 [B, K], 'key': string [B]}.
  """
  meta = read_meta(path)
  dim, k, n = meta["feature_dim"], meta["num_labels"], meta["num_examples"]
  repeat = training if repeat is None else repeat
  drop_remainder = training if drop_remainder is None else drop_remainder
  spec = {"features": tf.io.FixedLenFeature([], tf.string),
          "labels": tf.io.FixedLenFeature([k], tf.float32),
          "key": tf.io.FixedLenFeature([], tf.string)}

  # One parse per batch, not per record: 0.6 vs 3.7 ms per batch of 64 on the demo's cache.
  def parse(records):  # string [B] -> the batch
    example = tf.io.parse_example(records, spec)
    features = tf.reshape(tf.io.decode_raw(example["features"], tf.float32), [-1, dim])  # [B, D]
    return {"features": features, "labels": example["labels"], "key": example["key"]}

  files = [os.path.join(path, s) for s in meta["shards"]]
  ds = tf.data.TFRecordDataset(files)  # files in order, one after the other: deterministic
  if subset is not None:
    # The filter on chunks of records (one parse and one `keep` per chunk; the records keep
    # their order): per record it cost ~80 us, 5x the whole training step of a bce head.
    key_spec = {"key": spec["key"]}
    ds = ds.batch(_FILTER_CHUNK).map(lambda r: tf.boolean_mask(
        r, subset.keep(tf.io.parse_example(r, key_spec)["key"]))).unbatch()
    n = subset.num_examples
  skip = int(start_step) * batch_size
  if training:
    if shuffle_buffer is None:
      shuffle_buffer = max(1, min(n, (512 << 20) // (4 * dim)))
    ds = pipeline.training_stream(ds, num_examples=n, seed=seed, shuffle_buffer=shuffle_buffer,
                                  repeat=repeat, skip=skip)
  else:
    ds = ds.repeat() if repeat else ds
    ds = ds.skip(skip) if skip else ds
  return pipeline.batch_and_finish(ds, batch_size, drop_remainder, deterministic,
                                   batch_map_fn=parse)


def _canonical(obj, indent=None) -> str:
  return json.dumps(obj, sort_keys=True, indent=indent, default=str)


def _remove_stale_temporaries(path: str) -> None:
  """Removes temporary folders of `path` left by dead processes of this host."""
  parent, name = os.path.split(path)
  host = socket.gethostname()
  for entry in os.listdir(parent or "."):
    if not entry.startswith(name + _TMP):
      continue
    parts = entry[len(name + _TMP):].rsplit("-", 2)  # host (may hold "-"), pid, random
    if len(parts) != 3:
      continue
    owner_host, pid, _ = parts
    if owner_host == host and pid.isdigit() and not process.alive(int(pid)):
      logging.info("Feature cache: removing %s, left by a process that is gone.", entry)
      shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)

