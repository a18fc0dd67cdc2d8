"""The default configuration and its variants: every field the library reads, with why.

Config files (`configs/*.py`, or your own anywhere) start from the defaults and change only
what differs, each with a one-line why:

    from cnn_rnn_tf import config_lib

    def get_config(arg=None):
      config = config_lib.default_config()
      config.data.source = "csv"  # your own images
      return config_lib.variant_args(config, arg, "mine")   # ":paper", ":runlocal"

and are loaded by the binaries with `--config=path/to/file.py`, overridden with
`--config.a.b=value`; the package's own configs also load by name (`--config=csv:runlocal`,
`config_cli.config_file`). Three modules, one job each:

    config_lib     the defaults, the variants (`parse_variant`, `runlocal`, `paper`), paths
    config_checks  `validate(config)`: raises ConfigError, one line per problem
    config_cli     the binaries' config flags and their one-line errors (`flags_parser`)

Optional paths (`PATH_FIELDS`): None, "None", "none" and "" all mean "not set";
`canonical` (run by `config_checks.validate`) turns them into None, so
`--config.model.backbone_weights=None` works as documented. `resolve_paths` makes the set
ones absolute: a workdir's config.json holds absolute paths, so evaluate and export work
from any folder.
"""

from __future__ import annotations

import os
from typing import Any, Iterable

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
MIN_IMAGE_SIZE = {"small_cnn": 8}  # the smallest input per backbone; the others: 32
MAX_SAMPLES = 10_000  # decode.num_samples: expected_f1's cost grows linearly with it
OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")  # = optim.OPTIMIZERS
SCHEDULES = ("constant", "cosine", "step")  # = optim.SCHEDULES
PRECISIONS = ("auto", "on", "off")
JITS = ("auto", "on", "off")  # data.jit (= data.precision.JITS)
LABEL_ORDERS = ("frequent_first", "rare_first", "random", "pla", "mla")
ALIGN_INPUTS = ("predictions", "targets")
# The named decoders (decode.decoder) are read from their TF-free table, `decoders.DECODERS`.
LABEL_LOSSES = ("bce", "asl")  # model.label_loss: the keys of losses.LABEL_LOSSES
RANKINGS = ("auto", "marginals", "path", "samples")
MARGINALS = ("side_head", "joint_space")

# Optional path fields: None / "None" / "none" / "" all mean not set.
PATH_FIELDS = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.train_csv",
               "data.eval_csv", "train.init_checkpoint", "model.backbone_weights")
# Values of model.backbone_weights that are not files.
NAMED_WEIGHTS = ("imagenet",)
_NONE_STRINGS = ("", "none", "None", "NONE", "null")
# small_cnn's conv widths (3 blocks, last conv): the one default (backbones reads it too).
SMALL_CNN_FILTERS = (32, 64, 128, 128)


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
  data.voc_labels = "labels"  # voc2007 training targets: "labels" (any instance) or "labels_no_difficult"
  # voc2007 evaluation of a class whose objects in an image are all difficult: "ignore" (left
  # out of that class's AP and counts, as the VOC devkit scores) | "positive" | "negative"
  data.voc_difficult = "ignore"
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
  # The backbone's speed mode: on (XLA, jit_compile) | off | auto (the faster here beyond the
  # noise, measured once per machine: data/precision.py). data.precision and data.jit are
  # resolved once per run and recorded in the workdir's compute.json (workdir/compute.py).
  data.jit = "off"

  # ---- Model: cnn_rnn_tf.backbones, cnn_rnn_tf.model ----
  config.model = model = ml_collections.ConfigDict()
  model.head = "cnn_rnn"  # cnn_rnn | bce (the paper's binary cross-entropy baseline)
  model.backbone = "vgg16"  # the paper's; or resnet50 | resnet101 | efficientnetv2_s | convnext_tiny | mobilenet_v3_large | small_cnn (backbones.REGISTRY)
  model.backbone_weights = ml_collections.FieldReference("imagenet", field_type=str)  # imagenet | None | path
  # The square input size; None: the backbone's own (backbones.REGISTRY: vgg16 224, fixed by
  # its fc layers; efficientnetv2_s 384; small_cnn 64; the others 224).
  model.image_size = ml_collections.FieldReference(None, field_type=int)
  # small_cnn's conv widths; the demo sets a thinner (16, 32, 64, 64) for its speed, a
  # setting that cost accuracy as everyone's default
  model.small_cnn_filters = SMALL_CNN_FILTERS
  model.train_backbone = False  # the paper keeps the CNN frozen; True fine-tunes it
  model.embedding_dim = 64  # d, the joint space (paper: 64)
  model.lstm_units = 512  # ReLU-LSTM units (paper: 512)
  model.joint_activation = "relu"  # h in x_t = h(U_o o(t) + U_I I); the paper does not name it
  model.dropout = 0.5  # on the inputs of both projections into the joint space
  model.weight_decay = 1e-4  # L2 on all kernels and the label embedding
  model.max_labels = ml_collections.FieldReference(None, field_type=int)  # cap per training sequence
  # The per-label loss (a key of losses.LABEL_LOSSES): the bce head's loss, and the cnn_rnn
  # side head's term below. bce: sigmoid cross-entropy summed over K; asl: the Asymmetric Loss
  # (Ridnik et al. 2021) with the settings model.asl.
  model.label_loss = "bce"
  # asl: p_m = max(p - clip, 0); L = -y (1-p)^gamma_pos log p - (1-y) p_m^gamma_neg log(1-p_m)
  # (the paper's COCO setting)
  model.asl = ml_collections.ConfigDict(dict(gamma_neg=4.0, gamma_pos=0.0, clip=0.05))
  # cnn_rnn: weight of the per-label loss of the marginal logits (model.marginals), added to
  # the sequence loss; gives the image side (and a trained backbone) a per-label gradient and
  # trains the `marginals` decoder and ranking. 0: off (the paper; `:paper`). 1 is the default
  # recipe (docs/method.md): end to end it is what lets the CNN-RNN learn the encoder at all;
  # on frozen features it changes little.
  model.side_loss_weight = 1.0
  # cnn_rnn: what scores each label from the image alone (the `marginals` decoder, the ranking
  # scores, and the side loss above): side_head, a Dense(K) on the dropped features inside
  # the CNN-RNN model (full rank: the BCE baseline's classifier; its gradient reaches a trained
  # backbone); joint_space, U_I dropout(I) . U_l[:K]^T (rank d; the paper's `:paper`).
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
  # frequency); auto: marginals when they are trained (model.side_loss_weight > 0), else path
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
PAPER = {"model.side_loss_weight": 0.0, "model.marginals": "joint_space",
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


def parse_variant(arg: str | None, allowed: Iterable[str], variant: str,
                  exclusive: Iterable[str] = ()) -> set[str]:
  """The comma-separated arguments of a config file (`--config=<file>:<arg>`), checked.

      args = config_lib.parse_variant("paper,runlocal", ("paper", "runlocal"), "voc2007")

  Raises ValueError naming the unknown arguments (or two of `exclusive` given together).
  """
  args = {a.strip() for a in (arg or "").split(",")} - {""}
  allowed, exclusive = tuple(allowed), set(exclusive)
  unknown = sorted(args - set(allowed))
  if unknown or len(args & exclusive) > 1:
    one = " or ".join(map(repr, sorted(exclusive))) + " (not together), " if exclusive else ""
    raise ValueError(f"Bad {variant} config argument(s) {unknown or sorted(args & exclusive)}; "
                     f"expected {one}comma-separated, from {list(allowed)}.")
  return args


def variant_args(config, arg, variant: str, extra: Iterable[str] = ()) -> ml_collections.ConfigDict:
  """Applies the common arguments ("paper", "runlocal", comma-separated) to `config`.

      config = config_lib.variant_args(config, "paper,runlocal", "voc2007")

  `extra`: the file's own arguments (applied by the file; accepted here).
  """
  args = parse_variant(arg, ("paper", "runlocal", *extra), variant)
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


_MISSING = object()


def canonical(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Sets every unset optional path field (None, "None", "none", "") to None, in place."""
  for field in PATH_FIELDS:
    if _get(config, field, _MISSING) is _MISSING:
      continue
    value = optional_path(_get(config, field))
    if value != _get(config, field):
      _set(config, field, value)
  return config


def is_local(path: str) -> bool:
  """Whether `path` is on this machine's file system (not a `gs://` or other URL)."""
  return "://" not in path


def resolve_paths(config: ml_collections.ConfigDict,
                  base: str | None = None) -> ml_collections.ConfigDict:
  """A copy with unset paths as None and set local paths absolute (against `base` or cwd)."""
  config = canonical(ml_collections.ConfigDict(config.to_dict()))
  base = os.path.abspath(base or os.getcwd())
  for field in PATH_FIELDS:
    value = _get(config, field)
    if value is None or not is_local(value):
      continue
    if field == "model.backbone_weights" and value in NAMED_WEIGHTS:
      continue
    _set(config, field, os.path.normpath(os.path.join(base, os.path.expanduser(value))))
  return config


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

