"""cnn_rnn_tf/data/precision.py: data.precision on/off/auto; auto measures once and caches."""

import json
import logging

import pytest

from cnn_rnn_tf.data import precision


def fake_timer(speeds):
  """A timer whose images/s per policy are `speeds`; records its calls."""
  calls = []

  def timer(backbone, image_size, policy, training=False, filters=None):
    calls.append((backbone, image_size, policy, training))
    return speeds[(policy, training)] if (policy, training) in speeds else speeds[policy]

  timer.calls = calls
  return timer


def test_on_and_off_never_measure(tmp_path):
  def timer(*args):
    raise AssertionError(f"measured {args}")
  path = str(tmp_path / "p.json")
  assert precision.resolve_precision("on", timer=timer, path=path) == "bfloat16"
  assert precision.resolve_precision("off", timer=timer, path=path) == "float32"
  assert precision.resolve_precision(True, timer=timer, path=path) == "bfloat16"
  with pytest.raises(ValueError, match="'fast'"):
    precision.resolve_precision("fast")


@pytest.mark.parametrize("bf16,f32,expected", [
    (10.0, 5.0, "bfloat16"),   # AMD EPYC-like: bf16 2x
    (3.1, 5.4, "float32"),     # Xeon with AVX-512 BF16 and no AMX: bf16 0.55x
    (5.2, 5.0, "float32"),     # within the margin: not worth the precision
])
def test_auto_picks_the_faster_and_caches_it(tmp_path, caplog, bf16, f32, expected):
  path = str(tmp_path / "cache" / "precision.json")
  timer = fake_timer({None: f32, "mixed_bfloat16": bf16})
  with caplog.at_level(logging.INFO, logger="absl"):
    assert precision.resolve_precision("auto", "small_cnn", 16, timer=timer,
                                       path=path) == expected
  assert sorted(c[2] or "" for c in timer.calls) == ["", "mixed_bfloat16"]
  assert f"-> {expected}" in caplog.text and "measured now" in caplog.text
  assert f"{bf16:.2f} images/s" in caplog.text and f"{f32:.2f} images/s" in caplog.text
  # A second call (another process: only the file is shared) does not measure.
  again = fake_timer({None: 1.0, "mixed_bfloat16": 100.0})
  caplog.clear()
  with caplog.at_level(logging.INFO, logger="absl"):
    assert precision.resolve_precision("auto", "small_cnn", 16, timer=again,
                                       path=path) == expected
  assert again.calls == [] and "cached" in caplog.text
  with open(path) as f:
    (key, entry), = json.load(f).items()
  assert "TF " in key and key.endswith("small_cnn[32,64,128,128] 16")
  assert entry["ratio"] == pytest.approx(bf16 / f32, rel=1e-3)


def test_cache_is_per_backbone_and_survives_a_corrupt_file(tmp_path):
  path = tmp_path / "precision.json"
  path.write_text("{not json")
  timer = fake_timer({None: 1.0, "mixed_bfloat16": 2.0})
  assert precision.resolve_precision("auto", "small_cnn", 16, timer=timer,
                                     path=str(path)) == "bfloat16"
  assert precision.resolve_precision("auto", "small_cnn", 32, timer=timer,
                                     path=str(path)) == "bfloat16"
  assert len(timer.calls) == 4  # two sizes, two policies each
  assert len(json.loads(path.read_text())) == 2
  # Another small_cnn width (the demo's model.small_cnn_filters) is another model: measured
  # anew, and the timer is handed the widths to build.
  assert precision.resolve_precision("auto", "small_cnn", 16, timer=timer, path=str(path),
                                     filters=(16, 32, 64, 64)) == "bfloat16"
  assert len(timer.calls) == 6 and len(json.loads(path.read_text())) == 3
  assert "small_cnn[16,32,64,64] 16" in " ".join(json.loads(path.read_text()))


def test_cache_file_location(monkeypatch, tmp_path):
  monkeypatch.delenv(precision.CACHE_ENV, raising=False)
  monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
  assert precision.cache_file() == str(tmp_path / "xdg" / "cnn_rnn_tf" / "precision.json")
  monkeypatch.delenv("XDG_CACHE_HOME")
  monkeypatch.setenv("HOME", str(tmp_path / "home"))
  assert precision.cache_file() == str(tmp_path / "home" / ".cache" / "cnn_rnn_tf" /
                                       "precision.json")
  monkeypatch.setenv(precision.CACHE_ENV, str(tmp_path / "p.json"))
  assert precision.cache_file() == str(tmp_path / "p.json")


def test_training_and_inference_are_measured_and_cached_apart(tmp_path):
  # As measured on an AMD EPYC: the small CNN's forward pass faster in bfloat16, its
  # training step much slower. A trained backbone must get the training step's answer.
  path = str(tmp_path / "p.json")
  timer = fake_timer({(None, False): 456.0, ("mixed_bfloat16", False): 607.0,
                      (None, True): 85.0, ("mixed_bfloat16", True): 17.0})
  assert precision.resolve_precision("auto", "small_cnn", 64, timer=timer,
                                     path=path) == "bfloat16"
  assert precision.resolve_precision("auto", "small_cnn", 64, training=True, timer=timer,
                                     path=path) == "float32"
  assert sorted(c[3] for c in timer.calls) == [False, False, True, True]
  with open(path) as f:
    keys = sorted(json.load(f))
  assert [k.endswith("small_cnn[32,64,128,128] 64") for k in keys].count(True) == 1
  assert [k.endswith("small_cnn[32,64,128,128] 64 train") for k in keys].count(True) == 1
  # Both answers are cached: asking again measures nothing.
  again = fake_timer({None: 1.0, "mixed_bfloat16": 100.0})
  assert precision.resolve_precision("auto", "small_cnn", 64, training=True, timer=again,
                                     path=path) == "float32"
  assert again.calls == []


def test_real_measurement_of_a_tiny_backbone(tmp_path):
  speed = precision.measure_images_per_second("small_cnn", 16, None)
  assert speed > 0
  assert precision.measure_images_per_second("small_cnn", 16, None, training=True) > 0
  choice = precision.auto_choice("small_cnn", 16, path=str(tmp_path / "p.json"))
  assert choice["precision"] in ("bfloat16", "float32") and not choice["cached"]
