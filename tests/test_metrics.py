"""Tests of cnn_rnn_tf.metrics: hand-computed cases, then agreement with scikit-learn."""

import json
import math

import numpy as np
import pytest

from cnn_rnn_tf import metrics
from cnn_rnn_tf import metrics_markdown
from cnn_rnn_tf import rule_masks

B = np.array  # short for the small hand-written cases


# ----------------------------------------------------------------------------- prf


def test_prf_hand_computed():
  y_true = B([[1, 1, 0],
              [1, 0, 0],
              [0, 1, 1],
              [0, 0, 1]], dtype=bool)
  y_pred = B([[1, 0, 0],
              [1, 1, 1],
              [0, 1, 0],
              [1, 0, 1]], dtype=bool)
  # class 0: Nc=2 (img 0, 1), Np=3, Ng=2 -> P 2/3, R 1
  # class 1: Nc=1 (img 2),    Np=2, Ng=2 -> P 1/2, R 1/2
  # class 2: Nc=1 (img 3),    Np=2, Ng=2 -> P 1/2, R 1/2
  # CP = (2/3 + 1/2 + 1/2) / 3 = 5/9, CR = (1 + 1/2 + 1/2) / 3 = 2/3
  # CF1 = 2 (5/9)(2/3) / (5/9 + 2/3) = (20/27) / (11/9) = 20/33
  # OP = 4/7, OR = 4/6 = 2/3, OF1 = 2 (4/7)(2/3) / (4/7 + 2/3) = (16/21) / (26/21) = 8/13
  got = metrics.prf(y_true, y_pred)
  assert set(got) == {"CP", "CR", "CF1", "OP", "OR", "OF1"}
  assert all(type(v) is float for v in got.values())
  expected = {"CP": 5 / 9, "CR": 2 / 3, "CF1": 20 / 33, "OP": 4 / 7, "OR": 2 / 3, "OF1": 8 / 13}
  for key, value in expected.items():
    assert got[key] == pytest.approx(value), key
  precision, recall = metrics.per_class_prf(y_true, y_pred)
  np.testing.assert_allclose(precision, [2 / 3, 1 / 2, 1 / 2])
  np.testing.assert_allclose(recall, [1, 1 / 2, 1 / 2])


def test_cf1_is_harmonic_mean_of_cp_cr_not_mean_of_f1():
  # class 0: P 1, R 1 (F1 1); class 1: P 1/2 (Np 2, Nc 1), R 1 (F1 2/3).
  y_true = B([[1, 1], [0, 0]], dtype=bool)
  y_pred = B([[1, 1], [0, 1]], dtype=bool)
  got = metrics.prf(y_true, y_pred)
  # CP = 3/4, CR = 1 -> CF1 = 2 (3/4) / (7/4) = 6/7; the mean of F1s would be 5/6.
  assert got["CF1"] == pytest.approx(6 / 7)


def test_never_predicted_class_has_precision_zero():
  y_true = B([[1, 1], [0, 1]], dtype=bool)
  y_pred = B([[1, 0], [1, 0]], dtype=bool)
  # class 0: Nc=1, Np=2, Ng=1 -> P 1/2, R 1; class 1: Np=0 -> P 0, Nc=0, Ng=2 -> R 0
  # CP = 1/4, CR = 1/2, CF1 = 2 (1/8) / (3/4) = 1/3
  # OP = 1/2, OR = 1/3, OF1 = 2 (1/6) / (5/6) = 2/5
  precision, recall = metrics.per_class_prf(y_true, y_pred)
  np.testing.assert_array_equal(precision, [0.5, 0.0])
  np.testing.assert_array_equal(recall, [1.0, 0.0])
  got = metrics.prf(y_true, y_pred)
  expected = {"CP": 1 / 4, "CR": 1 / 2, "CF1": 1 / 3, "OP": 1 / 2, "OR": 1 / 3, "OF1": 2 / 5}
  for key, value in expected.items():
    assert got[key] == pytest.approx(value), key


def test_class_without_ground_truth_is_left_out_of_cr():
  y_true = B([[1, 0], [1, 0]], dtype=bool)
  y_pred = B([[1, 1], [0, 0]], dtype=bool)
  # class 0: Nc=1, Np=1, Ng=2 -> P 1, R 1/2; class 1: Ng=0 -> R NaN, Np=1, Nc=0 -> P 0
  # CP = (1 + 0) / 2 = 1/2 (all classes), CR = 1/2 (class 0 only), CF1 = 1/2
  # OP = 1/2, OR = 1/2, OF1 = 1/2
  precision, recall = metrics.per_class_prf(y_true, y_pred)
  np.testing.assert_array_equal(precision, [1.0, 0.0])
  assert recall[0] == 0.5 and np.isnan(recall[1])
  got = metrics.prf(y_true, y_pred)
  for key in metrics.PRF_KEYS:
    assert got[key] == pytest.approx(0.5), key


def test_prf_degenerate_inputs_give_zero_not_nan():
  y_true = np.zeros((2, 3), dtype=bool)
  y_pred = np.zeros((2, 3), dtype=bool)
  assert metrics.prf(y_true, y_pred) == {k: 0.0 for k in metrics.PRF_KEYS}


def test_prf_accepts_zero_one_ints():
  y_true = B([[1, 0], [0, 1]])
  assert metrics.prf(y_true, y_true)["OF1"] == 1.0


def test_input_validation_names_shapes_and_values():
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(2, 4\)"):
    metrics.prf(np.zeros((2, 3), bool), np.zeros((2, 4), bool))
  with pytest.raises(ValueError, match=r"2-D.*\(3,\)"):
    metrics.prf(np.zeros(3, bool), np.zeros(3, bool))
  with pytest.raises(ValueError, match="no images"):
    metrics.prf(np.zeros((0, 3), bool), np.zeros((0, 3), bool))
  with pytest.raises(ValueError, match="0.7"):
    metrics.prf(np.zeros((1, 2), bool), B([[0.7, 0.0]]))
  with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
    metrics.average_precision(np.zeros((2, 3), bool), np.zeros((3, 2)), "area")
  with pytest.raises(ValueError, match="no images"):
    metrics.average_precision(np.zeros((0, 3), bool), np.zeros((0, 3)), "area")
  with pytest.raises(ValueError, match="NaN"):
    metrics.average_precision(B([[True]]), B([[np.nan]]), "area")


# ----------------------------------------------------------------------------- AP


def _column(relevance):
  """A single-class problem: images ranked in the given order (strictly decreasing scores)."""
  y_true = B(relevance, dtype=bool)[:, None]  # [N, 1]
  scores = np.arange(len(relevance), 0, -1, dtype=np.float64)[:, None]  # [N, 1]
  return y_true, scores


def test_ap_ranking_101001():
  y_true, scores = _column([1, 0, 1, 0, 0, 1])
  # Points (recall, precision) by rank: (1/3, 1) (1/3, 1/2) (2/3, 2/3) (2/3, 1/2) (2/3, 2/5)
  # (1, 1/2).
  # noninterp: precision at the positives 1, 2/3, 1/2 -> (1 + 2/3 + 1/2) / 3 = 13/18.
  # area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 1/2 on (2/3, 1] -> (1 + 2/3 + 1/2)/3 = 13/18.
  # voc07: t = 0, .1, .2, .3 -> 1; t = .4, .5, .6 -> 2/3; t = .7, .8, .9, 1 -> 1/2
  #   -> (4 + 3 (2/3) + 4 (1/2)) / 11 = 8/11.
  assert metrics.average_precision(y_true, scores, "noninterp")[0] == pytest.approx(13 / 18)
  assert metrics.average_precision(y_true, scores, "area")[0] == pytest.approx(13 / 18)
  assert metrics.average_precision(y_true, scores, "voc07")[0] == pytest.approx(8 / 11)


def test_ap_ranking_011_interpolation_differs():
  y_true, scores = _column([0, 1, 1])
  # Points: (0, 0) (1/2, 1/2) (1, 2/3).
  # noninterp: (1/2 + 2/3) / 2 = 7/12.
  # area: the envelope is 2/3 everywhere (the last point dominates) -> 2/3.
  # voc07: every t has the point (1, 2/3) at recall >= t -> 2/3.
  assert metrics.average_precision(y_true, scores, "noninterp")[0] == pytest.approx(7 / 12)
  assert metrics.average_precision(y_true, scores, "area")[0] == pytest.approx(2 / 3)
  assert metrics.average_precision(y_true, scores, "voc07")[0] == pytest.approx(2 / 3)


def test_ap_voc07_recall_exactly_on_a_grid_point():
  # 10 positives, the 3 first ranked, then a negative, then the 7 others.
  # Points: recall 3/10 at precision 1, then precision drops; 7 more positives at ranks 5..11
  # give precision 4/5 .. 10/11, the best at recall >= 0.4 being 10/11 (the last).
  # voc07: t = 0 .. 0.3 -> 1 (4 points; needs recall 3/10 >= t = 0.3 exactly),
  #   t = 0.4 .. 1 -> 10/11 (7 points) -> (4 + 70/11) / 11 = 114/121.
  y_true, scores = _column([1, 1, 1, 0] + [1] * 7)
  assert metrics.average_precision(y_true, scores, "voc07")[0] == pytest.approx(114 / 121)


def test_ap_perfect_ranking_is_one_and_no_positive_is_nan():
  y_true = B([[1, 0], [0, 0], [1, 0]], dtype=bool)
  scores = B([[0.9, 0.1], [0.2, 0.5], [0.8, 0.3]])
  for method in metrics.AP_METHODS:
    ap = metrics.average_precision(y_true, scores, method)
    assert ap[0] == pytest.approx(1.0)
    assert np.isnan(ap[1])
    assert metrics.mean_ap(ap) == pytest.approx(1.0)


def test_ap_ties_form_one_threshold():
  # Scores 0.9, 0.5, 0.5, 0.1 with the tie holding one positive and one negative:
  # thresholds give (recall, precision) = (1/2, 1), (1, 2/3), (1, 1/2) -> noninterp
  # 1/2 (1) + 1/2 (2/3) = 5/6, whichever of the tied images is listed first.
  scores = B([0.9, 0.5, 0.5, 0.1])[:, None]
  for relevance in ([1, 1, 0, 0], [1, 0, 1, 0]):
    y_true = B(relevance, dtype=bool)[:, None]
    assert metrics.average_precision(y_true, scores, "noninterp")[0] == pytest.approx(5 / 6)


def test_ap_bad_method():
  with pytest.raises(ValueError, match="'voc12'"):
    metrics.average_precision(B([[True]]), B([[1.0]]), "voc12")


def test_mean_ap_ignores_nan():
  assert metrics.mean_ap([0.5, np.nan, 1.0]) == 0.75
  assert math.isnan(metrics.mean_ap([np.nan, np.nan]))


# ----------------------------------------------------------------------------- top-k, MAP@k


def test_top_k_mask_with_ties_and_threshold():
  scores = B([[0.1, 0.9, 0.5, 0.7],
              [0.5, 0.5, 0.5, 0.2]])
  np.testing.assert_array_equal(metrics.top_k_mask(scores, 2),
                                [[0, 1, 0, 1],
                                 [1, 1, 0, 0]])  # tie in row 1: lower ids win
  np.testing.assert_array_equal(metrics.top_k_mask(scores, 3, threshold=0.6),
                                [[0, 1, 0, 1],
                                 [0, 0, 0, 0]])
  assert metrics.top_k_mask(scores, 10).all()  # k >= K keeps every label
  with pytest.raises(ValueError, match="0"):
    metrics.top_k_mask(scores, 0)


def test_map_at_k_hand_computed():
  scores = np.tile(B([0.9, 0.8, 0.7, 0.6, 0.5]), (4, 1))  # every image ranks 0, 1, 2, 3, 4
  y_true = B([[1, 0, 1, 0, 0],   # rel 1 0 1: (P@1 + P@3) / min(3, 2) = (1 + 2/3) / 2 = 5/6
              [0, 0, 0, 0, 1],   # nothing in the top 3: 0
              [0, 0, 0, 0, 0],   # no positive: not counted
              [1, 1, 1, 1, 1]],  # (1 + 1 + 1) / min(3, 5) = 1
             dtype=bool)
  # (5/6 + 0 + 1) / 3 = 11/18
  assert metrics.map_at_k(y_true, scores, k=3) == pytest.approx(11 / 18)
  assert math.isnan(metrics.map_at_k(y_true[2:3], scores[2:3], k=3))


# ----------------------------------------------------------------------------- path_mask

END = 5  # = num_labels


def test_path_mask_padding_and_end():
  label_ids = B([[4, 0, 2, END, -1],
                 [3, END, -1, -1, -1],
                 [-1, -1, -1, -1, -1],
                 [1, 2, END, 0, -1]])  # anything after END is not part of the path
  np.testing.assert_array_equal(rule_masks.path_mask(label_ids, 5),
                                [[1, 0, 1, 0, 1],
                                 [0, 0, 0, 1, 0],
                                 [0, 0, 0, 0, 0],
                                 [0, 1, 1, 0, 0]])
  np.testing.assert_array_equal(rule_masks.path_mask(label_ids, 5, k=2),
                                [[1, 0, 0, 0, 1],
                                 [0, 0, 0, 1, 0],
                                 [0, 0, 0, 0, 0],
                                 [0, 1, 1, 0, 0]])
  with pytest.raises(ValueError, match="2-D"):
    rule_masks.path_mask(B([1, 2]), 5)


# ----------------------------------------------------------------------------- scikit-learn


def _random_problem(seed, n=60, k=7):
  rng = np.random.default_rng(seed)
  y_true = rng.random((n, k)) < 0.3
  y_true[0] = True  # every class has a positive
  scores = rng.random((n, k)) + 0.5 * y_true  # continuous: no ties
  return y_true, scores


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_noninterp_ap_matches_sklearn(seed):
  skm = pytest.importorskip("sklearn.metrics")
  y_true, scores = _random_problem(seed)
  expected = [skm.average_precision_score(y_true[:, c], scores[:, c])
              for c in range(y_true.shape[1])]
  np.testing.assert_allclose(metrics.average_precision(y_true, scores, "noninterp"), expected)
  # With ties too (sklearn also groups tied scores into one threshold).
  rounded = np.round(scores, 1)
  expected = [skm.average_precision_score(y_true[:, c], rounded[:, c])
              for c in range(y_true.shape[1])]
  np.testing.assert_allclose(metrics.average_precision(y_true, rounded, "noninterp"), expected)


def _devkit_ap(positive, score, use_07):
  """The VOC devkit's AP, per image (no tie grouping), as in py-faster-rcnn's voc_ap."""
  order = np.argsort(-score)
  tp = np.cumsum(positive[order])
  fp = np.cumsum(~positive[order])
  rec, prec = tp / positive.sum(), tp / (tp + fp)
  if use_07:
    return sum(max(prec[rec >= t / 10], default=0.0) for t in range(11)) / 11
  mrec, mpre = np.r_[0, rec, 1], np.r_[0, prec, 0]
  for i in range(mpre.size - 1, 0, -1):
    mpre[i - 1] = max(mpre[i - 1], mpre[i])
  i = np.where(mrec[1:] != mrec[:-1])[0]
  return np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc07_and_area_match_devkit_without_ties(seed):
  y_true, scores = _random_problem(seed)
  for method, use_07 in (("voc07", True), ("area", False)):
    expected = [_devkit_ap(y_true[:, c], scores[:, c], use_07) for c in range(y_true.shape[1])]
    np.testing.assert_allclose(metrics.average_precision(y_true, scores, method), expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_prf_matches_sklearn(seed):
  skm = pytest.importorskip("sklearn.metrics")
  y_true, scores = _random_problem(seed)
  y_true[:, 3] = False  # a class with no ground truth
  y_pred = metrics.top_k_mask(scores, 3)
  y_pred[:, 5] = False  # a class never predicted
  got = metrics.prf(y_true, y_pred)
  p, r, f, _ = skm.precision_recall_fscore_support(y_true, y_pred, average="micro",
                                                   zero_division=0)
  assert (got["OP"], got["OR"], got["OF1"]) == pytest.approx((p, r, f))
  p, r, _, _ = skm.precision_recall_fscore_support(y_true, y_pred, average=None,
                                                   zero_division=0)
  precision, recall = metrics.per_class_prf(y_true, y_pred)
  np.testing.assert_allclose(precision, p)
  assert np.isnan(recall[3])
  has_gt = np.arange(7) != 3
  np.testing.assert_allclose(recall[has_gt], r[has_gt])
  assert got["CP"] == pytest.approx(p.mean())
  assert got["CR"] == pytest.approx(r[has_gt].mean())


# ----------------------------------------------------------------------------- report


def _report():
  y_true, scores = _random_problem(0, n=20, k=4)
  y_true[:, 2] = False  # no ground truth: AP and recall are None in the report
  top3 = metrics.top_k_mask(scores, 3)
  all_pred = metrics.top_k_mask(scores, 4, threshold=0.8)
  return metrics.compute_all(y_true, top3, all_pred, scores, ["cat", "dog", "cow", "bus"])


def test_compute_all_is_json_serializable():
  report = _report()
  text = json.dumps(report, allow_nan=False)
  assert json.loads(text) == report
  assert set(report) == {"top3", "all", "mAP_voc07", "mAP_area", "mAP_noninterp", "MAP@10",
                         "per_class", "num_images"}
  assert report["num_images"] == 20
  assert list(report["per_class"]) == ["cat", "dog", "cow", "bus"]
  assert report["per_class"]["cow"]["AP"] is None
  assert report["per_class"]["cow"]["recall"] is None
  assert report["per_class"]["cow"]["num_gt"] == 0
  assert set(report["per_class"]["cat"]) >= {"AP", "AP_voc07", "precision", "recall", "num_gt"}


def test_compute_all_checks_label_names():
  y = np.ones((2, 3), bool)
  with pytest.raises(ValueError, match="2 label names"):
    metrics.compute_all(y, y, y, np.ones((2, 3)), ["a", "b"])


def test_markdown_table_and_comparison_show_the_numbers():
  report = _report()
  table = metrics_markdown.markdown_table(report, title="val")
  assert table.startswith("### val")
  assert f"{100 * report['top3']['CP']:.1f}" in table
  assert f"{100 * report['all']['OF1']:.1f}" in table
  assert f"{100 * report['mAP_voc07']:.1f}" in table
  assert f"{100 * report['MAP@10']:.1f}" in table
  comparison = metrics_markdown.markdown_comparison({"CNN-RNN": report, "BCE": report})
  rows = [line for line in comparison.splitlines() if line.startswith("| CNN-RNN")
          or line.startswith("| BCE")]
  assert len(rows) == 4  # two heads x (top-3, all)
  assert f"{100 * report['top3']['CF1']:.1f}" in rows[0]


def test_compute_all_rules_get_their_own_rows_by_value():
  y = np.array([[1, 0, 0, 1], [0, 1, 0, 0]], bool)
  top3 = np.array([[1, 0, 0, 0], [0, 0, 0, 0]], bool)
  paper = np.array([[1, 1, 1, 0], [0, 1, 1, 1]], bool)  # 3 labels each
  report = metrics.compute_all(y, top3, top3, np.eye(2, 4), ["a", "b", "c", "d"],
                               rules={"top3_paper": paper})
  # paper: Nc = 1 + 1 = 2 of Np = 6 predictions and Ng = 3 ground truths.
  assert report["top3_paper"]["OP"] == pytest.approx(2 / 6)
  assert report["top3_paper"]["OR"] == pytest.approx(2 / 3)
  assert report["top3"]["OP"] == pytest.approx(1.0)
  table = metrics_markdown.markdown_table(report)
  row = next(line for line in table.splitlines() if line.startswith("| top-3 (paper)"))
  assert "33.3" in row and "66.7" in row
  comparison = metrics_markdown.markdown_comparison({"BCE": report})
  assert sum(line.startswith("| BCE | top-3 (paper)") for line in comparison.splitlines()) == 1
  assert "calibrated" not in comparison  # only the rules the report has
  with pytest.raises(ValueError, match=r"rules\['x'\].*shape"):
    metrics.compute_all(y, top3, top3, np.eye(2, 4), list("abcd"), rules={"x": paper[:, :3]})
  with pytest.raises(ValueError, match="'top3' is given"):
    metrics.compute_all(y, top3, top3, np.eye(2, 4), list("abcd"), rules={"top3": paper})


# ----------------------------------------------------------------------------- label sets


def _random_sets(seed, n=50, k=6):
  """Random y_true and y_pred bool [n, k] with empty rows in both, and rows empty in both."""
  rng = np.random.default_rng(seed)
  y_true = rng.random((n, k)) < 0.3
  y_pred = rng.random((n, k)) < 0.3
  y_true[:5] = False  # images without labels ...
  y_pred[3:8] = False  # ... and empty predictions; rows 3, 4 are empty in both
  y_pred[10:13] = y_true[10:13]  # some exact matches
  return y_true, y_pred


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_set_level_metrics_match_sklearn(seed):
  sk = pytest.importorskip("sklearn.metrics")
  y_true, y_pred = _random_sets(seed)
  assert metrics.exact_match(y_true, y_pred) == pytest.approx(sk.accuracy_score(y_true, y_pred))
  assert metrics.hamming_loss(y_true, y_pred) == pytest.approx(sk.hamming_loss(y_true, y_pred))
  p, r, f, _ = sk.precision_recall_fscore_support(y_true, y_pred, average="samples",
                                                  zero_division=1)
  assert metrics.example_prf(y_true, y_pred) == pytest.approx({"EP": p, "ER": r, "EF1": f})


def test_set_level_metrics_on_empty_sets_by_hand():
  y_true = np.array([[1, 0], [0, 0], [0, 0], [1, 1]], bool)
  y_pred = np.array([[0, 0], [0, 0], [1, 0], [1, 0]], bool)
  # Per image (P, R, F1): (1, 0, 0), (1, 1, 1), (0, 1, 0), (1, 1/2, 2/3).
  assert metrics.example_prf(y_true, y_pred) == pytest.approx(
      {"EP": 3 / 4, "ER": 2.5 / 4, "EF1": (1 + 2 / 3) / 4})
  assert metrics.exact_match(y_true, y_pred) == 0.25
  assert metrics.hamming_loss(y_true, y_pred) == 3 / 8
  with pytest.raises(ValueError, match="y_pred has shape"):
    metrics.exact_match(y_true, y_pred[:, :1])


def test_every_rule_gets_the_set_level_metrics_with_their_direction():
  y_true, y_pred = _random_sets(0)
  scores = np.random.default_rng(0).random(y_true.shape)
  report = metrics.compute_all(y_true, y_pred, ~y_pred, scores, list("abcdef"),
                               rules={"top3_paper": y_true})
  for rule, pred in (("top3", y_pred), ("all", ~y_pred), ("top3_paper", y_true)):
    assert report[rule]["exact_match"] == metrics.exact_match(y_true, pred)
    assert report[rule]["hamming_loss"] == metrics.hamming_loss(y_true, pred)
    assert {k: report[rule][k] for k in ("EP", "ER", "EF1")} == metrics.example_prf(
        y_true, pred)
  assert report["top3_paper"]["exact_match"] == 1.0
  assert report["top3_paper"]["hamming_loss"] == 0.0
  assert not metrics.METRICS["hamming_loss"].higher_is_better
  assert metrics.higher_is_better("all.exact_match")
  assert not metrics.higher_is_better("top3.hamming_loss")
  for key in ("top3.exact_match", "all.EF1", "top3_paper.hamming_loss"):
    assert key in metrics.keep_best_keys()
  assert "all_calibrated.EF1" not in metrics.keep_best_keys()  # no thresholds in training
  table = metrics_markdown.markdown_table(report)
  assert "| setting | C-P | C-R | C-F1 | O-P | O-R | O-F1 | exact match | E-P | E-R | E-F1 | " \
         "Hamming loss |" in table
  row = next(line for line in table.splitlines() if line.startswith("| top-3 (paper)"))
  assert row.endswith("| 100.0 | 100.0 | 100.0 | 100.0 | 0.0 |")
  scalars = metrics.scalars(report)
  assert scalars["all/hamming_loss"] == metrics.hamming_loss(y_true, ~y_pred)
  assert scalars["top3/EF1"] == report["top3"]["EF1"]
