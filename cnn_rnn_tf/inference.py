"""Predictions of any registered head from backbone features, and what counts as predicted.

One function serves evaluation and the exported SavedModel, so both decode identically:

    out = predict_from_features(head, features, beam_size=3, max_length=10, min_length=0)
    out["labels"]          # int32 [B, L], label ids (training order), -1 padded
    out["num_labels"]      # int32 [B]
    out["path_log_prob"]   # float32 [B]
    out["label_scores"]    # float32 [B, K], the per-label ranking score
    out["paths"]           # int32 [B, N, L], the N = beam_size best label sets, best first
    out["paths_log_prob"]  # float32 [B, N], descending; -inf marks an empty slot

    top3, every = prediction_masks("cnn_rnn", out["labels"], out["label_scores"], K)
    # bool [B, K] each: the "top3" and "all" predictions the metrics count
    masks = rule_masks("bce", out["labels"], out["label_scores"], K, thresholds=None)
    # {rule: bool [B, K]} for every rule of `metrics.RULES` the head has (calibrated:
    # with thresholds)

with L = min(max_length, K). Each head's part lives in its `model.HEADS` entry:

CNN-RNN: beam search (`decoding.decode`); `label_scores` is the highest probability each
label gets at any step of the best path; `paths` is the beam's candidate set C (see
`decoding`); paths[:, 0] == labels and paths_log_prob[:, 0] == path_log_prob.
Masks: "top3" = "top3_paper" = the first 3 labels of the path; "all" = the whole path.

BCE: the predicted set is every label with sigmoid probability >= 0.5 (or, with
`thresholds` float [K], >= its calibrated threshold: `calibration.py`), listed by decreasing
probability (at most `max_length`, at least `min_length`: the most probable labels fill up);
`label_scores` is the sigmoid probability; `path_log_prob` is the log-probability of the
returned set under the independent-labels model, sum_k log P(y_k = predicted_k); `paths`
holds that one set, then N - 1 empty slots (-1 labels, -inf log-probability).
Masks: "top3" = the 3 highest probabilities among those >= 0.5; "all" = every label with
probability >= 0.5; "top3_paper" = the 3 highest probabilities, no threshold; with
thresholds, "top3_calibrated" / "all_calibrated" = "top3" / "all" with each label's
calibrated threshold instead of 0.5.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import model as model_lib

OUTPUT_KEYS = ("labels", "num_labels", "path_log_prob", "label_scores", "paths",
               "paths_log_prob")


def predict_from_features(head: keras.Model, features, *, beam_size: int, max_length: int,
                          min_length: int = 0, thresholds=None, num_samples: int = 0,
                          sample_seed: int = 0, ranking: str = "marginals") -> dict:
  """Decodes features [B, D] with the head; see the module docstring for the outputs.

  `thresholds`: float [K] per-class thresholds (BCE: of its probabilities; CNN-RNN: of its
  marginals; None: 0.5 for every class). `num_samples` > 0 adds the CNN-RNN's expected_f1
  set (GFM over that many seeded ancestral samples); `ranking`: the CNN-RNN's label_scores
  (`decode.ranking`). Besides OUTPUT_KEYS: "set_<decoder>" bool [B, K] for each named
  decoder the head has (`model.DECODERS`), and "marginal_scores" float [B, K] (CNN-RNN).
  """
  if beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {beam_size}.")
  features = tf.convert_to_tensor(features, tf.float32)
  out = model_lib.head_spec(head).predict(head, features, beam_size=beam_size,
                                          max_length=max_length, min_length=min_length,
                                          thresholds=thresholds, num_samples=num_samples,
                                          sample_seed=sample_seed, ranking=ranking)
  result = {k: out[k] for k in OUTPUT_KEYS}
  result.update({f"set_{name}": chosen for name, chosen in out["sets"].items()})
  if "marginal_scores" in out:
    result["marginal_scores"] = out["marginal_scores"]
  return result


def decode_options(config) -> dict:
  """The keyword arguments of `predict_from_features` from a config (its `decode` section;
  decode.ranking "auto": the marginals when the head trains them, model.aux_bce_weight > 0,
  else the path's scores)."""
  decode = config.decode
  return dict(beam_size=decode.beam_size, max_length=decode.max_length,
              min_length=decode.min_length, num_samples=decode.num_samples,
              sample_seed=decode.sample_seed, ranking=ranking(config))


def ranking(config) -> str:
  """The CNN-RNN's label_scores (`decode.ranking`, "auto" resolved)."""
  if config.decode.ranking != "auto":
    return config.decode.ranking
  return "marginals" if marginals_trained(config) else "path"


def marginals_trained(config) -> bool:
  """Whether the head's marginal probabilities are trained (bce: always; cnn_rnn: with
  model.aux_bce_weight > 0): the `marginals` decoder and ranking need them."""
  return config.model.head != "cnn_rnn" or config.model.aux_bce_weight > 0


def default_decoder(head: str, decoder: str) -> str:
  """The named decoder of `decode.decoder` ("default": the head's first of model.DECODERS)."""
  names = model_lib.DECODERS[head]
  if decoder == "default":
    return names[0]
  if decoder not in names:
    raise ValueError(f"decode.decoder {decoder!r} is not one of the {head} head's decoders "
                     f"{names}.")
  return decoder


def prediction_masks(head: str, labels: np.ndarray, scores: np.ndarray,
                     num_labels: int) -> tuple[np.ndarray, np.ndarray]:
  """(top3, all) bool [N, K] of head `head` (a `model.HEADS` name) from its predictions.

  Args:
    head: the head's name, e.g. config.model.head.
    labels: int [N, L], predicted label ids, -1 padded (`labels` output).
    scores: float [N, K], the `label_scores` output.
    num_labels: K.
  """
  masks = rule_masks(head, {"labels": labels, "label_scores": scores}, num_labels)
  return masks["top3"], masks["all"]


def rule_masks(head: str, pred, num_labels: int,
               thresholds: np.ndarray | None = None) -> dict[str, np.ndarray]:
  """{rule: bool [N, K]} for each rule of `metrics.RULES` the head has (`prediction_masks`).

  `pred`: NumPy predictions, "labels" and "label_scores", and where present
  "marginal_scores" and "set_expected_f1" (`predict_from_features`' outputs).
  `thresholds`: float [K] calibrated per-class thresholds; given, the bce head also gets
  "top3_calibrated" and "all_calibrated", the cnn_rnn head "top3_marginals" and
  "all_marginals". With "set_expected_f1", both get "top3_expected_f1" and "all_expected_f1".
  """
  pred = {k: np.asarray(v) for k, v in pred.items() if not isinstance(v, dict)}
  masks = model_lib.head_spec(head).prediction_masks(pred, num_labels, thresholds)
  unknown = sorted(set(masks) - set(metrics_lib.RULES))
  if unknown:
    raise ValueError(f"Head {head!r} returned the rules {unknown}, which metrics.RULES does "
                     f"not declare (known: {list(metrics_lib.RULES)}).")
  return masks
