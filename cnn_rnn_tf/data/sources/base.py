"""The base of every data source: the `Source` class, its index record and the bad-data errors.

    class MySource(base.Source):
      name = "mine"
      split_names = {"train": "what train means here"}
      label_names = property(lambda self: [...])
      def _build_index(self, split): return base.SplitIndex(keys, label_ids, where)
      def examples(self, split): ...  # {'image': string, 'label_ids': int32 [n], 'key': string}

The registry (`sources.SOURCES`, `sources.get_source`) and the sources themselves live beside
this module; see `sources/__init__.py` for the calls and the split names.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping, Sequence

from absl import logging
import tensorflow as tf

# Reasons an example is skipped; the keys of `Source.skipped`.
MALFORMED_ROW = "malformed_row"
BAD_LABEL = "bad_label"
EMPTY_LABELS = "empty_labels"
UNKNOWN_LABEL = "unknown_label"
MISSING_FILE = "missing_file"
UNDECODABLE_IMAGE = "undecodable_image"
# Set by the pipeline: a label of the data that the vocab it was given does not have.
LABEL_NOT_IN_VOCAB = "label_not_in_vocab"

MAX_LISTED = 10  # problems (or other findings) a message lists, then their total
# Characters of an echoed input (a CSV line, a field, a path) that a message shows.
SHOWN_CHARS = 300


def clip(text: str, limit: int = SHOWN_CHARS, total: int | None = None) -> str:
  """`text` for a message: cut after `limit` characters, saying so and how long it was.

      clip("x" * 20_000_000)  # "xxx...x... (cut at 300 of 20000000 characters)"
  """
  if len(text) <= limit:
    return text
  total = len(text) if total is None else total
  return f"{text[:limit]}... (cut at {limit} of {total} characters)"


def shown(value: Any) -> str:
  """repr(value) for a message, cut as `clip` does (a 20 MB CSV line is not echoed whole)."""
  return clip(repr(value), total=len(value) if isinstance(value, str) else None)


class BadDataError(ValueError):
  """Bad examples in a split (data.skip_bad_examples=False). `problems`: all of them."""

  def __init__(self, message: str, problems: Sequence["Problem"] = ()):
    super().__init__(message)
    self.problems = list(problems)


@dataclasses.dataclass(frozen=True)
class Problem:
  """One bad example: why (a skip reason), where (file and line, or dataset and key), what."""
  reason: str
  where: str
  detail: str

  def __str__(self):
    return f"{self.where}: {self.detail} [{self.reason}]"


@dataclasses.dataclass
class SplitIndex:
  """The kept examples of a split, in the order `Source.examples` yields them."""
  keys: list[str]  # one per example
  label_ids: list[tuple[int, ...]]  # distinct ids into Source.label_names, ascending
  where: list[str]  # human-readable location of each example, for error messages


def format_listed(items: Sequence[Any], header: str, hint: str = "") -> str:
  """A multi-line message: header, the first MAX_LISTED items, how many more; the hint."""
  lines = [header] + [f"  {item}" for item in items[:MAX_LISTED]]
  if len(items) > MAX_LISTED:
    lines.append(f"  ... and {len(items) - MAX_LISTED} more.")
  if hint:
    lines.append(hint)
  return "\n".join(lines)


def format_problems(problems: Sequence[Problem], header: str, hint: str = "") -> str:
  """A multi-line message: header, the first problems, how many there are in all."""
  return format_listed(problems, f"{header}: {len(problems)} bad example(s).", hint)


SKIP_HINT = ("Fix the data, or set data.skip_bad_examples=True to skip such examples "
             "(they are then counted in source.skipped and logged).")


class Source:
  """Base class: a dataset's label names and, per split, an index and a tf.data stream.

  Subclasses set `name`, `split_names` and implement `label_names`, `_build_index(split)`
  and `examples(split)`; `read_image` and `cache_key` have defaults.
  """

  name: str = ""
  # Split names this source accepts (the keys), and what each one means to it.
  split_names: Mapping[str, str] = {}

  def __init__(self, config):
    self.config = config
    self.skip_bad_examples = bool(config.skip_bad_examples)
    self._indexes: dict[str, SplitIndex] = {}
    self._skipped: dict[str, dict[str, int]] = {}  # split -> reason -> count
    self._hygiene: dict[str, Any] = {}  # see `hygiene`

  # ---- What the trainer uses. ----

  @property
  def label_names(self) -> list[str]:
    raise NotImplementedError

  @property
  def train_split(self) -> str:
    return str(self.config.train_split)

  def train_label_sets(self) -> list[set[str]]:
    """One set of label names per example of the training split (`data.train_split`)."""
    names = self.label_names
    return [{names[i] for i in ids} for ids in self.index(self.train_split).label_ids]

  def num_examples(self, split: str) -> int:
    """Examples of `split` that `examples(split)` yields (bad ones skipped)."""
    return len(self.index(split).keys)

  @property
  def skipped(self) -> dict[str, int]:
    """Skipped examples so far, reason -> count, summed over the splits used."""
    total = collections.Counter()
    for per_reason in self._skipped.values():
      total.update(per_reason)
    return {k: v for k, v in sorted(total.items()) if v}

  def skipped_in(self, split: str) -> dict[str, int]:
    """Skipped examples of one split, reason -> count."""
    return {k: v for k, v in sorted(self._skipped.get(split, {}).items()) if v}

  def set_skipped(self, split: str, reason: str, count: int) -> None:
    """Records how many examples of `split` are skipped for `reason` (idempotent: sets)."""
    self._skipped.setdefault(split, {})[reason] = int(count)

  @property
  def hygiene(self) -> dict[str, Any]:
    """Duplicates and train/eval overlap found so far (sources/hygiene.py), for
    data_report.json: {"duplicate_rows": {split: count}, "train_eval_overlap": {"same_path":
    count, "same_content": count}}; empty for a source that does not check (the TFDS ones)."""
    return dict(self._hygiene)

  def set_hygiene(self, name: str, value: Any) -> None:
    self._hygiene[name] = value

  def index(self, split: str) -> SplitIndex:
    """The split's keys and label ids (computed once; finds and handles bad data)."""
    self.check_split(split)
    if split not in self._indexes:
      self._indexes[split] = self._build_index(split)
    return self._indexes[split]

  def examples(self, split: str) -> tf.data.Dataset:
    """{'image': string [] (see read_image), 'label_ids': int32 [n], 'key': string []}."""
    raise NotImplementedError

  def difficult_mask(self, split: str, keys, names):
    """bool [N, K] of the (image keys[n], label names[k]) entries that evaluation treats by
    `data.voc_difficult` (VOC's difficult-only classes); None: the source has none."""
    del split, keys, names
    return None

  def read_image(self, image: tf.Tensor) -> tf.Tensor:
    """The `image` of an example -> encoded image bytes (TFDS: already bytes)."""
    return image

  def cache_key(self, split: str) -> dict[str, Any]:
    """Everything about the source that changes the examples of `split` (feature cache)."""
    return {"name": self.name, "skip_bad_examples": self.skip_bad_examples}

  def check_split(self, split: str) -> None:
    if split not in self.split_names:
      raise ValueError(f"Source {self.name!r} has no split {split!r}; expected one of "
                       f"{sorted(self.split_names)} ({self._split_help()}).")

  def _split_help(self) -> str:
    return ", ".join(f"{k}: {v}" for k, v in self.split_names.items())

  def _build_index(self, split: str) -> SplitIndex:
    raise NotImplementedError

  def _handle_problems(self, split: str, problems: Sequence[Problem], header: str) -> None:
    """Raises on bad data, or (skip mode) counts and logs it."""
    if not problems:
      return
    if not self.skip_bad_examples:
      raise BadDataError(format_problems(problems, header, SKIP_HINT), problems)
    counts = collections.Counter(p.reason for p in problems)
    for reason, count in counts.items():
      self.set_skipped(split, reason, count)
    logging.warning("%s", format_problems(
        problems, f"{header}: skipped (data.skip_bad_examples=True), "
        + ", ".join(f"{r}={c}" for r, c in sorted(counts.items()))))
