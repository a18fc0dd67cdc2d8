"""Config validation: every field's type and range, checks between fields, "did you mean".

    from cnn_rnn_tf import config_checks
    config_checks.validate(config)        # raises config_lib.ConfigError, one line per problem
    config_checks.problems(config)        # the same lines, as a list

Every binary checks its config before any work. The types come from
`config_lib.default_config()`; the ranges and choices from `_CHECKS` below (each choice is
the table of `config_lib`, e.g. `config_lib.HEADS`). Imports no TensorFlow.
"""

from __future__ import annotations

import codecs
import difflib
import math
import os
from typing import Any, Callable

import ml_collections

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import config_rules
from cnn_rnn_tf import decoders as decoders_lib

# Fields that may be None besides the optional paths (config_lib.PATH_FIELDS).
OPTIONAL_FIELDS = ("model.max_labels", "model.image_size", "data.validation_split")


def _small_cnn_filters(value):
  if (not isinstance(value, (tuple, list)) or len(value) != 4
      or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)):
    return "must be 4 positive integers (the three blocks' and the last conv's filters)"
  return None


_INT64_MAX = 2**63 - 1  # TensorFlow holds the int fields (steps, sizes, seeds) as int64


def _int_range(lo=None, hi=_INT64_MAX):
  def check(value):
    if lo is not None and value < lo:
      return f"must be >= {lo}"
    if hi is not None and value > hi:
      return f"must be <= {hi}"
    return None
  return check


def _positive_finite(value):
  if not math.isfinite(value) or value <= 0:
    return "must be a positive finite number"
  return None


def _non_negative_finite(value):
  if not math.isfinite(value) or value < 0:
    return "must be a finite number >= 0"
  return None


def _fraction(value):  # 0 <= value < 1 (NaN fails both comparisons)
  if not 0 <= value < 1:
    return "must be a finite number in [0, 1)"
  return None



def _fractions_in_order(value):
  if (not isinstance(value, (tuple, list)) or not value
      or not all(isinstance(v, (int, float)) and 0 < v < 1 for v in value)
      or list(value) != sorted(set(value))):
    return "must be increasing fractions of the run in (0, 1), e.g. (0.5, 0.75)"
  return None


def _factors(value):
  if (not isinstance(value, (tuple, list)) or not value
      or not all(isinstance(v, (int, float)) and 0 < v <= 1 for v in value)):
    return "must be factors in (0, 1], one per train.decay_at, e.g. (0.1, 0.1)"
  return None

def _one_of(*choices):
  def check(value):
    if value not in choices:
      return f"must be one of {choices}"
    return None
  return check


def _nonempty(value):
  return None if value else "must not be empty"


def _existing_path(value):
  if value is not None and config_lib.is_local(value) and not os.path.exists(os.path.expanduser(value)):
    return "does not exist"
  return None


def _checkpoint_path(value):
  if value is None or not config_lib.is_local(value):
    return None
  path = os.path.expanduser(value)
  if os.path.isdir(path) or os.path.exists(path + ".index"):
    return None
  return "is neither a checkpoint prefix (<path>.index) nor a folder of checkpoints"


def _encoding(value):
  try:
    codecs.lookup(value)
  except LookupError:
    return "is not a text encoding Python knows (e.g. 'utf-8', 'latin-1')"
  return None


def _activation(value):
  if value in ("relu", "linear", "tanh", "sigmoid", "elu", "gelu", "swish", "softplus"):
    return None
  import keras  # pylint: disable=g-import-not-at-top
  try:
    keras.activations.get(value)
  except (ValueError, TypeError):
    return "is not a Keras activation name"
  return None


def _keep_best(value):
  if not value:
    return None
  # The metric table (NumPy only; imported here, not when a config file loads).
  from cnn_rnn_tf import metrics  # pylint: disable=g-import-not-at-top
  known = metrics.keep_best_keys()
  if value not in known:
    close = difflib.get_close_matches(value, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"must be '' or a metric key such as 'top3.OF1' or 'mAP_noninterp'{hint}"
  return None


# Field -> check(value) -> None or what is wrong. Types are checked against default_config().
# Every numeric field (int or float in default_config()) has a range here; every float field
# refuses NaN and +-inf (tests/test_config_lib.py walks the defaults to keep it so).
_CHECKS: dict[str, Callable[[Any], str | None]] = {
    "seed": _int_range(0, 2**32 - 1),  # keras.utils.set_random_seed (NumPy) takes [0, 2**32)
    "data.source": _one_of(*config_lib.SOURCES),
    "data.train_split": _nonempty,
    "data.eval_split": _nonempty,
    "data.voc_labels": _one_of("labels", "labels_no_difficult"),
    "data.voc_difficult": _one_of("ignore", "positive", "negative"),
    "data.coco_empty_images": _one_of("skip", "keep"),
    "data.synthetic_config": _one_of("default", "small"),
    "data.synthetic_seed": _int_range(0),
    "data.synthetic_labels": _one_of("objects", "scene"),
    "data.image_column": _nonempty,
    "data.labels_column": _nonempty,
    "data.label_separator": _nonempty,
    "data.csv_empty_labels": _one_of("error", "keep"),
    "data.check_images": _one_of("decode", "header"),
    "data.max_image_pixels": _int_range(1),
    "data.csv_encoding": _encoding,
    "data.shuffle_buffer": _int_range(1),
    "data.calibration_fraction": _fraction,
    "data.precision": _one_of(*config_lib.PRECISIONS),
    "data.jit": _one_of(*config_lib.JITS),
    "data.manual_dir": _existing_path,
    "data.train_csv": _existing_path,
    "data.eval_csv": _existing_path,
    "model.head": _one_of(*config_lib.HEADS),
    "model.backbone": _one_of(*config_lib.BACKBONES),
    "model.image_size": _int_range(8),
    "model.small_cnn_filters": _small_cnn_filters,
    "model.embedding_dim": _int_range(1),
    "model.lstm_units": _int_range(1),
    "model.joint_activation": _activation,
    "model.dropout": _fraction,
    "model.weight_decay": _non_negative_finite,
    "model.max_labels": _int_range(1),
    "model.side_loss_weight": _non_negative_finite,
    "model.label_loss": lambda value: _one_of(*config_lib.LABEL_LOSSES)(value),  # read when checked
    "model.asl.gamma_neg": _non_negative_finite,
    "model.asl.gamma_pos": _non_negative_finite,
    "model.asl.clip": _fraction,
    "decode.beam_size": _int_range(1),
    "decode.max_length": _int_range(1),
    "decode.min_length": _int_range(0),
    "decode.decoder": lambda value: _one_of("default", *decoders_lib.DECODERS)(value),  # read when checked: the table may grow
    "decode.num_samples": _int_range(0, config_lib.MAX_SAMPLES),
    "decode.sample_seed": _int_range(0),
    "decode.ranking": _one_of(*config_lib.RANKINGS),
    "model.marginals": _one_of(*config_lib.MARGINALS),
    "train.batch_size": _int_range(1),
    "train.num_steps": _int_range(1),
    "train.optimizer": _one_of(*config_lib.OPTIMIZERS),
    "train.learning_rate": _positive_finite,
    "train.schedule": _one_of(*config_lib.SCHEDULES),
    "train.warmup_steps": _int_range(0),
    "train.final_lr_fraction": _fraction,
    "train.decay_at": _fractions_in_order,
    "train.decay_factors": _factors,
    "train.grad_clip_norm": _non_negative_finite,
    "train.ema_decay": _fraction,
    "train.weight_decay": _non_negative_finite,
    "train.momentum": _fraction,
    "train.label_order": _one_of(*config_lib.LABEL_ORDERS),
    "train.align_inputs": _one_of(*config_lib.ALIGN_INPUTS),
    "train.init_checkpoint": _checkpoint_path,
    "train.steps_per_loop": _int_range(1),
    "train.log_every": _int_range(1),
    "train.checkpoint_every": _int_range(1),
    "train.max_checkpoints": _int_range(1),
    "train.eval_every": _int_range(-1),  # -1: never
    "train.keep_best": _keep_best,
}




def _field_types(defaults: ml_collections.ConfigDict) -> dict[str, type]:
  """The type each field must have: its default's, or the FieldReference's for None."""
  types = {}
  for name in config_lib.field_names(defaults):
    *parents, last = name.split(".")
    node = defaults
    for part in parents:
      node = node[part]
    types[name] = node.get_type(last)
  return types


def _type_problem(value, expected: type) -> str | None:
  if value is None:
    return None  # None fields are checked by their own rule (optional or not)
  if expected is bool:
    ok = isinstance(value, bool)
  elif expected is int:
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif expected is float:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
  else:
    ok = isinstance(value, expected)
  return None if ok else f"must be of type {expected.__name__}"


def closest_field(name: str, known) -> str | None:
  close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.5)
  return close[0] if close else None


def problems(config: ml_collections.ConfigDict) -> list[str]:
  """What is wrong with `config`, one line each ("field = value: what is expected")."""
  return _problems(config_lib.field_values(config))


def _problems(values: dict[str, Any]) -> list[str]:
  """`problems` of the config whose fields are `values` ({"section.name": value})."""
  types = _field_types(config_lib.default_config())
  found = []
  for name in sorted(set(values) - set(types)):
    close = closest_field(name, types)
    found.append(f"{name}: unknown field" + (f" (did you mean {close}?)" if close else ""))
  for name in sorted(set(types) - set(values)):
    found.append(f"{name}: missing (default_config has it)")
  for name, expected in types.items():
    if name not in values:
      continue
    value = values[name]
    if name in config_lib.PATH_FIELDS:
      value = config_lib.optional_path(value)
    optional = name in config_lib.PATH_FIELDS or name in OPTIONAL_FIELDS
    if value is None and not optional:
      found.append(f"{name} = None: must be set")
      continue
    problem = _type_problem(value, expected)
    if problem is None and value is not None and name in _CHECKS:
      problem = _CHECKS[name](value)
    if problem:
      found.append(f"{name} = {value!r}: {problem}")
  found += config_rules.cross_problems(values)
  return found


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line per problem) unless every field is sound.

  Checks every field's type against `default_config()`, ranges (every numeric field has
  one: seed in [0, 2**32), beam_size >= 1, 0 <= min_length <= max_length, positive learning
  rate, batch size and intervals; NaN and +-inf are refused in every float field), enum
  values, and that the files named exist. Unset optional paths ("None", "none", "") are made
  None in place first (`canonical`), so the library never sees the string "None".
  """
  values = config_lib.field_values(config_lib.canonical(config))
  found = _problems(values)
  if found:
    raise config_lib.ConfigError(found)
