"""Tests of `cnn_rnn_tf.analysis` (neighbours, attention, hit rate, output files) on a toy task.

The toy task: 32x32 grey images with 1-4 flat coloured squares, one per label, each colour a
label (named after the synthetic_scenes object of that colour: sun yellow, car purple, tree
green, person blue). A plain GradientTape loop trains the demo config's "runlocal" model
(small_cnn at 32x32: 4x4 maps) on it: `FAST_STEPS` steps for the module fixture (a few
seconds; enough for beam search to return paths and for the maps to depend on the prefix),
`SLOW_STEPS` for the slow test that checks the attention finds the squares. No training
binary, no data pipeline.
"""

import json
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import demo_config as demo_config_lib
from cnn_rnn_tf import image_files
from cnn_rnn_tf import images as images_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.analysis import attention
from cnn_rnn_tf.analysis import hit_rate
from cnn_rnn_tf.analysis import neighbours as neighbours_lib
from cnn_rnn_tf.analysis import output

TOY_LABELS = ("sun", "car", "tree", "person")
TOY_COLOURS = ((255, 215, 0), (160, 40, 200), (30, 140, 40), (50, 70, 170))
SIZE = 32
FAST_STEPS = 100
SLOW_STEPS = 300


def demo_config(head: str = "cnn_rnn"):
  """The demo config's get_config("runlocal"), with `head` set."""
  config = demo_config_lib.get_config("runlocal")
  config.model.head = head
  return config


def toy_example(rng: np.random.Generator) -> dict:
  """One toy image: {"image": uint8 [32, 32, 3], "objects": [(name, bbox)], "multi_hot"}."""
  image = rng.uniform(100, 160) + rng.normal(0, 6, [SIZE, SIZE, 3])  # [S, S, 3]
  present = [k for k in range(len(TOY_LABELS)) if rng.random() < 0.45] or [rng.integers(4)]
  objects, placed = [], []
  for k in present:
    for _ in range(30):  # a place that overlaps no earlier square
      side = int(rng.integers(8, 12))
      y0, x0 = rng.integers(0, SIZE - side + 1, size=2)
      box = (int(y0), int(x0), int(y0) + side, int(x0) + side)
      if all(box[0] >= b[2] or box[2] <= b[0] or box[1] >= b[3] or box[3] <= b[1]
             for b in placed):
        break
    else:
      continue
    image[box[0]:box[2], box[1]:box[3]] = TOY_COLOURS[k] + rng.normal(0, 8, 3)
    placed.append(box)
    objects.append((TOY_LABELS[k], np.array(box, np.float32) / SIZE))
  multi_hot = np.zeros(len(TOY_LABELS), np.float32)
  for label, _ in objects:
    multi_hot[TOY_LABELS.index(label)] = 1.0
  return {"image": np.clip(image, 0, 255).astype(np.uint8), "objects": objects,
          "multi_hot": multi_hot}


def toy_examples(n: int, seed: int) -> list[dict]:
  rng = np.random.default_rng(seed)
  return [toy_example(rng) for _ in range(n)]


def train_toy(workdir: str, num_steps: int):
  """A toy workdir trained `num_steps` steps: (workdir, config, vocab, backbone, head)."""
  config = demo_config("cnn_rnn")  # runlocal: small_cnn 32x32, d=16, 32 units
  config.data.data_dir = os.path.join(workdir, "tfds")
  config.data.synthetic_config = "small"
  config.model.train_backbone = True  # so the checkpoint holds the trained backbone
  config.model.dropout = 0.0
  config.model.weight_decay = 0.0
  config.decode.max_length = 4
  workdir_lib.save_config(config, workdir)
  vocab = vocab_lib.LabelVocab(TOY_LABELS)
  vocab.save(os.path.join(workdir, "labels.txt"))
  keras.utils.set_random_seed(0)
  backbone, head = workdir_lib.build_backbone_and_head(config, vocab.num_labels)

  data = toy_examples(1024, seed=0)
  images = np.stack([e["image"] for e in data]).astype(np.float32)  # [1024, 32, 32, 3]
  multi_hot = np.stack([e["multi_hot"] for e in data])  # [1024, 4]
  optimizer = keras.optimizers.Adam(3e-3)
  variables = backbone.trainable_variables + head.trainable_variables

  @tf.function
  def train_step(x, y):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model_lib.head_loss(head, backbone(x, training=True), y,
                                                training=True))
    optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
    return loss

  rng = np.random.default_rng(1)
  for _ in range(num_steps):
    idx = rng.integers(0, len(data), 32)
    train_step(images[idx], multi_hot[idx])
  # Batch-norm moving statistics lag the fast-changing weights of so short a run: set them to
  # the statistics of 512 training images (momentum 0: one pass replaces them).
  norms = [l for l in backbone.layers if isinstance(l, keras.layers.BatchNormalization)]
  for layer in norms:
    layer.momentum, momentum = 0.0, layer.momentum
  backbone(images[:512], training=True)
  for layer in norms:
    layer.momentum = momentum
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head)
  manager = tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(workdir), 1)
  manager.save(checkpoint_number=num_steps)
  return workdir, config, vocab, backbone, head


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  return train_toy(str(tmp_path_factory.mktemp("run")), FAST_STEPS)


@pytest.fixture(scope="module")
def well_trained(tmp_path_factory):
  return train_toy(str(tmp_path_factory.mktemp("run_slow")), SLOW_STEPS)


# --- Neighbours ----------------------------------------------------------------------------


def _cosine(a, b):
  return 1.0 - float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_label_neighbours_sorted_and_exact(trained, metric):
  _, _, vocab, _, head = trained
  table = model_lib.head_step(head).label_embedding.embeddings.numpy()  # [K + 2, d]
  out = neighbours_lib.label_neighbours(head, vocab, k=2, metric=metric)
  assert list(out) == list(vocab.names)
  for name, neighbours in out.items():
    assert len(neighbours) == 2
    names = [n for n, _ in neighbours]
    dists = [d for _, d in neighbours]
    assert name not in names and set(names) <= set(vocab.names)  # no self, no END/START
    assert dists == sorted(dists)
    a = table[vocab.id(name)]
    for other, dist in neighbours:
      b = table[vocab.id(other)]
      want = _cosine(a, b) if metric == "cosine" else float(np.linalg.norm(a - b))
      assert dist == pytest.approx(want, abs=1e-5)
    # Nothing closer was left out.
    rest = [_cosine(a, table[i]) if metric == "cosine" else np.linalg.norm(a - table[i])
            for i in range(vocab.num_labels) if vocab.names[i] not in names + [name]]
    assert all(r >= dists[-1] - 1e-5 for r in rest)


def test_label_neighbours_k_is_capped_and_checked(trained):
  _, _, vocab, _, head = trained
  assert all(len(v) == 3 for v in neighbours_lib.label_neighbours(head, vocab, k=10).values())
  with pytest.raises(ValueError, match="must be >= 1, got 0"):
    neighbours_lib.label_neighbours(head, vocab, k=0)
  with pytest.raises(ValueError, match="Unknown metric 'manhattan'"):
    neighbours_lib.label_neighbours(head, vocab, metric="manhattan")


def test_joint_neighbours_are_image_projection_vs_label_rows(trained):
  _, _, vocab, backbone, head = trained
  images = np.stack([e["image"] for e in toy_examples(3, seed=5)])
  out = neighbours_lib.joint_neighbours(backbone, head, vocab, images, k=4)
  assert len(out) == 3
  table = model_lib.head_step(head).label_embedding.embeddings.numpy()[:vocab.num_labels]
  features = backbone(images_lib.resize(images, 32), training=False)
  embedded = model_lib.head_step(head).image_projection(features).numpy()  # [3, d]
  for row, v in zip(out, embedded):
    assert len(row) == 4 and [d for _, d in row] == sorted(d for _, d in row)
    for name, dist in row:
      assert dist == pytest.approx(_cosine(v, table[vocab.id(name)]), abs=1e-5)


# --- Attention -----------------------------------------------------------------------------


def test_activation_model_small_cnn(trained):
  _, _, _, backbone, _ = trained
  x = images_lib.resize(np.stack([e["image"] for e in toy_examples(2, seed=3)]), 32)
  conv, features = attention.activation_model(backbone)(x)
  assert conv.shape == (2, 4, 4, 64)  # 32 / 2^3; last_conv has 64 channels
  np.testing.assert_allclose(features.numpy(), backbone(x).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.slow  # builds VGG16 (138M parameters)
def test_activation_model_vgg16_nested():
  backbone = backbones.build_backbone("vgg16", weights=None)
  x = np.random.default_rng(0).uniform(0, 255, [1, 224, 224, 3]).astype(np.float32)
  conv, features = attention.activation_model(backbone)(x)
  assert conv.shape == (1, 14, 14, 512)
  np.testing.assert_allclose(features.numpy(), backbone(x).numpy(), rtol=1e-4, atol=1e-4)
  assert attention.last_conv_layer(backbone) == "block5_conv3"


def test_attention_maps_shape_range_and_padding(trained):
  _, _, _, backbone, head = trained
  images = np.stack([e["image"] for e in toy_examples(3, seed=7)])
  paths = np.array([[0, 2, 1], [3, 4, -1], [-1, -1, -1]])  # 4 = END: cut there
  maps = attention.attention_maps(backbone, head, images, paths)
  assert maps.shape == (3, 3, 4, 4) and maps.dtype == np.float32
  assert maps.min() >= 0.0 and maps.max() <= 1.0
  assert np.all(maps[1, 1:] == 0) and np.all(maps[2] == 0)
  assert all(maps[0, t].max() in (0.0, 1.0) for t in range(3))  # normalized by its maximum
  up = attention.upsample_maps(maps, (32, 32))
  assert up.shape == (3, 3, 32, 32) and up.min() >= 0.0 and up.max() <= 1.0


def test_attention_depends_on_the_prefix(trained):
  _, _, vocab, backbone, head = trained
  # Label b's map at step 2 after label a, against b's map at step 1 (no prefix), for every
  # present label b and other label a of a few toy images: one batched call each.
  images, first, second = [], [], []
  for e in toy_examples(8, seed=11):
    for name, _ in e["objects"]:
      b = vocab.id(name)
      for a in range(vocab.num_labels):
        if a != b:
          images.append(e["image"])
          first.append([b])
          second.append([a, b])
  alone = attention.attention_maps(backbone, head, np.stack(images), first)[:, 0]
  after = attention.attention_maps(backbone, head, np.stack(images), second)[:, 1]
  change = np.abs(after - alone).max(axis=(1, 2))  # [pairs]
  assert np.mean(change > 0.01) > 0.5, np.round(change, 3)
  # ... while a step's map ignores the steps after it (the head is causal).
  longer = attention.attention_maps(backbone, head, np.stack(images), [p + [a] for p, a in zip(
      first, [(p[0] + 1) % vocab.num_labels for p in first])])[:, 0]
  np.testing.assert_allclose(longer, alone, atol=1e-5)


@pytest.mark.parametrize("method", attention.METHODS)
def test_attention_methods(trained, method):
  _, _, _, backbone, head = trained
  images = np.stack([e["image"] for e in toy_examples(2, seed=9)])
  maps = attention.attention_maps(backbone, head, images, [[0, 1], [2]], method=method)
  assert maps.shape == (2, 2, 4, 4) and 0.0 <= maps.min() and maps.max() <= 1.0
  assert np.all(maps[1, 1] == 0)


@pytest.mark.parametrize("method", attention.METHODS)
def test_step_log_probs_follow_the_prefix(trained, method):
  """The log-probabilities the maps explain are the decoder's, step by step."""
  _, _, _, backbone, head = trained
  images = np.stack([e["image"] for e in toy_examples(2, seed=9)])
  paths = [[1, 0, 3], [2]]
  act = attention.activation_model(backbone)
  inputs = attention.model_inputs(backbone, images)
  _, log_probs = attention.attention_and_log_probs(act, head, inputs, paths, method)
  step = model_lib.head_step(head)
  state = step.initial_state(backbone(inputs))
  prev = tf.fill([2], step.start_id)
  for t in range(3):
    lp, state = step(prev, state)  # [2, K + 1]
    for n, path in enumerate(paths):
      if t < len(path):
        assert log_probs[n, t] == pytest.approx(float(lp[n, path[t]]), abs=1e-4)
    prev = tf.constant([paths[0][t], paths[0][t]])  # row 1 past its end: not compared


def test_attention_maps_reject_bad_paths(trained):
  _, _, _, backbone, head = trained
  image = toy_examples(1, seed=11)[0]["image"][None]
  with pytest.raises(ValueError, match="label id 5 is not a label id"):
    attention.attention_maps(backbone, head, image, [[0, 5]])
  with pytest.raises(ValueError, match="appears twice"):
    attention.attention_maps(backbone, head, image, [[1, 1]])
  with pytest.raises(ValueError, match="2 paths for 1 images"):
    attention.attention_maps(backbone, head, image, [[0], [1]])
  with pytest.raises(ValueError, match="Unknown attention method 'deconvnet'"):
    attention.attention_maps(backbone, head, image, [[0]], method="deconvnet")


def test_peak_and_box_fraction():
  m = np.zeros([8, 8], np.float32)
  m[2, 5] = 1.0
  assert attention.map_peak(m) == (2.5 / 8, 5.5 / 8)
  assert attention.map_peak(np.zeros([4, 4])) is None
  # The peak of the bilinearly upsampled map is at the highest cell's centre (interior).
  up = attention.upsample_maps(m, (64, 64))
  ys, xs = np.nonzero(up >= up.max() - 1e-6)
  assert np.mean(ys) + 0.5 == pytest.approx(2.5 / 8 * 64) and np.mean(xs) + 0.5 == 5.5 * 8
  assert hit_rate.box_fraction(np.array([[0, 0, 0.5, 0.5]]), (8, 8)) == 0.25
  # Union, not sum, of overlapping boxes.
  assert hit_rate.box_fraction(np.array([[0, 0, .5, .5], [0, 0, .5, 1.]]), (8, 8)) == 0.5


@pytest.mark.slow
def test_attention_finds_the_objects_on_toy_images(well_trained):
  """The peak of a step's map lies in its square far more often than chance (about 9%)."""
  _, _, vocab, backbone, head = well_trained
  examples = toy_examples(60, seed=123)
  grad_cam = hit_rate.box_hit_rate(backbone, head, vocab, examples, beam_size=3, max_length=4)
  assert grad_cam["steps"] >= 80  # of about 110 present labels: the model finds most
  assert grad_cam["rate"] > 3 * grad_cam["chance"], grad_cam
  assert grad_cam["by_step"]["1"]["rate"] > 0.5, grad_cam
  occlusion = hit_rate.box_hit_rate(backbone, head, vocab, examples, beam_size=3,
                                     max_length=4, method="occlusion")
  assert occlusion["steps"] == grad_cam["steps"]
  assert occlusion["rate"] > 3 * occlusion["chance"], occlusion


@pytest.mark.slow
def test_attention_box_hit_rate_on_synthetic_scenes(trained):
  workdir = trained[0]
  result = hit_rate.attention_box_hit_rate(workdir, split="test", num_images=30)
  assert result["images"] == 30
  assert result["predicted_steps"] >= result["steps"] > 0
  assert 0.0 <= result["rate"] <= 1.0 and 0.0 < result["chance"] < 1.0
  assert sum(s["steps"] for s in result["by_step"].values()) == result["steps"]


# --- Files ---------------------------------------------------------------------------------


def test_write_visualizations_files(trained, tmp_path):
  workdir = trained[0]
  images = np.stack([e["image"] for e in toy_examples(3, seed=21)])
  extra = str(tmp_path / "extra.png")
  tf.io.write_file(extra, tf.io.encode_png(toy_examples(1, seed=22)[0]["image"]))
  out_dir = tmp_path / "report" / "visualize"
  md = output.write_visualizations(workdir, str(out_dir), images=images,
                                      image_paths=[extra], num_neighbours=2)

  labels = json.loads((out_dir / "label_neighbours.json").read_text())
  assert labels["metric"] == "cosine" and set(labels["neighbours"]) == set(TOY_LABELS)
  assert all(len(v) == 2 for v in labels["neighbours"].values())
  assert (out_dir / "label_neighbours.md").read_text().count("\n| ") == len(TOY_LABELS) + 1

  records = json.loads((out_dir / "images.json").read_text())["images"]
  assert [r["source"] for r in records] == ["images[0]", "images[1]", "images[2]", "extra.png"]
  step_pngs = sorted(p.name for p in out_dir.glob("image*_step*.png"))
  assert len(step_pngs) == sum(len(r["predicted"]) for r in records) >= 4
  for i, r in enumerate(records):
    assert r["predicted"], "the trained toy model predicts at least one label"
    assert len(r["attention_files"]) == len(r["step_probability"]) == len(r["predicted"])
    for t, (f, label) in enumerate(zip(r["attention_files"], r["predicted"])):
      assert f == f"image{i:02d}_step{t + 1}_{label}.png" and (out_dir / f).exists()
    assert len(r["joint_neighbours"]) == 2
    assert (out_dir / r["image_file"]).exists()
  image = tf.io.decode_png(tf.io.read_file(str(out_dir / step_pngs[0]))).numpy()
  assert image.ndim == 3 and image.shape[0] > 100

  # The returned Markdown links relative to out_dir's parent (where the demo's report.md is).
  links = re.findall(r"\]\(([^)]+\.png)\)", md)
  assert len(links) == len(records) + len(step_pngs)
  assert all(l.startswith("visualize/") and (tmp_path / "report" / l).exists() for l in links)
  local = (out_dir / "visualize.md").read_text()
  assert all((out_dir / l).exists() for l in re.findall(r"\]\(([^)]+\.png)\)", local))


def test_write_visualizations_without_images_and_bce(trained, tmp_path):
  md = output.write_visualizations(trained[0], str(tmp_path / "v"))
  assert "Table 5" in md and ".png" not in md
  assert not list((tmp_path / "v").glob("*.png"))
  bce = str(tmp_path / "bce")
  config = demo_config("bce")
  workdir_lib.save_config(config, bce)
  vocab_lib.LabelVocab(TOY_LABELS).save(os.path.join(bce, "labels.txt"))
  with pytest.raises(ValueError, match="'bce' head"):
    output.write_visualizations(bce, str(tmp_path / "vb"))


def test_visualize_workdir_globs_files_and_returns_paths(trained, tmp_path):
  """The binary's one call: a glob of files, the default out_dir, no hit rate by default."""
  workdir = trained[0]
  for i in range(2):
    tf.io.write_file(str(tmp_path / f"photo{i}.png"),
                     tf.io.encode_png(toy_examples(1, seed=30 + i)[0]["image"]))
  out = output.visualize_workdir(workdir, image_patterns=[str(tmp_path / "photo*.png")],
                                 num_neighbours=1)
  assert out["markdown"] == os.path.join(workdir, "visualize", "visualize.md")
  assert out["hit_rate"] is None and out["hit_rate_file"] is None
  records = json.loads(open(os.path.join(workdir, "visualize", "images.json")).read())["images"]
  assert [r["source"] for r in records] == ["photo0.png", "photo1.png"]
  assert all(len(r["joint_neighbours"]) == 1 for r in records)
  with pytest.raises(image_files.ImageError, match="missing.png"):
    output.visualize_workdir(workdir, image_patterns=[str(tmp_path / "missing.png")])
