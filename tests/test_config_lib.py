"""Tests of cnn_rnn_tf.config_lib: defaults, validate, optional paths, the command line."""

import os
import subprocess
import sys

from absl import flags
from ml_collections import config_flags
import pytest

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": ROOT, "CNN_RNN_TF_VERBOSE": "0"}


def _problems(**fields):
  """validate's lines for default_config() with `fields` ("a.b": value) set."""
  config = config_lib.default_config()
  for name, value in fields.items():
    *sections, key = name.split("__")  # "model__asl__clip": config.model.asl.clip
    target = config
    for section in sections:
      target = target[section]
    target[key] = value
  with pytest.raises(config_lib.ConfigError) as info:
    config_checks.validate(config)
  return info.value.problems


def test_default_config_is_valid():
  config_checks.validate(config_lib.default_config())


@pytest.mark.parametrize("fields, field", [
    ({"decode__beam_size": 0}, "decode.beam_size"),
    ({"decode__max_length": 0}, "decode.max_length"),
    ({"decode__min_length": -1}, "decode.min_length"),
    ({"decode__min_length": 11}, "decode.min_length"),  # > max_length 10
    ({"train__learning_rate": -1.0}, "train.learning_rate"),
    ({"train__learning_rate": float("nan")}, "train.learning_rate"),
    ({"train__batch_size": 0}, "train.batch_size"),
    ({"train__num_steps": 0}, "train.num_steps"),
    ({"train__checkpoint_every": 0}, "train.checkpoint_every"),
    ({"train__log_every": 0}, "train.log_every"),
    ({"train__steps_per_loop": 0}, "train.steps_per_loop"),
    ({"train__eval_every": -2}, "train.eval_every"),  # -1 means never
    ({"train__optimizer": "adamw"}, "train.optimizer"),
    ({"train__keep_best": "top3.OF2"}, "train.keep_best"),
    ({"train__momentum": 1.5}, "train.momentum"),
    ({"model__head": "lstm"}, "model.head"),
    ({"model__backbone": "resnet"}, "model.backbone"),
    ({"model__dropout": 1.0}, "model.dropout"),
    ({"model__joint_activation": "no_such_activation"}, "model.joint_activation"),
    ({"model__image_size": 64}, "model.image_size"),  # vgg16 needs 224
    ({"data__source": "imagenet"}, "data.source"),
    ({"data__precision": "fp16"}, "data.precision"),
    ({"data__max_image_pixels": 0}, "data.max_image_pixels"),
    ({"data__csv_empty_labels": "skip"}, "data.csv_empty_labels"),
    ({"train__label_order": "alphabetical"}, "train.label_order"),
    ({"train__align_inputs": "both"}, "train.align_inputs"),
    ({"model__side_loss_weight": -0.5}, "model.side_loss_weight"),
    ({"model__side_loss_weight": float("inf")}, "model.side_loss_weight"),
    ({"model__weight_decay": float("nan")}, "model.weight_decay"),
    ({"model__weight_decay": float("inf")}, "model.weight_decay"),
    ({"model__weight_decay": -1e-4}, "model.weight_decay"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**32}, "seed"),  # NumPy's seed range
])
def test_each_bad_field_gives_one_line_naming_it(fields, field):
  lines = _problems(**fields)
  assert len(lines) == 1, lines
  assert lines[0].startswith(field), lines


def _numeric_fields():
  """Every int or float field of default_config() with its type (bools are not numbers)."""
  types = config_checks._field_types(config_lib.default_config())  # pylint: disable=protected-access
  return sorted((name, t) for name, t in types.items() if t in (int, float))


def test_the_defaults_have_numeric_fields_of_both_kinds():
  kinds = {t for _, t in _numeric_fields()}
  assert kinds == {int, float} and len(_numeric_fields()) > 20


@pytest.mark.parametrize("name, kind", _numeric_fields())
def test_every_numeric_field_refuses_nan_infinity_and_far_out_of_range(name, kind):
  """A field without a range check would let one of these through to TensorFlow.

  Float fields: NaN, +-inf and -1e6 each give a line naming the field. Int fields: -10**6 and
  2**63 do; a float (NaN included) cannot even be set (ConfigDict keeps the field's type).
  """
  if kind is float:
    bad = [float("nan"), float("inf"), float("-inf"), -1e6]
  else:
    bad = [-10**6, 2**63]  # 2**63: past TensorFlow's int64
    with pytest.raises(TypeError, match="cannot be casted"):
      _problems(**{name.replace(".", "__"): float("nan")})
  for value in bad:
    lines = _problems(**{name.replace(".", "__"): value})
    assert any(line.startswith(f"{name} = {value!r}: ") for line in lines), (value, lines)


def test_a_bad_number_is_refused_before_the_workdir_is_touched(tmp_path):
  """The issue's repro: weight_decay=nan reached Keras and left labels.txt in the workdir."""
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  runlocal_config = lambda: config_lib.runlocal(config_lib.default_config())
  for field, value in (("weight_decay", float("nan")), ("weight_decay", float("inf"))):
    config = runlocal_config()
    config.model[field] = value
    with pytest.raises(config_lib.ConfigError, match=f"model.{field} = {value}"):
      train_lib.train(config, str(tmp_path / "w"))
  config = runlocal_config()
  config.seed = -1
  with pytest.raises(config_lib.ConfigError, match="seed = -1"):
    train_lib.train(config, str(tmp_path / "w"))
  assert not os.path.exists(tmp_path / "w")


def test_several_problems_one_line_each():
  lines = _problems(decode__beam_size=0, train__learning_rate=-1.0, train__checkpoint_every=0)
  assert len(lines) == 3
  assert {l.split(" ")[0] for l in lines} == {
      "decode.beam_size", "train.learning_rate", "train.checkpoint_every"}


def test_type_is_checked():
  config = config_lib.default_config()
  config.train.unlock()  # a config from JSON or a hand-made dict is not type-safe
  config.train = dict(config.train.to_dict(), num_steps="100")
  lines = _problems_of(config)
  assert lines == ["train.num_steps = '100': must be of type int"]


def _problems_of(config):
  with pytest.raises(config_lib.ConfigError) as info:
    config_checks.validate(config)
  return info.value.problems


def test_unknown_and_missing_fields_are_named_with_the_closest_one():
  config = config_lib.default_config()
  config.decode.beamsize = 3
  del config.decode["beam_size"]
  lines = _problems_of(config)
  assert "decode.beamsize: unknown field (did you mean decode.beam_size?)" in lines
  assert any(l.startswith("decode.beam_size: missing") for l in lines)


def test_files_that_must_exist(tmp_path):
  lines = _problems(model__backbone_weights=str(tmp_path / "missing.h5"))
  assert len(lines) == 1 and "model.backbone_weights" in lines[0] and "does not exist" in lines[0]
  lines = _problems(data__manual_dir=str(tmp_path / "nowhere"))
  assert lines == [f"data.manual_dir = {str(tmp_path / 'nowhere')!r}: does not exist"]
  lines = _problems(train__init_checkpoint=str(tmp_path / "ckpt-1"))
  assert len(lines) == 1 and lines[0].startswith("train.init_checkpoint")


def test_frozen_random_backbone_is_refused():
  lines = _problems(model__backbone_weights=None)
  assert len(lines) == 1 and "model.train_backbone = False" in lines[0]


def test_csv_source_needs_a_csv(tmp_path):
  lines = _problems(data__source="csv")
  assert len(lines) == 1 and "data.train_csv" in lines[0]
  (tmp_path / "train.csv").write_text("image_name,tags\n")
  config = config_lib.default_config()
  config.data.source = "csv"
  config.data.train_csv = str(tmp_path / "train.csv")
  config_checks.validate(config)


@pytest.mark.parametrize("spelling", [None, "None", "none", "", " none "])
def test_none_spellings_mean_none_for_every_optional_path(spelling):
  config = config_lib.default_config()
  config.model.train_backbone = True  # backbone_weights None is then fine
  for field in config_lib.PATH_FIELDS:
    section, key = field.split(".")
    config[section][key] = spelling
  config_checks.validate(config)
  for field in config_lib.PATH_FIELDS:
    section, key = field.split(".")
    assert config[section][key] is None, field


def test_resolve_paths_makes_local_paths_absolute(tmp_path):
  config = config_lib.default_config()
  config.model.backbone_weights = "runs/e2e/backbone.weights.h5"
  config.data.data_dir = "gs://bucket/tfds"
  config.data.cache_dir = "none"
  resolved = config_lib.resolve_paths(config, base=str(tmp_path))
  assert resolved.model.backbone_weights == str(tmp_path / "runs/e2e/backbone.weights.h5")
  assert resolved.data.data_dir == "gs://bucket/tfds"
  assert resolved.data.cache_dir is None
  assert config.model.backbone_weights == "runs/e2e/backbone.weights.h5"  # a copy
  config.model.backbone_weights = "imagenet"
  assert config_lib.resolve_paths(config).model.backbone_weights == "imagenet"


def test_choices_agree_with_the_library():
  from cnn_rnn_tf import backbones  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import data  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import metrics  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import model  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf.data import feature_cache  # pylint: disable=g-import-not-at-top
  assert set(config_lib.SOURCES) == set(data.SOURCES)
  assert set(config_lib.HEADS) == set(model.HEADS)
  assert set(config_lib.BACKBONES) == set(backbones.BACKBONES)
  assert set(config_lib.PRECISIONS) == set(feature_cache.PRECISIONS)
  from cnn_rnn_tf import label_order  # pylint: disable=g-import-not-at-top
  assert config_lib.LABEL_ORDERS == label_order.ORDERS
  assert config_lib.ALIGN_INPUTS == label_order.ALIGN_INPUTS
  from cnn_rnn_tf import decoders, losses  # pylint: disable=g-import-not-at-top
  assert set(decoders.heads()) == set(model.HEADS)  # every head has a decoder, and no other
  assert config_lib.LABEL_LOSSES == tuple(losses.LABEL_LOSSES)
  assert config_lib.MARGINALS == model.MARGINALS
  for key in metrics.PRF_KEYS:
    assert config_checks._keep_best(f"top3.{key}") is None  # pylint: disable=protected-access


def test_optimizers_agree_with_the_trainer():
  from cnn_rnn_tf import optim  # pylint: disable=g-import-not-at-top
  assert config_lib.OPTIMIZERS == optim.OPTIMIZERS
  assert config_lib.SCHEDULES == optim.SCHEDULES
  config = config_lib.default_config()
  for name in config_lib.OPTIMIZERS:
    config.train.optimizer = name
    optim.make_optimizer(config)
  for name in config_lib.SCHEDULES:
    config.train.schedule = name
    optim.make_schedule(config.train)


def test_command_line_none_reaches_the_config_as_none():
  """`--config.model.backbone_weights=None` (and the other spellings), parsed as the
  binaries parse it, validates to None (it used to be the file name 'None')."""
  for spelling in ("None", "none", ""):
    argv = ["prog", f"--config={os.path.join(ROOT, 'configs', 'demo.py')}",
            f"--config.model.backbone_weights={spelling}",
            f"--config.data.cache_dir={spelling}", f"--config.train.init_checkpoint={spelling}"]
    values = flags.FlagValues()
    holder = config_flags.DEFINE_config_file("config", None, "", flag_values=values,
                                             lock_config=True, sys_argv=argv)
    values(argv)
    config = holder.value
    config_checks.validate(config)
    assert config.model.backbone_weights is None
    assert config.data.cache_dir is None and config.train.init_checkpoint is None


def _run(*args, timeout=120):
  return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=ENV, capture_output=True,
                        text=True, timeout=timeout)


def test_unknown_config_field_on_the_command_line_is_one_line(tmp_path):
  result = _run("cnn_rnn_tf.train", "--config=configs/demo.py:runlocal",
                f"--workdir={tmp_path}", "--config.model.hed=bce")
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert lines == ["FATAL Unknown config field --config.model.hed; did you mean "
                   "--config.model.head?"], result.stderr[-2000:]
  assert not os.listdir(tmp_path)  # nothing written


@pytest.mark.slow  # imports TensorFlow in a subprocess (runtime.setup comes first)
def test_bad_config_on_the_command_line_lists_the_problems_and_writes_nothing(tmp_path):
  result = _run("cnn_rnn_tf.train", "--config=configs/demo.py:runlocal",
                f"--workdir={tmp_path / 'w'}", "--config.decode.beam_size=0",
                "--config.train.checkpoint_every=0", "--config.train.learning_rate=-1")
  assert result.returncode == 2, result.stderr[-2000:]
  assert "Traceback" not in result.stderr
  for field in ("decode.beam_size = 0", "train.checkpoint_every = 0",
                "train.learning_rate = -1.0"):
    assert field in result.stderr
  assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow  # imports TensorFlow in a subprocess (runtime.setup comes first)
def test_train_binary_refuses_nan_decay_and_negative_seed_before_the_workdir(tmp_path):
  """The issue's repros: weight_decay=nan/inf and seed=-1 failed after labels.txt was written."""
  for override, line in (("--config.model.weight_decay=nan", "model.weight_decay = nan"),
                         ("--config.model.weight_decay=inf", "model.weight_decay = inf"),
                         ("--config.seed=-1", "seed = -1")):
    result = _run("cnn_rnn_tf.train", "--config=configs/demo.py:runlocal",
                  f"--workdir={tmp_path / 'w'}", override)
    assert result.returncode == 2, result.stderr[-2000:]
    assert line in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not os.path.exists(tmp_path / "w")


@pytest.mark.slow
def test_train_binary_with_backbone_weights_none_trains(tmp_path):
  """The issue's repro: `--config.model.backbone_weights=None` failed with "small_cnn weights
  file 'None' does not exist"."""
  workdir = tmp_path / "w"
  result = _run("cnn_rnn_tf.train", "--config=configs/demo.py:runlocal",
                f"--workdir={workdir}", "--config.model.backbone_weights=None",
                f"--config.data.data_dir={tmp_path / 'tfds'}", "--config.train.num_steps=2",
                "--config.train.checkpoint_every=2", timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  assert os.path.exists(workdir / "checkpoints" / "ckpt-2.index")


@pytest.mark.parametrize("config_arg, expected", [
    ("configs/nope.py", "No such file or directory: 'configs/nope.py"),
    ("configs/demo.py:bogus", "Bad demo config argument(s) ['bogus']"),
])
def test_bad_config_file_is_one_line(tmp_path, config_arg, expected):
  result = _run("cnn_rnn_tf.train", f"--config={config_arg}", f"--workdir={tmp_path}")
  assert result.returncode == 2
  assert result.stderr.startswith("FATAL ") and expected in result.stderr, result.stderr[-2000:]
  assert "Traceback" not in result.stderr


def test_decoders_must_be_the_heads_and_have_what_they_need():
  config = config_lib.default_config()
  config.decode.decoder = "threshold"  # a bce decoder on the cnn_rnn head
  with pytest.raises(config_lib.ConfigError, match="decode.decoder = 'threshold'"):
    config_checks.validate(config)
  config = config_lib.paper(config_lib.default_config())
  config.decode.ranking = "marginals"  # untrained marginals (aux weight 0)
  with pytest.raises(config_lib.ConfigError, match="decode.ranking = 'marginals'"):
    config_checks.validate(config)
  config = config_lib.default_config()
  config.decode.decoder, config.decode.num_samples = "expected_f1", 0
  with pytest.raises(config_lib.ConfigError, match="decode.num_samples = 0"):
    config_checks.validate(config)
  config.model.head, config.decode.decoder = "bce", "expected_f1"  # exact for bce: no samples
  config_checks.validate(config)


def test_keep_best_without_evaluation_is_reported_once():
  """One mistake, one line: train.keep_best with train.eval_every = -1."""
  config = config_lib.default_config()
  config.train.keep_best = "top3.OF1"
  config.train.eval_every = -1
  found = [p for p in config_checks.problems(config) if "train.keep_best" in p]
  assert len(found) == 1, found
  assert "train.eval_every = -1" in found[0]


def test_variants_are_parsed_by_one_helper():
  """configs/*.py and demo_config take their comma-separated arguments through
  `config_lib.parse_variant`: unknown ones and exclusive pairs are named."""
  assert config_lib.parse_variant(" paper, runlocal ", ("paper", "runlocal"), "x") == {
      "paper", "runlocal"}
  assert config_lib.parse_variant(None, ("paper",), "x") == set()
  with pytest.raises(ValueError, match=r"Bad voc2007 config argument\(s\) \['papr'\]"):
    config_lib.parse_variant("papr", ("paper", "runlocal"), "voc2007")
  with pytest.raises(ValueError, match=r"\['heads', 'transfer'\]"):
    config_lib.parse_variant("heads,transfer", ("heads", "transfer"), "demo",
                             exclusive=("heads", "transfer"))
  from cnn_rnn_tf import demo_config  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match=r"Bad demo config argument\(s\) \['heads', 'transfer'\]"):
    demo_config.get_config("heads,transfer")
  for name in ("voc2007", "coco2014", "csv", "default"):
    text = open(os.path.join(ROOT, "configs", f"{name}.py")).read()
    assert ".split(" not in text, f"configs/{name}.py splits its argument by hand"
