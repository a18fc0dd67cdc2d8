"""The training loop: one custom `strategy.run` loop for every tf.distribute strategy.

    from cnn_rnn_tf import train_lib
    train_lib.train(config, workdir)          # config: an ml_collections ConfigDict

The binary `python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=DIR` only parses
flags and calls `train`.

Strategy: `distribute.make_strategy()` (MultiWorkerMirroredStrategy for a TF_CONFIG cluster,
MirroredStrategy over several local devices, the default strategy on one; see distribute.py).
Keras' `model.fit` fails under MultiWorkerMirroredStrategy with Keras 3 (keras-team/keras#20585),
so every strategy uses this loop. The loss of each replica is divided by the *global* batch
size and gradients are summed across replicas, so any number of replicas takes the same step.

The parts, in the order `train` runs them:
  check_before_writing  config_checks.validate, check_config, workdir.check_resume: a run that
                        would be refused is refused before any file is written
  build_training_models models, optimizer, step, the checkpoint (with the dropout RNG state)
  restore_or_init       strict resume (latest good checkpoint; a corrupt one falls back to
                        the previous with a warning), else init_checkpoint, else as built
  make_train_step       the per-replica step; make_multi_step: N distributed steps per call
  make_actions          periodic.LogMetrics, SaveCheckpoint, Evaluate (+ BestCheckpoint)
  run_loop              steps until an action is due, NaN-loss check, progress bar
  finish                backbone.weights.h5, data_report.json
The chief first removes `_temp/` folders of failed saves (`workdir.remove_temp_checkpoints`).
config.json is written only after the restore succeeded (a resume's accepted changes first go
to config_history.jsonl, `workdir.record_changes`); the chief holds workdir.lock(w)
throughout (a second trainer on the same workdir fails at once).

Which start wins (first that exists):
  1. a checkpoint in `<workdir>/checkpoints`     (resume: step, weights, optimizer, dropout
                                                  RNG state, data position = the step)
  2. `config.train.init_checkpoint`              (weights only; step and optimizer start fresh)
  3. the backbone's pretrained weights           (`config.model.backbone_weights`, e.g. imagenet)
  4. random initialization.

Two training modes, picked by the config:
  * features: frozen backbone and `data.cache_features` (the paper's setting): the backbone
    runs once over the split into the feature cache; the head trains on the cache.
  * images: the backbone is inside the model (fine-tuning with `model.train_backbone`, or a
    frozen backbone without a cache); the pipeline feeds images.

Workdir layout (only the chief writes):
  config.json          the resolved config
  labels.txt           the label vocabulary in training order (id = line number)
  checkpoints/         tf.train.CheckpointManager checkpoints (head, trained backbone, optimizer)
  best/                the checkpoint with the best `train.keep_best` metric + best.json
  train/               TensorBoard summaries and `log.jsonl` (step, loss, examples/s, lr;
                       eval/* metrics every `train.eval_every` steps and at the end)
  data_report.json     examples skipped as bad data (`data.skip_bad_examples`), by reason;
                       duplicate rows and train/eval overlap (`hygiene`, csv)
  backbone.weights.h5  the trained backbone (when `model.train_backbone`), reusable as frozen
                       `model.backbone_weights` by later runs (the demo does this)
  thresholds.json      bce: per-class thresholds fitted at the end on the held-out part of
                       the training split (`data.calibration_fraction`, calibration.py)

Training data: the "fit" part of `data.train_split` (`data.dataset_for`), for both heads:
a fraction `data.calibration_fraction` of it (by key hash) is held out for calibration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import hashlib
import json
import os
import time

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import backbones
from cnn_rnn_tf import calibration
from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import distribute
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import losses
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import periodic
from cnn_rnn_tf import progress
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.metric_writer import MetricWriter



def _make_optimizer(config):
  if config.train.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(config.train.learning_rate, momentum=config.train.momentum)
  if config.train.optimizer == "adam":
    return keras.optimizers.Adam(config.train.learning_rate)
  if config.train.optimizer == "sgd":
    return keras.optimizers.SGD(config.train.learning_rate, momentum=config.train.momentum)
  raise ValueError(f"Unknown optimizer {config.train.optimizer!r}; expected rmsprop, adam "
                   "or sgd.")


def check_config(config) -> None:
  """Warns of cnn_rnn-only loss settings given to another head (a frozen random backbone,
  which evaluation could not rebuild, is refused by `config_checks.validate`)."""
  if config.model.head != "cnn_rnn" and (
      config.train.label_order != "frequent_first" or config.model.side_loss_weight):
    logging.warning("train.label_order=%r and model.side_loss_weight=%g shape the cnn_rnn "
                    "head's loss only; the %s head ignores them.", config.train.label_order,
                    config.model.side_loss_weight, config.model.head)


@dataclasses.dataclass
class Models:
  """What one run trains and checkpoints (variables made under the strategy's scope)."""
  backbone: keras.Model
  head: keras.Model
  optimizer: keras.optimizers.Optimizer
  step: tf.Variable  # int64 scalar: steps trained
  variables: list  # the trained variables, in a fixed order
  checkpoint: tf.train.Checkpoint


def build_training_models(config, num_labels: int, strategy) -> Models:
  """Models, optimizer, step counter and their checkpoint (with the dropout RNG state).

  The Keras seed is set right before the weights are made (data code may draw numbers
  before). The dropout layers' SeedGenerator states are checkpointed as `rng`, so a resumed
  run draws the same dropout masks as one that was never interrupted.
  """
  policy = None
  if not data_lib.uses_feature_cache(config) and data_lib.feature_cache.resolve_precision(
      config.data.precision, config.model.backbone,
      backbones.backbone_image_size(config.model.backbone, config.model.image_size),
      training=bool(config.model.train_backbone),
      filters=config.model.small_cnn_filters) == "bfloat16":
    policy = "mixed_bfloat16"  # the backbone computes in bfloat16; weights stay float32
  # After resolve_precision: data.precision=auto may time a backbone (first use on a
  # machine), drawing random numbers; seeded before that, the first run's weights differed.
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    backbone, head = workdir_lib.build_backbone_and_head(config, num_labels, policy=policy)
    optimizer = _make_optimizer(config)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    variables = list(head.trainable_variables)
    if config.model.train_backbone:
      variables += backbone.trainable_variables
    optimizer.build(variables)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head, optimizer, step)
  checkpoint.rng = rng_state(backbone, head)
  return Models(backbone, head, optimizer, step, variables, checkpoint)


def rng_state(*models) -> dict:
  """{"<model>.<layer>": state} of every layer's SeedGenerator (dropout, augmentation).

  Keyed by layer names (stable across builds), not by variable paths (a global counter).
  """
  states = {}
  pending = [(m.name, m) for m in models]
  while pending:
    prefix, layer = pending.pop()
    generator = getattr(layer, "seed_generator", None)
    if generator is not None:
      states[prefix] = generator.state
    pending += [(f"{prefix}.{sub.name}", sub) for sub in getattr(layer, "layers", [])]
  return states


def restore_or_init(config, models: Models, manager: tf.train.CheckpointManager) -> int:
  """Resumes from the latest good checkpoint (strict), else init_checkpoint, else as built.

  Returns the step to start from. A corrupt latest checkpoint is reported with its path and
  the previous one is tried (`train.fallback_on_corrupt_checkpoint`); a checkpoint that does
  not match the model (another head, other sizes) is refused, never partially loaded.
  """
  candidates = list(reversed(manager.checkpoints))
  fallback = config.train.fallback_on_corrupt_checkpoint
  for i, path in enumerate(candidates):
    try:
      workdir_lib.restore_checkpoint(models.checkpoint, path).assert_existing_objects_matched()
    except (tf.errors.OpError, IndexError, ValueError) as e:
      if not fallback or i + 1 == len(candidates):
        raise RuntimeError(f"Checkpoint {path} cannot be read ({type(e).__name__}: {e}). "
                           "Delete it to start from the previous one, or set "
                           "train.fallback_on_corrupt_checkpoint=True.") from e
      logging.warning("Checkpoint %s is corrupt (%s: %s); falling back to %s.", path,
                      type(e).__name__, str(e).splitlines()[0][:200], candidates[i + 1])
      continue
    logging.info("Resumed from %s at step %d.", path, int(models.step.numpy()))
    return int(models.step.numpy())
  if config_lib.optional_path(config.train.init_checkpoint):
    workdir_lib.restore_checkpoint(workdir_lib.make_checkpoint(  # weights only: partial
        config, models.backbone, models.head), config.train.init_checkpoint).expect_partial()
    logging.info("Initialized the model from %s.", config.train.init_checkpoint)
  else:
    logging.info("Starting from scratch (backbone weights: %s).", config.model.backbone_weights)
  return 0


def make_train_step(config, models: Models):
  """The per-replica step: loss / global batch, gradients, update. Returns (loss, reg)."""
  backbone, head, optimizer, variables = (models.backbone, models.head, models.optimizer,
                                          models.variables)
  images_mode = not data_lib.uses_feature_cache(config)
  train_backbone = config.model.train_backbone
  global_batch = config.train.batch_size
  loss_options = losses.loss_options(config)  # label order, per-label loss, side weight

  def train_step(batch):
    with tf.GradientTape() as tape:
      if images_mode:
        features = backbone(batch["image"], training=train_backbone)
      else:
        features = batch["features"]  # [B, D]
      # `step` draws train.label_order=random: the optimizer's count moves every step,
      # also inside one multi_step call, and resumes with the checkpoint.
      per_example = model_lib.head_loss(head, features, batch["labels"], training=True,
                                        max_labels=config.model.max_labels,
                                        options=loss_options, step=optimizer.iterations)  # [B]
      # Divided by the GLOBAL batch: the replicas' gradients are summed, not averaged.
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
      model_losses = head.losses + (backbone.losses if train_backbone else [])
      reg = (tf.nn.scale_regularization_loss(tf.add_n(model_losses)) if model_losses
             else tf.constant(0.0))  # a tensor: strategy.reduce refuses a Python float
      total = loss + reg
    grads = tape.gradient(total, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return loss, reg

  return train_step


def make_multi_step(strategy, train_step):
  """tf.function(iterator, num): `num` distributed steps in one call; the last losses."""

  def one_step(i, total, reg, iterator):
    del total, reg  # the last step's losses are returned
    loss, reg_loss = strategy.run(train_step, args=(next(iterator),))
    return (i + 1, strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, reg_loss, axis=None))

  # autograph=False: nothing here needs it (the loop is an explicit tf.while_loop), and
  # converting the model code to trace it took about half of a head run's tracing time.
  @tf.function(autograph=False)
  def multi_step(iterator, num):
    zero = tf.constant(0.0)
    _, total, reg = tf.while_loop(
        lambda i, *_: i < num, lambda i, total, reg: one_step(i, total, reg, iterator),
        (tf.constant(0), zero, zero))
    return total, reg

  return multi_step


def run_loop(multi_step, iterator, models: Models, actions, *, num_steps: int,
             steps_per_loop: int, global_batch: int) -> float:
  """Trains to `num_steps`, stopping at every step an action is due. Returns the last loss."""
  step = int(models.step.numpy())
  for action in actions:
    action.start(step, last_step=num_steps)
  last_loss = float("nan")
  with progress.bar(total=num_steps, initial=step, desc="train", unit="step") as bar:
    t0 = time.time()
    while step < num_steps:
      num = int(min([steps_per_loop, num_steps - step] +
                    [a.next_step(step) - step for a in actions]))
      loss, reg = multi_step(iterator, tf.constant(num))
      last_loss, reg = float(loss), float(reg)
      if not np.isfinite(last_loss):  # before the step counter moves or anything is saved
        raise FloatingPointError(
            f"Training loss is {last_loss} at step {step + num}; stopping. The last good "
            "checkpoint stays in the workdir's checkpoints/. Lower train.learning_rate or "
            "check the data.")
      models.step.assign_add(num)
      step += num
      bar.update(num)
      bar.set_postfix(loss=f"{last_loss:.4f}",
                      ex_s=f"{num * global_batch / max(time.time() - t0, 1e-9):.0f}")
      t0 = time.time()
      for action in actions:
        action(step, loss=last_loss, regularization=reg)
  return last_loss


def drain(iterator) -> int:
  """Reads the (finite) distributed stream to its end; returns the batches left unread.

  Why: about one run in three used to stall 15-60 s when `train` returned, in the release of
  the distributed iterator. The cause, found with gdb: tf.data's autotuning model thread
  sleeps up to 60 s between optimizations and is not woken when its iterator is cancelled,
  so the iterator's destructor waited for it. Autotuning is therefore off in every dataset
  of the package (`data/options.py`) and in tf.distribute's per-device datasets
  (`options.without_autotune_on_devices`). What is left is timed: `train` reads the
  `.take`-limited stream to its end, releases the iterator and the step function and
  collects garbage at one point, and logs each part ("Training data stream closed in ... s
  (...)"; the run's summary has it as `teardown_s`). Measured since: at most 3.45 s in 79
  demo trainings, no stall.
  """
  drained = 0
  while iterator.get_next_as_optional().has_value():
    drained += 1
  return drained


def teardown(held: list) -> float:
  """Releases [iterator, step function] at one timed point; logs each part; total seconds."""
  times = [time.time()]
  drained = drain(held[0])
  times.append(time.time())
  del held[0]  # the distributed iterator
  times.append(time.time())
  del held[0]  # the step function (its traced graphs)
  times.append(time.time())
  gc.collect()  # here, timed, not at a random later point
  times.append(time.time())
  parts = np.diff(times)
  logging.info("Training data stream closed in %.2f s (drain %.2f s, %d batches left unread; "
               "iterator %.2f s; step function %.2f s; gc %.2f s).", times[-1] - times[0],
               parts[0], drained, parts[1], parts[2], parts[3])
  return float(times[-1] - times[0])


def make_evaluate_fn(config, workdir: str, vocab, models: Models):
  """A no-argument function: the validation part's metrics for the weights as they are now
  (`evaluate_lib.validation_part`: keep_best and eval_every never see the test split)."""
  cache_dir = workdir_lib.feature_cache_dir(workdir, config.data.cache_dir)
  split, part = evaluate_lib.validation_part(config)

  def evaluate():
    try:
      return evaluate_lib.evaluate_models(config, vocab, models.backbone, models.head, split,
                                          cache_dir=cache_dir, part=part)
    except data_lib.EmptyPartError as e:
      if config.train.keep_best:  # a choice needs examples to choose on
        raise
      logging.warning("No evaluation during training (a split too small): %s", e)
      return None

  return evaluate


def make_actions(config, workdir: str, chief: bool, worker_dir: str | None, vocab,
                 models: Models, manager, writer) -> list:
  """The loop's periodic actions: log, checkpoint, evaluate (+ best checkpoint)."""
  train = config.train
  actions = [
      periodic.LogMetrics(
          max(1, train.log_every), writer, train.batch_size, total_steps=train.num_steps,
          learning_rate=lambda: float(keras.ops.convert_to_numpy(
              models.optimizer.learning_rate))),
      periodic.SaveCheckpoint(train.checkpoint_every, manager, models.variables),
  ]
  eval_every = train.get("eval_every", -1)
  if eval_every is not None and eval_every >= 0:
    best = None
    if train.get("keep_best"):
      best_dir = workdir_lib.best_dir(workdir) if chief else os.path.join(worker_dir, "best")
      best = periodic.BestCheckpoint(train.keep_best, models.checkpoint, best_dir,
                                     enabled=chief)
    actions.append(periodic.Evaluate(eval_every, make_evaluate_fn(config, workdir, vocab,
                                                                  models), writer, best))
  return actions


@contextlib.contextmanager
def _workdir_lock(workdir: str, chief: bool):
  """workdir.lock(workdir) on the chief (the workers of one run share the workdir)."""
  if chief:
    with workdir_lib.lock(workdir):
      yield
  else:
    yield


def check_before_writing(config, workdir: str) -> None:
  """Every check that can refuse the run, before a single file is written."""
  config_checks.validate(config)
  check_config(config)
  workdir_lib.check_resume(config, workdir)


def finish(config, workdir: str, chief: bool, source, models: Models) -> dict:
  """Final writes (chief): the trained backbone and data_report.json. Returns `skipped`."""
  skipped = dict(getattr(source, "skipped", {}) or {})
  if not chief:
    return skipped
  if config.model.train_backbone:
    # Reusable as a frozen backbone: --config.model.backbone_weights=<workdir>/backbone.weights.h5
    models.backbone.save_weights(workdir_lib.backbone_weights_path(workdir))
  with tf.io.gfile.GFile(workdir_lib.data_report_path(workdir), "w") as f:
    json.dump({"skipped": skipped, "hygiene": getattr(source, "hygiene", {})}, f, indent=2)
  if skipped:
    logging.warning("Skipped bad examples: %s (data.skip_bad_examples=True).", skipped)
  return skipped


def calibrate_and_save(config, workdir: str, vocab, source, models: Models) -> None:
  """thresholds.json for the weights evaluate and export take by default (`--checkpoint=auto`):
  the best checkpoint when the run kept one, else the weights as training ended."""
  backbone, head, step = models.backbone, models.head, int(models.step.numpy())
  if tf.train.latest_checkpoint(workdir_lib.best_dir(workdir)):
    trained = workdir_lib.load_trained(workdir, "best")
    backbone, head = trained.backbone, trained.head
    step = int(trained.checkpoint_path.rsplit("-", 1)[1])
  try:
    cache_dir = workdir_lib.feature_cache_dir(workdir, config.data.cache_dir)
    thresholds = calibration.calibrate(config, vocab, backbone, head, source=source,
                                       cache_dir=cache_dir)
  except data_lib.EmptyPartError as e:  # a split too small for its held-out part
    logging.warning("No calibrated thresholds (evaluate and export keep 0.5): %s", e)
    return
  workdir_lib.save_thresholds(workdir, vocab.names, thresholds, step=step)


def train(config: ml_collections.ConfigDict, workdir: str,
          strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains until `config.train.num_steps`, resuming from the workdir. Returns a summary."""
  check_before_writing(config, workdir)
  strategy = strategy or distribute.make_strategy()
  chief = distribute.is_chief(strategy)
  with _workdir_lock(workdir, chief):
    return _train_locked(config, workdir, strategy, chief)


def _train_locked(config, workdir: str, strategy, chief: bool) -> dict:
  source = data_lib.get_source(config.data)
  tf.io.gfile.makedirs(workdir)
  vocab = workdir_lib.load_or_make_vocab(source, workdir, chief)
  logging.info("%s: %d labels, %d replicas, mode %s", source.name, vocab.num_labels,
               strategy.num_replicas_in_sync,
               "features" if data_lib.uses_feature_cache(config) else "images")
  models = build_training_models(config, vocab.num_labels, strategy)
  # Every worker saves (collective ops), but only the chief's copy is kept.
  worker_dir = None if chief else os.path.join(workdir, ".tmp_worker",
                                               str(strategy.cluster_resolver.task_id))
  if chief:  # a save that failed (e.g. disk full) left <prefix>_temp/ folders behind
    workdir_lib.remove_temp_checkpoints(workdir)
  manager = tf.train.CheckpointManager(
      models.checkpoint,
      workdir_lib.checkpoints_dir(worker_dir or workdir),
      max_to_keep=config.train.max_checkpoints)
  start_step = restore_or_init(config, models, manager)
  if chief:  # only now: a run that cannot restore leaves config.json as it was
    workdir_lib.record_changes(config, workdir, step=start_step)  # config_history.jsonl
    workdir_lib.save_config(config, workdir)
  # The config's learning rate wins over the one saved with the optimizer's state.
  models.optimizer.learning_rate = config.train.learning_rate
  num_steps = config.train.num_steps
  if start_step >= num_steps:
    logging.info("Already at step %d >= num_steps %d: nothing to train.", start_step, num_steps)
  dataset = data_lib.dataset_for(
      config, config.data.train_split, vocab, training=True, source=source,
      cache_dir=workdir_lib.feature_cache_dir(workdir, config.data.cache_dir),
      start_step=start_step,
      part=data_lib.FIT).take(
          max(num_steps - start_step, 0))
  data_lib.options.without_autotune_on_devices()  # else releasing the iterator may stall
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  writer = MetricWriter(workdir_lib.train_dir(workdir), enabled=chief)
  actions = make_actions(config, workdir, chief, worker_dir, vocab, models, manager, writer)
  multi_step = make_multi_step(strategy, make_train_step(config, models))
  try:
    last_loss = run_loop(multi_step, iterator, models, actions, num_steps=num_steps,
                         steps_per_loop=config.train.steps_per_loop,
                         global_batch=config.train.batch_size)
  finally:
    writer.close()
  held = [iterator, multi_step]  # the only references left: teardown times their release
  del iterator, multi_step
  teardown_s = teardown(held)
  if worker_dir:
    tf.io.gfile.rmtree(worker_dir)
  skipped = finish(config, workdir, chief, source, models)
  if chief and calibration.calibrates(config):
    calibrate_and_save(config, workdir, vocab, source, models)
  fingerprint = weights_fingerprint(models.variables)
  step = int(models.step.numpy())
  logging.info("Finished at step %d; weights fingerprint %s.", step, fingerprint)
  evaluate = [a for a in actions if isinstance(a, periodic.Evaluate)]
  return {"step": step, "start_step": start_step, "loss": last_loss, "skipped": skipped,
          "fingerprint": fingerprint, "teardown_s": teardown_s,
          "eval": evaluate[0].last_metrics if evaluate else None}


def weights_fingerprint(variables) -> str:
  """A SHA-256 of the weights' bytes: equal on every worker of a synchronous run."""
  digest = hashlib.sha256()
  for v in variables:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(v.value)).tobytes())
  return digest.hexdigest()[:16]
