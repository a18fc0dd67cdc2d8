"""The metrics of predicted label sets, in NumPy only (paper section 4.1): C-P/C-R/C-F1,
O-P/O-R/O-F1, exact match, example-based P/R/F1 and Hamming loss, each with an optional
`ignore` mask (bool [N, K]: entries left out; VOC's difficult-only classes).

    prf(y_true, top3)            # {'CP': .., 'CR': .., 'CF1': .., 'OP': .., 'OR': .., 'OF1': ..}
    exact_match(y_true, top3)    # subset accuracy (the whole set right)
    example_prf(y_true, top3)    # {'EP': .., 'ER': .., 'EF1': ..}: per image, then the mean
    hamming_loss(y_true, top3)   # wrong (image, label) pairs / (N K); lower is better

The conventions (empty classes, empty sets, ignored entries) are in `metrics.py`'s docstring,
which holds the table of metrics (`metrics.METRICS`) these functions are entries of; the
ranking metrics (AP, MAP@10) are in `ranking.py`.
"""

from __future__ import annotations

import numpy as np

from cnn_rnn_tf import ranking

# ----------------------------------------------------------------------------- helpers


def _ratio(num, den):
  """num / den elementwise, 0 where den == 0 (works on scalars and arrays)."""
  num = np.asarray(num, dtype=np.float64)
  den = np.asarray(den, dtype=np.float64)
  return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def _f1(p: float, r: float) -> float:
  return 2.0 * p * r / (p + r) if p + r > 0 else 0.0


# ----------------------------------------------------------------------------- P / R / F1


def true_pred(y_true, y_pred) -> tuple[np.ndarray, np.ndarray]:
  y_true = ranking.as_bool_2d("y_true", y_true)
  y_pred = ranking.as_bool_2d("y_pred", y_pred)
  ranking.check_same_shape("y_true", y_true, "y_pred", y_pred)
  return y_true, y_pred


def _counted(y_true, y_pred, ignore) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validated (y_true, y_pred, counted): both sets without their ignored entries, and the
  bool [N, K] of the entries that count (all of them when `ignore` is None)."""
  y_true, y_pred = true_pred(y_true, y_pred)
  counted = ~ranking.as_ignore(ignore, y_true.shape)
  return y_true & counted, y_pred & counted, counted


def _counts(y_true, y_pred, ignore=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Validated (Nc, Np, Ng), each int [K], over the entries not ignored."""
  y_true, y_pred, _ = _counted(y_true, y_pred, ignore)
  n_correct = (y_true & y_pred).sum(axis=0)  # Nc [K]
  return n_correct, y_pred.sum(axis=0), y_true.sum(axis=0)


def per_class_prf(y_true, y_pred, ignore=None) -> tuple[np.ndarray, np.ndarray]:
  """Per-class precision Nc/Np and recall Nc/Ng.

  Args:
    y_true: bool [N, K] ground truth.
    y_pred: bool [N, K] predicted labels.
    ignore: bool [N, K] or None: entries left out (the module docstring).

  Returns:
    (precision float [K], recall float [K]). Precision of a never-predicted class (Np = 0)
    is 0; recall of a class with no ground truth (Ng = 0) is NaN.
  """
  n_correct, n_pred, n_gt = _counts(y_true, y_pred, ignore)
  precision = _ratio(n_correct, n_pred)
  recall = np.where(n_gt > 0, _ratio(n_correct, n_gt), np.nan)
  return precision, recall


def prf(y_true, y_pred, ignore=None) -> dict[str, float]:
  """Per-class (C-) and overall (O-) precision, recall and F1 of a label prediction.

  Per class c: Nc = correct predictions of c, Np = predictions of c, Ng = ground truth of c.

    CP = mean_c Nc/Np (over all K classes; 0 for a never-predicted class)
    CR = mean_c Nc/Ng (over the classes with Ng > 0; 0 if there is none)
    CF1 = 2 CP CR / (CP + CR)          (harmonic mean of CP and CR)
    OP = sum Nc / sum Np,  OR = sum Nc / sum Ng,  OF1 = 2 OP OR / (OP + OR)

  Args:
    y_true: bool [N, K] ground truth.
    y_pred: bool [N, K] predicted labels (e.g. the top-3 mask).
    ignore: bool [N, K] or None: entries counted in none of Nc, Np, Ng.

  Returns:
    {'CP', 'CR', 'CF1', 'OP', 'OR', 'OF1'}: python floats in [0, 1].
  """
  n_correct, n_pred, n_gt = _counts(y_true, y_pred, ignore)
  precision = _ratio(n_correct, n_pred)
  has_gt = n_gt > 0
  cp = float(precision.mean())
  cr = float(_ratio(n_correct[has_gt], n_gt[has_gt]).mean()) if has_gt.any() else 0.0
  op = float(_ratio(n_correct.sum(), n_pred.sum()))
  o_r = float(_ratio(n_correct.sum(), n_gt.sum()))
  return {"CP": cp, "CR": cr, "CF1": _f1(cp, cr), "OP": op, "OR": o_r, "OF1": _f1(op, o_r)}


# ----------------------------------------------------------------------------- label sets


def exact_match(y_true, y_pred, ignore=None) -> float:
  """Subset accuracy: the fraction of images whose predicted set equals the true set
  (= sklearn.metrics.accuracy_score on multi-label input).

  Args:
    y_true: bool [N, K] ground truth.
    y_pred: bool [N, K] predicted labels.
    ignore: bool [N, K] or None: entries not compared.
  """
  y_true, y_pred, _ = _counted(y_true, y_pred, ignore)
  return float((y_true == y_pred).all(axis=1).mean())


def example_prf(y_true, y_pred, ignore=None) -> dict[str, float]:
  """Example-based precision, recall and F1: per image, then the mean over the images.

  With T the true and P the predicted set of an image:
    EP = mean |T & P| / |P|,  ER = mean |T & P| / |T|,  EF1 = mean 2 |T & P| / (|T| + |P|).
  An empty set's ratio counts as 1 (= sklearn's precision_recall_fscore_support(
  average="samples", zero_division=1)): an empty prediction has precision 1, an image
  without labels recall 1, and an empty prediction for an image without labels F1 1 (it is
  right); an empty prediction for an image with labels has F1 0.

  Args:
    y_true: bool [N, K] ground truth.
    y_pred: bool [N, K] predicted labels.
    ignore: bool [N, K] or None: entries left out of both sets.

  Returns:
    {'EP', 'ER', 'EF1'}: python floats in [0, 1].
  """
  y_true, y_pred, _ = _counted(y_true, y_pred, ignore)
  n_correct = (y_true & y_pred).sum(axis=1)  # [N]
  n_pred, n_true = y_pred.sum(axis=1), y_true.sum(axis=1)  # [N] each
  ratio = lambda num, den: np.where(den > 0, _ratio(num, den), 1.0)  # empty set: 1
  return {"EP": float(ratio(n_correct, n_pred).mean()),
          "ER": float(ratio(n_correct, n_true).mean()),
          "EF1": float(ratio(2 * n_correct, n_true + n_pred).mean())}


def hamming_loss(y_true, y_pred, ignore=None) -> float:
  """The fraction of (image, label) pairs predicted wrongly (= sklearn.metrics.hamming_loss);
  lower is better.

  Args:
    y_true: bool [N, K] ground truth.
    y_pred: bool [N, K] predicted labels.
    ignore: bool [N, K] or None: entries left out (of the count and of its denominator).
  """
  y_true, y_pred, counted = _counted(y_true, y_pred, ignore)
  return float(_ratio((y_true != y_pred).sum(), counted.sum()))
