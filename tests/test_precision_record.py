"""compute.json (cnn_rnn_tf/workdir/compute.py): the backbone's precision and XLA mode,
resolved once per run and reused; data.precision=auto's cost check; data.jit.

The precision cache (CNN_RNN_TF_PRECISION_CACHE) is faked, so both choices are tested on any
machine (an Intel with AMX, where bfloat16 is faster, and an AMD EPYC, where it may not be).
"""

import json
import logging
import os

import numpy as np
import pytest

from cnn_rnn_tf import backbones
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.data import precision
from cnn_rnn_tf.workdir import compute
import export_fixtures


def fake_cache(path, config, train: str, inference: str, jit: dict | None = None):
  """Writes precision-cache entries for `config`'s backbone: `train` / `inference` precision
  ("bfloat16" | "float32"), and {(work, precision): bool} XLA choices."""
  name, filters = config.model.backbone, config.model.small_cnn_filters
  size = backbones.backbone_image_size(name, config.model.image_size)
  entries = {}
  for training, choice in ((True, train), (False, inference)):
    key = precision.machine_key(name, size, training, filters)
    entries[key] = {"precision": choice, "rule": precision.RULE, "ratio": 1.0,
                    "ratio_low": 1.0, "bfloat16_images_per_second": 1.0,
                    "float32_images_per_second": 1.0}
  for (training, prec), on in (jit or {}).items():
    key = f"{precision.machine_key(name, size, training, filters)} jit {prec}"
    entries[key] = {"jit": on, "rule": precision.RULE, "ratio": 1.0, "ratio_low": 1.0,
                    "xla_images_per_second": 1.0, "plain_images_per_second": 1.0}
  with open(path, "w") as f:
    json.dump(entries, f)


@pytest.fixture
def cache(tmp_path, monkeypatch):
  path = str(tmp_path / "precision.json")
  monkeypatch.setenv(precision.CACHE_ENV, path)
  return path


# ---- The cost check ----

@pytest.mark.parametrize("bf16, f32, expected", [
    ([12.0, 9.0, 13.0], [10.0, 9.5, 10.5], "float32"),   # median 1.2x, spreads overlap
    ([13.0, 12.5, 14.0], [10.0, 10.5, 10.2], "bfloat16"),  # slowest bf16 >= 1.1 x fastest
    ([11.4, 11.4, 11.4], [10.0, 10.0, 10.4], "float32"),  # beyond the spread, inside margin
])
def test_auto_needs_bfloat16_faster_beyond_the_spread_of_repeated_timings(
    tmp_path, bf16, f32, expected):
  def timer(backbone, size, policy, training=False, filters=None):
    return bf16 if policy == "mixed_bfloat16" else f32
  details = {}
  assert precision.resolve_precision("auto", "small_cnn", 16, timer=timer,
                                     path=str(tmp_path / "p.json"), details=details) == expected
  assert details["bfloat16_timings"] == bf16 and details["float32_timings"] == f32
  assert details["ratio_low"] == pytest.approx(min(bf16) / max(f32), rel=1e-3)
  assert details["ratio"] == pytest.approx(np.median(bf16) / np.median(f32), rel=1e-3)


def test_the_real_measurement_alternates_rounds_of_both_variants():
  speeds = precision.measure_rounds("small_cnn", 16, [(None, False), ("mixed_bfloat16", False)],
                                    rounds=2)
  assert len(speeds) == 2 and all(len(s) == 2 and min(s) > 0 for s in speeds)


def test_an_entry_of_the_older_rule_is_measured_again(tmp_path):
  path = tmp_path / "p.json"
  key = precision.machine_key("small_cnn", 16)
  path.write_text(json.dumps({key: {"precision": "bfloat16", "ratio": 1.11}}))  # no "rule"
  calls = []

  def timer(backbone, size, policy, training=False, filters=None):
    calls.append(policy)
    return [5.0, 5.0, 5.0]
  assert precision.resolve_precision("auto", "small_cnn", 16, timer=timer,
                                     path=str(path)) == "float32"
  assert len(calls) == 2 and json.loads(path.read_text())[key]["rule"] == precision.RULE


@pytest.mark.parametrize("xla, plain, expected", [([30.0, 31.0], [10.0, 12.0], True),
                                                  ([11.0, 13.0], [10.0, 12.0], False)])
def test_jit_auto_takes_xla_only_when_faster_beyond_noise(tmp_path, xla, plain, expected):
  calls = []

  def timer(backbone, size, policy, training=False, filters=None, jit=False):
    calls.append((policy, jit))
    return xla if jit else plain
  path = str(tmp_path / "p.json")
  assert precision.resolve_jit("auto", "small_cnn", 16, "bfloat16", timer=timer,
                               path=path) is expected
  assert sorted(calls, key=str) == [("mixed_bfloat16", False), ("mixed_bfloat16", True)]
  assert precision.resolve_jit("auto", "small_cnn", 16, "bfloat16", timer=None,
                               path=path) is expected  # cached: no measurement
  (key,) = json.load(open(path))
  assert key.endswith("small_cnn[32,64,128,128] 16 jit bfloat16")
  assert precision.resolve_jit("on", "small_cnn", 16, "float32") is True
  assert precision.resolve_jit("off", "small_cnn", 16, "float32") is False
  with pytest.raises(ValueError, match="data.jit.*'xla'"):
    precision.resolve_jit("xla", "small_cnn", 16, "float32")


def test_the_real_jit_measurement_runs():
  speeds = precision.measure_rounds("small_cnn", 16, [(None, False), (None, True)], rounds=1)
  assert all(s[0] > 0 for s in speeds)


# ---- The record ----

def _config(**data):
  config = export_fixtures.demo_config()
  config.data.update(data)
  return config


@pytest.mark.parametrize("train, inference", [("bfloat16", "float32"), ("float32", "bfloat16")])
def test_a_new_run_records_training_and_inference_apart(cache, train, inference):
  config = _config()
  fake_cache(cache, config, train, inference)
  record = compute.new_record(config)
  assert record["format"] == compute.FORMAT and record["resolved_at_step"] == 0
  assert record["requested"] == {"data.precision": "auto", "data.jit": "off"}
  assert record["train"]["precision"] == train and record["train"]["work"] == "train"
  assert record["inference"]["precision"] == inference
  assert record["inference"]["work"] == "forward"
  assert record["train"]["precision_measured"]["cached"] is True
  assert record["backbone"] == "small_cnn[16,32,64,64] 32" and record["changes"] == []


def test_a_frozen_backbone_trains_in_its_inference_policy(cache):
  config = _config()
  config.model.train_backbone = False
  fake_cache(cache, config, "bfloat16", "float32")
  record = compute.new_record(config)
  assert record["train"]["precision"] == record["inference"]["precision"] == "float32"


def test_a_resumed_run_keeps_its_record_when_the_cache_changed(cache, tmp_path):
  config = _config()
  workdir = str(tmp_path / "run")
  fake_cache(cache, config, "bfloat16", "float32")
  compute.save(workdir, compute.new_record(config))
  fake_cache(cache, config, "float32", "bfloat16")  # another day, another measurement
  record = compute.for_run(config, workdir, step=4)
  assert (record["train"]["precision"], record["inference"]["precision"]) == (
      "bfloat16", "float32")
  assert record["changes"] == []


def test_an_explicit_override_on_resume_is_recorded_and_auto_is_not_measured(
    cache, tmp_path, caplog):
  config = _config()
  workdir = str(tmp_path / "run")
  fake_cache(cache, config, "bfloat16", "float32")
  compute.save(workdir, compute.new_record(config))
  config.data.precision = "off"
  record = compute.for_run(config, workdir, step=6)
  assert record["train"]["precision"] == record["inference"]["precision"] == "float32"
  assert record["changes"] == [{"step": 6, "requested": {"data.precision": "off"},
                                "train": {"precision": "float32", "jit": False},
                                "inference": {"precision": "float32", "jit": False}}]
  assert record["requested"]["data.precision"] == "off"
  compute.save(workdir, record)
  config.data.precision, config.data.jit = "auto", "auto"  # back to auto: nothing measured
  os.remove(cache)
  with caplog.at_level(logging.WARNING, logger="absl"):
    again = compute.for_run(config, workdir, step=8)
  assert again["train"]["precision"] == "float32" and again["train"]["jit"] is False
  assert "never measured again" in caplog.text and not os.path.exists(cache)


def test_inference_overrides_are_named_and_bad_values_refused(cache, tmp_path, caplog):
  config = _config()
  workdir = str(tmp_path / "run")
  fake_cache(cache, config, "bfloat16", "float32")
  compute.save(workdir, compute.new_record(config))
  assert compute.for_inference(workdir, config) == {
      "precision": "float32", "jit": False, "legacy": False, "source": "compute.json"}
  used = compute.for_inference(workdir, config, precision="on", jit="on")
  assert used["precision"] == "bfloat16" and used["jit"] is True
  assert used["source"] == "override precision=on (recorded float32), jit=on (recorded off)"
  with pytest.raises(ValueError, match="--precision must be 'on' or 'off'.*'bfloat'"):
    compute.for_inference(workdir, config, precision="bfloat")
  with pytest.raises(ValueError, match="compute.json.*'inference'"):
    with open(workdir_lib.compute_path(workdir), "w") as f:
      json.dump({"train": {"precision": "float32", "jit": False},
                 "inference": {"precision": "fp8"}}, f)
    compute.for_inference(workdir, config)


def test_load_trained_computes_as_recorded_or_as_overridden(cache, tmp_path, caplog):
  workdir = export_fixtures.make_workdir(tmp_path / "run")
  config = workdir_lib.load_config(workdir)
  with caplog.at_level(logging.WARNING, logger="absl"):
    legacy = workdir_lib.load_trained(workdir)  # saved before compute.json: as before
  assert compute.compute_dtype(legacy.backbone) == "float32"
  assert legacy.compute["legacy"] and "no compute.json" in caplog.text
  assert "float32 without XLA" in caplog.text
  fake_cache(cache, config, "float32", "bfloat16")
  compute.save(workdir, compute.new_record(config))
  trained = workdir_lib.load_trained(workdir)
  assert compute.compute_dtype(trained.backbone) == "bfloat16"
  assert trained.compute["source"] == "compute.json"
  off = workdir_lib.load_trained(workdir, precision="off")
  assert compute.compute_dtype(off.backbone) == "float32"
  assert off.compute["source"] == "override precision=off (recorded bfloat16)"


def test_the_export_names_the_policy_it_computes_in(cache, tmp_path):
  workdir = export_fixtures.make_workdir(tmp_path / "run")
  config = workdir_lib.load_config(workdir)
  fake_cache(cache, config, "float32", "bfloat16")
  compute.save(workdir, compute.new_record(config))
  path = export_lib.export(workdir, str(tmp_path / "models"), precision="off")
  body = json.load(open(os.path.join(path, "assets.extra", export_lib.COMPUTE_FILE)))
  assert body["precision"] == "float32" and body["backbone_compute_dtype"] == "float32"
  assert body["source"] == "override precision=off (recorded bfloat16)"
  assert body["jit"] is False and body["jit_in_saved_model"] is False
  path = export_lib.export(workdir, str(tmp_path / "models"))
  body = json.load(open(os.path.join(path, "assets.extra", export_lib.COMPUTE_FILE)))
  assert body["backbone_compute_dtype"] == "bfloat16" and body["source"] == "compute.json"
  from cnn_rnn_tf.serving import local  # pylint: disable=g-import-not-at-top
  assert local.compute_of(path)["precision"] == "bfloat16"


def test_with_compute_sets_the_resolved_fields_so_nothing_measures():
  config = _config()
  out = compute.with_compute(config, {"precision": "bfloat16", "jit": True})
  assert (out.data.precision, out.data.jit) == ("on", "on")
  assert config.data.precision == "auto"  # a copy
  legacy = compute.with_compute(config, {"precision": "float32", "jit": False, "legacy": True})
  assert legacy.data.precision == "auto"  # the feature cache as before


def test_the_trainers_step_under_xla_takes_the_same_step():
  """data.jit=on: the training step calls the backbone under XLA; the same batch gives the
  same loss and the same updated weights as without (float tolerance)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from test_train import _K, _step_batch, _step_config  # pylint: disable=g-import-not-at-top
  results = []
  for jit in (False, True):
    config = _step_config()
    record = compute.new_record(config)
    record["train"]["jit"] = jit
    strategy = tf.distribute.get_strategy()
    models = train_lib.build_training_models(config, _K, strategy, record)
    multi_step = train_lib.make_multi_step(strategy, train_lib.make_train_step(config, models))
    iterator = iter(strategy.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(_step_batch(config)).repeat()))
    losses = [float(multi_step(iterator, tf.constant(1))[0]) for _ in range(2)]
    results.append((losses, [v.numpy() for v in models.backbone.trainable_variables]))
  np.testing.assert_allclose(results[1][0], results[0][0], rtol=1e-4)
  for got, want in zip(results[1][1], results[0][1]):
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)
