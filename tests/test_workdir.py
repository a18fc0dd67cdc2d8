"""Tests of cnn_rnn_tf.workdir: layout, config round trip, checkpoint rule, strict restore,
resume check and lock. Workdirs are written by hand (no training): small_cnn at 32x32."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib

LABELS = ("cat", "dog", "car", "tree")


def _config(head="cnn_rnn", **model):
  config = config_lib.runlocal(config_lib.default_config())
  config.model.head = head
  config.model.update(model)
  return config


def _save_checkpoint(config, folder, step, seed=0):
  """Models of `config` with random weights saved as `<folder>/ckpt-<step>`; the head."""
  tf.keras.utils.set_random_seed(seed)
  backbone, head = workdir_lib.build_backbone_and_head(config, len(LABELS))
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head)
  tf.train.CheckpointManager(checkpoint, folder, max_to_keep=5).save(checkpoint_number=step)
  return head


def _workdir(path, config=None, steps=(2,), best=None):
  """A trained-looking workdir: config.json, labels.txt, checkpoints/ (and best/)."""
  w = str(path)
  config = config or _config()
  workdir_lib.save_config(config, w)
  vocab_lib.LabelVocab(LABELS).save(workdir_lib.labels_path(w))
  heads = {}
  for i, step in enumerate(steps):
    heads[step] = _save_checkpoint(config, workdir_lib.checkpoints_dir(w), step, seed=i)
  if best is not None:
    heads["best"] = _save_checkpoint(config, workdir_lib.best_dir(w), best, seed=99)
  return w, heads


def _same_weights(a, b) -> bool:
  return all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))


def test_layout_paths(tmp_path):
  w = str(tmp_path)
  assert workdir_lib.config_path(w) == os.path.join(w, "config.json")
  assert workdir_lib.labels_path(w) == os.path.join(w, "labels.txt")
  assert workdir_lib.checkpoints_dir(w) == os.path.join(w, "checkpoints")
  assert workdir_lib.best_dir(w) == os.path.join(w, "best")
  assert workdir_lib.best_json_path(w) == os.path.join(w, "best", "best.json")
  assert workdir_lib.train_dir(w) == os.path.join(w, "train")
  assert workdir_lib.eval_dir(w) == os.path.join(w, "eval")
  assert workdir_lib.data_report_path(w) == os.path.join(w, "data_report.json")
  assert workdir_lib.backbone_weights_path(w) == os.path.join(w, "backbone.weights.h5")
  assert workdir_lib.lock_path(w) == os.path.join(w, ".lock")


def test_feature_cache_dir(tmp_path):
  config, run = _config(), str(tmp_path / "run")
  assert workdir_lib.feature_cache_dir(run, config.data.cache_dir) == str(
      tmp_path / "feature_cache")
  config.data.cache_dir = "none"
  assert workdir_lib.feature_cache_dir(run, config.data.cache_dir) == str(
      tmp_path / "feature_cache")
  config.data.cache_dir = "/data/cache"
  assert workdir_lib.feature_cache_dir(run, config.data.cache_dir) == "/data/cache"


def test_saved_paths_are_absolute_and_load_from_any_folder(tmp_path, monkeypatch):
  """Issue 13 item 9: the demo's heads recorded runs/demo/backbone/backbone.weights.h5."""
  monkeypatch.chdir(tmp_path)
  os.makedirs("runs/e2e")
  open("runs/e2e/backbone.weights.h5", "w").close()
  config = _config(backbone_weights="runs/e2e/backbone.weights.h5", train_backbone=False)
  config.data.data_dir = "tfds"
  config.data.cache_dir = "None"
  workdir_lib.save_config(config, "runs/heads")
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  monkeypatch.chdir(elsewhere)
  loaded = workdir_lib.load_config(str(tmp_path / "runs" / "heads"))
  assert loaded.model.backbone_weights == str(tmp_path / "runs/e2e/backbone.weights.h5")
  assert loaded.data.data_dir == str(tmp_path / "tfds")
  assert loaded.data.cache_dir is None
  config_checks.validate(loaded)  # the weights file is found from here
  assert config.model.backbone_weights == "runs/e2e/backbone.weights.h5"  # not changed


def test_old_config_json_gets_the_new_fields_defaults(tmp_path):
  config = _config().to_dict()
  del config["data"]["max_image_pixels"]
  del config["train"]["keep_best"]
  config["model"]["retired_field"] = 1
  tmp_path.joinpath("config.json").write_text(json.dumps(config))
  loaded = workdir_lib.load_config(str(tmp_path))
  assert loaded.data.max_image_pixels == config_lib.default_config().data.max_image_pixels
  assert loaded.train.keep_best == ""
  assert "retired_field" not in loaded.model
  config_checks.validate(loaded)


def test_missing_files_are_named(tmp_path):
  with pytest.raises(FileNotFoundError, match="config.json"):
    workdir_lib.load_trained(str(tmp_path))
  workdir_lib.save_config(_config(), str(tmp_path))
  with pytest.raises(FileNotFoundError, match="labels.txt"):
    workdir_lib.load_trained(str(tmp_path))
  vocab_lib.LabelVocab(LABELS).save(workdir_lib.labels_path(str(tmp_path)))
  with pytest.raises(FileNotFoundError, match="checkpoints"):
    workdir_lib.load_trained(str(tmp_path))


# ------------------------------------------------------------------------ checkpoint rule


def test_checkpoint_rule_without_best(tmp_path):
  w, heads = _workdir(tmp_path, steps=(2, 4))
  latest = os.path.join(workdir_lib.checkpoints_dir(w), "ckpt-4")
  assert workdir_lib.resolve_checkpoint(w, "auto") == latest
  assert workdir_lib.resolve_checkpoint(w, "latest") == latest
  with pytest.raises(FileNotFoundError, match="keep_best"):
    workdir_lib.resolve_checkpoint(w, "best")
  trained = workdir_lib.load_trained(w)
  assert trained.checkpoint_path == latest
  assert _same_weights(trained.head, heads[4])
  assert trained.vocab.names == list(LABELS)
  assert trained.config.model.head == "cnn_rnn"


def test_checkpoint_rule_with_best(tmp_path):
  w, heads = _workdir(tmp_path, steps=(2, 4), best=2)
  best = os.path.join(workdir_lib.best_dir(w), "ckpt-2")
  assert workdir_lib.resolve_checkpoint(w, "auto") == best
  assert workdir_lib.resolve_checkpoint(w, "best") == best
  assert workdir_lib.resolve_checkpoint(w, "latest").endswith(os.path.join("checkpoints",
                                                                           "ckpt-4"))
  assert _same_weights(workdir_lib.load_trained(w).head, heads["best"])
  assert _same_weights(workdir_lib.load_trained(w, "latest").head, heads[4])
  # A path: a prefix or a folder.
  first = os.path.join(workdir_lib.checkpoints_dir(w), "ckpt-2")
  assert _same_weights(workdir_lib.load_trained(w, first).head, heads[2])
  assert workdir_lib.resolve_checkpoint(w, workdir_lib.checkpoints_dir(w)).endswith("ckpt-4")
  with pytest.raises(FileNotFoundError, match="ckpt-7"):
    workdir_lib.resolve_checkpoint(w, os.path.join(workdir_lib.checkpoints_dir(w), "ckpt-7"))


def test_load_trained_with_a_policy_keeps_the_head_float32(tmp_path):
  w, heads = _workdir(tmp_path)
  trained = workdir_lib.load_trained(w, policy="mixed_bfloat16")
  assert any(layer.compute_dtype == "bfloat16" for layer in trained.backbone.layers)
  assert all(v.dtype == "float32" for v in trained.head.weights)
  assert _same_weights(trained.head, heads[2])


# ------------------------------------------------------------------------ strict restore


@pytest.mark.parametrize("saved_with, named", [
    ({"head": "bce"}, "model.head='cnn_rnn'"),            # the failed-restart case
    ({"lstm_units": 16}, "lstm_units=32"),
])
def test_checkpoint_of_another_model_is_refused(tmp_path, saved_with, named):
  w, _ = _workdir(tmp_path)
  other = _config(**saved_with)
  _save_checkpoint(other, str(tmp_path / "other"), 7)
  with pytest.raises(workdir_lib.CheckpointMismatchError, match="does not match") as info:
    workdir_lib.load_trained(w, str(tmp_path / "other" / "ckpt-7"))
  assert named in str(info.value) and "ckpt-7" in str(info.value)


def test_config_changed_after_training_is_refused(tmp_path):
  """Issue 13's repro: config.json says bce, the checkpoint is a CNN-RNN head."""
  w, _ = _workdir(tmp_path)
  workdir_lib.save_config(_config(head="bce"), w)
  with pytest.raises(workdir_lib.CheckpointMismatchError, match="model.head='bce'"):
    workdir_lib.load_trained(w)


def test_frozen_and_trained_backbone_mismatch_is_refused(tmp_path):
  weights = str(tmp_path / "bb.weights.h5")
  backbone, _ = workdir_lib.build_backbone_and_head(_config(), len(LABELS))
  backbone.save_weights(weights)
  # Trained backbone in the checkpoint, frozen one in the config.
  w, _ = _workdir(tmp_path / "a")
  workdir_lib.save_config(_config(train_backbone=False, backbone_weights=weights), w)
  with pytest.raises(workdir_lib.CheckpointMismatchError, match="frozen"):
    workdir_lib.load_trained(w)
  # Head only in the checkpoint, a trained backbone in the config.
  w, _ = _workdir(tmp_path / "b", config=_config(train_backbone=False, backbone_weights=weights))
  workdir_lib.save_config(_config(), w)
  with pytest.raises(workdir_lib.CheckpointMismatchError, match="no backbone variables"):
    workdir_lib.load_trained(w)


def test_training_checkpoint_with_optimizer_restores(tmp_path):
  """A checkpoint as the trainer writes it (optimizer and step too) restores the model."""
  w = str(tmp_path)
  config = _config()
  workdir_lib.save_config(config, w)
  vocab_lib.LabelVocab(LABELS).save(workdir_lib.labels_path(w))
  backbone, head = workdir_lib.build_backbone_and_head(config, len(LABELS))
  optimizer = tf.keras.optimizers.Adam(1e-3)
  variables = head.trainable_variables + backbone.trainable_variables
  optimizer.build(variables)
  optimizer.apply_gradients([(tf.ones_like(v), v) for v in variables])
  step = tf.Variable(3, dtype=tf.int64)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head, optimizer, step)
  tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(w), 1).save(3)
  trained = workdir_lib.load_trained(w)
  assert _same_weights(trained.head, head) and _same_weights(trained.backbone, backbone)


def _attribute_side_head(head):
  """The CNN-RNN head laid out as before its side head joined the graph: the logits-only
  functional model, with the side head as a (tracked) attribute `marginal_head`."""
  old = tf.keras.Model(head.input, head.output["logits"], name="cnn_rnn_head")
  old.marginal_head = head.get_layer("marginal_head")
  return old


def test_a_checkpoint_with_the_side_head_as_attribute_restores_bit_for_bit(tmp_path):
  w = str(tmp_path)
  config = _config(train_backbone=True)
  workdir_lib.save_config(config, w)
  vocab_lib.LabelVocab(LABELS).save(workdir_lib.labels_path(w))
  tf.keras.utils.set_random_seed(0)
  backbone, head = workdir_lib.build_backbone_and_head(config, len(LABELS))
  optimizer = tf.keras.optimizers.Adam(1e-3)
  variables = head.trainable_variables + backbone.trainable_variables
  optimizer.build(variables)
  optimizer.apply_gradients([(tf.random.normal(v.shape), v) for v in variables])
  step = tf.Variable(3, dtype=tf.int64)
  old = tf.train.Checkpoint(head=_attribute_side_head(head), backbone=backbone,
                            optimizer=optimizer, step=step)
  path = tf.train.CheckpointManager(old, workdir_lib.checkpoints_dir(w), 1).save(3)
  keys = [k for k, _ in tf.train.list_variables(path)]
  assert "head/marginal_head/_kernel/.ATTRIBUTES/VARIABLE_VALUE" in keys, keys  # as then
  with pytest.raises(AssertionError):  # the head's graph alone does not find it there
    tf.train.Checkpoint(head=head).restore(path).assert_existing_objects_matched()

  trained = workdir_lib.load_trained(w)  # evaluate, export: another seed, then restored
  assert _same_weights(trained.head, head) and _same_weights(trained.backbone, backbone)
  assert not np.array_equal(trained.head.get_layer("marginal_head").kernel.numpy(),
                            _save_checkpoint(config, str(tmp_path / "other"), 1, seed=5)
                            .get_layer("marginal_head").kernel.numpy())
  # Resuming training: the optimizer's slots and the step come back too.
  tf.keras.utils.set_random_seed(1)
  backbone2, head2 = workdir_lib.build_backbone_and_head(config, len(LABELS))
  optimizer2 = tf.keras.optimizers.Adam(1e-3)
  optimizer2.build(head2.trainable_variables + backbone2.trainable_variables)
  step2 = tf.Variable(0, dtype=tf.int64)
  workdir_lib.restore_checkpoint(workdir_lib.make_checkpoint(
      config, backbone2, head2, optimizer2, step2), path).assert_existing_objects_matched()
  assert _same_weights(head2, head) and int(step2.numpy()) == 3
  assert all(np.array_equal(a.numpy(), b.numpy())
             for a, b in zip(optimizer2.variables, optimizer.variables))


# ------------------------------------------------------------------------ resume check


def test_check_resume(tmp_path):
  w = str(tmp_path)
  config = _config()
  workdir_lib.check_resume(config, w)  # nothing saved yet: anything goes
  workdir_lib.save_config(config, w)
  workdir_lib.check_resume(config, w)
  changed = _config()
  changed.train.num_steps = 400
  changed.train.learning_rate = 0.5
  changed.decode.beam_size = 5
  changed.seed = 3
  changed.data.data_dir = str(tmp_path / "moved")
  workdir_lib.check_resume(changed, w)  # training-only fields and locations may change
  changed.model.head = "bce"
  changed.data.source = "voc2007"
  with pytest.raises(ValueError) as info:
    workdir_lib.check_resume(changed, w)
  message = str(info.value)
  assert "model.head: saved 'cnn_rnn', now 'bce'" in message
  assert "data.source: saved 'synthetic_scenes', now 'voc2007'" in message
  assert "train.num_steps" not in message


def test_check_resume_compares_resolved_paths(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  open("bb.h5", "w").close()
  config = _config(backbone_weights="bb.h5", train_backbone=False)
  workdir_lib.save_config(config, "w")
  workdir_lib.check_resume(config, "w")  # same file, relative now, absolute in config.json
  config.model.backbone_weights = "None"
  with pytest.raises(ValueError, match="model.backbone_weights"):
    workdir_lib.check_resume(config, "w")


# ------------------------------------------------------------------------ lock


def test_lock_holds_host_and_pid_and_is_released(tmp_path):
  w = str(tmp_path / "w")
  with workdir_lib.lock(w):
    holder = json.loads(open(workdir_lib.lock_path(w)).read())
    assert holder == {"host": socket.gethostname(), "pid": os.getpid()}
    with pytest.raises(workdir_lib.WorkdirLockedError, match=f"process {os.getpid()}"):
      with workdir_lib.lock(w):
        pass
  assert not os.path.exists(workdir_lib.lock_path(w))
  with pytest.raises(RuntimeError, match="boom"):
    with workdir_lib.lock(w):
      raise RuntimeError("boom")
  assert not os.path.exists(workdir_lib.lock_path(w))  # released on errors too


def test_lock_of_a_live_process_is_refused(tmp_path):
  w = str(tmp_path)
  child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
  try:
    with open(workdir_lib.lock_path(w), "w") as f:
      json.dump({"host": socket.gethostname(), "pid": child.pid}, f)
    with pytest.raises(workdir_lib.WorkdirLockedError) as info:
      with workdir_lib.lock(w):
        pass
    assert str(child.pid) in str(info.value) and socket.gethostname() in str(info.value)
    assert os.path.exists(workdir_lib.lock_path(w))  # not taken
  finally:
    child.kill()
    child.wait()


def test_stale_lock_is_taken_over_with_a_warning(tmp_path, caplog):
  w = str(tmp_path)
  child = subprocess.Popen([sys.executable, "-c", "pass"])
  child.wait()  # a pid that is not running any more
  with open(workdir_lib.lock_path(w), "w") as f:
    json.dump({"host": socket.gethostname(), "pid": child.pid}, f)
  with workdir_lib.lock(w):
    assert json.loads(open(workdir_lib.lock_path(w)).read())["pid"] == os.getpid()
  assert "stale lock" in caplog.text
  assert not os.path.exists(workdir_lib.lock_path(w))


def test_lock_of_another_host_is_refused(tmp_path):
  w = str(tmp_path)
  with open(workdir_lib.lock_path(w), "w") as f:
    json.dump({"host": "some-other-host", "pid": 1}, f)
  with pytest.raises(workdir_lib.WorkdirLockedError, match="some-other-host"):
    with workdir_lib.lock(w):
      pass


def test_check_resume_ignores_a_field_the_head_does_not_read(tmp_path):
  """model.side_loss_weight is the CNN-RNN's alone: a BCE workdir resumes whatever its value."""
  bce, cnn_rnn = str(tmp_path / "bce"), str(tmp_path / "cnn_rnn")
  for workdir, head in ((bce, "bce"), (cnn_rnn, "cnn_rnn")):
    config = _config()
    config.model.head = head
    config.model.side_loss_weight = 0.0
    workdir_lib.save_config(config, workdir)
    config.model.side_loss_weight = 1.0
    if head == "bce":
      workdir_lib.check_resume(config, workdir)
    else:
      with pytest.raises(ValueError, match="model.side_loss_weight: saved 0.0, now 1.0"):
        workdir_lib.check_resume(config, workdir)



def test_an_old_bce_workdir_resumes_with_todays_defaults(tmp_path):
  """Issue 25 item 9: a BCE workdir written before model.marginals existed loads it as
  `joint_space` (LEGACY_VALUES); BCE never reads it, so today's default (side_head) resumes.
  The CNN-RNN, which reads it, is still refused."""
  for head in ("bce", "cnn_rnn"):
    workdir = str(tmp_path / head)
    config = _config(head)
    workdir_lib.save_config(config, workdir)
    with open(workdir_lib.config_path(workdir)) as f:
      saved = json.load(f)
    del saved["model"]["marginals"]  # as an older version wrote it
    with open(workdir_lib.config_path(workdir), "w") as f:
      json.dump(saved, f)
    assert workdir_lib.load_config(workdir).model.marginals == "joint_space"
    assert config.model.marginals == "side_head"
    if head == "bce":
      workdir_lib.check_resume(config, workdir)
    else:
      with pytest.raises(ValueError, match="model.marginals: saved 'joint_space', now 'side_head'"):
        workdir_lib.check_resume(config, workdir)


def test_a_saved_explicit_image_size_loads_as_it_was(tmp_path):
  """model.image_size is None by default (the backbone's size); a config.json saved with an
  explicit 224 loads as 224 and resumes where the backbone's own size is 224 (vgg16), while
  efficientnetv2_s saved at 224 is not resumed at its own 384."""
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  assert config_lib.default_config().model.image_size is None
  for backbone, own in (("vgg16", 224), ("efficientnetv2_s", 384)):
    workdir = str(tmp_path / backbone)
    config = config_lib.default_config()
    config.model.backbone = backbone
    config.model.image_size = 224
    workdir_lib.save_config(config, workdir)
    loaded = workdir_lib.load_config(workdir)
    assert loaded.model.image_size == 224
    assert backbones.backbone_image_size(loaded.model.backbone, loaded.model.image_size) == 224
    today = config_lib.default_config()
    today.model.backbone = backbone
    assert backbones.backbone_image_size(backbone, today.model.image_size) == own
    if own == 224:
      workdir_lib.check_resume(today, workdir)
    else:
      with pytest.raises(ValueError, match="model.image_size: saved 224, now 384"):
        workdir_lib.check_resume(today, workdir)


def test_layout_accessors_are_defined_by_name():
  """Each LAYOUT key `k` has `def k_path(workdir)` (a file) or `def k_dir(workdir)` (a
  folder) in layout.py, found by grep; nothing else in the package joins these names."""
  from cnn_rnn_tf.workdir import layout  # pylint: disable=g-import-not-at-top
  source = open(layout.__file__).read()
  for key, name in layout.LAYOUT.items():
    kind = "path" if os.path.splitext(name)[1] or name.startswith(".") else "dir"
    assert f"def {key}_{kind}(workdir: str) -> str:" in source, (key, kind)
  package = os.path.dirname(os.path.dirname(layout.__file__))
  names = [n for n in layout.LAYOUT.values() if os.sep not in n]
  for folder, _, files in os.walk(package):
    for file in files:
      path = os.path.join(folder, file)
      if not file.endswith(".py") or path == layout.__file__:
        continue
      text = open(path).read()
      for name in names:
        assert f'os.path.join(workdir, "{name}")' not in text, (path, name)


# ------------------------------------------------------------------------ issue 20: resume, temp, corrupt


@pytest.mark.parametrize("field, value", [("train.label_order", "random"),
                                          ("data.source", "csv"),
                                          ("model.joint_activation", "tanh")])
def test_resume_refuses_a_change_of_what_is_learned(tmp_path, field, value):
  """Compared by value: data.source and model.joint_activation keep every variable's shape."""
  w = str(tmp_path)
  config = _config()
  workdir_lib.save_config(config, w)
  changed = _config()
  section, name = field.split(".")
  old = changed[section][name]
  changed[section][name] = value
  with pytest.raises(ValueError) as info:
    workdir_lib.check_resume(changed, w)
  assert f"{field}: saved {old!r}, now {value!r}" in str(info.value)


def test_resume_records_an_allowed_change_in_the_history(tmp_path):
  w = str(tmp_path)
  config = _config()
  workdir_lib.save_config(config, w)
  assert workdir_lib.record_changes(config, w, step=5) == {}  # nothing changed: no line
  assert not os.path.exists(workdir_lib.config_history_path(w))
  changed = _config()
  changed.train.num_steps = config.train.num_steps + 100
  workdir_lib.check_resume(changed, w)  # accepted
  workdir_lib.record_changes(changed, w, step=7)
  workdir_lib.save_config(changed, w)
  with open(workdir_lib.config_history_path(w)) as f:
    lines = [json.loads(l) for l in f]
  assert lines == [{"step": 7, "changes": {"train.num_steps": {
      "saved": config.train.num_steps, "now": config.train.num_steps + 100}}}]


def test_leftover_temp_checkpoint_folder_is_removed(tmp_path, caplog):
  folder = tmp_path / "checkpoints"
  (folder / "ckpt-3_temp").mkdir(parents=True)
  (folder / "ckpt-3_temp" / "part-00000-of-00001.data-00000-of-00001").write_bytes(b"x")
  (folder / "ckpt-2.index").write_bytes(b"")
  (tmp_path / "best" / "ckpt-1_temp").mkdir(parents=True)
  with caplog.at_level("WARNING"):
    removed = workdir_lib.remove_temp_checkpoints(str(tmp_path))
  assert removed == [str(folder / "ckpt-3_temp"), str(tmp_path / "best" / "ckpt-1_temp")]
  assert not (folder / "ckpt-3_temp").exists() and (folder / "ckpt-2.index").exists()
  assert "ckpt-3_temp" in caplog.text


def _truncate_data(prefix: str) -> str:
  data = tf.io.gfile.glob(prefix + ".data-*")[0]
  size = os.path.getsize(data)
  with open(data, "r+b") as f:
    f.truncate(size // 3)
  return data


def test_corrupt_latest_checkpoint_falls_back_with_a_warning(tmp_path, caplog):
  w, heads = _workdir(tmp_path, steps=(2, 4))
  bad = workdir_lib.resolve_checkpoint(w, "latest")
  assert bad.endswith("ckpt-4")
  _truncate_data(bad)
  with caplog.at_level("WARNING"):
    trained = workdir_lib.load_trained(w)
  assert trained.checkpoint_path.endswith("ckpt-2")
  assert _same_weights(trained.head, heads[2])
  assert bad in caplog.text and "Falling back" in caplog.text


def test_all_checkpoints_corrupt_is_a_clear_error_with_the_hint(tmp_path):
  w, _ = _workdir(tmp_path, steps=(2, 4))
  for step in (2, 4):
    _truncate_data(os.path.join(workdir_lib.checkpoints_dir(w), f"ckpt-{step}"))
  with pytest.raises(workdir_lib.CorruptCheckpointError) as info:
    workdir_lib.load_trained(w)
  assert "ckpt-4" in str(info.value) and "--checkpoint=" in str(info.value)


def test_a_config_saved_before_a_field_existed_rebuilds_the_saved_model(tmp_path):
  """config.json of an older version lacks model.marginals and model.small_cnn_filters: the
  loaded config builds what that version built (no side head, the thin small CNN), not the
  new defaults, so its checkpoint restores."""
  config = config_lib.default_config()
  workdir = str(tmp_path / "old")
  workdir_lib.save_config(config, workdir)
  path = workdir_lib.config_path(workdir)
  saved = json.load(open(path))
  del saved["model"]["marginals"], saved["model"]["small_cnn_filters"]
  json.dump(saved, open(path, "w"))
  loaded = workdir_lib.load_config(workdir)
  assert loaded.model.marginals == "joint_space"
  assert tuple(loaded.model.small_cnn_filters) == (16, 32, 64, 64)
  workdir_lib.save_config(config, str(tmp_path / "new"))  # a new workdir keeps the defaults
  new = workdir_lib.load_config(str(tmp_path / "new"))
  assert new.model.marginals == config.model.marginals
  assert tuple(new.model.small_cnn_filters) == tuple(config.model.small_cnn_filters)


def test_every_layout_accessor_joins_its_own_name():
  """Each accessor joins its own name (`checkpoints` -> `checkpoints_dir`, by the rule)."""
  want = {"config_path": "config.json", "config_history_path": "config_history.jsonl",
          "labels_path": "labels.txt", "checkpoints_dir": "checkpoints", "best_dir": "best",
          "best_json_path": os.path.join("best", "best.json"), "train_dir": "train",
          "eval_dir": "eval", "data_report_path": "data_report.json",
          "backbone_weights_path": "backbone.weights.h5",
          "thresholds_path": "thresholds.json", "lock_path": ".lock"}
  for name, relative in want.items():
    assert getattr(workdir_lib, name)("/w") == os.path.join("/w", relative), name
