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
  found += _cross_problems(values)
  return found


def _cross_problems(values: dict[str, Any]) -> list[str]:
  """Checks between fields (each only when the fields themselves are sound)."""
  get = values.get
  found = []
  min_length, max_length = get("decode.min_length"), get("decode.max_length")
  if isinstance(min_length, int) and isinstance(max_length, int) and min_length > max_length:
    found.append(f"decode.min_length = {min_length}: must be <= decode.max_length "
                 f"({max_length})")
  found += _decoder_problems(values)
  found += _recipe_problems(values)
  found += _evaluation_problems(values)
  found += _backbone_problems(values)
  if get("data.source") == "csv":
    if (config_lib.optional_path(get("data.train_csv")) is None
        and config_lib.optional_path(get("data.eval_csv")) is None):
      found.append("data.train_csv = None and data.eval_csv = None: the csv source needs at "
                   "least one CSV file")
  return found


_NO_VALIDATION_PART = (
    "train.eval_every >= 0 with data.calibration_fraction = 0 and no data.validation_split: "
    "training evaluates on a validation part, never on the test split; hold one out "
    "(data.calibration_fraction > 0), name data.validation_split, or set train.eval_every = -1")


def _evaluation_problems(values: dict[str, Any]) -> list[str]:
  """Training's evaluation: what keep_best needs, and that it has a part to evaluate on."""
  get = values.get
  found = []
  if get("train.keep_best") and get("train.eval_every") == -1:
    found.append(f"train.keep_best = {get('train.keep_best')!r} with train.eval_every = -1: "
                 "the best checkpoint is chosen by evaluation, which -1 turns off; set "
                 "train.eval_every >= 0 or train.keep_best = ''")
  if (get("train.eval_every") != -1
      and config_lib.optional_path(get("data.validation_split")) is None
      and get("data.calibration_fraction") == 0):
    found.append(_NO_VALIDATION_PART)
  return found


def _backbone_problems(values: dict[str, Any]) -> list[str]:
  """The backbone's input size, and weights it has and a run can rebuild."""
  get = values.get
  found = []
  backbone, size = get("model.backbone"), get("model.image_size")
  weights = config_lib.optional_path(get("model.backbone_weights"))
  fixed_size, has_imagenet = config_lib.BACKBONE_FACTS.get(backbone, (None, True))
  if fixed_size is not None and size not in (None, fixed_size):
    found.append(f"model.image_size = {size!r}: {backbone} takes {fixed_size} (its fc "
                 "layers fix the input size; None takes it)")
  elif (backbone in config_lib.BACKBONE_FACTS and isinstance(size, int)
        and size < config_lib.MIN_IMAGE_SIZE.get(backbone, 32)):
    found.append(f"model.image_size = {size!r}: {backbone} takes at least "
                 f"{config_lib.MIN_IMAGE_SIZE.get(backbone, 32)} (Keras' applications refuse "
                 "smaller inputs)")
  named = weights in config_lib.NAMED_WEIGHTS
  if weights is not None and not named and config_lib.is_local(weights):
    if not os.path.exists(os.path.expanduser(weights)):
      found.append(f"model.backbone_weights = {weights!r}: file does not exist (use "
                   "'imagenet', None, or a weights file such as "
                   "<workdir>/backbone.weights.h5)")
  elif named and not has_imagenet:
    found.append(f"model.backbone_weights = {weights!r}: {backbone} has no {weights} "
                 "weights; use None or a backbone.weights.h5 file")
  if get("model.train_backbone") is False and weights is None:
    found.append("model.backbone_weights = None with model.train_backbone = False: a frozen "
                 "random backbone is not saved, so evaluation and export could not rebuild it; "
                 "set model.backbone_weights ('imagenet' or a backbone.weights.h5) or "
                 "model.train_backbone = True")
  return found


def _decoder_problems(values: dict[str, Any]) -> list[str]:
  """The decoder and ranking must be ones the head has, with what they need trained."""
  get = values.get
  head, decoder, ranking = get("model.head"), get("decode.decoder"), get("decode.ranking")
  found = []
  names = decoders_lib.head_decoders(head) if head in config_lib.HEADS else None
  if names is not None and decoder not in ("default", *names):
    found.append(f"decode.decoder = {decoder!r}: the {head} head's decoders are {names}")
  if head == "cnn_rnn":
    no_marginals = get("model.side_loss_weight") == 0
    if no_marginals and "marginals" in (decoder, ranking):
      which = "decoder" if decoder == "marginals" else "ranking"
      found.append(f"decode.{which} = 'marginals' with model.side_loss_weight = 0: the marginals "
                   "are not trained; use decode.ranking = 'auto' or 'path'")
    if get("decode.num_samples") == 0 and (decoder == "expected_f1" or ranking == "samples"):
      found.append("decode.num_samples = 0: decode.decoder = 'expected_f1' and "
                   "decode.ranking = 'samples' need ancestral samples (e.g. 100)")
  return found


def _recipe_problems(values: dict[str, Any]) -> list[str]:
  """The schedule's settings fit together; AdamW's decay and L2 are never both on."""
  get, found = values.get, []
  schedule, warmup = get("train.schedule"), get("train.warmup_steps")
  steps = get("train.num_steps")
  if schedule == "constant" and warmup:
    found.append(f"train.warmup_steps = {warmup} with train.schedule = 'constant': the "
                 "warm-up belongs to the cosine and step schedules; set one of them")
  if (isinstance(warmup, int) and isinstance(steps, int) and schedule != "constant"
      and warmup >= steps):
    found.append(f"train.warmup_steps = {warmup}: must be < train.num_steps ({steps})")
  at, factors = get("train.decay_at"), get("train.decay_factors")
  if (schedule == "step" and isinstance(at, (tuple, list)) and isinstance(factors, (tuple, list))
      and len(at) != len(factors)):
    found.append(f"train.decay_factors = {tuple(factors)}: one factor per train.decay_at "
                 f"{tuple(at)} is needed")
  if get("train.optimizer") == "adamw" and get("model.weight_decay"):
    found.append(f"train.optimizer = 'adamw' with model.weight_decay = "
                 f"{get('model.weight_decay')!r}: AdamW decays the weights itself "
                 "(train.weight_decay); set model.weight_decay = 0 so that the L2 "
                 "regularizers do not decay them a second time")
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
