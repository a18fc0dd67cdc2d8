"""Tests of cnn_rnn_tf/data/sources/: label mapping, splits and sequences of every source."""

import contextlib
import os

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import sources

VOC_LABELS = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
              "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
              "sheep", "sofa", "train", "tvmonitor")


def data_config(**fields):
  """config_lib.default_config().data (every field the sources read) with `fields` set."""
  config = config_lib.default_config().data
  config.update(dict(source="csv", synthetic_config="small"))
  config.update(fields)
  return config


def _prune(value, feature):
  """Keeps the parts of an example dict that a (partial) feature spec has."""
  if isinstance(feature, tfds.features.FeaturesDict):
    return {k: _prune(value[k], f) for k, f in feature.items()}
  if (isinstance(feature, tfds.features.Sequence)
      and isinstance(feature.feature, tfds.features.FeaturesDict)):
    return {k: value[k] for k in feature.feature.keys()}
  return value


@contextlib.contextmanager
def fake_tfds(examples_by_split):
  """tfds.testing.mock_data that yields the given examples ("a+b" splits concatenated)."""

  def as_dataset(self, split, decoders=None, read_config=None, shuffle_files=False):
    del shuffle_files
    features = self.info.features
    if isinstance(decoders, tfds.decode.PartialDecoding):
      features = decoders.extract_features(features)
      decoders = decoders.decoders
    examples = [ex for s in str(split).split("+") for ex in examples_by_split[s]]
    specs = features.get_serialized_info()
    ds = tf.data.Dataset.from_generator(
        lambda: (features.encode_example(_prune(ex, features)) for ex in examples),
        output_types=tf.nest.map_structure(lambda t: t.dtype, specs),
        output_shapes=tf.nest.map_structure(lambda t: t.shape, specs))
    ds = ds.map(lambda ex: features.decode_example(ex, decoders=decoders))
    if read_config and read_config.add_tfds_id:
      ids = tf.data.Dataset.from_tensor_slices([f"{split}__{i}" for i in range(len(examples))])
      ds = tf.data.Dataset.zip((ds, ids)).map(lambda ex, i: {"tfds_id": i, **ex})
    return ds

  with tfds.testing.mock_data(as_dataset_fn=as_dataset):
    yield


def voc_example(name, labels, no_difficult=None):
  image = np.full((6, 8, 3), 100, np.uint8)
  no_difficult = labels if no_difficult is None else no_difficult
  return {"image": image, "image/filename": name, "labels": labels,
          "labels_no_difficult": no_difficult}


VOC_SPLITS = {
    "train": [voc_example("a.jpg", ["person", "dog"]), voc_example("b.jpg", ["person"]),
              voc_example("c.jpg", ["cat", "person"], no_difficult=["cat"])],
    "validation": [voc_example("d.jpg", ["dog"]), voc_example("e.jpg", ["car", "person"])],
    "test": [voc_example("f.jpg", ["dog", "person"]), voc_example("g.jpg", ["cat"]),
             voc_example("h.jpg", ["car", "dog", "person"], no_difficult=[])],
}


def test_voc2007_trainval_vocab_labels_and_sequences():
  with fake_tfds(VOC_SPLITS):
    source = data_lib.get_source(data_config(source="voc2007", train_split="trainval"))
    assert source.name == "voc2007"
    assert tuple(source.label_names) == VOC_LABELS
    assert source.num_examples("trainval") == 5  # TFDS train + validation
    assert source.num_examples("test") == 3
    vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                 all_names=source.label_names)
    # person 4, dog 2, then car and cat 1 (ties by name), then the 16 unseen labels by name.
    assert vocab.names[:5] == ["person", "dog", "car", "cat", "aeroplane"]
    assert len(vocab.names) == 20
    ds = data_lib.image_dataset(source, "test", vocab, image_size=8, batch_size=8,
                                training=False)
    batch = next(iter(ds))
    assert batch["key"].numpy().tolist() == [b"f.jpg", b"g.jpg", b"h.jpg"]
    assert batch["image"].shape == (3, 8, 8, 3)
    np.testing.assert_allclose(batch["image"].numpy(), 100.0, atol=1e-3)
    end = vocab.end_id
    targets = vocab_lib.sequence_targets(batch["labels"]).numpy()
    np.testing.assert_array_equal(targets, [[0, 1, end, -1], [3, end, -1, -1], [0, 1, 2, end]])


def test_voc2007_labels_no_difficult_keeps_images_with_empty_sets():
  with fake_tfds(VOC_SPLITS):
    source = data_lib.get_source(data_config(source="voc2007", train_split="trainval",
                                             voc_labels="labels_no_difficult"))
    sets = source.train_label_sets()
    assert sets[2] == {"cat"}  # person was difficult in c.jpg
    vocab = vocab_lib.LabelVocab.from_label_sets(sets, all_names=source.label_names)
    ds = data_lib.image_dataset(source, "test", vocab, image_size=4, batch_size=8,
                                training=False)
    batch = next(iter(ds))
    assert batch["labels"].shape[0] == 3  # h.jpg (only difficult objects) kept, no labels
    assert batch["labels"].numpy()[2].sum() == 0
    assert vocab_lib.sequence_targets(batch["labels"]).numpy()[2, 0] == vocab.end_id
    assert source.skipped == {}


def test_voc2007_rejects_bad_settings():
  with fake_tfds(VOC_SPLITS):
    with pytest.raises(ValueError, match="voc_labels.*'difficult'"):
      data_lib.get_source(data_config(source="voc2007", voc_labels="difficult"))
    source = data_lib.get_source(data_config(source="voc2007"))
    with pytest.raises(ValueError, match="no split 'val'.*trainval"):
      source.num_examples("val")


def test_voc2007_with_mock_data_label_mapping():
  with tfds.testing.mock_data(num_examples=6):
    source = data_lib.get_source(data_config(source="voc2007", train_split="trainval"))
    assert source.num_examples("test") == 6
    vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                 all_names=source.label_names)
    ds = data_lib.image_dataset(source, "test", vocab, image_size=8, batch_size=4,
                                training=False)
    hot = np.concatenate([b["labels"].numpy() for b in ds])
    # mock_data draws its random examples per decoded feature set: read the same one.
    reference = tfds.load("voc/2007", split="test", decoders=tfds.decode.PartialDecoding(
        {"image": True, "labels": True, "image/filename": True},
        decoders={"image": tfds.decode.SkipDecoding()}))
    for row, example in zip(hot, reference):
      names = {VOC_LABELS[i] for i in example["labels"].numpy()}
      assert set(vocab.decode(np.flatnonzero(row))) == names
      ids = vocab_lib.sequence_targets(row[None]).numpy()[0]
      assert vocab.decode(ids) == sorted(names, key=vocab.id)
    assert hot.shape == (6, 20)


def coco_example(name, labels):
  return {"image": np.full((5, 7, 3), 50, np.uint8), "image/filename": name,
          "objects": {"label": labels}}


COCO_SPLITS = {
    "train": [coco_example("1.jpg", [3, 3, 7]), coco_example("2.jpg", []),
              coco_example("3.jpg", [7])],
    "validation": [coco_example("4.jpg", [7, 3]), coco_example("5.jpg", []),
                   coco_example("6.jpg", [0])],
}


def test_coco2014_skips_images_without_objects_and_counts_them():
  with fake_tfds(COCO_SPLITS):
    source = data_lib.get_source(data_config(source="coco2014"))
    assert len(source.label_names) == 80
    assert source.num_examples("train") == 2
    assert source.train_label_sets() == [{source.label_names[3], source.label_names[7]},
                                         {source.label_names[7]}]
    assert source.skipped == {"empty_labels": 1}
    vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                 all_names=source.label_names)
    ds = data_lib.image_dataset(source, "validation", vocab, image_size=4, batch_size=8,
                                training=False)
    batch = next(iter(ds))
    assert batch["key"].numpy().tolist() == [b"4.jpg", b"6.jpg"]
    names = [vocab.decode(row) for row in vocab_lib.sequence_targets(batch["labels"]).numpy()]
    assert names == [[source.label_names[7], source.label_names[3]], [source.label_names[0]]]
    assert source.skipped == {"empty_labels": 2}


def test_coco2014_keep_empty_images():
  with fake_tfds(COCO_SPLITS):
    source = data_lib.get_source(data_config(source="coco2014", coco_empty_images="keep"))
    assert source.num_examples("train") == 3
    vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                 all_names=source.label_names)
    ds = data_lib.image_dataset(source, "validation", vocab, image_size=4, batch_size=8,
                                training=False)
    batch = next(iter(ds))
    assert batch["key"].numpy().tolist() == [b"4.jpg", b"5.jpg", b"6.jpg"]
    assert vocab_lib.sequence_targets(batch["labels"]).numpy()[1].tolist()[0] == vocab.end_id
    assert source.skipped == {}
    with pytest.raises(ValueError, match="coco_empty_images.*'drop'"):
      data_lib.get_source(data_config(source="coco2014", coco_empty_images="drop"))


# ---- CSV ----


def write_image(path, array, fmt=None):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(np.asarray(array, np.uint8)).save(path, format=fmt)


def write_csv(path, rows, header=("image_name", "tags")):
  with open(path, "w") as f:
    f.write(",".join(header) + "\n")
    for row in rows:
      f.write(",".join(row) + "\n")
  return str(path)


def test_csv_formats_become_rgb(tmp_path):
  write_image(tmp_path / "img/rgb.jpg", np.full((12, 10, 3), (200, 40, 90)))
  write_image(tmp_path / "img/gray.png", np.full((9, 14), 77))
  write_image(tmp_path / "img/rgba.png", np.full((10, 10, 4), (10, 20, 30, 128)))
  write_image(tmp_path / "other/abs.png", np.full((8, 8, 3), (1, 2, 3)))
  train = write_csv(tmp_path / "train.csv", [
      ("img/rgb.jpg", "cat dog"), ("img/gray.png", "dog"), ("img/rgba.png", " person  dog "),
      (str(tmp_path / "other/abs.png"), "cat")])
  source = data_lib.get_source(data_config(train_csv=train, eval_csv=train))
  assert source.label_names == ["cat", "dog", "person"]
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  assert vocab.names == ["dog", "cat", "person"]
  batch = next(iter(data_lib.image_dataset(source, "test", vocab, image_size=6,
                                           batch_size=4, training=False)))
  images = batch["image"].numpy()
  assert images.shape == (4, 6, 6, 3) and images.dtype == np.float32
  np.testing.assert_allclose(images[0], np.broadcast_to([200, 40, 90], (6, 6, 3)), atol=4)
  np.testing.assert_allclose(images[1], 77.0, atol=1e-3)
  np.testing.assert_allclose(images[2], np.broadcast_to([10, 20, 30], (6, 6, 3)), atol=1e-3)
  np.testing.assert_allclose(images[3], np.broadcast_to([1, 2, 3], (6, 6, 3)), atol=1e-3)
  np.testing.assert_array_equal(batch["labels"].numpy(),
                                [[1, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 0]])
  assert batch["key"].numpy()[0] == b"img/rgb.jpg"


def test_csv_custom_columns_and_separator(tmp_path):
  write_image(tmp_path / "a.png", np.zeros((4, 4, 3)))
  path = tmp_path / "t.csv"
  path.write_text("id,file,labels\n7,a.png,pot plant;tv\n8,a.png,tv\n")
  source = data_lib.get_source(data_config(
      train_csv=str(path), image_column="file", labels_column="labels", label_separator=";"))
  assert source.label_names == ["pot plant", "tv"]
  assert source.train_label_sets() == [{"pot plant", "tv"}, {"tv"}]
  for split in ("eval", "test", "validation"):
    with pytest.raises(ValueError, match="data.eval_csv"):
      source.num_examples(split)


def test_csv_needs_a_file_and_known_splits(tmp_path):
  with pytest.raises(ValueError, match="train_csv and/or data.eval_csv"):
    data_lib.get_source(data_config())
  source = data_lib.get_source(data_config(train_csv=str(tmp_path / "nope.csv")))
  with pytest.raises(FileNotFoundError, match="nope.csv"):
    source.num_examples("train")
  with pytest.raises(ValueError, match="no split 'trainval'"):
    source.num_examples("trainval")


def test_unknown_source_names_the_choices():
  with pytest.raises(ValueError, match="'imagenet'.*coco2014.*csv.*synthetic_scenes.*voc2007"):
    data_lib.get_source(data_config(source="imagenet"))


def test_synthetic_scenes_small_through_the_pipeline(tmp_path):
  pytest.importorskip("cnn_rnn_tf.data.synthetic_scenes")
  source = data_lib.get_source(data_config(source="synthetic_scenes", synthetic_config="small",
                                           data_dir=str(tmp_path / "tfds")))
  assert source.name == "synthetic_scenes"
  builder = tfds.builder("synthetic_scenes/small", data_dir=str(tmp_path / "tfds"))
  assert source.label_names == builder.info.features["labels"].feature.names
  n_train, n_test = source.num_examples("train"), source.num_examples("test")
  assert (n_train, n_test) == (builder.info.splits["train"].num_examples,
                               builder.info.splits["test"].num_examples)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  ds = data_lib.image_dataset(source, "test", vocab, image_size=32, batch_size=64,
                              training=False)
  batches = list(ds)
  assert sum(int(b["key"].shape[0]) for b in batches) == n_test
  assert batches[0]["image"].shape[1:] == (32, 32, 3)
  # Labels match TFDS' own decoding of the split, example by example.
  reference = tfds.load("synthetic_scenes/small", split="test", data_dir=str(tmp_path / "tfds"))
  for hot, example in zip(np.concatenate([b["labels"].numpy() for b in batches]), reference):
    names = {source.label_names[i] for i in example["labels"].numpy()}
    assert set(vocab.decode(np.flatnonzero(hot))) == names
  train = data_lib.image_dataset(source, "train", vocab, image_size=32, batch_size=16,
                                 training=True)
  assert next(iter(train))["labels"].shape == (16, vocab.num_labels)


def test_voc2007_offline_archives_are_taken_from_manual_dir(tmp_path):
  # TFDS needs importlib_resources to prepare its own builders (not for mock_data).
  pytest.importorskip("importlib_resources")
  manual = tmp_path / "manual"
  manual.mkdir()
  for name in sources.Voc2007Source.manual_files:
    (manual / name).write_bytes(b"not the real archive")
  config = data_config(source="voc2007", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
  with pytest.raises(RuntimeError, match="VOCtrainval_06-Nov-2007.tar.*data.manual_dir") as e:
    data_lib.get_source(config)
  # The archive was found under its name in manual_dir (and rejected for its checksum): no
  # download was attempted.
  assert type(e.value.__cause__).__name__ == "NonMatchingChecksumError"
  assert str(manual) in str(e.value.__cause__)



def test_synthetic_scenes_scene_labels_from_another_seed(tmp_path):
  """Protocol T's task: the scene type (one label per image) of other images (seed 1)."""
  config = data_config(source="synthetic_scenes", synthetic_config="small", synthetic_seed=1,
                       synthetic_labels="scene", data_dir=str(tmp_path / "tfds"))
  source = data_lib.get_source(config)
  reference = tfds.builder("synthetic_scenes/small/seed=1", data_dir=str(tmp_path / "tfds"))
  assert reference.builder_config.seed == 1 and source.builder.builder_config.seed == 1
  assert source.label_names == reference.info.features["scene"].names
  scenes = [source.label_names[e["scene"]] for e in tfds.as_numpy(
      reference.as_dataset(split="train"))]
  assert [sorted(s) for s in source.train_label_sets()] == [[s] for s in scenes]
  objects = data_lib.get_source(data_config(source="synthetic_scenes", synthetic_config="small",
                                            data_dir=str(tmp_path / "tfds")))
  assert source.cache_key("train") != objects.cache_key("train")  # features never mixed up
  with pytest.raises(ValueError, match="synthetic_labels.*'colour'"):
    data_lib.get_source(data_config(source="synthetic_scenes", synthetic_config="small",
                                    synthetic_labels="colour", data_dir=str(tmp_path / "tfds")))
