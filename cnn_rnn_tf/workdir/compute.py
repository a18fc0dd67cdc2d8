"""compute.json: how a run's backbone computes, decided once when the run starts, then reused.

    from cnn_rnn_tf.workdir import compute
    record = compute.for_run(config, workdir, step=0)   # a new run resolves; a resumed reads
    compute.save(workdir, record)                        # the trainer, chief, after restoring
    used = compute.for_inference(workdir, config)        # evaluate, export, load_trained
    used = compute.for_inference(workdir, config, precision="on")   # an explicit override
    used["precision"], used["jit"], used["source"]       # "float32", False, "compute.json"

Why: `data.precision=auto` (and `data.jit=auto`) is a measurement (`data.precision`); asked at
each entry point, it gave training's evaluation in bfloat16 and `evaluate` of the same
checkpoint in float32 (issue 26). Now a new run resolves both once, before its first step,
and every later computation of the workdir reads the record:

  train      the backbone in the training step: precision and XLA measured on the work the
             run does (forward and backward for a trained backbone, the forward pass for a
             frozen one; with a feature cache the backbone only extracts: = inference)
  inference  the backbone everywhere else: evaluation during training and keep_best (a
             trained backbone's weights are copied into a backbone of this policy), the
             calibration, `evaluate`, `export` (and so `predict` and serving), the feature
             cache of the run

Format (`FORMAT` 1):

  {"format": 1,
   "requested": {"data.precision": "auto", "data.jit": "off"},
   "backbone": "small_cnn[16,32,64,64] 32", "machine": "<CPU> | no GPU | TF 2.21.0",
   "resolved_at_step": 0,
   "train":     {"precision": "bfloat16", "jit": false, "work": "train",
                 "precision_measured": {...timings, ratio, ratio_low...} (auto only),
                 "jit_measured": {...} (data.jit=auto only)},
   "inference": {"precision": "float32", "jit": false, "work": "forward", ...},
   "changes": [{"step": 600, "requested": {...}, "train": {...}, "inference": {...}}]}

Resume: the record wins. `auto` is never measured again for an existing workdir (a resume
with data.precision or data.jit changed to "auto" keeps the record, with a warning). An
explicit "on" / "off" on resume is an override: it takes effect at the step training
resumes at, for training and inference alike, and is appended to "changes" (and, as any
accepted change, to config_history.jsonl). A workdir trained before compute.json existed
gets one when it resumes (resolved then, `resolved_at_step` says when).

At evaluate / export (`for_inference`), `precision` / `jit` ("on" | "off") override the
record; the result's "source" names it ("override precision=on (recorded float32)"), and
evaluate's metrics.json and the export's assets.extra/compute.json carry it. A workdir
without compute.json (saved before it existed) loads as it did, with a warning naming the
policy assumed: the backbone in float32 without XLA (what evaluate and export did), the
feature cache by data.precision as before.
"""

from __future__ import annotations

import copy
import json

from absl import logging
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf.data import precision as precision_lib
from cnn_rnn_tf.workdir import layout

FORMAT = 1
FIELDS = ("data.precision", "data.jit")


def _requested(config) -> dict:
  return {"data.precision": str(config.data.precision),
          "data.jit": str(config.data.get("jit", "off"))}


def _resolve_work(config, training: bool, requested: dict, timer=None, path=None) -> dict:
  """{"precision", "jit", "work", measured figures}: one kind of work of the backbone."""
  name, filters = config.model.backbone, config.model.small_cnn_filters
  size = backbones.backbone_image_size(name, config.model.image_size)
  entry = {"work": "train" if training else "forward"}
  details, jit_details = {}, {}
  entry["precision"] = precision_lib.resolve_precision(
      requested["data.precision"], name, size, training=training, timer=timer, path=path,
      filters=filters, details=details)
  entry["jit"] = precision_lib.resolve_jit(
      requested["data.jit"], name, size, entry["precision"], training=training, timer=timer,
      path=path, filters=filters, details=jit_details)
  if details:
    entry["precision_measured"] = details
  if jit_details:
    entry["jit_measured"] = jit_details
  return entry


def resolve(config, requested: dict | None = None, *, timer=None, path=None) -> dict:
  """{"train": ..., "inference": ...} of `config` (the module docstring's format, without
  the run's fields): measures what is "auto" (cached per machine, `data.precision`)."""
  requested = requested or _requested(config)
  inference = _resolve_work(config, False, requested, timer, path)
  if config.model.train_backbone:
    train = _resolve_work(config, True, requested, timer, path)
  else:  # a frozen backbone runs forward in training too, or only in the feature cache
    train = dict(inference)
  return {"train": train, "inference": inference}


def new_record(config, step: int = 0, *, timer=None, path=None) -> dict:
  """A new run's compute.json contents."""
  name = config.model.backbone
  return {"format": FORMAT, "requested": _requested(config),
          "backbone": f"{backbones.describe(name, config.model.small_cnn_filters)} "
                      f"{backbones.backbone_image_size(name, config.model.image_size)}",
          "machine": precision_lib.machine(), "resolved_at_step": int(step),
          **resolve(config, timer=timer, path=path), "changes": []}


def load(workdir: str) -> dict | None:
  """compute.json of the workdir, or None when it has none (a workdir saved before it)."""
  path = layout.compute_path(workdir)
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path) as f:
      record = json.load(f)
  except ValueError as e:
    raise ValueError(f"{path} is not JSON ({e}). Delete it to resolve the policy again at "
                     "the next training (evaluate then assumes float32).") from e
  for work in ("train", "inference"):
    entry = record.get(work) if isinstance(record, dict) else None
    if not isinstance(entry, dict) or entry.get("precision") not in precision_lib.RESOLVED \
        or not isinstance(entry.get("jit"), bool):
      raise ValueError(f"{path}: no valid {work!r} entry (expected {{'precision': "
                       f"'bfloat16' | 'float32', 'jit': true | false}}), got {entry!r}. "
                       "Delete the file to resolve the policy again at the next training.")
  return record


def save(workdir: str, record: dict) -> None:
  """Writes compute.json (atomic rename)."""
  tf.io.gfile.makedirs(workdir)
  tmp = layout.compute_path(workdir) + ".tmp"
  with tf.io.gfile.GFile(tmp, "w") as f:
    json.dump(record, f, indent=2, sort_keys=True)
  tf.io.gfile.rename(tmp, layout.compute_path(workdir), overwrite=True)


def for_run(config, workdir: str, step: int | None = None, *, timer=None,
            path=None) -> dict:
  """The record training uses: the workdir's (with a resume's explicit overrides appended),
  or a new one. Nothing is written (`save` it once the run has restored).

  `step`: where training starts; default the step of the latest checkpoint (0 without one).
  """
  if step is None:
    latest = tf.train.latest_checkpoint(layout.checkpoints_dir(workdir))
    step = int(latest.rsplit("-", 1)[1]) if latest else 0
  record = load(workdir)
  if record is None:
    if tf.io.gfile.exists(layout.config_path(workdir)):
      logging.warning("%s has no compute.json (trained before it existed): resolving the "
                      "backbone's precision and XLA mode now, at step %d.", workdir, step)
    record = new_record(config, step, timer=timer, path=path)
    _log(record, "resolved")
    return record
  now, saved = _requested(config), dict(record["requested"])
  changed = {f: now[f] for f in FIELDS if now[f] != saved.get(f)}
  explicit = {f: v for f, v in changed.items() if v.lower() in ("on", "off")}
  for field in sorted(set(changed) - set(explicit)):
    logging.warning("%s: %s=%r on resume, but the run recorded %r: auto is never measured "
                    "again for an existing workdir; keeping compute.json's choice.",
                    workdir, field, changed[field], saved.get(field))
  if explicit:
    requested = {**saved, **explicit}
    # Only the explicit fields change; the other keeps the recorded value for each work.
    fixed = {f: requested[f] if f in explicit else None for f in FIELDS}
    for work in ("train", "inference"):
      entry = dict(record[work])
      if fixed["data.precision"]:
        entry["precision"] = precision_lib.resolve_precision(fixed["data.precision"])
      if fixed["data.jit"]:
        entry["jit"] = fixed["data.jit"].lower() == "on"
      record[work] = entry
    record["requested"] = requested
    record["changes"] = list(record.get("changes", [])) + [{
        "step": int(step), "requested": explicit,
        "train": {k: record["train"][k] for k in ("precision", "jit")},
        "inference": {k: record["inference"][k] for k in ("precision", "jit")}}]
    logging.warning("%s: resuming at step %d with an explicit override %s (recorded in "
                    "compute.json).", workdir, step, explicit)
  _log(record, "recorded")
  return record


def _log(record: dict, how: str) -> None:
  logging.info("Backbone compute (%s, compute.json): training %s%s, inference %s%s.", how,
               record["train"]["precision"], " + XLA" if record["train"]["jit"] else "",
               record["inference"]["precision"],
               " + XLA" if record["inference"]["jit"] else "")


def for_inference(workdir: str, config, precision: str | None = None,
                  jit: str | None = None) -> dict:
  """{"precision": "bfloat16" | "float32", "jit": bool, "source": where it comes from,
  "legacy": True for a workdir without compute.json} for evaluate, export, load_trained.

  `precision`, `jit`: "on" | "off" (or None: the record) override the record, named in
  "source". Raises ValueError for another value.
  """
  for name, value in (("precision", precision), ("jit", jit)):
    if value is not None and str(value).lower() not in ("on", "off"):
      raise ValueError(f"--{name} must be 'on' or 'off' (or unset: the workdir's "
                       f"compute.json), got {value!r}.")
  record = load(workdir)
  if record is None:
    used = {"precision": "float32", "jit": False, "legacy": True,
            "source": "assumed: no compute.json (a workdir saved before it existed)"}
    logging.warning("%s has no compute.json (saved before it existed): loading it as before, "
                    "the backbone in float32 without XLA, the feature cache by "
                    "data.precision=%r.", workdir, str(config.data.precision))
  else:
    used = {"precision": record["inference"]["precision"], "jit": record["inference"]["jit"],
            "legacy": False, "source": "compute.json"}
  overrides = []
  if precision is not None:
    recorded = used["precision"]
    used["precision"] = precision_lib.resolve_precision(str(precision).lower())
    overrides.append(f"precision={str(precision).lower()} (recorded {recorded})")
  if jit is not None:
    recorded = used["jit"]
    used["jit"] = str(jit).lower() == "on"
    overrides.append(f"jit={str(jit).lower()} (recorded {'on' if recorded else 'off'})")
  if overrides:
    used["source"] = "override " + ", ".join(overrides)
    logging.warning("%s: computing the backbone with the %s.", workdir, used["source"])
  return used


def with_compute(config, used: dict):
  """A copy of `config` whose data.precision / data.jit are the resolved "on" / "off" of
  `used` (a `for_inference` result or a record's entry), so that the feature cache and the
  evaluation compute as recorded and never measure. A legacy workdir keeps data.precision."""
  config = copy.deepcopy(config)
  with config.unlocked():
    if not used.get("legacy"):
      config.data.precision = "on" if used["precision"] == "bfloat16" else "off"
    config.data.jit = "on" if used["jit"] else "off"
  return config


def summary(used: dict) -> dict:
  """What metrics.json and an export's compute.json name: precision, jit, source."""
  return {"precision": used["precision"], "jit": bool(used["jit"]), "source": used["source"]}


def export_record(used: dict, backbone) -> dict:
  """An export's assets.extra/compute.json: `summary(used)`, the dtype the exported graph's
  backbone computes in (served as written), and that XLA is not in the SavedModel."""
  return {**summary(used), "backbone_compute_dtype": compute_dtype(backbone),
          "jit_in_saved_model": False,
          "jit_note": "XLA (jit_compile) is a runtime choice of a tf.function; the export's "
                      "functions are written without it, so that TF Serving runs them as "
                      "plain graphs. 'jit' is the workdir's mode, recorded only."}


def backbone_fn(backbone, jit: bool):
  """`backbone(images, training=...)`, under XLA (`tf.function(jit_compile=True)`) when
  `jit`; nested in a caller's tf.function, XLA compiles the backbone alone."""
  if not jit:
    return backbone
  return tf.function(lambda images, training=False: backbone(images, training=training),
                     jit_compile=True)


def inference_backbone(config, record: dict, backbone):
  """A function () -> the backbone to evaluate a run in training with, in the record's
  inference policy: the trained `backbone` itself when that is its training policy (or it
  runs only in the feature cache), else a copy built in the inference policy whose weights
  are copied from `backbone` at each call (so keep_best chooses on what `evaluate` gives)."""
  uses_cache = bool(config.data.cache_features) and not config.model.train_backbone
  if uses_cache or record["inference"]["precision"] == record["train"]["precision"]:
    return lambda: backbone
  copy = backbones.build_backbone(
      config.model.backbone, weights=None, image_size=config.model.image_size,
      trainable=config.model.train_backbone, filters=config.model.small_cnn_filters,
      policy=precision_lib.keras_policy(record["inference"]["precision"]))

  def synced():
    copy.set_weights(backbone.get_weights())
    return copy

  return synced


def compute_dtype(backbone) -> str:
  """The dtype the backbone's layers compute in ("bfloat16" under mixed_bfloat16); a
  Functional model's own policy says float32 either way, so its first weighted layer's."""
  pending = list(getattr(backbone, "layers", []))
  while pending:
    layer = pending.pop(0)
    if getattr(layer, "layers", None):
      pending = list(layer.layers) + pending
    elif layer.weights:
      return str(layer.compute_dtype)
  return str(backbone.compute_dtype)
