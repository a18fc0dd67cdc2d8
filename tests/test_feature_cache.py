"""Tests of cnn_rnn_tf/data/feature_cache.py: reuse, keys, atomic writes, reading back."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf.data import feature_cache

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LABELS = ["cat dog", "dog", "person", "dog person", "cat", "dog", "cat person"]


def make_csv(folder, num=len(LABELS)):
  rng = np.random.default_rng(0)
  rows = ["image_name,tags"]
  for i in range(num):
    os.makedirs(os.path.join(folder, "img"), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(
        os.path.join(folder, f"img/{i}.png"))
    rows.append(f"img/{i}.png,{LABELS[i % len(LABELS)]}")
  path = os.path.join(folder, "train.csv")
  with open(path, "w") as f:
    f.write("\n".join(rows) + "\n")
  return path


def make_source(csv_path, **fields):
  config = config_lib.default_config().data
  config.update(dict(source="csv", train_csv=csv_path, eval_csv=csv_path))
  config.update(fields)
  source = data_lib.get_source(config)
  vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                               all_names=source.label_names)
  return source, vocab


@pytest.fixture(scope="module")
def backbone():
  return backbones.build_backbone("small_cnn", image_size=16)


class Counting:
  """A backbone wrapper that counts its calls and can fail on the n-th one."""

  def __init__(self, model=None, fail_on=None):
    self.model, self.fail_on, self.calls = model, fail_on, 0

  def __call__(self, images, training=False):
    self.calls += 1
    if self.model is None or self.calls == self.fail_on:
      raise RuntimeError(f"backbone called (call {self.calls})")
    return self.model(images, training=training)


def build(source, vocab, cache_dir, backbone, **kwargs):
  args = dict(split="train", backbone_name="small_cnn", backbone_weights=None, image_size=16,
              precision="off", cache_dir=str(cache_dir), batch_size=3, verbose=0)
  args.update(kwargs)
  split = args.pop("split")
  return feature_cache.build(source, split, vocab, backbone=backbone, **args)


def folders(cache_dir):
  return sorted(os.listdir(cache_dir))


def test_build_writes_features_and_second_run_reuses_without_backbone(tmp_path, backbone):
  source, vocab = make_source(make_csv(str(tmp_path)))
  counting = Counting(backbone)
  path = build(source, vocab, tmp_path / "cache", counting)
  assert counting.calls == 3  # ceil(7 / 3)
  meta = feature_cache.read_meta(path)
  assert (meta["num_examples"], meta["feature_dim"], meta["num_labels"]) == (7, 256, 3)
  with open(os.path.join(path, "key.json")) as f:
    key = json.load(f)
  assert key["split"] == "train" and key["image_size"] == 16 and key["precision"] == "float32"
  assert key["vocab"] == vocab.names and key["source"]["csv"] == str(tmp_path / "train.csv")

  # Features are the backbone's on the pipeline's images, in the source's order.
  images = data_lib.image_dataset(source, "train", vocab, image_size=16, batch_size=7,
                                  training=False)
  expected = next(iter(images))
  got = next(iter(data_lib.feature_dataset(path, batch_size=7, training=False)))
  assert got["features"].shape == (7, 256) and got["features"].dtype == tf.float32
  np.testing.assert_allclose(got["features"].numpy(), backbone(expected["image"]).numpy(),
                             rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(got["labels"].numpy(), expected["labels"].numpy())
  np.testing.assert_array_equal(got["key"].numpy(), expected["key"].numpy())

  # A new source object and a backbone that raises when called: the cache is read.
  source2, vocab2 = make_source(str(tmp_path / "train.csv"))
  assert build(source2, vocab2, tmp_path / "cache", Counting(None)) == path
  assert folders(tmp_path / "cache") == [os.path.basename(path)]


def test_any_change_makes_a_new_cache(tmp_path, backbone):
  csv_path = make_csv(str(tmp_path))
  source, vocab = make_source(csv_path)
  cache = tmp_path / "cache"
  paths = {build(source, vocab, cache, backbone)}
  paths.add(build(source, vocab, cache, None, image_size=24))  # builds its own backbone
  paths.add(build(source, vocab, cache, backbone, precision="on"))
  paths.add(build(source, vocab, cache, backbone, split="test"))
  paths.add(build(source, vocab_lib.LabelVocab(list(reversed(vocab.names))), cache, backbone))
  weights = tmp_path / "w.weights.h5"
  weights.write_bytes(b"pretend")
  paths.add(build(source, vocab, cache, backbone, backbone_weights=str(weights)))
  source_skip, _ = make_source(csv_path, skip_bad_examples=True)
  paths.add(build(source_skip, vocab, cache, backbone))
  with open(csv_path, "a") as f:  # the CSV changes (size and mtime)
    f.write("img/0.png,cat\n")
  source, vocab = make_source(csv_path)
  paths.add(build(source, vocab, cache, backbone))
  assert len(paths) == 8 and len(folders(cache)) == 8
  assert build(source, vocab, cache, Counting(None)) in paths  # and each is reused


def test_interrupted_write_leaves_nothing(tmp_path, backbone):
  source, vocab = make_source(make_csv(str(tmp_path)))
  cache = tmp_path / "cache"
  with pytest.raises(RuntimeError, match="call 2"):
    build(source, vocab, cache, Counting(backbone, fail_on=2))
  assert folders(cache) == []  # the temporary folder is gone too
  counting = Counting(backbone)
  path = build(source, vocab, cache, counting)
  assert counting.calls == 3 and feature_cache.is_complete(path)


def test_temporary_folder_of_a_dead_process_is_removed(tmp_path, backbone):
  source, vocab = make_source(make_csv(str(tmp_path)))
  cache = tmp_path / "cache"
  key = feature_cache.cache_key(source, "train", vocab, "small_cnn", None, 16, "off")
  final = feature_cache.cache_path(str(cache), key)
  dead = subprocess.Popen(["true"])
  dead.wait()
  stale = f"{final}.tmp-{os.uname().nodename}-{dead.pid}-0123abcd"
  os.makedirs(stale)
  with pytest.raises(FileNotFoundError, match="not a complete feature cache"):
    feature_cache.read_meta(stale)
  path = build(source, vocab, cache, backbone)
  assert path == final and folders(cache) == [os.path.basename(final)]


def test_feature_dataset_streams_like_image_dataset(tmp_path, backbone):
  source, vocab = make_source(make_csv(str(tmp_path)))
  path = build(source, vocab, tmp_path / "cache", backbone)

  def keys(ds, n):
    return [b["key"].numpy().tolist() for b in ds.take(n)]

  images = data_lib.image_dataset(source, "train", vocab, image_size=16, batch_size=2,
                                  training=True, seed=4)
  features = data_lib.feature_dataset(path, batch_size=2, training=True, seed=4,
                                      shuffle_buffer=2048)
  full = keys(features, 8)
  assert full == keys(images, 8)  # same seed, same n: the same order
  resumed = data_lib.feature_dataset(path, batch_size=2, training=True, seed=4, start_step=5)
  assert keys(resumed, 3) == full[5:]
  batch = next(iter(resumed))
  assert batch["features"].shape == (2, 256) and batch["labels"].shape == (2, 3)
  evaluation = list(data_lib.feature_dataset(path, batch_size=3, training=False))
  assert [int(b["key"].shape[0]) for b in evaluation] == [3, 3, 1]


@pytest.mark.slow
def test_killed_writer_leaves_nothing_a_later_run_uses(tmp_path):
  csv_path = make_csv(str(tmp_path), num=40)
  cache = tmp_path / "cache"
  marker = tmp_path / "started"
  script = textwrap.dedent(f"""
      import os, time
      os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
      from cnn_rnn_tf import backbones, config_lib, data, vocab as vocab_lib
      from cnn_rnn_tf.data import feature_cache
      config = config_lib.default_config().data
      config.update(dict(source="csv", train_csv={csv_path!r}))
      source = data.get_source(config)
      vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets())
      model = backbones.build_backbone("small_cnn", image_size=16)
      calls = []
      def slow(images, training=False):
        calls.append(1)
        if len(calls) == 3:
          open({str(marker)!r}, "w").close()
          time.sleep(600)
        return model(images, training=training)
      feature_cache.build(source, "train", vocab, "small_cnn", None, 16, precision="off",
                          cache_dir={str(cache)!r}, batch_size=4, backbone=slow, verbose=0)
      """)
  proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
  try:
    deadline = time.time() + 120
    while not marker.exists():
      assert proc.poll() is None, "the writer exited before the kill"
      assert time.time() < deadline, "the writer never got to its third batch"
      time.sleep(0.2)
    written = [f for d in os.listdir(cache) for f in os.listdir(cache / d)]
    assert written  # shards of the first batches are on disk, in the temporary folder
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  finally:
    if proc.poll() is None:
      proc.kill()
  (stale,) = os.listdir(cache)
  assert ".tmp-" in stale and not feature_cache.is_complete(str(cache / stale))

  source, vocab = make_source(csv_path)
  model = backbones.build_backbone("small_cnn", image_size=16)
  counting = Counting(model)
  path = build(source, vocab, cache, counting, batch_size=4)
  assert counting.calls == 10  # extracted anew, not read from the killed run
  assert folders(cache) == [os.path.basename(path)]  # the dead writer's folder is removed
  assert feature_cache.read_meta(path)["num_examples"] == 40


def test_extraction_draws_a_progress_bar_only_when_asked(tmp_path, capsys):
  from cnn_rnn_tf import progress  # pylint: disable=g-import-not-at-top
  source, vocab = make_source(make_csv(str(tmp_path)))
  model = backbones.build_backbone("small_cnn", image_size=16)
  try:
    progress.set_mode("on")
    build(source, vocab, tmp_path / "on", model, verbose=1)
    err = capsys.readouterr().err
    assert "features csv/train" in err and f"{source.num_examples('train')}/" in err
    assert "img/s" in err
    progress.set_mode("off")
    build(source, vocab, tmp_path / "off", model, verbose=1)
    assert "features" not in capsys.readouterr().err
  finally:
    progress.set_mode("auto")


def test_weights_file_retrained_in_place_gets_a_new_key_and_cache(tmp_path, backbone):
  """The demo retrains backbone.weights.h5 in place: the key must follow its content.

  The rewrite keeps the path, the size (same architecture) and, as on a file system with
  coarse timestamps or a rewrite within one tick, the mtime: only the bytes differ.
  """
  csv_path = make_csv(str(tmp_path))
  source, vocab = make_source(csv_path)
  weights = str(tmp_path / "backbone.weights.h5")
  backbone.save_weights(weights)
  stat = os.stat(weights)
  key = feature_cache.cache_key(source, "train", vocab, "small_cnn", weights, 16, "off")
  first = build(source, vocab, tmp_path / "cache", backbone, backbone_weights=weights)
  retrained = backbones.build_backbone("small_cnn", image_size=16)
  retrained.set_weights([w + 0.5 for w in backbone.get_weights()])
  retrained.save_weights(weights)
  os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns))
  assert os.stat(weights).st_size == stat.st_size
  assert feature_cache.cache_key(source, "train", vocab, "small_cnn", weights, 16, "off") != key
  second = build(source, vocab, tmp_path / "cache", retrained, backbone_weights=weights)
  assert second != first  # rebuilt, not the stale cache of the old weights
  features = [next(iter(feature_cache.feature_dataset(p, batch_size=7, training=False)))
              ["features"].numpy() for p in (first, second)]
  assert not np.allclose(features[0], features[1])
