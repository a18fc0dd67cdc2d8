"""cnn_rnn_tf/data/inputs.py: dataset_for, the one input builder (images or cached features)."""

import numpy as np
from PIL import Image
import pytest

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import vocab as vocab_lib

LABELS = ["a", "b a", "c", "b", "a c", "b c", "a", "c"]


@pytest.fixture
def config(tmp_path):
  rows = ["image_name,tags"]
  for i, tags in enumerate(LABELS):
    Image.fromarray(np.full((6, 5, 3), 20 * i, np.uint8)).save(tmp_path / f"{i}.png")
    rows.append(f"{i}.png,{tags}")
  (tmp_path / "train.csv").write_text("\n".join(rows) + "\n")
  config = config_lib.default_config()
  config.data.source = "csv"
  config.data.train_csv = config.data.eval_csv = str(tmp_path / "train.csv")
  config.model.backbone = "small_cnn"
  config.model.backbone_weights = None
  config.model.image_size = 8
  config.train.batch_size = 3
  return config


def vocab_of(config):
  source = data_lib.get_source(config.data)
  return vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                              all_names=source.label_names)


def keys(ds, n=None):
  out = []
  for i, batch in enumerate(ds):
    if n is not None and i == n:
      break
    out.append([k.decode() for k in batch["key"].numpy()])
  return out


def test_uses_feature_cache(config):
  config.model.train_backbone = False
  config.data.cache_features = True
  assert data_lib.uses_feature_cache(config)
  config.data.cache_features = False
  assert not data_lib.uses_feature_cache(config)
  config.data.cache_features = True
  config.model.train_backbone = True
  assert not data_lib.uses_feature_cache(config)


def test_images_mode_evaluation_and_training(config, tmp_path):
  config.model.train_backbone = True
  vocab = vocab_of(config)
  ds = data_lib.dataset_for(config, "eval", vocab, training=False, cache_dir=None)
  batches = list(ds)
  assert [b["image"].shape[0] for b in batches] == [3, 3, 2]  # remainder kept
  assert batches[0]["image"].shape == (3, 8, 8, 3)
  assert batches[0]["labels"].shape == (3, vocab.num_labels)
  assert sum(keys(ds), []) == [f"{i}.png" for i in range(8)]  # in order, once

  train = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=None)
  stream = keys(train, 6)  # 18 examples: more than one epoch, repeated
  assert all(len(k) == 3 for k in stream)
  assert sorted(sum(stream, [])[:8]) == sorted(f"{i}.png" for i in range(8))
  assert sum(stream, [])[:8] != [f"{i}.png" for i in range(8)]  # shuffled (seed 0)
  resumed = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=None,
                                 start_step=2)
  assert keys(resumed, 4) == stream[2:]
  with pytest.raises(ValueError, match="start_step=1 is only for the training stream"):
    data_lib.dataset_for(config, "eval", vocab, training=False, cache_dir=None, start_step=1)


def test_features_mode_builds_the_cache_once_and_matches_images_order(config, tmp_path):
  config.model.train_backbone = False
  vocab = vocab_of(config)
  cache = tmp_path / "cache"
  ds = data_lib.dataset_for(config, "eval", vocab, training=False, cache_dir=str(cache),
                            batch_size=4)
  batches = list(ds)
  assert [b["features"].shape for b in batches] == [(4, 256), (4, 256)]
  assert sum(keys(ds), []) == [f"{i}.png" for i in range(8)]
  assert len(list(cache.iterdir())) == 1
  train = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=str(cache))
  assert len(list(cache.iterdir())) == 2  # the train split has its own folder
  config.model.train_backbone = True
  images = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=None)
  assert keys(train, 5) == keys(images, 5)  # the same stream, features or images
  config.model.train_backbone = False
  with pytest.raises(ValueError, match="needs cache_dir"):
    data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=None)


# ------------------------------------------------------------------------ calibration part


def _many(tmp_path, n=40):
  rows = ["image_name,tags"]
  for i in range(n):
    Image.fromarray(np.full((6, 5, 3), i, np.uint8)).save(tmp_path / f"m{i}.png")
    rows.append(f"m{i}.png,{'a' if i % 2 else 'b c'}")
  (tmp_path / "many.csv").write_text("\n".join(rows) + "\n")
  return str(tmp_path / "many.csv")


def test_calibration_part_is_a_hash_of_the_key_of_about_the_fraction():
  keys_ = np.array([f"image_{i}.jpg" for i in range(4000)])
  held = data_lib.in_calibration_part(keys_, 0.1).numpy()
  assert abs(held.mean() - 0.1) < 0.02  # about the fraction
  again = data_lib.in_calibration_part(keys_[::-1].copy(), 0.1).numpy()[::-1]
  np.testing.assert_array_equal(held, again)  # per key, whatever the order
  bigger = data_lib.in_calibration_part(keys_, 0.3).numpy()
  assert np.all(bigger[held])  # a larger fraction holds out a superset
  assert not data_lib.in_calibration_part(keys_, 0.0).numpy().any()
  with pytest.raises(ValueError, match="calibration_fraction.*got 1.0"):
    data_lib.in_calibration_part(keys_, 1.0)


@pytest.mark.parametrize("features", [False, True])
def test_fit_and_calibration_parts_are_disjoint_and_training_reads_only_fit(
    config, tmp_path, features):
  config.data.train_csv = config.data.eval_csv = _many(tmp_path)
  config.data.calibration_fraction = 0.25
  config.model.train_backbone = not features
  vocab = vocab_of(config)
  cache = str(tmp_path / "cache")
  all_keys = [f"m{i}.png" for i in range(40)]
  expected = set(np.array(all_keys)[data_lib.in_calibration_part(
      np.array(all_keys), 0.25).numpy()])
  assert 4 <= len(expected) <= 16  # 10 expected of 40
  calib = data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=cache,
                               part=data_lib.CALIBRATION)
  assert set(sum(keys(calib), [])) == expected
  fit = data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=cache,
                             part=data_lib.FIT)
  fit_keys = sum(keys(fit), [])
  assert sorted(fit_keys + sorted(expected)) == sorted(all_keys)  # disjoint, complete
  n_fit = len(fit_keys)
  train = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=cache,
                               part=data_lib.FIT)
  stream = sum(keys(train, 2 * n_fit // 3 + 2), [])  # more than two epochs of the fit part
  assert not set(stream) & expected
  assert sorted(stream[:n_fit]) == sorted(fit_keys)  # one epoch = the fit part, exactly
  assert sorted(stream[n_fit:2 * n_fit]) == sorted(fit_keys)
  resumed = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=cache,
                                 part=data_lib.FIT, start_step=2)
  assert sum(keys(resumed, 3), []) == stream[6:15]  # resume positions on the fit stream
  everything = data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=cache)
  assert sorted(sum(keys(everything), [])) == sorted(all_keys)  # part="all": the whole split


def test_calibration_fraction_zero_and_empty_parts(config, tmp_path):
  vocab = vocab_of(config)
  config.model.train_backbone = True
  config.data.calibration_fraction = 0.0
  fit = data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=None,
                             part=data_lib.FIT)
  assert len(sum(keys(fit), [])) == 8  # nothing held out
  with pytest.raises(ValueError, match="calibration_fraction > 0"):
    data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=None,
                         part=data_lib.CALIBRATION)
  config.data.calibration_fraction = 1e-6  # 8 keys: the calibration part is empty
  with pytest.raises(ValueError, match="'calibration' part of split 'train'.*empty"):
    data_lib.dataset_for(config, "train", vocab, training=False, cache_dir=None,
                         part=data_lib.CALIBRATION)
