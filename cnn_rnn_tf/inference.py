"""Predictions of any registered head from backbone features, and what counts as predicted.

One function serves evaluation and the exported SavedModel, so both decode identically:

    options = decode_options(config)          # a DecodeOptions: beam, lengths, samples, ranking
    out = predict_from_features(head, features, options)
    out = predict_from_features(head, features, beam_size=3, max_length=10)   # or by field
    out["labels"]          # int32 [B, L], label ids (training order), -1 padded
    out["num_labels"]      # int32 [B]
    out["label_scores"]    # float32 [B, K], the per-label ranking score (decode.ranking)
    out["set_<decoder>"]   # bool [B, K], each named decoder of the head (`decoders.DECODERS`)
    # CNN-RNN only (`head_outputs`: a head returns only what it has):
    out["path_log_prob"]   # float32 [B], the path's log-probability (END included)
    out["paths"]           # int32 [B, N, L], the N = beam_size best label sets, best first
    out["paths_log_prob"]  # float32 [B, N], descending; -inf marks an empty slot
    out["marginal_scores"] # float32 [B, K], the marginal probabilities

    masks = rule_masks("bce", numpy_out, K, thresholds=None)
    # {rule: bool [B, K]} for every rule of `metrics.RULES` the head's decoders give
    # (`rule_masks.py`; the calibrated ones only with thresholds)

with L = min(max_length, K). Each head's part lives in its `model.HEADS` entry:

CNN-RNN: beam search (`decoding.decode`); `paths` is the beam's candidate set C (see
`decoding`); paths[:, 0] == labels and paths_log_prob[:, 0] == path_log_prob.
`label_scores` by `decode.ranking`: "marginals" the marginal probabilities (the side head),
"path" the highest probability each label gets at any step of the best path, "samples" the
labels' frequency in the ancestral samples. Masks: "top3" = "top3_paper" = the first 3
labels of the path; "all" = the whole path.

BCE: the predicted set is every label with sigmoid probability >= 0.5 (or, with
`thresholds` float [K], >= its calibrated threshold: `calibration.py`), listed by decreasing
probability (at most `max_length`, at least `min_length`: the most probable labels fill up);
`label_scores` is the sigmoid probability. It has no path: no `path_log_prob`, no `paths`.
Masks: "top3" = the 3 highest probabilities among those >= 0.5; "all" = every label with
probability >= 0.5; "top3_paper" = the 3 highest probabilities, no threshold; with
thresholds, "top3_calibrated" / "all_calibrated" = "top3" / "all" with each label's
calibrated threshold instead of 0.5.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import keras
import numpy as np
import tensorflow as tf

from cnn_rnn_tf import decoders as decoders_lib
from cnn_rnn_tf import metrics as metrics_lib
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import rule_masks as rule_masks_lib

OUTPUT_KEYS = model_lib.OUTPUTS  # every head's: labels, num_labels, label_scores


class DecodeOptions(NamedTuple):
  """How predictions are decoded (`decode_options(config)`): the one record a head's predict
  and the decoders' set functions read. A decoder with its own setting adds a field here."""
  beam_size: int = 3  # decode.beam_size
  max_length: int = 10  # decode.max_length
  min_length: int = 0  # decode.min_length
  num_samples: int = 0  # decode.num_samples: the cnn_rnn's ancestral samples (expected_f1)
  sample_seed: int = 0  # decode.sample_seed
  ranking: str = "marginals"  # the cnn_rnn's label_scores (`ranking(config)`)
  thresholds: Any = None  # float [K] calibrated thresholds (None: 0.5)


def predict_from_features(head: keras.Model, features, options: DecodeOptions | None = None,
                          **fields) -> dict:
  """Decodes features [B, D] with the head; see the module docstring for the outputs.

  `options`: a DecodeOptions (default: its defaults); `fields` replace some of its fields
  (e.g. `beam_size=1`, `thresholds=...`: float [K] per-class thresholds, of the BCE
  probabilities or of the CNN-RNN's marginals).
  """
  options = (options or DecodeOptions())._replace(**fields)
  if options.beam_size < 1:
    raise ValueError(f"beam_size must be >= 1, got {options.beam_size}.")
  features = tf.convert_to_tensor(features, tf.float32)
  spec = model_lib.head_spec(head)
  out = spec.predict(head, features, options)
  result = {k: out[k] for k in spec.outputs}
  result.update({f"set_{name}": chosen for name, chosen in out["sets"].items()})
  return result


def head_outputs(head: str) -> tuple[str, ...]:
  """The outputs of head `head` (a `model.HEADS` name) but the sets: OUTPUT_KEYS, and the
  cnn_rnn's path_log_prob, paths, paths_log_prob and marginal_scores."""
  return model_lib.head_spec(head).outputs


def decode_options(config) -> DecodeOptions:
  """The DecodeOptions of a config (its `decode` section; decode.ranking "auto": the
  marginals when the head trains them, model.side_loss_weight > 0, else the path's scores)."""
  decode = config.decode
  return DecodeOptions(beam_size=decode.beam_size, max_length=decode.max_length,
                       min_length=decode.min_length, num_samples=decode.num_samples,
                       sample_seed=decode.sample_seed, ranking=ranking(config))


def ranking(config) -> str:
  """The CNN-RNN's label_scores (`decode.ranking`, "auto" resolved)."""
  if config.decode.ranking != "auto":
    return config.decode.ranking
  return "marginals" if marginals_trained(config) else "path"


def marginals_trained(config) -> bool:
  """Whether the head's marginal probabilities are trained (bce: always; cnn_rnn: with
  model.side_loss_weight > 0): the `marginals` decoder and ranking need them."""
  return config.model.head != "cnn_rnn" or config.model.side_loss_weight > 0


def default_decoder(head: str, decoder: str) -> str:
  """The named decoder of `decode.decoder` ("default": the head's first, `decoders`)."""
  names = decoders_lib.head_decoders(head)
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
  """{rule: bool [N, K]} for each rule of `metrics.RULES` the head's decoders give
  (`rule_masks.rule_masks`; `pred`: predictions, made NumPy here; `thresholds`: float [K]
  calibrated per-class thresholds, which add the rules that need them)."""
  model_lib.head_spec(head)  # an unknown head is named
  pred = {k: np.asarray(v) for k, v in pred.items() if not isinstance(v, dict)}
  masks = rule_masks_lib.rule_masks(head, pred, num_labels, thresholds)
  unknown = sorted(set(masks) - set(metrics_lib.RULES))
  if unknown:
    raise ValueError(f"Head {head!r} returned the rules {unknown}, which metrics.RULES does "
                     f"not declare (known: {list(metrics_lib.RULES)}).")
  return masks
