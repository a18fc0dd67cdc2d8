"""The training loop: one custom `strategy.run` loop for every tf.distribute strategy.

    from cnn_rnn_tf import train_lib
    train_lib.train(config, workdir)  # the binary `python -m cnn_rnn_tf.train` calls it

Strategy: `distribute.make_strategy()` (MultiWorkerMirroredStrategy for a TF_CONFIG cluster,
MirroredStrategy over several local devices, the default strategy on one; see distribute.py).
Keras' `model.fit` fails under MultiWorkerMirroredStrategy with Keras 3 (keras-team/keras#20585),
so every strategy uses this loop. The loss of each replica is divided by the *global* batch
size and gradients are summed across replicas, so any number of replicas takes the same step;
the sum is clipped (`train.grad_clip_norm`) before the optimizer applies it (optim.py).
With `train.ema_decay > 0`, evaluation during training, keep_best's choice, the thresholds,
backbone.weights.h5, and `workdir.load_trained` (evaluate, export) use the EMA weights.

The parts, in the order `train` runs them:
  check_before_writing  config_checks.validate, check_config, workdir.check_resume: a run that
                        would be refused is refused before any file is written
  build_training_models models, optimizer (optim.py: schedule, EMA, AdamW), step, the
                        checkpoint (with the dropout RNG state)
  restore_or_init       strict resume (latest good checkpoint; a corrupt one falls back to
                        the previous with a warning), else init_checkpoint, else as built
  make_train_step       the per-replica step; make_multi_step: N distributed steps per call
  make_actions          periodic.LogMetrics, SaveCheckpoint, Evaluate (+ BestCheckpoint)
  run_loop              steps until an action is due, NaN-loss check, progress bar
  train_end             teardown of the data stream; finish: backbone.weights.h5,
                        data_report.json; calibrate_and_save: thresholds.json
The chief removes `_temp/` folders of failed saves, writes config.json only after the restore
succeeded (a resume's accepted changes go to config_history.jsonl first) and holds the
workdir lock throughout (a second trainer on the same workdir fails at once).

Which start wins (first that exists): 1. a checkpoint in `<workdir>/checkpoints` (resume:
step, weights, optimizer with the EMA, dropout RNG state, data position = the step);
2. `config.train.init_checkpoint` (weights only; step and optimizer start fresh); 3. the
backbone's pretrained weights (`config.model.backbone_weights`); 4. random initialization.

Two training modes, picked by the config: features (a frozen backbone and
`data.cache_features`, the paper's setting: the head trains on the feature cache) and images
(the backbone inside the model: fine-tuned with `model.train_backbone`, or frozen uncached).

Workdir layout (only the chief writes; `workdir/layout.py` names every file): config.json,
labels.txt, checkpoints/ (head, trained backbone, optimizer with the EMA of the weights),
best/ (+ best.json), train/ (TensorBoard and log.jsonl: the interval's mean loss,
regularization and gradient norm, examples/s, learning rate; eval/* metrics), data_report.json,
backbone.weights.h5 (a trained backbone, reusable as frozen `model.backbone_weights`), and
thresholds.json (calibrated on the held-out part, calibration.py).
Training data: the "fit" part of `data.train_split` (`data.dataset_for`); a fraction
`data.calibration_fraction` of it (by key hash) is held out for calibration.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time

from absl import logging
import keras
import ml_collections
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import calibration
from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import distribute
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import losses
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import optim
from cnn_rnn_tf import periodic
from cnn_rnn_tf import progress
from cnn_rnn_tf import train_end
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.data import precision as precision_lib
from cnn_rnn_tf.metric_writer import MetricWriter
from cnn_rnn_tf.workdir import compute as compute_lib



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
  compute: dict  # compute.json's record: the backbone's precision and XLA mode
  cached_features: bool  # the head trains on the feature cache (data.uses_feature_cache)


def build_training_models(config, num_labels: int, strategy,
                          record: dict | None = None) -> Models:
  """Models, optimizer, step counter and their checkpoint (with the dropout RNG state).

  `record`: compute.json's (`workdir.compute.for_run`; None: resolved from the config, as a
  new run would, without a workdir); the backbone takes its "train"
  precision (mixed_bfloat16: computes in bfloat16, weights stay float32). The Keras seed is
  set right before the weights are made: data code, and data.precision=auto's timing of a
  backbone (done before, in for_run), draw random numbers. The dropout layers'
  SeedGenerator states are checkpointed as `rng`, so a resumed run draws the same dropout
  masks as one that was never interrupted.
  """
  record = record or compute_lib.new_record(config)
  cached_features = data_lib.uses_feature_cache(config)
  policy = (None if cached_features
            else precision_lib.keras_policy(record["train"]["precision"]))
  keras.utils.set_random_seed(config.seed)
  with strategy.scope():
    backbone, head = workdir_lib.build_backbone_and_head(config, num_labels, policy=policy)
    optimizer = optim.make_optimizer(config)  # schedule, EMA, AdamW: optim.py
    optim.gradients_reduced_by_caller(optimizer)  # train_step sums (and clips) them first
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    variables = optim.trained_variables(config, backbone, head)
    optimizer.build(variables)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head, optimizer, step)
  checkpoint.rng = workdir_lib.rng_state(backbone, head)
  return Models(backbone, head, optimizer, step, variables, checkpoint, record,
                cached_features)


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
  """The per-replica step: loss / global batch, gradients summed over the replicas and
  clipped to `train.grad_clip_norm` (optim.reduce_and_clip), update. Returns (loss, reg,
  the global gradient norm before clipping)."""
  backbone, head, optimizer, variables = (models.backbone, models.head, models.optimizer,
                                          models.variables)
  images_mode = not models.cached_features
  train_backbone = config.model.train_backbone
  global_batch = config.train.batch_size
  loss_options = losses.loss_options(config)  # label order, per-label loss, side weight
  call_backbone = compute_lib.backbone_fn(backbone, models.compute["train"]["jit"])  # XLA?
  clip_norm = config.train.grad_clip_norm

  def train_step(batch):
    with tf.GradientTape() as tape:
      if images_mode:
        features = call_backbone(batch["image"], training=train_backbone)
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
    grads, norm = optim.reduce_and_clip(tape.gradient(total, variables), clip_norm)
    optimizer.apply_gradients(zip(grads, variables))
    return loss, reg, norm

  return train_step


def make_multi_step(strategy, train_step):
  """tf.function(iterator, num): `num` distributed steps in one call; the SUMS over them of
  the loss, the regularization and the gradient norm (the loop logs their interval means)."""

  def one_step(i, sums, iterator):
    loss, reg, norm = strategy.run(train_step, args=(next(iterator),))
    step = (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.SUM, reg, axis=None),
            strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None))  # equal on all
    return (i + 1, tuple(s + x for s, x in zip(sums, step)))

  # autograph=False: nothing here needs it (the loop is an explicit tf.while_loop), and
  # converting the model code to trace it took about half of a head run's tracing time.
  @tf.function(autograph=False)
  def multi_step(iterator, num):
    zero = tf.constant(0.0)
    _, sums = tf.while_loop(lambda i, _: i < num, lambda i, sums: one_step(i, sums, iterator),
                            (tf.constant(0), (zero, zero, zero)))
    return sums

  return multi_step


def run_loop(multi_step, iterator, models: Models, actions, *, num_steps: int,
             steps_per_loop: int, global_batch: int) -> float:
  """Trains to `num_steps`, stopping at every step an action is due. Returns the mean loss
  of the last call. The actions get each call's means and its number of steps (`num`):
  LogMetrics averages them over its interval."""
  step = int(models.step.numpy())
  for action in actions:
    action.start(step, last_step=num_steps)
  last_loss = float("nan")
  with progress.bar(total=num_steps, initial=step, desc="train", unit="step") as bar:
    t0 = time.time()
    while step < num_steps:
      num = int(min([steps_per_loop, num_steps - step] +
                    [a.next_step(step) - step for a in actions]))
      last_loss, reg, norm = (float(s) / num for s in multi_step(iterator, tf.constant(num)))
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
        action(step, loss=last_loss, regularization=reg, grad_norm=norm, num=num)
  return last_loss


def make_evaluate_fn(config, workdir: str, vocab, models: Models):
  """A no-argument function: the validation part's metrics for the weights as they are now
  (`evaluate_lib.validation_part`: keep_best and eval_every never see the test split), the
  backbone computing as compute.json's inference entry says (as `evaluate` computes).

  `config`: the run's config as inference reads it (`compute.with_compute(config,
  models.compute["inference"])`, made once by `_train_locked`)."""
  cache_dir = workdir_lib.feature_cache_dir(workdir, config.data.cache_dir)
  split, part = evaluate_lib.validation_part(config)
  backbone = compute_lib.inference_backbone(config, models.compute, models.backbone)

  def evaluate():
    try:
      with optim.ema_weights(models.optimizer, models.variables):  # EMA on: its weights
        return evaluate_lib.evaluate_models(config, vocab, backbone(), models.head, split,
                                            cache_dir=cache_dir, part=part)
    except data_lib.EmptyPartError as e:
      if config.train.keep_best:  # a choice needs examples to choose on
        raise
      logging.warning("No evaluation during training (a split too small): %s", e)
      return None

  return evaluate


def make_actions(config, workdir: str, chief: bool, worker_dir: str | None, vocab,
                 models: Models, manager, writer, eval_config) -> list:
  """The loop's periodic actions: log, checkpoint, evaluate `eval_config` (the config as
  inference reads it: `make_evaluate_fn`) and keep the best checkpoint."""
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
    actions.append(periodic.Evaluate(eval_every, make_evaluate_fn(eval_config, workdir,
                                                                  vocab, models), writer, best))
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
  # Resolved once per run (auto measured only for a new workdir), reused on resume.
  record = compute_lib.for_run(config, workdir)
  models = build_training_models(config, vocab.num_labels, strategy, record)
  logging.info("%s: %d labels, %d replicas, mode %s", source.name, vocab.num_labels,
               strategy.num_replicas_in_sync, "features" if models.cached_features else "images")
  # Every worker saves (collective ops), but only the chief's copy is kept.
  worker_dir = None if chief else os.path.join(workdir, ".tmp_worker",
                                               str(strategy.cluster_resolver.task_id))
  if chief:  # a save that failed (e.g. disk full) left <prefix>_temp/ folders behind
    workdir_lib.remove_temp_checkpoints(workdir)
  manager = tf.train.CheckpointManager(models.checkpoint, workdir_lib.checkpoints_dir(
      worker_dir or workdir), max_to_keep=config.train.max_checkpoints)
  start_step = restore_or_init(config, models, manager)
  if chief:  # only now: a run that cannot restore leaves config.json as it was
    workdir_lib.record_changes(config, workdir, step=start_step)  # config_history.jsonl
    workdir_lib.save_config(config, workdir)
    compute_lib.save(workdir, record)  # compute.json
  if config.train.schedule == "constant":
    # The config's learning rate wins over the one saved with the optimizer's state (a
    # schedule is built from the config and evaluated at the restored step).
    models.optimizer.learning_rate = config.train.learning_rate
  num_steps = config.train.num_steps
  if start_step >= num_steps:
    logging.info("Already at step %d >= num_steps %d: nothing to train.", start_step, num_steps)
  # The config as inference reads it: a feature cache and evaluation in compute.json's
  # inference precision (made once, passed down).
  inference_config = compute_lib.with_compute(config, record["inference"])
  dataset = data_lib.dataset_for(
      inference_config, config.data.train_split, vocab, training=True, source=source,
      cache_dir=workdir_lib.feature_cache_dir(workdir, config.data.cache_dir),
      start_step=start_step, part=data_lib.FIT).take(max(num_steps - start_step, 0))
  data_lib.options.without_autotune_on_devices()  # else releasing the iterator may stall
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  writer = MetricWriter(workdir_lib.train_dir(workdir), enabled=chief)
  actions = make_actions(config, workdir, chief, worker_dir, vocab, models, manager, writer,
                         inference_config)
  multi_step = make_multi_step(strategy, make_train_step(config, models))
  try:
    last_loss = run_loop(multi_step, iterator, models, actions, num_steps=num_steps,
                         steps_per_loop=config.train.steps_per_loop,
                         global_batch=config.train.batch_size)
  finally:
    writer.close()
  held = [iterator, multi_step]  # the only references left: teardown times their release
  del iterator, multi_step
  teardown_s = train_end.teardown(held)
  if worker_dir:
    tf.io.gfile.rmtree(worker_dir)
  fingerprint, ema_fingerprint = train_end.fingerprints_then_ema(models)
  skipped = train_end.finish(config, workdir, chief, source, models)
  if chief and calibration.calibrates(config):
    train_end.calibrate_and_save(config, workdir, vocab, source, models)
  step = int(models.step.numpy())
  logging.info("Finished at step %d; weights fingerprint %s%s.", step, fingerprint,
               f"; EMA fingerprint {ema_fingerprint}" if ema_fingerprint else "")
  evaluate = [a for a in actions if isinstance(a, periodic.Evaluate)]
  return {"step": step, "start_step": start_step, "loss": last_loss, "skipped": skipped,
          "fingerprint": fingerprint, "ema_fingerprint": ema_fingerprint,
          "teardown_s": teardown_s,
          "eval": evaluate[0].last_metrics if evaluate else None}
