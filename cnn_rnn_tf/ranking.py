"""Ranking metrics of per-label scores, and the checks of [N, K] inputs, in NumPy only.

    ap = average_precision(y_true, scores, "voc07")  # float [K], NaN for a class with no positive
    mean_ap(ap)                                      # float, over the classes with a positive
    map_at_k(y_true, scores, k=10)                   # MAP@10 (NUS-WIDE)
    top_k_mask(scores, 3, threshold=0.5)             # bool [N, K], BCE's top-3 prediction
    average_precision(y_true, scores, "voc07", ignore=difficult)  # VOC devkit: ignored left out

`y_true` is bool [N, K] (ground truth), `scores` float [N, K] (any ranking score, higher =
more likely). `ignore` (bool [N, K] or None) marks (image, label) entries that no metric
counts: the VOC devkit's "difficult" entries (gt 0 of its {1, 0, -1}); an ignored entry
is left out of its class's ranking and of its image's ranking. `metrics.py` names these in its table `METRICS` and re-exports them
(`metrics.average_precision`, ...); its module docstring has the conventions (ties, NaN).
"""

from __future__ import annotations

import math

import numpy as np

AP_METHODS = ("voc07", "area", "noninterp")


# ----------------------------------------------------------------------------- validation


def as_bool_2d(name: str, x) -> np.ndarray:
  """bool [N, K] from bool or 0/1 input; anything else (e.g. probabilities) is an error."""
  x = np.asarray(x)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D [N, K], got shape {x.shape}.")
  if x.shape[0] == 0:
    raise ValueError("no images")
  if x.shape[1] == 0:
    raise ValueError(f"{name} has no labels (shape {x.shape}).")
  if x.dtype != bool:
    if not np.isin(x, (0, 1)).all():
      bad = x[~np.isin(x, (0, 1))].flat[0]
      raise ValueError(f"{name} must be bool or 0/1, got value {bad!r} (dtype {x.dtype}).")
    x = x.astype(bool)
  return x


def as_scores_2d(name: str, x) -> np.ndarray:
  """float64 [N, K]; NaN is an error (it has no place in a ranking), +-inf is allowed."""
  x = np.asarray(x, dtype=np.float64)
  if x.ndim != 2:
    raise ValueError(f"{name} must be 2-D [N, K], got shape {x.shape}.")
  if x.shape[0] == 0:
    raise ValueError("no images")
  if np.isnan(x).any():
    rows, cols = np.nonzero(np.isnan(x))
    raise ValueError(f"{name} contains NaN, first at [image {rows[0]}, label {cols[0]}].")
  return x


def as_ignore(ignore, shape: tuple[int, ...]) -> np.ndarray:
  """bool [N, K] of the entries to leave out (None: none), checked against `shape`."""
  if ignore is None:
    return np.zeros(shape, dtype=bool)
  ignore = as_bool_2d("ignore", ignore)
  if ignore.shape != tuple(shape):
    raise ValueError(f"ignore has shape {ignore.shape} but y_true has shape {tuple(shape)}; "
                     "they must be equal [N, K].")
  return ignore


def check_same_shape(name_a: str, a: np.ndarray, name_b: str, b: np.ndarray) -> None:
  """A ValueError naming both inputs and their shapes when they differ."""
  if a.shape != b.shape:
    raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; "
                     "they must be equal [N, K].")


# ----------------------------------------------------------------------------- ranking


def _pr_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Precision and recall at each distinct score threshold, highest score first.

  positive: bool [N], with at least one True; score: float [N].
  Returns (precision [T], recall [T]), T = number of distinct scores.
  """
  order = np.argsort(-score, kind="stable")
  score, positive = score[order], positive[order]
  tp = np.cumsum(positive)  # [N]
  # A threshold sits after the last image of each group of equal scores.
  last = np.r_[np.nonzero(score[1:] != score[:-1])[0], score.size - 1]  # [T]
  tp = tp[last]
  precision = tp / (last + 1.0)
  recall = tp / tp[-1]
  return precision, recall


def _ap_voc07(precision: np.ndarray, recall: np.ndarray) -> float:
  """VOC2007 devkit: mean over t = 0, 0.1, ..., 1 of max precision at recall >= t."""
  total = 0.0
  for t in np.arange(11) / 10.0:  # i / 10, not a float step: recall 3/10 must reach t = 0.3
    reached = recall >= t
    total += precision[reached].max() if reached.any() else 0.0
  return total / 11.0


def _ap_area(precision: np.ndarray, recall: np.ndarray) -> float:
  """VOC2010+ devkit: area under the precision envelope (max precision at recall >= r)."""
  mrec = np.r_[0.0, recall, 1.0]
  mpre = np.r_[0.0, precision, 0.0]
  mpre = np.maximum.accumulate(mpre[::-1])[::-1]
  i = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
  return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


def _ap_noninterp(precision: np.ndarray, recall: np.ndarray) -> float:
  """sum_t (R_t - R_t-1) P_t: without ties, the mean precision at each positive."""
  return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


_AP_FNS = {"voc07": _ap_voc07, "area": _ap_area, "noninterp": _ap_noninterp}


def average_precision(y_true, scores, method: str = "noninterp",
                      ignore=None) -> np.ndarray:
  """Per-class average precision of a ranking of the images by score.

  Args:
    y_true: bool [N, K] ground truth.
    scores: float [N, K] ranking scores (higher = more confident).
    method: 'voc07' (VOC2007 devkit, 11-point interpolated), 'area' (VOC2010+ devkit, area
      under the monotone precision envelope) or 'noninterp' (mean of the precision at each
      positive, = sklearn.metrics.average_precision_score).
    ignore: bool [N, K] or None; image n is left out of class c's ranking where
      ignore[n, c] (the VOC devkit's rule for a class whose objects in the image are all
      "difficult": neither a true nor a false positive).

  Returns:
    float [K]; NaN for a class with no (counted) positive image. Tied scores count as one
    threshold.
  """
  if method not in _AP_FNS:
    raise ValueError(f"Unknown AP method {method!r}; expected one of {AP_METHODS}.")
  y_true = as_bool_2d("y_true", y_true)
  scores = as_scores_2d("scores", scores)
  check_same_shape("y_true", y_true, "scores", scores)
  counted = ~as_ignore(ignore, y_true.shape)
  ap = np.full(y_true.shape[1], np.nan)
  for c in range(y_true.shape[1]):
    keep = counted[:, c]
    if (y_true[:, c] & keep).any():
      ap[c] = _AP_FNS[method](*_pr_points(y_true[keep, c], scores[keep, c]))
  return ap


def mean_ap(ap) -> float:
  """Mean of per-class APs over the classes that have one (NaN ignored); NaN if none has."""
  ap = np.asarray(ap, dtype=np.float64)
  valid = ~np.isnan(ap)
  return float(ap[valid].mean()) if valid.any() else math.nan


def _rank_labels(scores: np.ndarray) -> np.ndarray:
  """Label ids of each row, highest score first, ties by lower id: int [N, K]."""
  return np.argsort(-scores, axis=1, kind="stable")


def check_k(k) -> int:
  """k as an int, or a ValueError unless it is a positive integer."""
  if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
    raise ValueError(f"k must be a positive integer, got {k!r}.")
  return int(k)


def top_k_mask(scores, k: int, threshold: float | None = None) -> np.ndarray:
  """The k highest-scored labels of each image (the BCE baseline's top-k prediction).

  Args:
    scores: float [N, K].
    k: labels per image (all K if k >= K). Ties are broken by the lower label id.
    threshold: if given, a label must also have score >= threshold (so fewer than k
      labels may be kept).

  Returns:
    bool [N, K].
  """
  k = check_k(k)
  scores = as_scores_2d("scores", scores)
  top = _rank_labels(scores)[:, :k]  # [N, min(k, K)]
  mask = np.zeros(scores.shape, dtype=bool)
  np.put_along_axis(mask, top, True, axis=1)
  if threshold is not None:
    mask &= scores >= threshold
  return mask


def map_at_k(y_true, scores, k: int = 10, ignore=None) -> float:
  """MAP@k (MAP@10 of the paper's NUS-WIDE and COCO tables): a per-image ranking metric.

  Each image ranks its K labels by score (ties by lower label id). With rel_i = 1 if the
  label at rank i is in the ground truth, P@i the precision of the first i ranks and n_pos
  the number of ground-truth labels of the image:

    AP@k = 1 / min(k, n_pos) * sum_{i <= k} P@i * rel_i

  MAP@k is the mean of AP@k over the images with at least one ground-truth label (NaN if
  there is none). An ignored entry is left out of its image's ranking (the ranks close up).

  Args:
    y_true: bool [N, K].
    scores: float [N, K].
    k: ranks considered per image.
    ignore: bool [N, K] or None: entries left out.

  Returns:
    float in [0, 1].
  """
  k = check_k(k)
  y_true = as_bool_2d("y_true", y_true)
  scores = as_scores_2d("scores", scores)
  check_same_shape("y_true", y_true, "scores", scores)
  counted = ~as_ignore(ignore, y_true.shape)
  y_true = y_true & counted  # an ignored entry is no positive
  ranked = _rank_labels(scores)  # [N, K]
  counted = np.take_along_axis(counted, ranked, axis=1)  # [N, K], in rank order
  rank = np.cumsum(counted, axis=1)  # i of each counted label, ranks of ignored ones skipped
  counted &= rank <= k
  rel = (np.take_along_axis(y_true, ranked, axis=1) & counted).astype(np.float64)  # [N, K]
  precision_at = np.cumsum(rel, axis=1) / np.maximum(rank, 1)  # P@i at each counted rank
  n_pos = y_true.sum(axis=1)  # [N]
  has_pos = n_pos > 0
  if not has_pos.any():
    return math.nan
  ap = (precision_at * rel).sum(axis=1)[has_pos] / np.minimum(k, n_pos[has_pos])
  return float(ap.mean())
