"""The named decoders, each declared once (cnn_rnn_tf.decoders): the table, and a toy decoder
registered in that one place reaching metrics.json, the export and the demo report."""

import json
import os

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_lib
from cnn_rnn_tf import data as data_lib
from cnn_rnn_tf import decoders
from cnn_rnn_tf import evaluate_lib
from cnn_rnn_tf import export_lib
from cnn_rnn_tf import inference
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import report
from cnn_rnn_tf import vocab as vocab_lib
from cnn_rnn_tf import workdir as workdir_lib
from helpers import tiny_head


def test_the_table_names_every_heads_decoders_and_resolves_their_functions():
  assert decoders.head_decoders("cnn_rnn") == ("path", "marginals", "expected_f1")
  assert decoders.head_decoders("bce") == ("threshold", "expected_f1")
  assert set(decoders.heads()) == set(model_lib.HEADS)
  for name, entry in decoders.DECODERS.items():
    assert set(decoders.rules_of(name)) <= set(metrics_lib.RULES), name
    if entry.masks_fn is not None:
      assert callable(decoders.resolve(entry.masks_fn)), name
    for head, spec in entry.heads.items():
      assert callable(decoders.resolve(spec.set_fn)), (name, head)
      assert set(spec.needs) <= {"samples", "marginals"}, (name, head)
  # Each head's columns and theory rows name rules metrics.RULES has.
  for head, suffix, _ in decoders.report_columns():
    assert f"all{suffix}" in metrics_lib.RULES and f"top3{suffix}" in metrics_lib.RULES
  for head, rows in decoders.theory().items():
    assert set(rows) == {r for r, _, _ in report.DECODER_ROWS}, head


def top2_set(pred, features, options):
  """A toy decoder: the 2 labels of highest label_scores, bool [B, K]."""
  del features, options
  scores = pred["label_scores"]
  _, ids = tf.math.top_k(scores, 2)
  return tf.reduce_any(tf.one_hot(ids, scores.shape[-1]) > 0, axis=1)


@pytest.fixture
def toy_decoder(monkeypatch):
  """The toy decoder "top2" for both heads: one entry in decoders.DECODERS, nothing else."""
  monkeypatch.setitem(decoders.DECODERS, "top2", decoders.Decoder(
      heads={"cnn_rnn": decoders.HeadDecoder(top2_set), "bce": decoders.HeadDecoder(top2_set)},
      note="the two most probable labels"))


def test_a_toy_decoder_is_a_set_and_two_rules_of_both_heads(toy_decoder):
  feats = np.random.default_rng(0).normal(size=(3, 6)).astype("float32")
  for head_name in ("cnn_rnn", "bce"):
    head = tiny_head(num_labels=5, head=head_name)
    out = inference.predict_from_features(head, feats, beam_size=2, max_length=5)
    chosen = out["set_top2"].numpy()
    np.testing.assert_array_equal(chosen.sum(axis=1), [2, 2, 2])
    masks = inference.rule_masks(head_name, out, 5)
    np.testing.assert_array_equal(masks["all_top2"], chosen)
    np.testing.assert_array_equal(masks["top3_top2"], chosen)  # 2 labels: top-3 is all
  assert "all_top2.OF1" in metrics_lib.keep_best_keys()


def _bce_workdir(path, tfds_dir):
  """A BCE workdir (synthetic_scenes/small, runlocal) with random weights, one checkpoint."""
  config = config_lib.runlocal(config_lib.default_config())
  config.model.head = "bce"
  config.data.data_dir = tfds_dir
  vocab = vocab_lib.LabelVocab(data_lib.get_source(config.data).label_names)
  w = str(path)
  workdir_lib.save_config(config, w)
  vocab.save(workdir_lib.labels_path(w))
  tf.keras.utils.set_random_seed(0)
  backbone, head = workdir_lib.build_backbone_and_head(config, vocab.num_labels)
  checkpoint = workdir_lib.make_checkpoint(config, backbone, head)
  tf.train.CheckpointManager(checkpoint, workdir_lib.checkpoints_dir(w), 1).save(1)
  return w


def test_a_toy_decoder_reaches_metrics_json_the_export_and_the_report(toy_decoder, tmp_path):
  w = _bce_workdir(tmp_path / "bce", str(tmp_path / "tfds"))
  # metrics.json: its two rules, with every set metric.
  evaluate_lib.evaluate(w, batch_size=50)
  saved = json.load(open(os.path.join(workdir_lib.eval_dir(w), "metrics.json")))
  assert set(saved["all_top2"]) >= {"OF1", "CF1", "exact_match"}
  assert "top3_top2" in saved
  # The export: labels_top2 / label_names_top2 in every signature's outputs.
  export_dir = export_lib.export(w, str(tmp_path / "models"))
  loaded = tf.saved_model.load(export_dir)
  for name in export_lib.SIGNATURES:
    outputs = loaded.signatures[name].structured_outputs
    assert {"labels_top2", "label_names_top2"} <= set(outputs), name
  out = loaded.signatures["predict_images"](images=tf.random.uniform([2, 40, 30, 3], 0, 255))
  assert out["labels_top2"].shape[0] == 2
  assert np.all((out["labels_top2"].numpy() >= 0).sum(axis=1) == 2)
  # The demo report's decoder table: a column of its own, with the test value.
  summary = report.summarize_seeds({"bce": [saved]})
  table, _ = report.decoder_table(summary, None)
  header, _, *rows = table.splitlines()
  columns = [c.strip() for c in header.strip("|").split("|")]
  assert "bce top2" in columns
  row = next(r for r in rows if r.startswith("| all O-F1 |"))
  cell = [c.strip() for c in row.strip("|").split("|")][columns.index("bce top2")]
  assert cell.startswith(f"{100 * saved['all_top2']['OF1']:.1f} ± ")
