"""The training loop: one custom `strategy.run` loop for every tf.distribute strategy.

    from cnn_rnn_tf import train_lib
    train_lib.train(config, workdir)          # config: an ml_collections ConfigDict

The binary `python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=DIR` only parses
flags and calls `train`.

Strategy: MultiWorkerMirroredStrategy when `TF_CONFIG` names a cluster of more than one task,
MirroredStrategy over the local devices otherwise (all GPUs; else all logical CPUs). Keras'
`model.fit` fails under MultiWorkerMirroredStrategy with Keras 3 (keras-team/keras#20585),
so every strategy uses this loop. The loss of each replica is divided by the *global* batch
size and gradients are summed across replicas, so any number of replicas takes the same step.

Which start wins (first that exists):
  1. a checkpoint in `<workdir>/checkpoints`     (resume: step, weights, optimizer, data position)
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
  train/               TensorBoard summaries and `log.jsonl` (step, loss, examples/s, lr)
  data_report.json     examples skipped as bad data (`data.skip_bad_examples`), by reason
  backbone.weights.h5  the trained backbone (when `model.train_backbone`), reusable as frozen
                       `model.backbone_weights` by later runs (the demo does this)
"""

from __future__ import annotations

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
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.metric_writer import MetricWriter


BACKBONE_WEIGHTS = "backbone.weights.h5"


def make_strategy() -> tf.distribute.Strategy:
  """MultiWorkerMirroredStrategy if TF_CONFIG names several tasks, else MirroredStrategy."""
  cluster = json.loads(os.environ.get("TF_CONFIG", "{}")).get("cluster", {})
  if sum(len(tasks) for tasks in cluster.values()) > 1:
    return tf.distribute.MultiWorkerMirroredStrategy()
  gpus = tf.config.list_logical_devices("GPU")
  devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
  return tf.distribute.MirroredStrategy(devices)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.task_type:
    return True
  has_chief = "chief" in resolver.cluster_spec().as_dict()
  return resolver.task_type == "chief" or (
      not has_chief and resolver.task_type == "worker" and resolver.task_id == 0)


def _make_optimizer(config):
  if config.train.optimizer == "rmsprop":
    return keras.optimizers.RMSprop(config.train.learning_rate, momentum=config.train.momentum)
  if config.train.optimizer == "adam":
    return keras.optimizers.Adam(config.train.learning_rate)
  if config.train.optimizer == "sgd":
    return keras.optimizers.SGD(config.train.learning_rate, momentum=config.train.momentum)
  raise ValueError(f"Unknown optimizer {config.train.optimizer!r}; expected rmsprop, adam "
                   "or sgd.")


def make_train_dataset(config, workdir, source, vocab, start_step: int) -> tf.data.Dataset:
  """The repeated, shuffled training stream, positioned after `start_step` batches."""
  batch = config.train.batch_size
  if workdir_lib.uses_feature_cache(config):
    path = data_lib.feature_cache.build(
        source, config.data.train_split, vocab, config.model.backbone,
        config.model.backbone_weights, config.model.image_size,
        precision=config.data.precision,
        cache_dir=workdir_lib.feature_cache_dir(config, workdir),
        batch_size=batch)
    return data_lib.feature_dataset(path, batch_size=batch, training=True, seed=config.seed,
                                    repeat=True, start_step=start_step, drop_remainder=True)
  return data_lib.image_dataset(
      source, config.data.train_split, vocab,
      image_size=backbones.backbone_image_size(config.model.backbone, config.model.image_size),
      batch_size=batch, training=True, seed=config.seed, augment=config.data.augment,
      repeat=True, start_step=start_step, drop_remainder=True,
      shuffle_buffer=config.data.shuffle_buffer, deterministic=config.data.deterministic)


def check_config(config) -> None:
  """Refuses settings that would train something evaluation or export cannot rebuild."""
  if not config.model.train_backbone and config.model.backbone_weights in (None, "none", ""):
    raise ValueError(
        "A frozen backbone with random weights (model.train_backbone=False, "
        "model.backbone_weights=None) is not saved, so evaluation and export could not rebuild "
        "it. Set model.backbone_weights (e.g. 'imagenet' or a backbone.weights.h5 file) or "
        "model.train_backbone=True.")


def train(config: ml_collections.ConfigDict, workdir: str,
          strategy: tf.distribute.Strategy | None = None) -> dict:
  """Trains until `config.train.num_steps`, resuming from the workdir. Returns a summary."""
  check_config(config)
  strategy = strategy or make_strategy()
  chief = is_chief(strategy)
  if chief:
    workdir_lib.save_config(config, workdir)
  source = data_lib.get_source(config.data)
  vocab = workdir_lib.load_or_make_vocab(source, workdir, chief)
  logging.info("%s: %d labels, %d replicas, mode %s", source.name, vocab.num_labels,
               strategy.num_replicas_in_sync,
               "features" if workdir_lib.uses_feature_cache(config) else "images")

  # Seeded right before the weights are made: data code above may draw random numbers.
  keras.utils.set_random_seed(config.seed)
  policy = None
  if not workdir_lib.uses_feature_cache(config) and data_lib.feature_cache.resolve_precision(
      config.data.precision) == "bfloat16":
    policy = "mixed_bfloat16"  # the backbone computes in bfloat16; weights stay float32
  with strategy.scope():
    backbone, head = workdir_lib.build_models(config, vocab.num_labels, policy=policy)
    optimizer = _make_optimizer(config)
    step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
    variables = list(head.trainable_variables)
    if config.model.train_backbone:
      variables += backbone.trainable_variables
    optimizer.build(variables)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head, optimizer, step)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  if not chief:  # Every worker saves (collective ops), but only the chief's copy is kept.
    ckpt_dir = os.path.join(workdir, ".tmp_worker", str(strategy.cluster_resolver.task_id))
  manager = tf.train.CheckpointManager(checkpoint, ckpt_dir,
                                       max_to_keep=config.train.max_checkpoints)
  if manager.latest_checkpoint:
    checkpoint.restore(manager.latest_checkpoint).assert_existing_objects_matched()
    logging.info("Resumed from %s at step %d.", manager.latest_checkpoint, int(step.numpy()))
  elif config.train.get("init_checkpoint"):
    workdir_lib.make_checkpoint(config, backbone, head).restore(
        config.train.init_checkpoint).expect_partial()
    logging.info("Initialized the model from %s.", config.train.init_checkpoint)
  else:
    logging.info("Starting from scratch (backbone weights: %s).", config.model.backbone_weights)
  # The config's learning rate wins over the one saved with the optimizer's state.
  optimizer.learning_rate = config.train.learning_rate
  start_step = int(step.numpy())

  # Exactly the batches still to train: an endless stream's prefetching iterator was seen to
  # stall the process for 30-50 s when destroyed at the end of training.
  dataset = make_train_dataset(config, workdir, source, vocab, start_step).take(
      max(config.train.num_steps - start_step, 0))
  iterator = iter(strategy.experimental_distribute_dataset(dataset))
  global_batch = config.train.batch_size
  images_mode = not workdir_lib.uses_feature_cache(config)

  def train_step(batch):
    with tf.GradientTape() as tape:
      if images_mode:
        features = backbone(batch["image"], training=config.model.train_backbone)
      else:
        features = batch["features"]
      per_example = model_lib.head_loss(head, features, batch["labels"], training=True,
                                        max_labels=config.model.max_labels)  # [B]
      loss = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
      model_losses = head.losses + (backbone.losses if config.model.train_backbone else [])
      reg = tf.nn.scale_regularization_loss(tf.add_n(model_losses)) if model_losses else 0.0
      total = loss + reg
    grads = tape.gradient(total, variables)
    optimizer.apply_gradients(zip(grads, variables))
    return loss, reg

  @tf.function
  def distributed_steps(iterator, num):
    """`num` training steps in one call (fewer Python round trips); the last step's losses."""
    total, reg = tf.constant(0.0), tf.constant(0.0)
    for _ in tf.range(num):
      loss, reg_loss = strategy.run(train_step, args=(next(iterator),))
      total = strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None)
      reg = strategy.reduce(tf.distribute.ReduceOp.SUM, reg_loss, axis=None)
    return total, reg

  writer = MetricWriter(os.path.join(workdir, "train"), enabled=chief)
  num_steps = config.train.num_steps
  log_every = max(1, config.train.log_every)
  every = (log_every, config.train.checkpoint_every)
  t0, steps_since, last_loss = time.time(), 0, float("nan")
  if start_step >= num_steps:
    logging.info("Already at step %d >= num_steps %d: nothing to train.", start_step, num_steps)
  while int(step.numpy()) < num_steps:
    current = int(step.numpy())
    # Run up to the next log / checkpoint / end, at most steps_per_loop steps at a time.
    num = min([config.train.steps_per_loop, num_steps - current] +
              [e - current % e for e in every])
    loss, reg = distributed_steps(iterator, tf.constant(num))
    loss = float(loss)
    if not np.isfinite(loss):
      raise FloatingPointError(
          f"Training loss is {loss} at step {current + num}; stopping. The last good "
          f"checkpoint stays in {ckpt_dir!r} ({manager.latest_checkpoint}). Lower "
          f"train.learning_rate or check the data.")
    step.assign_add(num)
    steps_since += num
    current += num
    last_loss = loss
    if current % log_every == 0 or current == num_steps:
      elapsed = time.time() - t0
      writer.write(current, {
          "loss": loss, "regularization": float(reg),
          "examples_per_s": steps_since * global_batch / max(elapsed, 1e-9),
          "learning_rate": float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
      }, prefix=f"step {current}/{num_steps}")
      t0, steps_since = time.time(), 0
    if current % config.train.checkpoint_every == 0 or current == num_steps:
      _check_finite(variables, current, manager.latest_checkpoint)
      manager.save(checkpoint_number=current)
  writer.close()
  if not chief:
    tf.io.gfile.rmtree(ckpt_dir)
  skipped = dict(getattr(source, "skipped", {}) or {})
  if chief and config.model.train_backbone:
    # Reusable as a frozen backbone: --config.model.backbone_weights=<workdir>/backbone.weights.h5
    backbone.save_weights(os.path.join(workdir, BACKBONE_WEIGHTS))
  if chief:
    with tf.io.gfile.GFile(os.path.join(workdir, "data_report.json"), "w") as f:
      json.dump({"skipped": skipped}, f, indent=2)
    if skipped:
      logging.warning("Skipped bad examples: %s (data.skip_bad_examples=True).", skipped)
  fingerprint = weights_fingerprint(variables)
  logging.info("Finished at step %d; weights fingerprint %s.", int(step.numpy()), fingerprint)
  return {"step": int(step.numpy()), "start_step": start_step, "loss": last_loss, "skipped": skipped,
          "fingerprint": fingerprint}


def _check_finite(variables, step: int, last_checkpoint) -> None:
  """Refuses to checkpoint NaN / Inf weights: the last good checkpoint must stay the last."""
  for v in variables:
    if not bool(tf.reduce_all(tf.math.is_finite(v))):
      raise FloatingPointError(
          f"Weight {v.path} holds NaN or Inf at step {step}; stopping without saving. The "
          f"last good checkpoint is {last_checkpoint}.")


def weights_fingerprint(variables) -> str:
  """A SHA-256 of the weights' bytes: equal on every worker of a synchronous run."""
  digest = hashlib.sha256()
  for v in variables:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(v.value)).tobytes())
  return digest.hexdigest()[:16]
