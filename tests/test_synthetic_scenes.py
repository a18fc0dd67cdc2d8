"""Tests of the `synthetic_scenes` TFDS builder and its NumPy generator (small sizes, offline)."""

import itertools
import re
import subprocess
import sys

import numpy as np
import pytest
import tensorflow_datasets as tfds

from cnn_rnn_tf.data import synthetic_scenes as ss

_TINY = dict(image_size=32, num_train=24, num_test=8)


def _records(data_dir, split, config):
  """All examples of a prepared split as NumPy, in file order."""
  builder = ss.SyntheticScenes(config=config, data_dir=data_dir)
  return list(tfds.as_numpy(builder.as_dataset(split=split)))


@pytest.fixture(scope="module")
def small(tmp_path_factory):
  """`synthetic_scenes/small` built once through `tfds.load`: (data_dir, {split: examples})."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  splits = tfds.load("synthetic_scenes/small", data_dir=data_dir, split=["train", "test"])
  return data_dir, {s: list(tfds.as_numpy(ds)) for s, ds in zip(["train", "test"], splits)}


def _label_sets(examples):
  return [{ss.LABEL_NAMES[i] for i in ex["labels"]} for ex in examples]


# --- The builder through tfds.load -------------------------------------------------------


def test_load_small_sizes_and_features(small):
  data_dir, splits = small
  assert {s: len(exs) for s, exs in splits.items()} == {"train": 300, "test": 100}
  builder = tfds.builder("synthetic_scenes/small", data_dir=data_dir)
  assert str(builder.version) == "1.0.0" and "1.0.0" in builder.release_notes
  features = builder.info.features
  assert features["labels"].feature.names == ss.LABEL_NAMES
  assert features["objects"]["label"].names == ss.LABEL_NAMES
  assert features["scene"].names == ss.SCENE_NAMES
  for ex in splits["train"][:20]:
    assert ex["image"].shape == (32, 32, 3) and ex["image"].dtype == np.uint8


def test_documented_label_and_scene_sets():
  assert len(ss.LABEL_NAMES) == 20 and ss.LABEL_NAMES == sorted(set(ss.LABEL_NAMES))
  assert ss.SCENE_NAMES == ["beach", "forest", "kitchen", "office", "park", "street"]
  assert set(ss.APPEARANCES) == set(ss.LABEL_NAMES)


def test_docstring_table_is_scene_objects():
  """The table in the module docstring is exactly `SCENE_OBJECTS`."""
  rows = re.findall(r"^     (\w+) +((?:\w+ \.\d+/\d+ *)+)$", ss.__doc__, re.M)
  table = {scene: {l: (float(p), int(n)) for l, p, n in re.findall(r"(\w+) (\.\d+)/(\d+)", objs)}
           for scene, objs in rows}
  assert table == ss.SCENE_OBJECTS
  assert f"({len(ss.NEVER_TOGETHER)} of the 190 pairs)" in ss.__doc__


def test_every_image_labelled_and_objects_match_labels(small):
  _, splits = small
  for ex in splits["train"] + splits["test"]:
    labels = list(ex["labels"])
    assert labels and labels == sorted(set(labels)), labels
    assert set(ex["objects"]["label"]) == set(labels)
    boxes = ex["objects"]["bbox"]  # [num_objects, 4] ymin, xmin, ymax, xmax
    assert boxes.shape == (len(ex["objects"]["label"]), 4)
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 0] < boxes[:, 2]).all() and (boxes[:, 1] < boxes[:, 3]).all()


def test_cooccurrence_structure_holds(small):
  _, splits = small
  examples = splits["train"] + splits["test"]
  never = {frozenset(p) for p in ss.NEVER_TOGETHER}
  for ex, labels in zip(examples, _label_sets(examples)):
    scene = ss.SCENE_NAMES[ex["scene"]]
    assert labels <= set(ss.SCENE_OBJECTS[scene]), (scene, labels)
    assert not any(frozenset(p) in never for p in itertools.combinations(labels, 2)), labels
    for label, other in ss.ALWAYS_WITH.items():
      assert label not in labels or other in labels, labels
    for label in labels & set(ss.WITNESSES):
      assert labels & ss.WITNESSES[label], (label, labels)
  # The pairs are exactly those that share no scene; the look-alikes are among them.
  scenes_of = {l: {s for s, objs in ss.SCENE_OBJECTS.items() if l in objs} for l in ss.LABEL_NAMES}
  assert never == {frozenset((a, b)) for a, b in itertools.combinations(ss.LABEL_NAMES, 2)
                   if not scenes_of[a] & scenes_of[b]}
  assert {frozenset(p) for p in ss.LOOKALIKES} <= never
  seen = set().union(*_label_sets(examples))
  assert seen == set(ss.LABEL_NAMES)


# --- Determinism -----------------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
  config = ss.SyntheticScenesConfig(name="tiny", seed=5, **_TINY)
  for d in ("a", "b"):
    ss.SyntheticScenes(config=config, data_dir=tmp_path / d).download_and_prepare()
  other = ss.SyntheticScenes(config=config, seed=6, data_dir=tmp_path / "c")
  assert other.builder_config.name == "tiny_seed6"
  other.download_and_prepare()
  files = sorted((tmp_path / "a").glob("synthetic_scenes/tiny/1.0.0/*.tfrecord*"))
  assert len(files) == 2
  for f in files:  # Byte-identical record files.
    assert f.read_bytes() == (tmp_path / "b" / f.relative_to(tmp_path / "a")).read_bytes()
  a = _records(tmp_path / "a", "train", config)
  b = _records(tmp_path / "b", "train", config)
  c = _records(tmp_path / "c", "train", other.builder_config)
  assert len(a) == len(c) == 24
  for x, y in zip(a, b):
    np.testing.assert_array_equal(x["image"], y["image"])
    np.testing.assert_array_equal(x["labels"], y["labels"])
  assert sum(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c)) == 24


def test_generate_example_is_deterministic():
  x = ss.generate_example(np.random.default_rng([1, 0, 7]), 48)
  y = ss.generate_example(np.random.default_rng([1, 0, 7]), 48)
  z = ss.generate_example(np.random.default_rng([2, 0, 7]), 48)
  assert x["image"].shape == (48, 48, 3) and x["image"].dtype == np.uint8
  np.testing.assert_array_equal(x["image"], y["image"])
  assert x["labels"] == y["labels"] and x["scene"] == y["scene"]
  assert not np.array_equal(x["image"], z["image"])


# --- Look-alikes -------------------------------------------------------------------------


@pytest.mark.parametrize("a,b", ss.LOOKALIKES)
def test_lookalikes_are_drawn_identically(a, b):
  assert ss.APPEARANCES[a] == ss.APPEARANCES[b]
  assert ss.SIZE_RANGE[a] == ss.SIZE_RANGE[b]
  # Same presence probability and instance count in their own scenes.
  (pa,) = [objs[a] for objs in ss.SCENE_OBJECTS.values() if a in objs]
  (pb,) = [objs[b] for objs in ss.SCENE_OBJECTS.values() if b in objs]
  assert pa == pb
  for seed in range(5):
    for size in (32, 64):
      shape_a = ss.object_shape(a, size, np.random.default_rng(seed))
      assert shape_a == ss.object_shape(b, size, np.random.default_rng(seed))
      rgb_a, alpha_a = ss.render_object(a, *shape_a, np.random.default_rng(seed))
      rgb_b, alpha_b = ss.render_object(b, *shape_a, np.random.default_rng(seed))
      np.testing.assert_array_equal(rgb_a, rgb_b)
      np.testing.assert_array_equal(alpha_a, alpha_b)
      assert (alpha_a > 0).mean() > 0.5  # A disc or a panel fills most of its box.
      assert 0.5 <= alpha_a.max() <= 1


def test_only_lookalikes_share_an_appearance():
  by_appearance = {}
  for label, appearance in ss.APPEARANCES.items():
    by_appearance.setdefault(appearance, []).append(label)
  shared = sorted(tuple(sorted(ls)) for ls in by_appearance.values() if len(ls) > 1)
  assert shared == sorted(tuple(sorted(p)) for p in ss.LOOKALIKES)


def test_lookalikes_same_size_and_colour_in_generated_data():
  heights = {l: [] for pair in ss.LOOKALIKES for l in pair}
  colours = {l: [] for l in heights}
  for i in range(800):
    ex = ss.generate_example(np.random.default_rng([0, 0, i]), 64)
    for obj in ex["objects"]:
      if obj["label"] in heights:
        y0, x0, y1, x1 = np.round(obj["bbox"] * 64).astype(int)
        heights[obj["label"]].append(y1 - y0)
        colours[obj["label"]].append(ex["image"][(y0 + y1) // 2, (x0 + x1) // 2])
  for a, b in ss.LOOKALIKES:
    assert len(heights[a]) > 50 and len(heights[b]) > 50
    lo, hi = ss.SIZE_RANGE[a]
    for l in (a, b):
      assert lo * 64 - 1 <= min(heights[l]) and max(heights[l]) <= hi * 64 + 1, heights[l]
    assert abs(np.mean(heights[a]) - np.mean(heights[b])) < 1.0
    np.testing.assert_allclose(np.mean(colours[a], 0), np.mean(colours[b], 0), atol=8)


def test_objects_include_small_ones():
  heights = [obj["bbox"][2] - obj["bbox"][0]
             for i in range(200)
             for obj in ss.generate_example(np.random.default_rng([0, 0, i]), 64)["objects"]]
  assert min(heights) <= 0.08 and max(heights) >= 0.4


# --- Configs -----------------------------------------------------------------------------


def test_configs_and_seed_overrides(tmp_path):
  default = tfds.builder("synthetic_scenes", data_dir=tmp_path).builder_config
  assert (default.name, default.image_size, default.num_train, default.num_test, default.seed) \
      == ("default", 64, 6000, 1500, 0)
  small = tfds.builder("synthetic_scenes/small", data_dir=tmp_path).builder_config
  assert small.image_size == 32 and small.num_train + small.num_test <= 1000
  # Overrides in the name string or as builder kwargs derive a config named after them.
  derived = tfds.builder("synthetic_scenes/small/seed=3", data_dir=tmp_path).builder_config
  assert (derived.name, derived.seed, derived.image_size) == ("small_seed3", 3, 32)
  derived = ss.SyntheticScenes(seed=3, num_train=10, data_dir=tmp_path).builder_config
  assert (derived.name, derived.num_train) == ("default_train10_seed3", 10)
  assert ss.SyntheticScenes(config="small", seed=0, data_dir=tmp_path).builder_config is small
  custom = ss.SyntheticScenesConfig(name="seed3", seed=3)
  assert ss.SyntheticScenes(config=custom, data_dir=tmp_path).builder_config is custom


def test_bad_configs_name_the_value(tmp_path):
  with pytest.raises(ValueError, match="image_size.*8"):
    ss.SyntheticScenesConfig(name="bad", image_size=8)
  with pytest.raises(ValueError, match="num_train.*-1"):
    ss.SyntheticScenesConfig(name="bad", num_train=-1)
  with pytest.raises(ValueError, match="'huge'"):
    ss.SyntheticScenes(config="huge", seed=1, data_dir=tmp_path)
  with pytest.raises(ValueError, match="image_size.*10"):
    ss.generate_example(np.random.default_rng(0), 10)
  with pytest.raises(KeyError, match="'zebra'"):
    ss.render_object("zebra", 4, 4, np.random.default_rng(0))


def test_prepare_and_the_binary(tmp_path):
  # The library call the binary makes: a derived small config, prepared once.
  builder = ss.prepare(str(tmp_path / "lib"), "small", num_train=12, num_test=4)
  assert builder.builder_config.name == "small_train12_test4"
  assert {k: v.num_examples for k, v in builder.info.splits.items()} == {"train": 12, "test": 4}
  assert ss.prepare(str(tmp_path / "lib"), "small", num_train=12, num_test=4).is_prepared()
  out = subprocess.run([sys.executable, "-m", "cnn_rnn_tf.data.make_synthetic", "--help"],
                       capture_output=True, text=True).stdout  # absl: --help exits 1
  assert "--data_dir" in out and "--progress" in out


@pytest.mark.slow
def test_binary_builds_a_config(tmp_path):
  out = subprocess.run(
      [sys.executable, "-m", "cnn_rnn_tf.data.make_synthetic", f"--data_dir={tmp_path}",
       "--config=small", "--num_train=10", "--num_test=5", "--progress=off"],
      capture_output=True, text=True, check=True).stdout
  assert "synthetic_scenes/small_train10_test5: {'train': 10, 'test': 5}" in out
  assert (tmp_path / "synthetic_scenes" / "small_train10_test5").is_dir()
