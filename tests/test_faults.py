"""Fault probe (issue 26 item 6): the backbone registry, the named decoders and the side head,
the export of both heads, and the config validation of their fields. Each fault ends in a
clear error naming the field or value, or in documented, consistent behaviour.

`SIDE` names the side head's loss weight (`model.side_loss_weight`, formerly
`model.aux_bce_weight`: config.json files with the old name keep loading).
"""

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.workdir import compute
import export_fixtures
from helpers import tiny_head

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIDE = "side_loss_weight"


def _problems(**fields):
  """config_checks.problems of the default config with `fields` ("section__name": value)."""
  config = config_lib.default_config()
  with config.unlocked():
    for key, value in fields.items():
      section, name = key.split("__")
      config[section][name] = value
  return config_checks.problems(config)


# ---- Config validation of the fields ----

@pytest.mark.parametrize("fields, expected", [
    ({"decode__num_samples": -1}, "decode.num_samples = -1: must be >= 0"),
    ({"decode__num_samples": config_lib.MAX_SAMPLES + 1}, "decode.num_samples = 10001: must "
     "be <= 10000"),  # was accepted: 1e9 samples ran out of memory in a raw TF error
    ({"decode__sample_seed": -1}, "decode.sample_seed = -1: must be >= 0"),
    ({"decode__beam_size": True}, "decode.beam_size = True: must be of type int"),
    ({"model__" + SIDE: math.nan}, f"model.{SIDE} = nan: must be a finite number >= 0"),
    ({"model__" + SIDE: math.inf}, f"model.{SIDE} = inf: must be a finite number >= 0"),
    ({"model__" + SIDE: -1.0}, f"model.{SIDE} = -1.0: must be a finite number >= 0"),
    ({"data__precision": "bfloat16"}, "data.precision = 'bfloat16': must be one of"),
    ({"data__jit": "xla"}, "data.jit = 'xla': must be one of ('auto', 'on', 'off')"),
])
def test_a_bad_field_value_is_refused_naming_the_field(fields, expected):
  assert any(p.startswith(expected) for p in _problems(**fields)), _problems(**fields)


@pytest.mark.parametrize("fields, expected", [
    ({"decode__decoder": "threshold"}, "the cnn_rnn head's decoders are"),
    ({"model__head": "bce", "decode__decoder": "path"}, "the bce head's decoders are"),
    ({"decode__decoder": "marginals", "model__" + SIDE: 0.0}, "the marginals are not trained"),
    ({"decode__ranking": "marginals", "model__" + SIDE: 0.0}, "the marginals are not trained"),
    ({"decode__decoder": "expected_f1", "decode__num_samples": 0}, "need ancestral samples"),
])
def test_a_decoder_the_head_cannot_run_is_refused(fields, expected):
  assert any(expected in p for p in _problems(**fields)), _problems(**fields)


def test_a_keras_backbone_below_its_smallest_input_is_refused_by_the_config():
  """Was accepted: the run wrote labels.txt, then Keras failed without naming the field."""
  found = _problems(model__backbone="resnet50", model__image_size=16)
  assert any(p.startswith("model.image_size = 16: resnet50 takes at least 32") for p in found)
  assert not _problems(model__backbone="resnet50", model__image_size=32)
  assert not [p for p in _problems(model__backbone="small_cnn", model__image_size=8,
                                   model__backbone_weights=None, model__train_backbone=True)]


def test_the_bce_expected_f1_is_exact_and_ignores_num_samples():
  """Documented (config_lib, model.py): the bce head's expected_f1 set is exact under
  independent labels, so decode.num_samples = 0 is valid there and changes nothing."""
  assert not _problems(model__head="bce", decode__decoder="expected_f1", decode__num_samples=0)
  head = tiny_head(num_labels=5, feature_dim=6, head="bce")
  features = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
  sets = [inference.predict_from_features(head, features, beam_size=1, max_length=5,
                                          num_samples=n)["set_expected_f1"].numpy()
          for n in (0, 50)]
  np.testing.assert_array_equal(sets[0], sets[1])


# ---- The backbone registry ----

def test_an_unknown_backbone_names_the_registry():
  with pytest.raises(ValueError, match=r"Unknown backbone 'VGG16'; expected one of \('vgg16'"):
    backbones.build_backbone("VGG16")


def test_a_fixed_size_backbone_names_its_size():
  with pytest.raises(ValueError, match="vgg16 takes 224x224 images.*image_size=100"):
    backbones.build_backbone("vgg16", image_size=100, weights=None)


def test_small_cnn_filters_that_are_not_four_positive_integers_are_refused():
  with pytest.raises(ValueError, match=r"small_cnn filters must be 4 positive integers.*\(0, "):
    backbones.build_backbone("small_cnn", image_size=16, weights=None, filters=(0, 1, 2, 3))


# ---- evaluate's and export's decode overrides, compute.json ----

def test_an_evaluate_override_of_the_wrong_type_is_a_config_error():
  """Was a TypeError of ml_collections (evaluate's binary catches ConfigError only)."""
  with pytest.raises(config_lib.ConfigError, match="decode.num_samples = 'abc': must be of "
                     "type int"):
    evaluate_lib.with_decode(config_lib.default_config(), {"num_samples": "abc"})


@pytest.fixture(scope="module")
def bce_workdir(tmp_path_factory):
  return export_fixtures.make_workdir(tmp_path_factory.mktemp("faults") / "bce", head="bce")


@pytest.mark.parametrize("value", [2.5, math.nan, "3"])
def test_an_export_length_that_is_not_an_integer_is_refused(bce_workdir, tmp_path, value):
  """Was: beam_size=2.5 exported with beam 2 silently; NaN a raw ValueError."""
  with pytest.raises(config_lib.ConfigError, match=r"decode.beam_size = .*must be an integer"):
    export_lib.export(bce_workdir, str(tmp_path / "models"), beam_size=value)
  assert not os.path.exists(tmp_path / "models")


def test_an_export_of_a_config_json_with_a_decoder_the_head_lacks_is_refused(tmp_path):
  workdir = export_fixtures.make_workdir(tmp_path / "bce", head="bce")
  path = workdir_lib.config_path(workdir)
  saved = json.load(open(path))
  saved["decode"]["decoder"] = "path"  # a cnn_rnn decoder, edited into a bce workdir
  json.dump(saved, open(path, "w"))
  with pytest.raises(config_lib.ConfigError, match="decode.decoder = 'path': the bce head"):
    export_lib.export(workdir, str(tmp_path / "models"))
  assert not os.path.exists(tmp_path / "models")


def test_a_compute_json_that_is_not_json_names_the_file(tmp_path):
  workdir = str(tmp_path)
  open(workdir_lib.compute_path(workdir), "w").write("{truncated")
  with pytest.raises(ValueError, match="compute.json is not JSON"):
    compute.load(workdir)


# ---- The command line ----

@pytest.mark.slow
@pytest.mark.parametrize("flag, expected", [
    ("--config.decode.num_samples=-1", "decode.num_samples = -1: must be >= 0"),
    (f"--config.model.{SIDE}=nan", f"model.{SIDE} = nan: must be a finite number >= 0"),
    (f"--config.model.{SIDE}=true", f"--config.model.{SIDE}=true: could not convert"),
])
def test_the_trainer_refuses_a_bad_flag_before_writing(tmp_path, flag, expected):
  workdir = tmp_path / "run"
  result = subprocess.run(
      [sys.executable, "-m", "cnn_rnn_tf.train", "--config=configs/demo.py:runlocal",
       f"--workdir={workdir}", flag], cwd=ROOT, capture_output=True, text=True, timeout=300,
      env={**os.environ, "PYTHONPATH": ROOT})
  assert result.returncode == 2 and expected in result.stderr, result.stderr[-2000:]
  assert not workdir.exists()
