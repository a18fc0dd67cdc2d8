"""Multi-label metrics of the paper (section 4.1), in NumPy only.

Inputs are per image and label: `y_true` bool [N, K] (ground truth), a prediction `y_pred`
bool [N, K] (the labels the model outputs) and, for average precision, `scores` float [N, K]
(any ranking score, higher = more likely).

    top3 = rule_masks.path_mask(decoded_ids, num_labels, k=3)   # bool [N, K] from paths
    prf(y_true, top3)            # {'CP': .., 'CR': .., 'CF1': .., 'OP': .., 'OR': .., 'OF1': ..}
    ap = average_precision(y_true, scores, "voc07")  # float [K], NaN for a class with no positive
    mean_ap(ap)                  # float
    map_at_k(y_true, scores, k=10)                   # MAP@10 (NUS-WIDE)
    exact_match(y_true, top3)    # subset accuracy (the whole set right)
    example_prf(y_true, top3)    # {'EP': .., 'ER': .., 'EF1': ..}: per image, then the mean
    hamming_loss(y_true, top3)   # wrong (image, label) pairs / (N K); lower is better
    report = compute_all(y_true, top3, every, scores, vocab.names)

All values are fractions in [0, 1]; `metrics_markdown.markdown_table` shows them as
percentages. The masks of the label-set rules (what counts as predicted) are in
`rule_masks.py`.

Two tables name what the rest of the package reads (metrics.json, metrics.md, the demo
report, TensorBoard, the `train.keep_best` keys and their direction):

    RULES["top3"]      # Rule(definition, display_name, needs_thresholds): a label-set rule
                       # (the named decoders' come from `decoders.DECODERS`)
    METRICS["OF1"]     # Metric(fn, higher_is_better, display_name, of="sets" | "scores")
    metric_keys()      # ['top3.CP', ..., 'mAP_noninterp', 'MAP@10'] (keep_best spelling)

Adding a metric is one function and one entry, e.g.

    METRICS["size_error"] = Metric(lambda y_true, y_pred: ..., False, "size error")

Conventions (the paper leaves these open; each is tested in tests/test_metrics.py):

- Per-class precision of a class that is never predicted is 0 (as in the paper's COCO
  discussion: "zero prediction ... resulting in zero precision"); C-P averages over all K.
- Per-class recall of a class with no ground truth is undefined (NaN) and C-R averages over
  the classes that have ground truth. O-P, O-R, C-F1, O-F1 with a zero denominator are 0.
- C-F1 is the harmonic mean of C-P and C-R (paper's definition), not the mean of per-class F1.
- Average precision: tied scores form one threshold (all of them enter the ranking together,
  as in scikit-learn), so the result does not depend on the order of the images.
- Top-k of a score row (`top_k_mask`, `map_at_k`): ties are broken by the lower label id.
- Example-based P / R / F1 with an empty set: the ratio counts as 1 (scikit-learn's
  `average="samples"` with `zero_division=1`): an empty prediction for an image without
  labels scores 1 on all three; for an image with labels, precision 1, recall and F1 0.
- Ignored entries (`ignore`, bool [N, K]: VOC's difficult-only classes, `data.voc_difficult`
  = "ignore"): an ignored (image, label) entry is left out of every metric, as if that label
  did not exist for that image: not a true, false or missed positive for C-/O-P/R/F1, left
  out of the class's AP ranking and of the image's MAP@10 ranking, and not compared by exact
  match, E-P/E-R/E-F1 (the sets are compared on the other labels) or Hamming loss (whose
  denominator counts the other entries). A metric registered in `METRICS` whose fn has no
  `ignore` parameter is computed on every entry.
"""

from __future__ import annotations

import inspect
import math
from typing import Callable, Mapping, NamedTuple, Sequence

import numpy as np

from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import multilabel
# The set metrics of `multilabel.py`, under the names the package has always used.
from cnn_rnn_tf.multilabel import (  # pylint: disable=unused-import
    exact_match, example_prf, hamming_loss, per_class_prf, prf)
from cnn_rnn_tf import ranking

PRF_KEYS = ("CP", "CR", "CF1", "OP", "OR", "OF1")

# The ranking metrics of `ranking.py`, under the names the package has always used.
AP_METHODS = ranking.AP_METHODS
average_precision = ranking.average_precision
mean_ap = ranking.mean_ap
map_at_k = ranking.map_at_k
top_k_mask = ranking.top_k_mask


# ----------------------------------------------------------------------------- the tables


Rule = decoders_lib.Rule

# The rules of every head's own set; the named decoders' rules follow them in `RULES`.
OWN_RULES: dict[str, Rule] = {
    "top3": Rule("at most 3 labels: the first 3 of the CNN-RNN's path; BCE's 3 most probable "
                 "labels among those with p >= 0.5", "top-3"),
    "all": Rule("every label of the CNN-RNN's path; every BCE label with p >= 0.5", "all"),
    "top3_paper": Rule("the paper's rule (section 4.1): the first 3 labels of the CNN-RNN's "
                       "path; BCE's 3 most probable labels, no threshold", "top-3 (paper)"),
}


class _Rules(Mapping):
  """OWN_RULES, then each named decoder's rules (`decoders.rules_of`), read from the decoder
  table when used (so a decoder registered there is a rule here)."""

  def _all(self) -> dict[str, Rule]:
    return {**OWN_RULES, **{rule: spec for name in decoders_lib.DECODERS
                            for rule, spec in decoders_lib.rules_of(name).items()}}

  def __getitem__(self, rule):
    return self._all()[rule]

  def __iter__(self):
    return iter(self._all())

  def __len__(self):
    return len(self._all())


# The label-set rules, in table order: each is a key of metrics.json with every "sets" metric
# of `METRICS` under it; their masks are in `rule_masks.py`.
RULES: Mapping[str, Rule] = _Rules()


class Metric(NamedTuple):
  """A metric of the report (an entry of `METRICS`).

  of="sets": fn(y_true bool [N, K], y_pred bool [N, K]) -> float, computed for every rule
  (metrics.json key "<rule>"."<key>", keep_best key "<rule>.<key>").
  of="scores": fn(y_true bool [N, K], scores float [N, K]) -> float, computed once on the
  ranking scores (metrics.json and keep_best key "<key>").
  A NaN result (undefined) is written as None in metrics.json.
  """
  fn: Callable[[np.ndarray, np.ndarray], float]
  higher_is_better: bool  # the direction train.keep_best takes
  display_name: str  # its column in the Markdown tables
  of: str = "sets"  # "sets" | "scores"


def _prf_metric(key: str) -> Callable[..., float]:
  return lambda y_true, y_pred, ignore=None: prf(y_true, y_pred, ignore)[key]


def _map_metric(method: str) -> Callable[..., float]:
  return lambda y_true, scores, ignore=None: mean_ap(
      average_precision(y_true, scores, method, ignore))


def _example_metric(key: str) -> Callable[..., float]:
  return lambda y_true, y_pred, ignore=None: example_prf(y_true, y_pred, ignore)[key]


def _value(key: str, y_true, x, ignore) -> float | None:
  """METRICS[key] of (y_true, x), with `ignore` when there is one and its fn takes it."""
  fn = METRICS[key].fn
  if ignore is not None and "ignore" in inspect.signature(fn).parameters:
    return _json_float(fn(y_true, x, ignore=ignore))
  return _json_float(fn(y_true, x))


# Every metric of the report, in table order. Adding a metric: one function and one entry.
METRICS: dict[str, Metric] = {
    "CP": Metric(_prf_metric("CP"), True, "C-P"),
    "CR": Metric(_prf_metric("CR"), True, "C-R"),
    "CF1": Metric(_prf_metric("CF1"), True, "C-F1"),
    "OP": Metric(_prf_metric("OP"), True, "O-P"),
    "OR": Metric(_prf_metric("OR"), True, "O-R"),
    "OF1": Metric(_prf_metric("OF1"), True, "O-F1"),
    "exact_match": Metric(exact_match, True, "exact match"),
    "EP": Metric(_example_metric("EP"), True, "E-P"),
    "ER": Metric(_example_metric("ER"), True, "E-R"),
    "EF1": Metric(_example_metric("EF1"), True, "E-F1"),
    "hamming_loss": Metric(hamming_loss, False, "Hamming loss"),
    "mAP_voc07": Metric(_map_metric("voc07"), True, "mAP (VOC07 11-pt)", "scores"),
    "mAP_area": Metric(_map_metric("area"), True, "mAP (area)", "scores"),
    "mAP_noninterp": Metric(_map_metric("noninterp"), True, "mAP (non-interp)", "scores"),
    "MAP@10": Metric(lambda y_true, scores, ignore=None: map_at_k(y_true, scores, 10, ignore),
                     True, "MAP@10", "scores"),
}


def set_metrics() -> list[str]:
  """The keys of `METRICS` computed per rule, in table order."""
  return [k for k, m in METRICS.items() if m.of == "sets"]


def score_metrics() -> list[str]:
  """The keys of `METRICS` computed on the ranking scores, in table order."""
  return [k for k, m in METRICS.items() if m.of == "scores"]


def metric_keys(rules=None) -> list[str]:
  """Dotted keys "<rule>.<metric>" of `rules` x the set metrics, then the score metrics.

      metric_keys()   # ['top3.CP', ..., 'all_calibrated.OF1', 'mAP_voc07', ..., 'MAP@10']
  """
  rules = tuple(RULES) if rules is None else rules
  return [f"{r}.{m}" for r in rules for m in set_metrics()] + score_metrics()


def keep_best_keys() -> list[str]:
  """The keys `train.keep_best` may name: those the trainer's evaluation reports (the rules
  that need no calibrated thresholds)."""
  return metric_keys([r for r, rule in RULES.items() if not rule.needs_thresholds])


def higher_is_better(key: str) -> bool:
  """The direction of a dotted metric key ("top3.OF1", "mAP_noninterp"), from `METRICS`."""
  name = key.rpartition(".")[2]
  if name not in METRICS:
    raise KeyError(f"Metric {key!r}: {name!r} is not a metric of metrics.METRICS "
                   f"({list(METRICS)}).")
  return METRICS[name].higher_is_better


def scalars(report: Mapping) -> dict[str, float]:
  """{"top3/OF1": 0.61, ..., "mAP_noninterp": 0.7}: every metric key of the tables that the
  report has, as TensorBoard tags; an undefined one (None) is left out."""
  out = {}
  for key in metric_keys([r for r in RULES if r in report]):
    rule, _, name = key.rpartition(".")
    node = report[rule] if rule else report
    if isinstance(node, Mapping) and node.get(name) is not None:
      out[key.replace(".", "/")] = float(node[name])
  return out


# ----------------------------------------------------------------------------- report


def _json_float(x) -> float | None:
  x = float(x)
  return None if math.isnan(x) else x


def rule_metrics(y_true, y_pred, ignore=None) -> dict[str, float | None]:
  """Every set metric of `METRICS` of one prediction: {'CP': .., ..., 'hamming_loss': ..}
  (a rule's entry of `compute_all`; NaN -> None); `ignore`: entries left out."""
  y_true, y_pred = multilabel.true_pred(y_true, y_pred)
  return {k: _value(k, y_true, y_pred, ignore) for k in set_metrics()}


def compute_all(y_true, top3_pred, all_pred, scores, label_names: Sequence[str], *,
                rules: Mapping[str, np.ndarray] | None = None, ignore=None) -> dict:
  """The evaluation report of one head on one split (JSON-serializable, NaN -> None).

  Args:
    y_true: bool [N, K] ground truth.
    top3_pred: bool [N, K], the top-3 prediction (paper's k = 3 setting).
    all_pred: bool [N, K], the full prediction (whole decoded path / thresholded scores).
    scores: float [N, K] ranking scores for AP and MAP@10.
    label_names: K names, in label id order.
    rules: more predictions, rule name -> bool [N, K] (e.g. "top3_paper"); each gets a dict
      of the set metrics under its name.
    ignore: bool [N, K] or None: entries left out of every metric (the module docstring);
      per_class then also has 'num_ignored'.

  Returns:
    {'top3': {set metric: value}, 'all': {...}, <each rule>: {...}, <each score metric of
     `METRICS`> ('mAP_voc07', 'mAP_area', 'mAP_noninterp', 'MAP@10'), 'num_images',
     'per_class': {name: {'AP' (noninterp), 'AP_voc07', 'AP_area', 'precision', 'recall'
     (of top3), 'num_gt'}}}. The set metrics are those of `METRICS` with of="sets" ('CP',
     'CR', 'CF1', 'OP', 'OR', 'OF1', ...).
  """
  y_true = ranking.as_bool_2d("y_true", y_true)
  top3_pred = ranking.as_bool_2d("top3_pred", top3_pred)
  all_pred = ranking.as_bool_2d("all_pred", all_pred)
  scores = ranking.as_scores_2d("scores", scores)
  for name, x in (("top3_pred", top3_pred), ("all_pred", all_pred), ("scores", scores)):
    ranking.check_same_shape("y_true", y_true, name, x)
  rules = dict(rules or {})
  for name in rules:
    if name in ("top3", "all"):
      raise ValueError(f"rules[{name!r}]: {name!r} is given as its own argument already.")
    rules[name] = ranking.as_bool_2d(f"rules[{name!r}]", rules[name])
    ranking.check_same_shape("y_true", y_true, f"rules[{name!r}]", rules[name])
  label_names = [str(n) for n in label_names]
  if len(label_names) != y_true.shape[1]:
    raise ValueError(f"Got {len(label_names)} label names for y_true of shape {y_true.shape}.")
  if len(set(label_names)) != len(label_names):
    raise ValueError("label_names has duplicates.")

  if ignore is not None:
    ignore = ranking.as_ignore(ignore, y_true.shape)
  ap = {m: average_precision(y_true, scores, m, ignore) for m in AP_METHODS}
  precision, recall = per_class_prf(y_true, top3_pred, ignore)
  num_gt = (y_true & ~ranking.as_ignore(ignore, y_true.shape)).sum(axis=0)
  per_class = {}
  for c, name in enumerate(label_names):
    per_class[name] = {
        "AP": _json_float(ap["noninterp"][c]),
        "AP_voc07": _json_float(ap["voc07"][c]),
        "AP_area": _json_float(ap["area"][c]),
        "precision": _json_float(precision[c]),
        "recall": _json_float(recall[c]),
        "num_gt": int(num_gt[c]),
        **({} if ignore is None else {"num_ignored": int(ignore[:, c].sum())}),
    }
  return {
      "top3": rule_metrics(y_true, top3_pred, ignore),
      "all": rule_metrics(y_true, all_pred, ignore),
      **{name: rule_metrics(y_true, pred, ignore) for name, pred in rules.items()},
      **{k: _value(k, y_true, scores, ignore) for k in score_metrics()},
      "num_images": int(y_true.shape[0]),
      "per_class": per_class,
  }
