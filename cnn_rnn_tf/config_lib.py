"""The default configuration, its checks, and the config flag of the binaries.

Config files (`configs/*.py`, or your own anywhere) start from the defaults and change only
what differs, each with a one-line why:

    from cnn_rnn_tf import config_lib

    def get_config(arg=None):
      config = config_lib.default_config()
      config.data.source = "csv"  # your own images
      return config

and are loaded by the binaries with `--config=path/to/file.py`, overridden with
`--config.a.b=value`. The package's own configs also load by name, from a clone or an
installed wheel alike: `--config=csv:runlocal` is `configs/csv.py:runlocal` (`config_file`). Every binary checks the config before any work:

    config_lib.validate(config)     # raises ConfigError, one line per problem

Optional paths (`PATH_FIELDS`): None, "None", "none" and "" all mean "not set";
`validate` (and `canonical`) turn them into None, so `--config.model.backbone_weights=None`
works as documented. `resolve_paths` makes the set ones absolute: a workdir's config.json
holds absolute paths, so evaluate and export work from any folder.

An unknown `--config.x` field or a bad value on the command line gives one line, not a
traceback, when the binary runs `app.run(main, flags_parser=config_lib.flags_parser)`.
"""

from __future__ import annotations

import difflib
import math
import os
import sys
from typing import Any, Callable

import ml_collections

# Choices of the enum fields. Each is the library's own list (tests/test_config_lib.py checks
# they agree); repeated here so that checking a config does not import TensorFlow.
SOURCES = ("voc2007", "coco2014", "csv", "synthetic_scenes")
HEADS = ("cnn_rnn", "bce")
# Per backbone: (the input size its layers fix, or None; whether it has ImageNet weights).
# backbones.REGISTRY's fields, repeated without TensorFlow; test_backbones checks they agree.
BACKBONE_FACTS = {"vgg16": (224, True), "resnet50": (None, True), "resnet101": (None, True),
                  "efficientnetv2_s": (None, True), "convnext_tiny": (None, True),
                  "mobilenet_v3_large": (None, True), "small_cnn": (None, False)}
BACKBONES = tuple(BACKBONE_FACTS)
OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")  # = optim.OPTIMIZERS
SCHEDULES = ("constant", "cosine", "step")  # = optim.SCHEDULES
PRECISIONS = ("auto", "on", "off")
LABEL_ORDERS = ("frequent_first", "rare_first", "random", "pla", "mla")
ALIGN_INPUTS = ("predictions", "targets")
HEAD_DECODERS = {"cnn_rnn": ("path", "marginals", "expected_f1"),
                 "bce": ("threshold", "expected_f1")}
DECODERS = ("path", "marginals", "threshold", "expected_f1")
RANKINGS = ("auto", "marginals", "path", "samples")
MARGINALS = ("side_head", "joint_space")

# Optional path fields: None / "None" / "none" / "" all mean not set.
PATH_FIELDS = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.train_csv",
               "data.eval_csv", "train.init_checkpoint", "model.backbone_weights")
# Values of model.backbone_weights that are not files.
NAMED_WEIGHTS = ("imagenet",)
_NONE_STRINGS = ("", "none", "None", "NONE", "null")


class ConfigError(ValueError):
  """A config that must not be run; the message has one line per problem."""

  def __init__(self, problems):
    self.problems = list(problems)
    super().__init__("Invalid config:\n" + "\n".join(f"  {p}" for p in self.problems))


def default_config() -> ml_collections.ConfigDict:
  """Every field the library reads, with its default and a one-line why."""
  config = ml_collections.ConfigDict()
  config.seed = 0  # weights, dropout and the training data order

  # ---- Data: cnn_rnn_tf.data ----
  config.data = data = ml_collections.ConfigDict()
  data.source = "synthetic_scenes"  # voc2007 | coco2014 | csv | synthetic_scenes
  data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir (None: ~/tensorflow_datasets)
  data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # where original archives lie (VOC/COCO offline)
  data.train_split = "train"
  data.eval_split = "test"  # what evaluate reports on; no choice is ever made on it
  # What training-time evaluation selects on (train.eval_every, train.keep_best): None, the
  # held-out calibration part of data.train_split; or a split of its own (VOC: "validation").
  data.validation_split = ml_collections.FieldReference(None, field_type=str)
  data.voc_labels = "labels"  # voc2007: "labels" (any instance) or "labels_no_difficult"
  data.coco_empty_images = "skip"  # coco2014: images without objects: "skip" (counted) or "keep" (empty label set)
  data.synthetic_config = "default"  # synthetic_scenes builder config: "default" (64x64) | "small" (32x32)
  data.synthetic_seed = 0  # synthetic_scenes: the seed of the images (another seed, other images)
  data.synthetic_labels = "objects"  # synthetic_scenes: "objects" (20 labels) | "scene" (the scene type: another task)
  data.train_csv = ml_collections.FieldReference(None, field_type=str)  # csv: the training CSV
  data.eval_csv = ml_collections.FieldReference(None, field_type=str)  # csv: the evaluation CSV
  data.image_column = "image_name"  # csv: header of the image path column (Planet style)
  data.labels_column = "tags"  # csv: header of the labels column
  data.label_separator = " "  # csv: between the labels of one row
  data.skip_bad_examples = False  # True: skip and count bad rows/images instead of raising
  data.csv_empty_labels = "error"  # csv: a row without labels is bad data; "keep": a valid example (target END)
  data.check_images = "decode"  # csv: decode each image once per split (catches corrupt files); "header": fast
  data.csv_encoding = "utf-8"  # csv: text encoding of the CSV files (a BOM is skipped); bad bytes name file and line
  data.allow_overlap = True  # csv: an eval image also in train_csv (same path or bytes) is warned about and counted; False: an error
  data.max_image_pixels = 40_000_000  # = images.DEFAULT_MAX_PIXELS; larger images (by header) are refused before decoding
  data.shuffle_buffer = 2048
  data.deterministic = False  # True: fixed op order and seeds (reproducible, a bit slower)
  data.augment = False  # random flip + random crop; for fine-tuning the backbone
  data.cache_features = True  # frozen backbone: extract features once, train on the cache
  data.cache_dir = ml_collections.FieldReference(None, field_type=str)  # None: <workdir>/../feature_cache
  # The held-out part of data.train_split (by a hash of the example key) that neither head
  # trains on; the bce head's per-class thresholds are fitted on it (calibration.py). 0: none.
  data.calibration_fraction = 0.1
  data.precision = "auto"  # backbone compute: on (mixed_bfloat16) | off | auto (the faster here, measured once per machine: data/precision.py)

  # ---- Model: cnn_rnn_tf.backbones, cnn_rnn_tf.model ----
  config.model = model = ml_collections.ConfigDict()
  model.head = "cnn_rnn"  # cnn_rnn | bce (the paper's binary cross-entropy baseline)
  model.backbone = "vgg16"  # the paper's; or resnet50 | resnet101 | efficientnetv2_s | convnext_tiny | mobilenet_v3_large | small_cnn (backbones.REGISTRY)
  model.backbone_weights = ml_collections.FieldReference("imagenet", field_type=str)  # imagenet | None | path
  model.image_size = 224  # vgg16's fc layers fix 224
  # small_cnn's conv widths (3 blocks, last conv); the demo sets a thinner (16, 32, 64, 64)
  # for its speed, a setting that cost accuracy when it was everyone's default (issue 18)
  model.small_cnn_filters = (32, 64, 128, 128)
  model.train_backbone = False  # the paper keeps the CNN frozen; True fine-tunes it
  model.embedding_dim = 64  # d, the joint space (paper: 64)
  model.lstm_units = 512  # ReLU-LSTM units (paper: 512)
  model.joint_activation = "relu"  # h in x_t = h(U_o o(t) + U_I I); the paper does not name it
  model.dropout = 0.5  # on the inputs of both projections into the joint space
  model.weight_decay = 1e-4  # L2 on all kernels and the label embedding
  model.max_labels = ml_collections.FieldReference(None, field_type=int)  # cap per training sequence
  # cnn_rnn: weight of a BCE loss on the image side of the joint space, added to the sequence
  # loss: logits = U_I dropout(I) . U_l[:K]^T (the tied label embedding's label rows), sigmoid
  # cross-entropy summed over K; gives the image projection (and a trained backbone) a
  # per-label gradient. Prediction and export are unchanged. 0: off (the paper; `:paper`).
  # 1 is the default recipe (docs/method.md): end to end it is what lets the CNN-RNN learn the
  # encoder at all; on frozen features it changes little.
  model.aux_bce_weight = 1.0
  # cnn_rnn: what scores each label from the image alone (the `marginals` decoder, the ranking
  # scores, and the aux BCE loss above): side_head, a Dense(K) on the dropped features inside
  # the CNN-RNN model (full rank: the BCE baseline's classifier; its gradient reaches a trained
  # backbone); joint_space, U_I dropout(I) . U_l[:K]^T (rank d; before 2026-12-04).
  model.marginals = "side_head"

  # ---- Decoding: cnn_rnn_tf.decoding ----
  config.decode = decode = ml_collections.ConfigDict()
  decode.beam_size = 3  # the paper's beam
  decode.max_length = 10  # at most this many labels per image
  decode.min_length = 0  # END is masked until this many labels (paper: k on NUS-WIDE, 0 on COCO)
  # The label set of the `labels` output (the others are exported too, `labels_<decoder>`):
  # default = the head's own (cnn_rnn: path, bce: threshold); path (the beam's best path,
  # the mode); marginals (cnn_rnn: marginal probabilities >= calibrated thresholds);
  # threshold (bce: p >= calibrated thresholds, or 0.5); expected_f1 (the set of maximal
  # expected example-F1, GFM: docs/method.md).
  decode.decoder = "default"
  # cnn_rnn expected_f1: ancestral samples per image (0: no expected_f1). With VGG16 at batch
  # 32 every decoder together took 5.7% of serving_default at 50 (make bench; 100: ~9%).
  decode.num_samples = 50
  decode.sample_seed = 0  # the samples' seed (with each image's features: batch-independent)
  # cnn_rnn label_scores, the ranking of AP and MAP@10: marginals (the marginal probabilities),
  # path (the highest probability a label gets along the best path), samples (sample
  # frequency); auto: marginals when they are trained (model.aux_bce_weight > 0), else path
  decode.ranking = "auto"

  # ---- Training: cnn_rnn_tf.train_lib ----
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 64  # global, over all replicas
  train.num_steps = 20000
  train.optimizer = "rmsprop"  # rmsprop (the paper's choice) | adam | adamw | sgd
  train.learning_rate = 1e-4  # the peak rate of a schedule
  # The recipe (cnn_rnn_tf/optim.py, docs/method.md "The training recipe"); the defaults are
  # the paper's: a constant rate, no clipping, the last weights.
  train.schedule = "constant"  # constant | cosine (warm-up, then to final_lr_fraction) | step
  train.warmup_steps = 0  # cosine / step: linear warm-up from 0 over this many steps
  train.final_lr_fraction = 0.0  # cosine: the last step's rate, a fraction of the peak
  train.decay_at = (0.5, 0.75)  # step: fractions of train.num_steps where the rate is cut
  train.decay_factors = (0.1, 0.1)  # step: the factor of each cut (cumulative)
  train.grad_clip_norm = 0.0  # clip the global norm of the replicas' summed gradient; 0: off
  train.ema_decay = 0.0  # EMA of the weights (evaluated, kept best, exported); 0: off
  train.weight_decay = 0.01  # adamw only: decoupled decay (needs model.weight_decay = 0)
  train.momentum = 0.9  # RMSProp (and SGD) momentum, as the paper
  # cnn_rnn: the order of the training sequence (docs/method.md, "Label order"). Teacher forced:
  # frequent_first (the paper: label ids = training frequency order), rare_first (reverse),
  # random (a new order per example per step, from (seed, step)). Orderless (Yazici et al.
  # 2020): the decoder first runs greedily on its own predictions, and the targets are aligned
  # to that pass: pla keeps predicted true labels at their steps and matches the rest by least
  # -log p; mla matches all true labels to the first n steps; then END.
  train.label_order = "frequent_first"
  # pla / mla: which logits are trained on the aligned targets. predictions (Yazici): those of
  # the free-running pass itself (it fed back its own predictions); targets: a second,
  # teacher-forced pass of the head on the aligned sequence (the pass only aligns).
  train.align_inputs = "predictions"
  train.init_checkpoint = ml_collections.FieldReference(None, field_type=str)  # weights to start from (not resume)
  train.steps_per_loop = 1  # steps per tf.function call; >1 saves Python overhead on small heads
  train.log_every = 100
  train.checkpoint_every = 1000
  train.max_checkpoints = 3
  train.eval_every = 0  # evaluate on the validation part (data.validation_split) every N steps; 0: only at the end; -1: never
  train.keep_best = ""  # "" off; else a metric key ("top3.OF1", "mAP_noninterp"): best/ keeps its best checkpoint
  train.fallback_on_corrupt_checkpoint = True  # a corrupt latest checkpoint: warn, resume from the previous one
  return config


# Where the default recipe departs from the paper (docs/method.md, "The default recipe"):
# `paper(config)` sets these back; `configs/<variant>.py:paper` does it from the command line.
# The recipe fields are here too (their defaults are the paper's), so that `:paper` stays the
# paper's training whatever a variant (e.g. `:resnet101`) sets.
PAPER = {"model.aux_bce_weight": 0.0, "model.marginals": "joint_space",
         "train.schedule": "constant", "train.warmup_steps": 0, "train.grad_clip_norm": 0.0,
         "train.ema_decay": 0.0}


def set_fields(config: ml_collections.ConfigDict, values: dict) -> ml_collections.ConfigDict:
  """Sets dotted fields in place: set_fields(config, {"model.head": "bce"}); returns it."""
  for dotted, value in values.items():
    _set(config, dotted, value)
  return config


def paper(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The paper's exact head training: sets the `PAPER` fields back; returns `config`."""
  return set_fields(config, PAPER)


def variant_args(config, arg, variant: str) -> ml_collections.ConfigDict:
  """Applies a config file's arguments ("paper", "runlocal", comma-separated) to `config`.

      config = config_lib.variant_args(config, "paper,runlocal", "voc2007")
  """
  args = [a for a in (arg or "").split(",") if a]
  unknown = sorted(set(args) - {"paper", "runlocal"})
  if unknown:
    raise ValueError(f"Unknown {variant} config argument(s) {unknown}; expected 'paper' "
                     "and/or 'runlocal'.")
  if "paper" in args:
    paper(config)
  if "runlocal" in args:
    runlocal(config)
  return config


def resnet101_protocol(config: ml_collections.ConfigDict,
                       num_steps: int) -> ml_collections.ConfigDict:
  """The modern protocol (ML-GCN, ASL, Query2Label): ResNet-101 at 448 px, fine-tuned end
  to end with augmentation, Adam 1e-4 at batch 32 (configs/voc2007.py:resnet101)."""
  config.model.backbone = "resnet101"
  config.model.image_size = 448  # as ML-GCN, ASL and Query2Label train
  config.model.train_backbone = True  # they fine-tune the encoder end to end
  config.data.augment = True
  config.data.cache_features = False  # the backbone changes every step
  config.train.optimizer = "adam"
  config.train.learning_rate = 1e-4  # ASL's (peak) Adam rate for a pretrained ResNet-101
  config.train.batch_size = 32
  config.train.num_steps = num_steps
  return config


def runlocal(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Shrinks a config for a laptop or a test: the small CNN trained end to end, a few steps.

  No pretrained weights are needed (the small CNN trains from scratch with the head, so
  nothing frozen and unsaved has to be rebuilt later); the data source stays the variant's.
  """
  config.model.backbone = "small_cnn"  # no ImageNet weights to fetch
  config.model.backbone_weights = None
  config.model.train_backbone = True  # a random frozen CNN could not be rebuilt: train it
  config.model.image_size = 32
  config.model.small_cnn_filters = (16, 32, 64, 64)  # a thin CNN: tests and laptops
  config.model.embedding_dim = 16
  config.model.lstm_units = 32
  config.data.cache_features = False  # the backbone changes every step
  config.data.synthetic_config = "small"
  config.train.batch_size = 8
  config.train.num_steps = 4
  config.train.log_every = 2
  config.train.checkpoint_every = 2
  return config


# ---------------------------------------------------------------------------------------------
# Optional paths.
# ---------------------------------------------------------------------------------------------


def optional_path(value: Any) -> str | None:
  """None for an unset optional path (None, "None", "none", ""), else the string."""
  if value is None:
    return None
  value = str(value).strip()
  return None if value in _NONE_STRINGS else value


def _get(config, dotted: str, default=None):
  node = config
  for part in dotted.split("."):
    if not hasattr(node, "keys") or part not in node.keys():
      return default
    node = node[part]
  return node


def _set(config, dotted: str, value) -> None:
  *parents, last = dotted.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[last] = value


def canonical(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets every unset optional path field (None, "None", "none", "") to None, in place."""
  for field in PATH_FIELDS:
    if _get(config, field, _MISSING) is _MISSING:
      continue
    value = optional_path(_get(config, field))
    if value != _get(config, field):
      _set(config, field, value)
  return config


def _is_local(path: str) -> bool:
  return "://" not in path


def resolve_paths(config: ml_collections.ConfigDict,
                  base: str | None = None) -> ml_collections.ConfigDict:
  """A copy with unset paths as None and set local paths absolute (against `base` or cwd)."""
  config = canonical(ml_collections.ConfigDict(config.to_dict()))
  base = os.path.abspath(base or os.getcwd())
  for field in PATH_FIELDS:
    value = _get(config, field)
    if value is None or not _is_local(value):
      continue
    if field == "model.backbone_weights" and value in NAMED_WEIGHTS:
      continue
    _set(config, field, os.path.normpath(os.path.join(base, os.path.expanduser(value))))
  return config


# ---------------------------------------------------------------------------------------------
# validate.
# ---------------------------------------------------------------------------------------------

_MISSING = object()


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
  if value is not None and _is_local(value) and not os.path.exists(os.path.expanduser(value)):
    return "does not exist"
  return None


def _checkpoint_path(value):
  if value is None or not _is_local(value):
    return None
  path = os.path.expanduser(value)
  if os.path.isdir(path) or os.path.exists(path + ".index"):
    return None
  return "is neither a checkpoint prefix (<path>.index) nor a folder of checkpoints"


def _encoding(value):
  import codecs  # pylint: disable=g-import-not-at-top
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
    "data.source": _one_of(*SOURCES),
    "data.train_split": _nonempty,
    "data.eval_split": _nonempty,
    "data.voc_labels": _one_of("labels", "labels_no_difficult"),
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
    "data.precision": _one_of(*PRECISIONS),
    "data.manual_dir": _existing_path,
    "data.train_csv": _existing_path,
    "data.eval_csv": _existing_path,
    "model.head": _one_of(*HEADS),
    "model.backbone": _one_of(*BACKBONES),
    "model.image_size": _int_range(8),
    "model.small_cnn_filters": _small_cnn_filters,
    "model.embedding_dim": _int_range(1),
    "model.lstm_units": _int_range(1),
    "model.joint_activation": _activation,
    "model.dropout": _fraction,
    "model.weight_decay": _non_negative_finite,
    "model.max_labels": _int_range(1),
    "model.aux_bce_weight": _non_negative_finite,
    "decode.beam_size": _int_range(1),
    "decode.max_length": _int_range(1),
    "decode.min_length": _int_range(0),
    "decode.decoder": _one_of("default", *DECODERS),
    "decode.num_samples": _int_range(0),
    "decode.sample_seed": _int_range(0),
    "decode.ranking": _one_of(*RANKINGS),
    "model.marginals": _one_of(*MARGINALS),
    "train.batch_size": _int_range(1),
    "train.num_steps": _int_range(1),
    "train.optimizer": _one_of(*OPTIMIZERS),
    "train.learning_rate": _positive_finite,
    "train.schedule": _one_of(*SCHEDULES),
    "train.warmup_steps": _int_range(0),
    "train.final_lr_fraction": _fraction,
    "train.decay_at": _fractions_in_order,
    "train.decay_factors": _factors,
    "train.grad_clip_norm": _non_negative_finite,
    "train.ema_decay": _fraction,
    "train.weight_decay": _non_negative_finite,
    "train.momentum": _fraction,
    "train.label_order": _one_of(*LABEL_ORDERS),
    "train.align_inputs": _one_of(*ALIGN_INPUTS),
    "train.init_checkpoint": _checkpoint_path,
    "train.steps_per_loop": _int_range(1),
    "train.log_every": _int_range(1),
    "train.checkpoint_every": _int_range(1),
    "train.max_checkpoints": _int_range(1),
    "train.eval_every": _int_range(-1),  # -1: never
    "train.keep_best": _keep_best,
}


def _flatten(config, prefix="") -> dict[str, Any]:
  out = {}
  for key in config.keys():
    value = config[key]
    name = f"{prefix}{key}"
    if isinstance(value, (ml_collections.ConfigDict, dict)):
      out.update(_flatten(value, name + "."))
    else:
      out[name] = value
  return out


def field_names(config=None) -> list[str]:
  """Every leaf field of `config` (default: default_config()) as "section.name"."""
  return sorted(_flatten(config if config is not None else default_config()))


def field_values(config) -> dict[str, Any]:
  """{"section.name": value} of every leaf field of `config`."""
  return _flatten(config)


def _field_types(defaults: ml_collections.ConfigDict) -> dict[str, type]:
  """The type each field must have: its default's, or the FieldReference's for None."""
  types = {}
  for name in field_names(defaults):
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
  defaults = default_config()
  types = _field_types(defaults)
  values = _flatten(config)
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
    if name in PATH_FIELDS:
      value = optional_path(value)
    optional = name in PATH_FIELDS or name in ("model.max_labels", "data.validation_split")
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
  found = []
  get = values.get
  min_length, max_length = get("decode.min_length"), get("decode.max_length")
  if isinstance(min_length, int) and isinstance(max_length, int) and min_length > max_length:
    found.append(f"decode.min_length = {min_length}: must be <= decode.max_length "
                 f"({max_length})")
  found += _decoder_problems(values)
  found += _recipe_problems(values)
  if get("train.keep_best") and get("train.eval_every") == -1:
    found.append(f"train.keep_best = {get('train.keep_best')!r} with train.eval_every = -1: "
                 "no evaluation, so no best checkpoint; set train.eval_every >= 0 or "
                 "train.keep_best = ''")
  if (get("train.eval_every") != -1 and optional_path(get("data.validation_split")) is None
      and get("data.calibration_fraction") == 0):
    found.append("train.eval_every >= 0 with data.calibration_fraction = 0 and no "
                 "data.validation_split: training evaluates on a validation part, never on "
                 "the test split; hold one out (data.calibration_fraction > 0), name "
                 "data.validation_split, or set train.eval_every = -1")
  backbone = get("model.backbone")
  weights = optional_path(get("model.backbone_weights"))
  fixed_size, has_imagenet = BACKBONE_FACTS.get(backbone, (None, True))
  if fixed_size is not None and get("model.image_size") != fixed_size:
    found.append(f"model.image_size = {get('model.image_size')!r}: {backbone} takes "
                 f"{fixed_size} (its fc layers fix the input size)")
  if weights is not None and weights not in NAMED_WEIGHTS and _is_local(weights):
    if not os.path.exists(os.path.expanduser(weights)):
      found.append(f"model.backbone_weights = {weights!r}: file does not exist (use "
                   "'imagenet', None, or a weights file such as "
                   "<workdir>/backbone.weights.h5)")
  elif weights in NAMED_WEIGHTS and not has_imagenet:
    found.append(f"model.backbone_weights = {weights!r}: {backbone} has no {weights} "
                 "weights; use None or a backbone.weights.h5 file")
  if get("model.train_backbone") is False and weights is None:
    found.append("model.backbone_weights = None with model.train_backbone = False: a frozen "
                 "random backbone is not saved, so evaluation and export could not rebuild it; "
                 "set model.backbone_weights ('imagenet' or a backbone.weights.h5) or "
                 "model.train_backbone = True")
  if get("train.keep_best") and get("train.eval_every") == -1:
    found.append(f"train.keep_best = {get('train.keep_best')!r} with train.eval_every = -1: "
                 "the best checkpoint is chosen by evaluation, which -1 turns off; set "
                 "train.eval_every >= 0 or train.keep_best = ''")
  if get("data.source") == "csv":
    if optional_path(get("data.train_csv")) is None and optional_path(get("data.eval_csv")) is None:
      found.append("data.train_csv = None and data.eval_csv = None: the csv source needs at "
                   "least one CSV file")
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
  if schedule == "step" and isinstance(at, (tuple, list)) and isinstance(factors, (tuple, list)) \
      and len(at) != len(factors):
    found.append(f"train.decay_factors = {tuple(factors)}: one factor per train.decay_at "
                 f"{tuple(at)} is needed")
  if get("train.optimizer") == "adamw" and get("model.weight_decay"):
    found.append(f"train.optimizer = 'adamw' with model.weight_decay = "
                 f"{get('model.weight_decay')!r}: AdamW decays the weights itself "
                 "(train.weight_decay); set model.weight_decay = 0 so that the L2 "
                 "regularizers do not decay them a second time")
  return found


def _decoder_problems(values: dict[str, Any]) -> list[str]:
  """The decoder and ranking must be ones the head has, with what they need trained."""
  get = values.get
  head, decoder, ranking = get("model.head"), get("decode.decoder"), get("decode.ranking")
  found = []
  if head in HEAD_DECODERS and decoder not in ("default", *HEAD_DECODERS[head]):
    found.append(f"decode.decoder = {decoder!r}: the {head} head's decoders are "
                 f"{HEAD_DECODERS[head]}")
  if head == "cnn_rnn":
    no_marginals = get("model.aux_bce_weight") == 0
    if no_marginals and "marginals" in (decoder, ranking):
      which = "decoder" if decoder == "marginals" else "ranking"
      found.append(f"decode.{which} = 'marginals' with model.aux_bce_weight = 0: the marginals "
                   "are not trained; use decode.ranking = 'auto' or 'path'")
    if get("decode.num_samples") == 0 and (decoder == "expected_f1" or ranking == "samples"):
      found.append("decode.num_samples = 0: decode.decoder = 'expected_f1' and "
                   "decode.ranking = 'samples' need ancestral samples (e.g. 100)")
  return found


def validate(config: ml_collections.ConfigDict) -> None:
  """Raises ConfigError (one line per problem) unless every field is sound.

  Checks every field's type against `default_config()`, ranges (every numeric field has
  one: seed in [0, 2**32), beam_size >= 1, 0 <= min_length <= max_length, positive learning
  rate, batch size and intervals; NaN and +-inf are refused in every float field), enum
  values, and that the files named exist. Unset optional paths ("None", "none", "") are made
  None in place first (`canonical`), so the library never sees the string "None".
  """
  canonical(config)
  found = problems(config)
  if found:
    raise ConfigError(found)


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------


def named_configs() -> dict[str, str]:
  """The configs shipped with the package: name -> file ({"csv": ".../configs/csv.py", ...}).

  An installed wheel holds them as `cnn_rnn_tf/configs/*.py` (setup.py maps the top-level
  `configs/` there); a checkout reads its top-level `configs/`.
  """
  package = os.path.dirname(os.path.abspath(__file__))
  for folder in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs")):
    if os.path.isdir(folder):
      return {f[:-3]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
              if f.endswith(".py") and not f.startswith("_")}
  return {}


def config_file(spec: str) -> str:
  """A `--config=` value with a config name replaced by the package's file; paths unchanged.

      config_file("voc2007:runlocal")         # ".../configs/voc2007.py:runlocal"
      config_file("configs/voc2007.py:paper")  # unchanged: a path (a "/" or ".py", or a file)

  Raises ValueError for a bare name that is neither a file nor a named config.
  """
  name, sep, arg = spec.partition(":")
  if not name or os.path.exists(name) or name.endswith(".py") or "/" in name or os.sep in name:
    return spec
  named = named_configs()
  if name not in named:
    raise ValueError(f"no file {name!r} and no named config {name!r} (named "
                     f"configs: {', '.join(named)}; or give a path such as configs/csv.py)")
  return named[name] + sep + arg


def define_config_file_flag(name: str, help_string: str, flag_values=None):
  """`config_flags.DEFINE_config_file` that also takes a config name (`config_file`).

      _CONFIG = config_lib.define_config_file_flag("config", "Config: a name or a file.")
      # --config=csv:runlocal or --config=configs/csv.py:runlocal or --config=/my/config.py
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top

  flag_values = flags.FLAGS if flag_values is None else flag_values
  holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values=flag_values,
                                           lock_config=True)
  flag = flag_values[name]
  flag.parser = _NamedConfigParser(flag.parser)
  return holder


class _NamedConfigParser:
  """config_flags' file parser (not public API) behind `config_file`'s name lookup."""

  def __init__(self, parser):
    self._parser = parser

  def parse(self, path):
    return self._parser.parse(config_file(path))

  def __getattr__(self, attr):  # flag_type() and the rest: the file parser's
    return getattr(self._parser, attr)


def _config_flags(argv, flag_values) -> dict[str, ml_collections.ConfigDict]:
  """The config flags (`--config`, ...) used in `argv`: name -> their config (loaded anew:
  a failed parse leaves the flag without a value)."""
  found = {}
  for name in {a[2:].split(".", 1)[0] for a in argv[1:] if a.startswith("--") and "." in
               a.split("=", 1)[0]}:
    if name not in flag_values:
      continue
    flag = flag_values[name]
    config = flag.value if isinstance(flag.value, ml_collections.ConfigDict) else flag.default
    if not isinstance(config, ml_collections.ConfigDict):
      given = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"--{name}=")]
      try:
        config = flag.parser.parse(given[-1]) if given else None
      except Exception:  # pylint: disable=broad-except
        config = None
    if isinstance(config, ml_collections.ConfigDict):
      found[name] = config
  return found


def _unknown_override(argv, configs: dict[str, ml_collections.ConfigDict],
                      hint: str = "") -> str | None:
  """One line naming the first `--<config flag>.a.b` override whose field does not exist."""
  for name, config in configs.items():
    known = field_names(config)
    prefixes = {n.rsplit(".", i)[0] for n in known for i in range(n.count(".") + 1)}
    for arg in argv[1:]:
      if not arg.startswith(f"--{name}."):
        continue
      field = arg[len(name) + 3:].split("=", 1)[0]
      if field in prefixes:
        continue
      close = closest_field(field, known)
      line = f"Unknown config field --{name}.{field}"
      if close:
        line += f"; did you mean --{name}.{close}?"
      return line + (f" ({hint})" if hint else "")
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip().strip("'\"")
  return text.splitlines()[0] if text else ""


def _short(error: BaseException) -> str:
  """A flag error in one line: config_flags embeds the config file's whole traceback."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  if len(lines) > 1 and any(l.startswith("Traceback") for l in lines):
    return f"{lines[0]} {lines[-1]}"
  return " ".join(lines)


def define_overrides_flag(name: str, config: ml_collections.ConfigDict, help_string: str,
                          hint: str = ""):
  """`config_flags.DEFINE_config_dict` whose bad overrides exit with one line.

  DEFINE_config_dict applies the `--<name>.a.b=value` overrides of sys.argv when it is
  defined (at import of the binary), so their errors cannot wait for `flags_parser`.
  `hint` is added to the unknown-field line (e.g. which fields may be set).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  from ml_collections import config_flags  # pylint: disable=g-import-not-at-top
  try:
    return config_flags.DEFINE_config_dict(name, config, help_string, lock_config=True)
  except flags.Error as e:
    line = f"Flags parsing error: {_short(e)}"
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    line = _unknown_override(sys.argv, {name: config}, hint) or (
        f"Bad --{name} override: {type(e).__name__}: {_first_line(e)}")
  sys.stderr.write(f"FATAL {line}\n")
  sys.exit(2)


def _check_loaded(flag_values) -> None:
  """Raises OSError for a config file flag whose file failed to load (config_flags defers
  that error to the first use of the config)."""
  for name in flag_values:
    value = flag_values[name].value
    if type(value).__name__ == "_ErrorConfig":
      try:
        value.keys()
      except Exception as e:  # pylint: disable=broad-except
        raise OSError(f"--{name}: {_short(e)}") from e


def flags_parser(argv):
  """absl flag parsing with one-line errors: `app.run(main, flags_parser=...)`.

  An unknown `--config.a.b` field names the field and the closest known one; a bad flag
  value names the flag. Exits with status 2 (usage error) instead of a traceback.
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  try:
    remaining = flags.FLAGS(argv)
    _check_loaded(flags.FLAGS)
    return remaining
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {_short(e)}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    line = _unknown_override(argv, _config_flags(argv, flags.FLAGS))
    if line is None:  # e.g. a config file that is missing or refuses its argument
      line = f"Flags parsing error: {type(e).__name__}: {_first_line(e)}"
    sys.stderr.write(f"FATAL {line}\n")
  sys.exit(2)
