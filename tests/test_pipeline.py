"""Tests of cnn_rnn_tf/data/pipeline.py: order, shuffling, resuming, decoding, distribution."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import pipeline
from cnn_rnn_tf.data import sources


def png(value, shape=(6, 9, 3)):
  buf = io.BytesIO()
  Image.fromarray(np.full(shape, value, np.uint8)).save(buf, format="PNG")
  return buf.getvalue()


class InMemorySource(sources.Source):
  """A source of encoded images held in memory: image i is a flat PNG of value 10 * i."""

  name = "in_memory"
  split_names = {"train": "all examples", "test": "all examples"}

  def __init__(self, label_sets, images=None, names=("a", "b", "c")):
    super().__init__(config_lib.default_config().data)
    self._names = list(names)
    self._sets = [tuple(sorted(self._names.index(n) for n in s)) for s in label_sets]
    self._images = images or [png(10 * i) for i in range(len(label_sets))]

  @property
  def label_names(self):
    return self._names

  def _build_index(self, split):
    keys = [f"k{i}" for i in range(len(self._sets))]
    return sources.SplitIndex(keys, list(self._sets), keys)

  def examples(self, split):
    index = self.index(split)
    return tf.data.Dataset.from_tensor_slices({
        "image": tf.constant(self._images),
        "label_ids": tf.ragged.constant([list(s) for s in index.label_ids], tf.int32),
        "key": tf.constant(index.keys)})


LABEL_SETS = [{"a"}, {"a", "b"}, {"c"}, {"b"}, {"a", "c"}]


def make(label_sets=LABEL_SETS, **kwargs):
  source = InMemorySource(label_sets, **kwargs)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  return source, vocab


def keys(ds, num_batches=None):
  out = []
  for i, batch in enumerate(ds):
    if num_batches is not None and i == num_batches:
      break
    out.append([k.decode() for k in batch["key"].numpy()])
  return out


def test_output_spec_and_values():
  source, vocab = make()
  ds = data_lib.image_dataset(source, "test", vocab, image_size=4, batch_size=2, training=False)
  assert ds.element_spec == {
      "image": tf.TensorSpec([None, 4, 4, 3], tf.float32),
      "labels": tf.TensorSpec([None, 3], tf.float32),
      "key": tf.TensorSpec([None], tf.string)}
  batch = next(iter(ds))
  np.testing.assert_allclose(batch["image"].numpy()[1], 10.0, atol=1e-4)
  # vocab: a (3 images), b, c (2 each, by name).
  np.testing.assert_array_equal(batch["labels"].numpy(), [[1, 0, 0], [1, 1, 0]])


def test_eval_keeps_order_and_remainder():
  source, vocab = make()
  ds = data_lib.image_dataset(source, "test", vocab, image_size=4, batch_size=2, training=False)
  assert keys(ds) == [["k0", "k1"], ["k2", "k3"], ["k4"]]


def test_training_shuffles_repeats_and_is_deterministic():
  source, vocab = make()

  def stream(seed):
    ds = data_lib.image_dataset(source, "train", vocab, image_size=4, batch_size=2,
                                training=True, seed=seed)
    assert ds.element_spec["image"].shape == (2, 4, 4, 3)  # remainder dropped
    return sum(keys(ds, num_batches=10), [])

  first = stream(0)
  assert first == stream(0)
  assert first != stream(1)
  for epoch in range(4):  # each epoch is a permutation of the split
    assert sorted(first[5 * epoch:5 * epoch + 5]) == ["k0", "k1", "k2", "k3", "k4"]
  assert first[:5] != first[5:10] or first[5:10] != first[10:15]


@pytest.mark.parametrize("start_step", [1, 2, 3, 5, 8])
def test_start_step_resumes_at_the_same_position(start_step):
  source, vocab = make()
  full = keys(data_lib.image_dataset(source, "train", vocab, image_size=4, batch_size=2,
                                     training=True, seed=3), num_batches=12)
  resumed = keys(data_lib.image_dataset(source, "train", vocab, image_size=4, batch_size=2,
                                        training=True, seed=3, start_step=start_step),
                 num_batches=12 - start_step)
  assert resumed == full[start_step:]


def test_skipped_examples_are_never_decoded():
  label_sets = LABEL_SETS * 2 + [{"a"}, {"b"}]  # 12 examples
  source, vocab = make(label_sets)
  full = sum(keys(data_lib.image_dataset(source, "train", vocab, image_size=4, batch_size=2,
                                         training=True, seed=5), num_batches=6), [])
  # The same stream, but its first 4 examples (2 steps) are not images at all: resuming at
  # step 2 must not decode them (decoding would raise).
  images = [b"not an image" if f"k{i}" in full[:4] else png(10 * i) for i in range(12)]
  broken, _ = make(label_sets, images=images)
  resumed = data_lib.image_dataset(broken, "train", vocab, image_size=4, batch_size=2,
                                   training=True, seed=5, start_step=2, repeat=False)
  assert sum(keys(resumed), []) == full[4:12]
  # Evaluation order: the first two images are broken, start_step=1 skips them.
  broken, _ = make(images=[b"garbage", b"garbage"] + [png(1)] * 3)
  ds = data_lib.image_dataset(broken, "test", vocab, image_size=4, batch_size=2,
                              training=False, start_step=1)
  assert keys(ds) == [["k2", "k3"], ["k4"]]


def test_augmentation_is_seeded_by_stream_position():
  rng = np.random.default_rng(0)
  images = []
  for _ in range(5):
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
    images.append(buf.getvalue())
  source, vocab = make(images=images)

  def batches(start_step=0, augment=True, seed=0):
    ds = data_lib.image_dataset(source, "train", vocab, image_size=8, batch_size=2,
                                training=True, seed=seed, augment=augment,
                                start_step=start_step)
    return [b["image"].numpy() for b in ds.take(4 - start_step)]

  a, b = batches(), batches()
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x, y)
  assert a[0].shape == (2, 8, 8, 3)
  assert 0 <= a[0].min() and a[0].max() <= 255
  np.testing.assert_array_equal(batches(start_step=2)[0], a[2])
  plain = batches(augment=False)
  assert any(not np.allclose(x, y) for x, y in zip(a, plain))


def test_images_are_decoded_by_the_images_module_and_errors_name_the_key():
  gray = png(90, shape=(5, 5))
  rgba = png(0, shape=(5, 5, 4))
  buf = io.BytesIO()
  Image.fromarray(np.full((5, 5, 3), 128, np.uint8)).save(buf, format="JPEG")
  source, vocab = make(label_sets=[{"a"}] * 3, images=[gray, rgba, buf.getvalue()])
  ds = data_lib.image_dataset(source, "train", vocab, image_size=3, batch_size=3,
                              training=False)
  image = next(iter(ds))["image"].numpy()
  assert image.shape == (3, 3, 3, 3)
  for got, value in zip(image, (90, 0, 128)):
    np.testing.assert_allclose(got, value, atol=3)
  # Over the pixel limit: refused from the header, naming the example's key.
  ds = data_lib.image_dataset(source, "train", vocab, image_size=3, batch_size=3,
                              training=False, max_pixels=24)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"k0: image of 5x5 = 25 pixels"):
    next(iter(ds))


def test_auto_shard_policy_and_distribution():
  source, vocab = make()
  ds = data_lib.image_dataset(source, "train", vocab, image_size=4, batch_size=2, training=True,
                              deterministic=False)
  assert (ds.options().experimental_distribute.auto_shard_policy
          == tf.data.experimental.AutoShardPolicy.DATA)
  strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
  batch = next(iter(strategy.experimental_distribute_dataset(ds)))
  assert batch["image"].shape == (2, 4, 4, 3)


def test_training_stream_without_repeat_and_without_seed():
  ds = tf.data.Dataset.range(5)
  one = list(pipeline.training_stream(ds, num_examples=5, seed=1, shuffle_buffer=5,
                                      repeat=False, skip=2).as_numpy_iterator())
  assert len(one) == 3
  assert list(pipeline.training_stream(ds, num_examples=5, seed=1, shuffle_buffer=5,
                                       repeat=False, skip=7).as_numpy_iterator()) == []
  unseeded = pipeline.training_stream(ds, num_examples=5, seed=None, shuffle_buffer=5)
  assert sorted(unseeded.take(5).as_numpy_iterator()) == [0, 1, 2, 3, 4]
  with pytest.raises(ValueError, match="num_examples must be positive, got 0"):
    pipeline.training_stream(ds, num_examples=0, seed=1, shuffle_buffer=5)


def test_training_order_does_not_depend_on_the_global_seed():
  ds = tf.data.Dataset.range(7)

  def stream():
    return list(pipeline.training_stream(ds, num_examples=7, seed=2, shuffle_buffer=7)
                .take(14).as_numpy_iterator())

  reference = stream()
  try:
    for global_seed in (0, 3):  # 0 once broke TF's seed helper with a tensor op seed
      tf.random.set_seed(global_seed)
      assert stream() == reference
  finally:
    tf.random.set_seed(None)
