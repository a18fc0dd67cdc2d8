"""The training recipe's parts: optimizer, learning-rate schedule, gradient clipping, EMA.

    from cnn_rnn_tf import optim
    optimizer = optim.make_optimizer(config)          # train.optimizer, schedule, EMA, AdamW
    grads, norm = optim.reduce_and_clip(grads, config.train.grad_clip_norm)  # in strategy.run
    with optim.ema_weights(optimizer, variables):     # the EMA in the model for a moment
      metrics = evaluate(...)

Keras' own parts where they fit the custom `strategy.run` loop (train_lib), and why not where
they do not (BUILD.md, "The training recipe"):
  * schedules: `keras.optimizers.schedules.CosineDecay` (with `warmup_target`/`warmup_steps`)
    and `StepDecay` below (warm-up, then factors at fractions of the run). Keras evaluates
    them at `optimizer.iterations`, which the checkpoint holds: a resumed run follows the
    same curve.
  * clipping: NOT the optimizers' `global_clipnorm`. Keras 3 clips in `apply` before
    `_backend_update_step` all-reduces, so under MirroredStrategy each replica's partial
    gradient would be clipped by its own norm and the clipped parts summed (the norm of the
    applied update could reach replicas x the limit). `reduce_and_clip` sums the replicas'
    gradients first, measures the global norm of that sum, clips it, and the optimizer is
    told the gradients are already summed (`gradients_reduced_by_caller`).
  * EMA: Keras' `use_ema` / `ema_momentum` (the averages are optimizer variables, so every
    checkpoint holds them and a resumed run continues them bit for bit) and
    `finalize_variable_values` (which copies them into the model). The swap for an
    evaluation during training and back (`ema_weights`) is this module's.
  * AdamW: `keras.optimizers.AdamW` (decoupled: w -= lr * weight_decay * w, biases and
    normalization scales excluded), with `model.weight_decay` (L2 regularizers) 0: the config
    refuses both (config_lib).
"""

from __future__ import annotations

import contextlib

import keras
import tensorflow as tf

OPTIMIZERS = ("rmsprop", "adam", "adamw", "sgd")
SCHEDULES = ("constant", "cosine", "step")
NO_WEIGHT_DECAY = ("bias", "gamma", "beta")  # AdamW leaves biases and norm scales/shifts


@keras.saving.register_keras_serializable(package="cnn_rnn_tf")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
  """Linear warm-up from 0 over `warmup_steps`, then `peak` times the product of the
  `factors` whose boundary (a step) has been reached: factors (0.1, 0.1) at boundaries
  (500, 750) give peak, 0.1 peak from step 500, 0.01 peak from step 750."""

  def __init__(self, peak: float, boundaries, factors, warmup_steps: int = 0):
    self.peak, self.warmup_steps = float(peak), int(warmup_steps)
    self.boundaries, self.factors = [int(b) for b in boundaries], [float(f) for f in factors]

  def __call__(self, step):
    step = tf.cast(step, tf.float32)
    rate = tf.constant(self.peak, tf.float32)
    for boundary, factor in zip(self.boundaries, self.factors):
      rate = tf.where(step >= boundary, rate * factor, rate)
    if self.warmup_steps:
      rate = tf.where(step < self.warmup_steps, self.peak * step / self.warmup_steps, rate)
    return rate

  def get_config(self):
    return {"peak": self.peak, "boundaries": self.boundaries, "factors": self.factors,
            "warmup_steps": self.warmup_steps}


def make_schedule(train):
  """The learning rate of `train` (config.train): a float (constant) or a schedule of the
  step. The run's length is `train.num_steps`; its fractions place the step decays."""
  peak, warmup = train.learning_rate, train.warmup_steps
  schedule = train.schedule
  if schedule == "constant":
    return peak
  if schedule == "cosine":
    if not warmup:
      return keras.optimizers.schedules.CosineDecay(
          peak, decay_steps=train.num_steps, alpha=train.final_lr_fraction)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=max(train.num_steps - warmup, 1), alpha=train.final_lr_fraction,
        warmup_target=peak, warmup_steps=warmup)
  if schedule == "step":
    boundaries = [round(f * train.num_steps) for f in train.decay_at]
    return StepDecay(peak, boundaries, train.decay_factors, warmup)
  raise ValueError(f"Unknown train.schedule {schedule!r}; expected one of {SCHEDULES}.")


def make_optimizer(config) -> keras.optimizers.Optimizer:
  """config.train's optimizer with its schedule and (train.ema_decay > 0) Keras' EMA."""
  train = config.train
  rate = make_schedule(train)
  ema_decay = train.ema_decay
  ema = {"use_ema": True, "ema_momentum": ema_decay} if ema_decay else {}
  if train.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(rate, momentum=train.momentum, **ema)
  if train.optimizer == "adam":
    return keras.optimizers.Adam(rate, **ema)
  if train.optimizer == "adamw":
    optimizer = keras.optimizers.AdamW(rate, weight_decay=train.weight_decay, **ema)
    optimizer.exclude_from_weight_decay(var_names=list(NO_WEIGHT_DECAY))
    return optimizer
  if train.optimizer == "sgd":
    return keras.optimizers.SGD(rate, momentum=train.momentum, **ema)
  raise ValueError(f"Unknown optimizer {train.optimizer!r}; expected one of {OPTIMIZERS}.")


def uses_ema(config) -> bool:
  return bool(config.train.ema_decay)


def trained_variables(config, backbone, head) -> list:
  """The variables a run trains, in the optimizer's (and its EMA's) fixed order."""
  variables = list(head.trainable_variables)
  if config.model.train_backbone:
    variables += backbone.trainable_variables
  return variables


def gradients_reduced_by_caller(optimizer) -> None:
  """Tells `optimizer` that the gradients it gets are already summed over the replicas
  (`reduce_and_clip`), so that its `apply_gradients` does not all-reduce them again.

  Keras 3's TF optimizer has no public switch for it (Keras 2 had
  `experimental_aggregate_gradients=False`): its `_all_reduce_sum_gradients` is replaced on
  this instance. tests/test_train.py checks the applied update with 2 replicas.
  """
  optimizer._all_reduce_sum_gradients = lambda grads_and_vars: grads_and_vars  # pylint: disable=protected-access


def reduce_and_clip(grads: list, clip_norm: float):
  """In a replica context: (the gradients summed over the replicas, scaled so that their
  global norm is at most `clip_norm` (0: not clipped), the global norm before clipping).

  None gradients (variables the loss does not reach) stay None.
  """
  present = [i for i, g in enumerate(grads) if g is not None]
  summed = tf.distribute.get_replica_context().all_reduce(
      tf.distribute.ReduceOp.SUM, [grads[i] for i in present])
  norm = tf.linalg.global_norm(summed)
  if clip_norm:
    summed, _ = tf.clip_by_global_norm(summed, clip_norm, use_norm=norm)
  out = list(grads)
  for i, g in zip(present, summed):
    out[i] = g
  return out, norm


@contextlib.contextmanager
def ema_weights(optimizer, variables):
  """Within: `variables` hold the optimizer's EMA (`finalize_variable_values`); after: the
  raw weights again, exactly. Without EMA a no-op. Call outside `strategy.run`."""
  if not optimizer.use_ema:
    yield
    return
  raw = [tf.identity(v.value) for v in variables]
  optimizer.finalize_variable_values(variables)
  try:
    yield
  finally:
    for v, value in zip(variables, raw):
      v.assign(value)
