"""What counts as predicted: the masks of the label-set rules (`metrics.RULES`), in NumPy.

Each named decoder (`decoders.DECODERS`) gives the masks of its rules from a head's NumPy
predictions (the outputs of `inference.predict_from_features`):

    rule_masks("cnn_rnn", pred, K, thresholds=None)   # {rule: bool [N, K]}
    path_mask(pred["labels"], K, k=3)                 # the first 3 labels of each path

A decoder without its own mask function gets `set_masks` (the naming rule of `decoders`):
top3_<name> = the 3 labels of its set with the highest label_scores, all_<name> = the set.
"""

from __future__ import annotations

import numpy as np

from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import ranking


def rule_masks(head: str, pred, num_labels: int,
               thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """{rule: bool [N, K]} of every decoder of `head` (NumPy `pred`: "labels",
  "label_scores", and where present "marginal_scores" and "set_<decoder>"; `thresholds`:
  float [K] calibrated ones, which add the rules that need them)."""
  masks = {}
  for name in decoders_lib.head_decoders(head):
    fn = decoders_lib.DECODERS[name].masks_fn
    masks.update(set_masks(name, pred, num_labels, thresholds) if fn is None else
                 decoders_lib.resolve(fn)(name, pred, num_labels, thresholds))
  return masks


def path_mask(label_ids, num_labels: int, k: int | None = None) -> np.ndarray:
  """Labels of decoded label paths as a mask: the CNN-RNN head's "top-k" and "all" outputs.

  A path is read like `LabelVocab.decode`: up to its first id outside [0, num_labels) (END =
  num_labels, PAD = -1, or anything else); then its first k labels are kept.

  Args:
    label_ids: int [N, L], e.g. [[4, 0, END, -1], [2, END, -1, -1]].
    num_labels: K.
    k: labels kept per path; None keeps the whole path.

  Returns:
    bool [N, K].
  """
  label_ids = np.asarray(label_ids)
  if label_ids.ndim != 2:
    raise ValueError(f"label_ids must be 2-D [N, L], got shape {label_ids.shape}.")
  if label_ids.shape[0] == 0:
    raise ValueError("no images")
  if not np.issubdtype(label_ids.dtype, np.integer):
    raise ValueError(f"label_ids must be integers, got dtype {label_ids.dtype}.")
  if num_labels < 1:
    raise ValueError(f"num_labels must be >= 1, got {num_labels!r}.")
  if k is not None:
    label_ids = label_ids[:, :ranking.check_k(k)]
  valid = (label_ids >= 0) & (label_ids < num_labels)  # [N, L']
  in_path = np.cumprod(valid, axis=1).astype(bool)  # False from the first invalid id on
  rows = np.broadcast_to(np.arange(label_ids.shape[0])[:, None], label_ids.shape)
  mask = np.zeros((label_ids.shape[0], num_labels), dtype=bool)
  mask[rows[in_path], label_ids[in_path]] = True
  return mask


def calibrated(probs: np.ndarray, thresholds, num_labels: int) -> np.ndarray:
  """bool [N, K]: probs >= the per-class thresholds float [K]."""
  thresholds = np.asarray(thresholds, np.float64)
  if thresholds.shape != (num_labels,):
    raise ValueError(f"thresholds must be [K] = [{num_labels}], got shape {thresholds.shape}.")
  return np.asarray(probs) >= thresholds[np.newaxis, :]


def top3_and_all(name: str, chosen: np.ndarray, scores: np.ndarray) -> dict:
  """{"top3_<name>", "all_<name>"}: a decoder's set, and its 3 best-ranked labels."""
  return {f"top3_{name}": ranking.top_k_mask(np.where(chosen, scores, -np.inf), 3) & chosen,
          f"all_{name}": chosen}


def set_masks(name: str, pred, num_labels: int, thresholds=None) -> dict:
  """top3_<name> / all_<name> of the set `set_<name>` ranked by label_scores (none without
  the set: e.g. the cnn_rnn's expected_f1 without samples)."""
  del num_labels, thresholds
  if f"set_{name}" not in pred:
    return {}
  return top3_and_all(name, np.asarray(pred[f"set_{name}"], bool),
                      np.asarray(pred["label_scores"]))


def path_masks(name: str, pred, num_labels: int, thresholds=None) -> dict:
  """top3 and top3_paper: the first 3 labels of the path; all: the whole path."""
  del name, thresholds
  labels = pred["labels"]
  top3 = path_mask(labels, num_labels, k=3)
  return {"top3": top3, "all": path_mask(labels, num_labels), "top3_paper": top3}


def threshold_masks(name: str, pred, num_labels: int, thresholds=None) -> dict:
  """top3: the 3 highest probabilities among those >= 0.5; all: every p >= 0.5;
  top3_paper: the 3 highest probabilities; with per-class `thresholds` [K] also
  top3_calibrated / all_calibrated: the same with p >= thresholds[k] instead of 0.5."""
  del name
  scores = np.asarray(pred["label_scores"])
  masks = {"top3": ranking.top_k_mask(scores, 3, threshold=0.5), "all": scores >= 0.5,
           "top3_paper": ranking.top_k_mask(scores, 3)}
  if thresholds is not None:
    above = calibrated(scores, thresholds, num_labels)  # [N, K]
    masks["top3_calibrated"] = masks["top3_paper"] & above
    masks["all_calibrated"] = above
  return masks


def marginals_masks(name: str, pred, num_labels: int, thresholds=None) -> dict:
  """With `thresholds` [K] (fitted on the marginals): top3_marginals / all_marginals, the
  marginal probabilities >= them (none without thresholds)."""
  if thresholds is None or "marginal_scores" not in pred:
    return {}
  scores = np.asarray(pred["marginal_scores"])
  return top3_and_all(name, calibrated(scores, thresholds, num_labels), scores)
