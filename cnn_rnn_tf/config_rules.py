"""Config checks between fields (each only when the fields themselves are sound).

    problems = config_rules.cross_problems(config_lib.field_values(config))  # list[str]

`config_checks.validate` runs them after the per-field checks; each line names the fields
and what is expected. Imports no TensorFlow.
"""

from __future__ import annotations

import os
from typing import Any

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import decoders as decoders_lib


def cross_problems(values: dict[str, Any]) -> list[str]:
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
