"""Tests of configs/*.py: each loads and validates, sets only what differs from
`config_lib.default_config()` (each with a one-line why), and its runlocal variant trains.

The slow test trains every config's runlocal variant for a few steps on small data the test
makes: synthetic_scenes/small, VOC 2007 and COCO 2014 through tfds.testing.mock_data, and a
CSV of PNGs written here.
"""

import ast
import glob
import os
import re

import numpy as np
import pytest

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_cli
from cnn_rnn_tf import config_lib
from helpers import load_config_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILES = sorted(glob.glob(os.path.join(ROOT, "configs", "*.py")))
VARIANTS = {"demo": [None, "heads", "transfer", "runlocal", "heads,runlocal"]}
PAPER_VARIANTS = ("default", "voc2007", "coco2014", "csv")  # also "paper" and "paper,runlocal"


def _name(path):
  return os.path.splitext(os.path.basename(path))[0]


def _variants():
  for path in CONFIG_FILES:
    for arg in VARIANTS.get(_name(path), [None, "runlocal", "paper", "paper,runlocal"]):
      yield pytest.param(path, arg, id=f"{_name(path)}:{arg}")


def _make_valid(config, tmp_path):
  """Fills what the user must give on the command line (CSV files, heads' backbone)."""
  if config.data.source == "csv":
    for name in ("train.csv", "eval.csv"):
      (tmp_path / name).write_text("image_name,tags\n")
    config.data.train_csv = str(tmp_path / "train.csv")
    config.data.eval_csv = str(tmp_path / "eval.csv")
  if not config.model.train_backbone and config.model.backbone_weights is None:
    (tmp_path / "backbone.weights.h5").write_text("")
    config.model.backbone_weights = str(tmp_path / "backbone.weights.h5")


def test_every_config_file_is_tested():
  assert {_name(p) for p in CONFIG_FILES} == {"coco2014", "csv", "default", "demo", "voc2007"}


@pytest.mark.parametrize("path, arg", list(_variants()))
def test_config_validates(path, arg, tmp_path):
  config = load_config_file(path, arg)
  _make_valid(config, tmp_path)
  config_checks.validate(config)
  assert config_lib.field_names(config) == config_lib.field_names()  # no field added


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_name)
def test_unknown_argument_is_refused(path):
  with pytest.raises(ValueError, match="nosuch"):
    load_config_file(path, "nosuch")


@pytest.mark.parametrize("name", PAPER_VARIANTS)
def test_paper_argument_sets_back_exactly_the_paper_fields(name):
  """`:paper` = the variant with config_lib.PAPER's fields set back, nothing else."""
  path = os.path.join(ROOT, "configs", f"{name}.py")
  ours, paper = load_config_file(path, None), load_config_file(path, "paper")
  for key, value in config_lib.PAPER.items():
    section, field = key.split(".")
    assert paper[section][field] == value, key
    ours[section][field] = value
  assert ours.to_dict() == paper.to_dict()
  assert load_config_file(path, "paper,runlocal").model.backbone == "small_cnn"


def _assignments(body):
  """(lineno, "section.field", value node, inside an if) of `config.a.b = ...` lines."""
  for node in body:
    if isinstance(node, ast.If):
      for lineno, field, value, _ in _assignments(node.body + node.orelse):
        yield lineno, field, value, True
    elif isinstance(node, ast.Assign) and len(node.targets) == 1:
      field = ast.unparse(node.targets[0])
      if field.startswith("config."):
        yield node.lineno, field[len("config."):], node.value, False


def _get_config_source(path):
  """(source text, its get_config node): in `path`, or in the module it re-exports it from
  (`from cnn_rnn_tf.demo_config import get_config`)."""
  source = open(path).read()
  for node in ast.parse(source).body:
    if isinstance(node, ast.FunctionDef) and node.name == "get_config":
      return source, node
    if isinstance(node, ast.ImportFrom) and any(a.name == "get_config" for a in node.names):
      return _get_config_source(os.path.join(ROOT, *node.module.split(".")) + ".py")
  raise AssertionError(f"{path} has no get_config")


@pytest.mark.parametrize("path", CONFIG_FILES, ids=_name)
def test_variants_set_only_what_differs_each_with_a_why(path):
  source, function = _get_config_source(path)
  lines = source.splitlines()
  state = dict(zip(config_lib.field_names(),
                   (config_lib._get(config_lib.default_config(), n)  # pylint: disable=protected-access
                    for n in config_lib.field_names())))
  problems = []
  for lineno, field, value, inside_if in _assignments(function.body):
    assert field in state, f"{_name(path)}:{lineno}: unknown field {field}"
    try:
      literal = ast.literal_eval(value)
    except ValueError:
      continue
    if literal == state[field]:
      problems.append(f"line {lineno}: {field} = {literal!r} is already the value")
    if not inside_if:
      state[field] = literal
      if field != "data.source" and "#" not in lines[lineno - 1]:
        problems.append(f"line {lineno}: {field} has no one-line why (# ...)")
  assert not problems, f"{_name(path)}:\n" + "\n".join(problems)


def _fields_read(pattern: str, files) -> set[str]:
  found = set()
  for path in files:
    found.update(re.findall(pattern, open(path).read()))
  return found


def test_default_config_holds_every_field_the_library_reads():
  package = glob.glob(os.path.join(ROOT, "cnn_rnn_tf", "**", "*.py"), recursive=True)
  package += glob.glob(os.path.join(ROOT, "benchmarks", "*.py"))
  defaults = config_lib.default_config()
  methods = {"get", "keys", "items", "values", "update", "unlocked", "lock", "unlock",
             "to_dict", "to_json", "to_json_best_effort", "copy_and_resolve_references"}
  missing = []
  for section, field in _fields_read(r"\bconfig\.(data|model|train|decode)\.(\w+)", package):
    if field not in methods and field not in defaults[section]:
      missing.append(f"{section}.{field}")
  # The data sources read config.data's fields as `config.<field>`.
  for field in _fields_read(r"\bconfig\.(\w+)\b", glob.glob(
      os.path.join(ROOT, "cnn_rnn_tf", "data", "sources", "*.py"))):
    if field not in methods and field not in ("data",) and field not in defaults.data:
      missing.append(f"data.{field} (sources/)")
  assert not missing, missing


# ------------------------------------------------------------------------ runlocal trains


def _write_png_csv(folder, rows):
  """A CSV of 32x32 PNGs: rows = [(file name, "label label")]."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(folder / "img", exist_ok=True)
  rng = np.random.default_rng(0)
  lines = ["image_name,tags"]
  for name, labels in rows:
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / "img" / name)
    lines.append(f"img/{name},{labels}")
  (folder / "data.csv").write_text("\n".join(lines) + "\n")
  return str(folder / "data.csv")


def _train(config, workdir):
  from cnn_rnn_tf import train_lib  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  config_checks.validate(config)
  result = train_lib.train(config, workdir)
  assert result["step"] == config.train.num_steps
  trained = workdir_lib.load_trained(workdir)  # strict: the config rebuilds what was saved
  assert trained.checkpoint_path.endswith(f"ckpt-{config.train.num_steps}")
  return workdir


@pytest.mark.slow
def test_every_runlocal_variant_trains(tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  tfds_dir = str(tmp_path / "tfds")
  configs = os.path.join(ROOT, "configs")

  # The end-of-training evaluation is the trainer's (tests/test_train.py); here it runs for
  # the CSV only, to keep this test's time down.
  for name in ("default", "demo"):
    config = load_config_file(os.path.join(configs, f"{name}.py"), "runlocal")
    config.data.data_dir = tfds_dir
    config.train.eval_every = -1
    _train(config, str(tmp_path / name))
  heads = load_config_file(os.path.join(configs, "demo.py"), "heads,runlocal")
  heads.data.data_dir = tfds_dir
  heads.model.backbone_weights = str(tmp_path / "demo" / "backbone.weights.h5")
  heads.data.cache_dir = str(tmp_path / "cache")
  heads.train.eval_every = -1
  _train(heads, str(tmp_path / "heads"))

  for name in ("voc2007", "coco2014"):
    config = load_config_file(os.path.join(configs, f"{name}.py"), "runlocal")
    config.train.num_steps = 2
    config.train.eval_every = -1
    with tfds.testing.mock_data(num_examples=16):
      _train(config, str(tmp_path / name))

  csv = _write_png_csv(tmp_path / "csv_data", [
      (f"{i:02d}.png", ["cat", "dog", "cat dog", "car"][i % 4]) for i in range(12)])
  config = load_config_file(os.path.join(configs, "csv.py"), "runlocal")
  config.data.train_csv = csv
  config.data.eval_csv = csv
  # 12 images: a third held out, so the validation part that training evaluates is not empty.
  config.data.calibration_fraction = 0.34
  _train(config, str(tmp_path / "csv"))


# ---- Configs by name (config_cli.config_file): what an installed wheel offers without a clone.


def test_every_config_file_has_a_name():
  files = {_name(p): os.path.realpath(p) for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))}
  named = {name: os.path.realpath(path) for name, path in config_cli.named_configs().items()}
  assert named == files


@pytest.mark.parametrize("spec, want", [
    ("voc2007", "voc2007.py"),
    ("voc2007:runlocal", "voc2007.py:runlocal"),
    ("csv:paper,runlocal", "csv.py:paper,runlocal"),
])
def test_a_name_resolves_to_the_packages_file(spec, want):
  resolved = config_cli.config_file(spec)
  path = resolved.split(":", 1)[0]
  assert os.path.isfile(path) and resolved.endswith(os.sep + want), resolved


@pytest.mark.parametrize("spec", ["configs/csv.py:runlocal", "my_config.py", "/abs/x.py:paper"])
def test_a_path_is_left_as_it_is(spec):
  assert config_cli.config_file(spec) == spec


def test_a_file_in_the_current_folder_wins_over_a_name(tmp_path, monkeypatch):
  (tmp_path / "csv").write_text("def get_config(arg=None): ...\n")
  monkeypatch.chdir(tmp_path)
  assert config_cli.config_file("csv:runlocal") == "csv:runlocal"


def test_an_unknown_name_lists_the_named_configs():
  with pytest.raises(ValueError, match=r"'vocc2007'.*named configs: coco2014, csv, default"):
    config_cli.config_file("vocc2007:runlocal")


def test_the_config_flag_loads_a_name_and_a_path_alike(tmp_path, monkeypatch):
  from absl import flags  # pylint: disable=g-import-not-at-top
  monkeypatch.chdir(ROOT)
  values = {}
  for spec in ("csv:runlocal", "configs/csv.py:runlocal"):
    flag_values = flags.FlagValues()
    holder = config_cli.define_config_file_flag("config", "test", flag_values=flag_values)
    flag_values(["prog", f"--config={spec}"])
    values[spec] = holder.value.to_dict()
  assert values["csv:runlocal"] == values["configs/csv.py:runlocal"]
  assert values["csv:runlocal"]["data"]["source"] == "csv"
  assert values["csv:runlocal"]["train"]["batch_size"] == 8  # runlocal reached get_config


@pytest.mark.slow  # builds EfficientNetV2-S at 384 (~25 s on 2 cores)
def test_a_backbone_without_a_size_trains_at_its_own(tmp_path):
  """Issue 25 item 7: `--config.model.backbone=efficientnetv2_s` with no size builds, in the
  trainer's own build function, a backbone taking 384x384 images (the registry's size), and
  the training images are made at that size. Random weights, nothing trained."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from absl import flags  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import backbones, train_lib  # pylint: disable=g-import-not-at-top
  argv = ["prog", f"--config={os.path.join(ROOT, 'configs', 'default.py')}",
          "--config.model.backbone=efficientnetv2_s", "--config.model.backbone_weights=None",
          "--config.model.train_backbone=True", "--config.data.precision=off"]
  values = flags.FlagValues()
  holder = config_cli.define_config_file_flag("config", "test", flag_values=values,
                                              sys_argv=argv)
  values(argv)
  config = holder.value
  config_checks.validate(config)
  assert config.model.image_size is None
  models = train_lib.build_training_models(config, num_labels=3,
                                           strategy=tf.distribute.get_strategy())
  assert tuple(models.backbone.input_shape) == (None, 384, 384, 3)
  assert backbones.backbone_image_size(config.model.backbone, config.model.image_size) == 384
