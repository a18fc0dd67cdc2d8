"""VOC scored as the devkit scores it: difficult-only classes ignored (data.voc_difficult).

`devkit_ap` transcribes VOCevalcls.m of the VOC2007 devkit (ground truth gt in {1, 0, -1},
0 = difficult, ignored; 11-point interpolated AP):

    [so,si]=sort(-out); tp=gt(si)>0; fp=gt(si)<0; fp=cumsum(fp); tp=cumsum(tp);
    rec=tp/sum(gt>0); prec=tp./(fp+tp);
    ap=0; for t=0:0.1:1, p=max(prec(rec>=t)); if isempty(p), p=0; end; ap=ap+p/11; end

(t = i / 10 here, as in ranking.py: MATLAB's colon operator gives those values exactly.)
"""

import numpy as np
import pytest

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import ranking
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib
from cnn_rnn_tf.data.sources import voc2007
from test_sources import VOC_SPLITS, fake_tfds


def devkit_ap(gt: np.ndarray, out: np.ndarray) -> float:
  """VOCevalcls' AP of one class: gt int [N] in {1, 0, -1}, out float [N] (no ties)."""
  si = np.argsort(-out, kind="stable")
  tp = np.cumsum(gt[si] > 0)
  fp = np.cumsum(gt[si] < 0)
  rec = tp / np.sum(gt > 0)
  # 0/0 (only ignored images so far) is NaN in MATLAB, which max() skips: 0 here.
  prec = np.divide(tp, fp + tp, out=np.zeros(len(gt)), where=fp + tp > 0)
  ap = 0.0
  for t in np.arange(11) / 10:
    p = prec[rec >= t]
    ap += (p.max() if p.size else 0.0) / 11
  return ap


def test_the_ignore_rule_agrees_with_the_devkit_on_random_cases():
  rng = np.random.default_rng(0)
  checked = 0
  for _ in range(200):
    n, k = rng.integers(2, 40), rng.integers(1, 5)
    gt = rng.choice([1, 0, -1], size=(n, k), p=[0.3, 0.2, 0.5])
    scores = rng.random((n, k))
    # The labels the examples carry there may say anything: ignored is ignored.
    y_true = np.where(gt == 0, rng.random((n, k)) < 0.5, gt > 0)
    ap = ranking.average_precision(y_true, scores, "voc07", ignore=gt == 0)
    for c in range(k):
      if (gt[:, c] > 0).any():
        assert ap[c] == pytest.approx(devkit_ap(gt[:, c], scores[:, c]), abs=1e-12)
        checked += 1
      else:
        assert np.isnan(ap[c])
  assert checked > 300


def test_an_ignored_difficult_image_changes_ap_as_the_devkit_says():
  # Scores 0.9, 0.8, 0.7: a difficult-only image first, a negative, then the positive.
  scores = np.array([[0.9], [0.8], [0.7]])
  ignore = np.array([[True], [False], [False]])
  ignored = ranking.average_precision([[1], [0], [1]], scores, "voc07", ignore=ignore)[0]
  assert ignored == pytest.approx(0.5)  # fp then tp: precision 1/2 at every recall
  assert ignored == pytest.approx(devkit_ap(np.array([0, -1, 1]), scores[:, 0]))
  as_positive = ranking.average_precision([[1], [0], [1]], scores, "voc07")[0]
  assert as_positive == pytest.approx((6 * 1 + 5 * 2 / 3) / 11)
  as_negative = ranking.average_precision([[0], [0], [1]], scores, "voc07")[0]
  assert as_negative == pytest.approx(1 / 3)


def test_ignored_entries_leave_every_set_metric():
  y_true = np.array([[1, 0, 1], [0, 1, 0]], bool)
  y_pred = np.array([[1, 1, 0], [0, 1, 1]], bool)
  ignore = np.array([[False, True, True], [False, False, True]])
  # Without the ignored entries: image 0 is {0} vs {0}, image 1 is {1} vs {1}.
  m = metrics_lib.rule_metrics(y_true, y_pred, ignore)
  assert m["exact_match"] == 1.0 and m["hamming_loss"] == 0.0
  assert m["OP"] == m["OR"] == m["EF1"] == 1.0
  assert m["CP"] == pytest.approx(2 / 3)  # class 2 is never (countably) predicted: 0
  plain = metrics_lib.rule_metrics(y_true, y_pred)
  assert plain["exact_match"] == 0.0 and plain["hamming_loss"] == pytest.approx(3 / 6)
  # MAP@10: an ignored label leaves its image's ranking (the ranks close up).
  scores = np.array([[0.1, 0.9, 0.5], [0.2, 0.3, 0.8]])
  assert metrics_lib.map_at_k(y_true, scores, 10, ignore) == pytest.approx(1.0)
  assert metrics_lib.map_at_k(y_true, scores, 10) < 1.0


def test_voc2007_difficult_flows_from_the_source_to_metrics_json(tmp_path):
  rng = np.random.default_rng(1)
  splits = {name: [{**ex, "image": rng.integers(0, 255, (6, 8, 3), dtype=np.uint8)}
                   for ex in examples] for name, examples in VOC_SPLITS.items()}
  with fake_tfds(splits):  # distinct images: no tied scores (the devkit breaks ties by order)
    config = config_lib.runlocal(config_lib.default_config())
    config.model.head = "bce"
    config.data.update(source="voc2007", train_split="trainval")
    assert config.data.voc_difficult == "ignore"  # the default
    source = data_lib.get_source(config.data)
    # h.jpg: car, dog and person, all difficult only; c.jpg (trainval): person.
    assert source.difficult_label_ids("test") == {
        "h.jpg": tuple(source.label_names.index(n) for n in ("car", "dog", "person"))}
    vocab = vocab_lib.LabelVocab.from_label_sets(source.train_label_sets(),
                                                 all_names=source.label_names)
    backbone, head = workdir_lib.build_backbone_and_head(config, vocab.num_labels)
    pred = evaluate_lib.predict_models(config, vocab, backbone, head, "test",
                                       cache_dir=str(tmp_path), source=source)
  assert pred["keys"].tolist() == [b"f.jpg", b"g.jpg", b"h.jpg"]
  assert pred["difficult"][2, [vocab.names.index(n) for n in ("car", "dog", "person")]].all()
  assert pred["difficult"].sum() == 3
  for convention, difficult_gt in (("ignore", 0), ("positive", 1), ("negative", -1)):
    config.data.voc_difficult = convention
    metrics = evaluate_lib.metrics_of(pred, vocab, "test", **evaluate_lib._recorded(config))
    assert metrics["voc_difficult"] == convention and metrics["difficult_entries"] == 3
    # The devkit's gt per class: f.jpg dog person, g.jpg cat, h.jpg car dog person (difficult).
    gt = {"dog": [1, -1, difficult_gt], "person": [1, -1, difficult_gt],
          "car": [-1, -1, difficult_gt], "cat": [-1, 1, -1]}
    for name, labels in gt.items():
      got = metrics["per_class"][name]["AP_voc07"]
      if 1 not in labels:
        assert got is None, (convention, name, got)
        continue
      scores = pred["label_scores"][:, vocab.names.index(name)]
      assert got == pytest.approx(devkit_ap(np.array(labels), scores), abs=1e-9), (
          convention, name)
    assert metrics["per_class"]["dog"]["num_gt"] == (2 if convention == "positive" else 1)


def test_score_difficult_refuses_an_unknown_convention():
  with pytest.raises(ValueError, match="voc_difficult.*'hard'"):
    voc2007.score_difficult(np.zeros((1, 2), bool), np.zeros((1, 2), bool), "hard")
  with fake_tfds(VOC_SPLITS):
    with pytest.raises(ValueError, match="voc_difficult"):
      data_lib.get_source(_voc_data(voc_difficult="hard"))


def _voc_data(**fields):
  data = config_lib.default_config().data
  data.update(dict(source="voc2007", **fields))
  return data
