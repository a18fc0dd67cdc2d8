"""Calibrated thresholds: per-class decision thresholds chosen to maximize per-class F1, of
the BCE head's probabilities or of the CNN-RNN's marginal probabilities.

    from cnn_rnn_tf import calibration
    thresholds = calibration.fit_thresholds(y_true, probs)   # bool [N, K], float [N, K] -> [K]
    predicted = probs >= thresholds                          # [N, K]

    # A trained head on the held-out part of the training split (the trainer's end):
    thresholds = calibration.calibrate(config, vocab, backbone, head, cache_dir=cache_dir)
    workdir.save_thresholds(w, vocab.names, thresholds, step=step)

The rule (one sentence): for each class, among all thresholds that change the predicted set
of the held-out examples, take the one with the highest F1 on them; ties go to the highest
threshold (fewest predictions); the threshold is put halfway between the lowest accepted and
the highest rejected probability, so it is not tied to one example's exact score. A class
without a positive example in the held-out data keeps `default` (0.5): F1 cannot rank
thresholds there.

The held-out data: the "calibration" part of `data.train_split`, a deterministic fraction
`data.calibration_fraction` of its examples chosen by a hash of the example key
(`data.inputs.in_calibration_part`); the trainer never reads it, for either head.
`evaluate` then reports the calibrated rules besides the 0.5 ones (bce: `top3_calibrated` /
`all_calibrated`; cnn_rnn: `top3_marginals` / `all_marginals`, thresholds of its marginal
probabilities), and the export bakes the thresholds into the SavedModel (the bce label set,
the cnn_rnn's `labels_marginals`).
"""

from __future__ import annotations

from absl import logging
import numpy as np

from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import evaluate_lib


def fit_thresholds(y_true, probs, default: float = 0.5) -> np.ndarray:
  """float32 [K] thresholds; see the module docstring. y_true bool [N, K], probs [N, K]."""
  y_true = np.asarray(y_true, bool)
  probs = np.asarray(probs, np.float64)
  if y_true.shape != probs.shape or y_true.ndim != 2:
    raise ValueError(f"y_true and probs must be [N, K] of one shape, got {y_true.shape} "
                     f"and {probs.shape}.")
  if not np.all(np.isfinite(probs)):
    rows, cols = np.nonzero(~np.isfinite(probs))
    raise ValueError(f"probs hold NaN or Inf, first at [example {rows[0]}, label {cols[0]}].")
  thresholds = np.full(probs.shape[1], default, np.float64)
  for k in range(probs.shape[1]):
    thresholds[k] = _best_threshold(y_true[:, k], probs[:, k], default)
  return thresholds.astype(np.float32)


def _best_threshold(positive: np.ndarray, score: np.ndarray, default: float) -> float:
  num_pos = int(positive.sum())
  if num_pos == 0:
    return default
  order = np.argsort(-score, kind="stable")
  s, p = score[order], positive[order]  # [N], highest score first
  tp = np.cumsum(p)  # predicted positive: the first i + 1 by score
  fp = np.cumsum(~p)
  last = np.r_[s[1:] != s[:-1], True]  # cut only between distinct scores
  f1 = np.where(last, 2 * tp / (2 * tp + fp + (num_pos - tp)), -1.0)
  best = int(np.argmax(f1))  # first max: the highest threshold among ties
  lower = s[best + 1] if best + 1 < len(s) else 0.0
  return float((s[best] + lower) / 2)


def calibrates(config) -> bool:
  """Whether a run of `config` fits thresholds: a held-out part, and probabilities to fit
  (bce: its own; cnn_rnn: its trained marginals, model.side_loss_weight > 0)."""
  trained = config.model.head == "bce" or config.model.side_loss_weight > 0
  return bool(config.data.calibration_fraction) and trained


def calibrate(config, vocab, backbone, head, *, cache_dir: str, source=None,
              batch_size: int | None = None) -> np.ndarray:
  """float32 [K]: per-class thresholds fitted on the calibration part of the training split
  (`data.calibration_fraction` > 0): of a bce head's probabilities, or of a cnn_rnn head's
  marginal probabilities (the `marginals` decoder)."""
  if not config.data.calibration_fraction:
    raise ValueError("data.calibration_fraction is 0: there is no held-out part to "
                     "calibrate on.")
  pred = evaluate_lib.predict_models(config, vocab, backbone, head, config.data.train_split,
                                     cache_dir=cache_dir, batch_size=batch_size,
                                     source=source, part=data_lib.CALIBRATION)
  scores = pred["marginal_scores"] if config.model.head == "cnn_rnn" else pred["label_scores"]
  thresholds = fit_thresholds(pred["y_true"], scores)
  logging.info("Calibrated %d thresholds on %d held-out examples of %r (median %.3f).",
               len(thresholds), len(pred["y_true"]), config.data.train_split,
               float(np.median(thresholds)))
  return thresholds
