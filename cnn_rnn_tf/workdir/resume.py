"""The resume check: a workdir resumes only the run it holds.

    from cnn_rnn_tf.workdir import resume
    resume.check_resume(config, "runs/demo")      # before anything is written
    resume.record_changes(config, "runs/demo", step=600)   # then config.json is rewritten

The rule: every field of the config is compared with config.json. A field in
`RESUME_MAY_CHANGE` (the schedule, e.g. train.num_steps to extend a run; the learning rate;
the seed; where the data lie; how the backbone computes; decode.*) may change: the change is appended,
with the step it takes effect at, to config_history.jsonl, so config.json is never rewritten
without a trace. Any other change (model.*, data.*, and the training fields that change
what is learned: train.label_order, train.batch_size, train.optimizer, ...) is refused with a
ValueError naming the field, its saved and its new value; the values are compared, so a change
that keeps every variable's shape (data.source, model.joint_activation) is refused too.
"""

from __future__ import annotations

import json

from absl import logging
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import config_lib
from cnn_rnn_tf.workdir import layout

# Fields that may change when a run resumes (and every decode.* field): where the data lie,
# how the backbone computes, the schedule and the learning rate; not what is learned.
RESUME_MAY_CHANGE = ("data.data_dir", "data.manual_dir", "data.cache_dir", "data.precision",
                     "data.jit", "data.check_images", "data.skip_bad_examples",
                     "data.deterministic",
                     "train.num_steps", "train.learning_rate", "train.init_checkpoint",
                     "train.steps_per_loop", "train.log_every", "train.checkpoint_every",
                     "train.max_checkpoints", "train.eval_every", "train.keep_best",
                     "train.fallback_on_corrupt_checkpoint", "seed")
MAY_CHANGE_PREFIXES = ("decode.",)


# Fields that one head alone reads: a change does not stop another head's workdir from
# resuming (a BCE workdir resumes with today's model.side_loss_weight and model.marginals).
ONLY_FOR_HEAD = {"model.side_loss_weight": "cnn_rnn", "model.marginals": "cnn_rnn",
                 "train.label_order": "cnn_rnn", "train.align_inputs": "cnn_rnn"}


def may_change(name: str) -> bool:
  """Whether field `name` may change when a run resumes (the module docstring's rule)."""
  return name in RESUME_MAY_CHANGE or name.startswith(MAY_CHANGE_PREFIXES)


def _differences(saved, config, allowed: bool) -> list[tuple[str, object, object]]:
  """(field, saved value, new value) of the fields that differ and may (or may not) change."""
  saved_flat, new_flat = _compared(saved), _compared(config)
  found = []
  for name in sorted(set(saved_flat) | set(new_flat)):
    if may_change(name) != allowed:
      continue
    if name in ONLY_FOR_HEAD and ONLY_FOR_HEAD[name] not in (saved.model.head,
                                                             config.model.head):
      continue
    old, new = saved_flat.get(name), new_flat.get(name)
    if old != new:
      found.append((name, old, new))
  return found


def _compared(config) -> dict:
  """The config's fields as resume compares them: model.image_size as the backbone takes it
  (an explicit 224 saved by an older version equals today's None for a 224 backbone)."""
  values = config_lib.field_values(config)
  try:
    values["model.image_size"] = backbones.backbone_image_size(
        config.model.backbone, config.model.image_size)
  except ValueError:  # a size the backbone refuses: compared as written
    pass
  return values


def check_resume(config, workdir: str) -> None:
  """Refuses to resume a workdir with another model, data or training; call before writing.

  Compares `config` with the workdir's config.json (if any): a changed field outside
  `may_change` raises ValueError naming every such field with its saved and new value.
  """
  if not tf.io.gfile.exists(layout.config_path(workdir)):
    return
  saved = layout.load_config(workdir)
  diffs = _differences(saved, config_lib.resolve_paths(config), allowed=False)
  if diffs:
    raise ValueError(
        f"Workdir {workdir!r} was trained with another model, data or training setting; "
        "resuming would mix them. Use a new --workdir, or set these back:\n" +
        "\n".join(f"  {name}: saved {old!r}, now {new!r}" for name, old, new in diffs))


def record_changes(config, workdir: str, step: int) -> dict:
  """Appends the accepted changes against config.json to config_history.jsonl; returns them.

  Call after `check_resume` and before config.json is rewritten. One JSON line per resume
  that changed something: {"step": the step training resumes at, "changes": {field:
  {"saved": old, "now": new}}}. Nothing is written when nothing changed or there is no
  config.json yet.
  """
  if not tf.io.gfile.exists(layout.config_path(workdir)):
    return {}
  saved = layout.load_config(workdir)
  changes = {name: {"saved": old, "now": new} for name, old, new in
             _differences(saved, config_lib.resolve_paths(config), allowed=True)}
  if changes:
    path = layout.config_history_path(workdir)
    lines = ""
    if tf.io.gfile.exists(path):
      with tf.io.gfile.GFile(path) as f:
        lines = f.read()
    with tf.io.gfile.GFile(path, "w") as f:
      f.write(lines + json.dumps({"step": int(step), "changes": changes}, sort_keys=True) + "\n")
    logging.info("Resuming at step %d with changed settings (recorded in %s): %s", step, path,
                 ", ".join(f"{n} {c['saved']!r} -> {c['now']!r}" for n, c in changes.items()))
  return changes
