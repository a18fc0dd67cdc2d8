"""The end of a training run (train_lib.train calls these after the loop, in this order):

    teardown_s = train_end.teardown([iterator, multi_step])  # the stream released, timed
    skipped = train_end.finish(config, workdir, chief, source, models)  # backbone file, report
    train_end.calibrate_and_save(config, workdir, vocab, source, models)  # thresholds.json

`models` (train_lib.Models) hold what evaluate and export load by then: with EMA on, the
EMA weights (train_lib swaps them in after the last checkpoint).
"""

from __future__ import annotations

import gc
import hashlib
import json
import time

from absl import logging
import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import calibration
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.workdir import compute as compute_lib


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


def finish(config, workdir: str, chief: bool, source, models) -> dict:
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


def calibrate_and_save(config, workdir: str, vocab, source, models) -> None:
  """thresholds.json for the weights evaluate and export take by default (`--checkpoint=auto`):
  the best checkpoint when the run kept one, else the weights as training ended."""
  head, step = models.head, int(models.step.numpy())
  backbone = compute_lib.inference_backbone(config, models.compute, models.backbone)()
  if tf.train.latest_checkpoint(workdir_lib.best_dir(workdir)):
    trained = workdir_lib.load_trained(workdir, "best")
    backbone, head = trained.backbone, trained.head
    step = int(trained.checkpoint_path.rsplit("-", 1)[1])
  config = compute_lib.with_compute(config, models.compute["inference"])
  try:
    cache_dir = workdir_lib.feature_cache_dir(workdir, config.data.cache_dir)
    thresholds = calibration.calibrate(config, vocab, backbone, head, source=source,
                                       cache_dir=cache_dir)
  except data_lib.EmptyPartError as e:  # a split too small for its held-out part
    logging.warning("No calibrated thresholds (evaluate and export keep 0.5): %s", e)
    return
  workdir_lib.save_thresholds(workdir, vocab.names, thresholds, step=step)


def fingerprints_then_ema(models) -> tuple[str, str | None]:
  """(fingerprint of the trained weights, of their EMA or None); then the models hold the
  EMA (`finalize_variable_values`), what evaluate and export load (`workdir.load_trained`).
  Call after the last checkpoint: it keeps the trained weights for a resume."""
  optimizer = models.optimizer
  fingerprint = weights_fingerprint(models.variables)
  ema = (weights_fingerprint(optimizer._model_variables_moving_average)  # pylint: disable=protected-access
         if optimizer.use_ema else None)
  optimizer.finalize_variable_values(models.variables)
  return fingerprint, ema


def weights_fingerprint(variables) -> str:
  """A SHA-256 of the weights' bytes: equal on every worker of a synchronous run."""
  digest = hashlib.sha256()
  for v in variables:
    digest.update(np.ascontiguousarray(keras.ops.convert_to_numpy(v.value)).tobytes())
  return digest.hexdigest()[:16]
