"""The named decoders (`decode.decoder`), each declared once; no TensorFlow, no NumPy.

A named decoder is a label set bool [B, K] per image that a head computes beside its own
outputs. `DECODERS` (name -> `Decoder`) is the one table: config_lib checks `decode.decoder`
against it, the heads' predictions compute the sets through it (`model.py`), metrics.RULES
takes the decoders' rules from it, the masks of those rules come from it (`rule_masks.py`),
the export names its outputs by it (`export_lib`), and the demo report takes its columns and
the decoder theory prescribes (`report.DECODER_COLUMNS`, `report.THEORY`) from it.

Naming rule for a decoder `<name>`: `predict_from_features` returns its set as
`set_<name>`; the export as `labels_<name>` / `label_names_<name>` (`output_names`); its
metrics.json rules are `top3_<name>` / `all_<name>` (the set, and its 3 labels of highest
label_scores), unless its entry names other rules: a head's own decoder (the first of
the head's names, `head_decoders`) counts under the bare `top3` / `all` (and BCE's
calibrated threshold under `top3_calibrated` / `all_calibrated`). A report column is the
rule suffix after `top3` / `all` ("", "_marginals", ...).

Functions are referenced as "module:function" strings (imported when called, so this
module stays free of TensorFlow) or given as callables (a test's toy decoder):

  set function:   (pred dict of the head's outputs, features [B, D], options: DecodeOptions)
                  -> bool [B, K]     (`pred` holds what the head computed: "label_scores",
                  "labels", and per head "marginal_scores", "probs", "samples")
  mask function:  (name, pred NumPy dict, num_labels, thresholds float [K] | None)
                  -> {rule: bool [N, K]}   (None: `rule_masks.set_masks`, the naming rule)

Adding a decoder is one entry here, its set function (beside its head's predictions in
`model.py`), and, if its rules are not the naming rule's, its mask function in
`rule_masks.py`.
"""

from __future__ import annotations

import importlib
from typing import Callable, NamedTuple, Union

Ref = Union[str, Callable]


class Rule(NamedTuple):
  """A label-set rule: what counts as predicted (an entry of `metrics.RULES`)."""
  definition: str  # one sentence, for docs and reports
  display_name: str  # its row in the Markdown tables
  needs_thresholds: bool = False  # True: only with calibrated thresholds (not in training)


class HeadDecoder(NamedTuple):
  """One head's side of a decoder."""
  set_fn: Ref  # computes the set (see the module docstring)
  columns: tuple | None = None  # ((rule suffix, demo report column), ...); None: the
  # naming rule's (("_<name>", "<head> <name>"),)
  theory: tuple = ()  # ((demo report row, rule suffix), ...): what decision theory prescribes
  needs: tuple = ()  # "samples": decode.num_samples > 0; "marginals": trained marginals


class Decoder(NamedTuple):
  """A named decoder (an entry of `DECODERS`)."""
  heads: dict  # head name -> HeadDecoder (table order: a head's first decoder is its default)
  rules: dict | None = None  # rule name -> Rule, what it adds to metrics.RULES (None: the
  # naming rule's top3_<name> / all_<name>, `naming_rules`)
  masks_fn: Ref | None = None  # its rule masks; None: top3_<name> / all_<name> of its set
  note: str = ""  # what the set is, and when theory prefers it (docs/method.md)


_F1_ROWS = ("top-3 O-F1", "top-3 C-F1", "all O-F1", "all C-F1")

DECODERS: dict[str, Decoder] = {
    "path": Decoder(
        heads={"cnn_rnn": HeadDecoder(
            "cnn_rnn_tf.model:path_set", columns=(("", "CNN-RNN path"),),
            theory=(("exact match", ""), ("mAP", "")))},
        rules={}, masks_fn="cnn_rnn_tf.rule_masks:path_masks",
        note="the beam's best path: the mode of the sequence model, for exact match"),
    "threshold": Decoder(
        heads={"bce": HeadDecoder(
            "cnn_rnn_tf.model:threshold_set",
            columns=(("", "BCE@0.5"), ("_calibrated", "calibrated BCE")),
            theory=(("exact match", ""), ("mAP", ""),
                    *((row, "_calibrated") for row in _F1_ROWS)))},
        rules={
            "top3_calibrated": Rule(
                "BCE only: the 3 most probable labels among those that pass their class's "
                "calibrated threshold (chosen on the calibration part of the training "
                "split)", "top-3 calibrated", needs_thresholds=True),
            "all_calibrated": Rule("BCE only: every label that passes its class's calibrated "
                                   "threshold", "all calibrated", needs_thresholds=True)},
        masks_fn="cnn_rnn_tf.rule_masks:threshold_masks",
        note="every label with p >= its threshold (0.5, or calibrated): per-label decisions, "
             "for per-label F1"),
    "marginals": Decoder(
        heads={"cnn_rnn": HeadDecoder(
            "cnn_rnn_tf.model:marginals_set", columns=(("_marginals", "CNN-RNN marginals"),),
            theory=tuple((row, "_marginals") for row in _F1_ROWS), needs=("marginals",))},
        rules={
            "top3_marginals": Rule("CNN-RNN only: the 3 highest marginal probabilities among "
                                   "those that pass their class's calibrated threshold",
                                   "top-3 marginals", needs_thresholds=True),
            "all_marginals": Rule("CNN-RNN only: every label whose marginal probability "
                                  "passes its class's calibrated threshold (the marginals "
                                  "decoder)", "all marginals", needs_thresholds=True)},
        note="the side head's marginal probabilities >= calibrated thresholds, for "
             "per-label F1", masks_fn="cnn_rnn_tf.rule_masks:marginals_masks"),
    "expected_f1": Decoder(
        heads={"cnn_rnn": HeadDecoder(
                   "cnn_rnn_tf.model:expected_f1_samples_set",
                   columns=(("_expected_f1", "CNN-RNN expected_f1"),),
                   theory=(("example F1", "_expected_f1"),), needs=("samples",)),
               "bce": HeadDecoder(
                   "cnn_rnn_tf.model:expected_f1_independent_set",
                   columns=(("_expected_f1", "BCE expected_f1"),),
                   theory=(("example F1", "_expected_f1"),))},
        rules={
            "top3_expected_f1": Rule("the 3 highest-ranked labels of the expected_f1 set",
                                     "top-3 expected F1"),
            "all_expected_f1": Rule("the set of maximal expected example-F1 (GFM): the "
                                    "CNN-RNN's from its ancestral samples, BCE's exact under "
                                    "independent labels", "all expected F1")},
        note="the set of maximal expected example-F1 (GFM), for example F1"),
}


def naming_rules(name: str) -> dict:
  """The rules of a decoder that declares none: top3_<name> and all_<name>."""
  return {f"top3_{name}": Rule(f"the 3 highest-ranked labels of the {name} set",
                               f"top-3 {name}"),
          f"all_{name}": Rule(f"the set of the {name} decoder", f"all {name}")}


def rules_of(name: str) -> dict:
  """The metrics rules decoder `name` adds (`Decoder.rules`, or the naming rule's)."""
  rules = DECODERS[name].rules
  return naming_rules(name) if rules is None else rules


def head_decoders(head: str) -> tuple[str, ...]:
  """The named decoders of a head, in table order (the first is its default)."""
  return tuple(name for name, d in DECODERS.items() if head in d.heads)


def heads() -> tuple[str, ...]:
  """Every head some decoder serves, in table order."""
  return tuple(dict.fromkeys(h for d in DECODERS.values() for h in d.heads))


def output_names(name: str) -> tuple[str, str]:
  """The export's outputs of decoder `name`: ("labels_<name>", "label_names_<name>")."""
  return f"labels_{name}", f"label_names_{name}"


def available(head: str, num_samples: int, marginals_trained: bool) -> tuple[str, ...]:
  """The head's decoders whose needs are met (`HeadDecoder.needs`)."""
  met = {"samples": num_samples > 0, "marginals": marginals_trained}
  return tuple(n for n in head_decoders(head)
               if all(met[need] for need in DECODERS[n].heads[head].needs))


def resolve(ref: Ref) -> Callable:
  """A "module:function" reference (imported now) or a callable, as a callable."""
  if callable(ref):
    return ref
  module, _, name = ref.partition(":")
  return getattr(importlib.import_module(module), name)


def report_columns() -> tuple[tuple[str, str, str], ...]:
  """((head, rule suffix, column name), ...) of every decoder, heads in sorted order."""
  return tuple((head, *column) for head in sorted(heads())
               for name in head_decoders(head)
               for column in (DECODERS[name].heads[head].columns
                              or ((f"_{name}", f"{head} {name}"),)))


def theory() -> dict[str, dict[str, str]]:
  """{head: {demo report row: rule suffix}}: the decoder decision theory prescribes."""
  return {head: {row: suffix for name in head_decoders(head)
                 for row, suffix in DECODERS[name].heads[head].theory}
          for head in heads()}
