"""Label vocabulary, special tokens and the label sequences the CNN-RNN is trained on.

Ids: the K labels are 0..K-1 in *training order* (frequency in the training split, most
frequent first, ties by name, as in the paper, section 3.4), then END = K (output only:
"stop predicting") and START = K + 1 (input of the first step only). Because ids follow the
training order, an image's label sequence is simply its label ids in ascending order, then END.

    vocab = LabelVocab.from_label_sets([["dog", "person"], ["person"]])
    vocab.names            # ['person', 'dog']
    vocab.encode(["dog", "person"])   # [0, 1]
    vocab.save(workdir / "labels.txt"); LabelVocab.load(workdir / "labels.txt")
    clean_label("  dog\r")  # 'dog': what a data source does with a label as written

Label names: any Unicode text without control characters (tabs, \r, \n, ...), line or
paragraph separators or double quotes, and without whitespace or invisible format characters
(e.g. a BOM) at either end; spaces inside are allowed. `clean_label` strips the ends and
refuses the rest (`BadLabelError` naming the label and what is wrong), so that every accepted
label round-trips through `labels.txt` (UTF-8, one name per line) exactly.

In TensorFlow, the data pipeline only carries multi-hot vectors; `sequence_targets` turns a
batch of them into the teacher-forcing targets:

    target_ids = sequence_targets(multi_hot)          # int32 [batch, T], -1 padded
    input_ids = teacher_forcing_inputs(target_ids, vocab.start_id)
"""

from __future__ import annotations

import collections
import os
from typing import Iterable, Sequence
import unicodedata

import tensorflow as tf

PAD_ID = -1
# Unicode categories refused inside a label: control (Cc: \t \r \n \x85 ...), line and
# paragraph separators (Zl, Zp: str.splitlines would split labels.txt there).
_REFUSED_CATEGORIES = ("Cc", "Zl", "Zp")
_REFUSED_CHARACTERS = ('"',)


class BadLabelError(ValueError):
  """A label name that cannot be a vocabulary entry; the message names it and says why."""


def _is_edge_junk(ch: str) -> bool:
  return ch.isspace() or unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")


def clean_label(text: str) -> str:
  """A label as written in the data -> its name: whitespace and control/format characters
  stripped at both ends ("" if nothing is left).

  Raises:
    BadLabelError: the rest holds a control character, a line separator or a double quote.
  """
  start, end = 0, len(text)
  while start < end and _is_edge_junk(text[start]):
    start += 1
  while end > start and _is_edge_junk(text[end - 1]):
    end -= 1
  name = text[start:end]
  for ch in name:
    if ch in _REFUSED_CHARACTERS or unicodedata.category(ch) in _REFUSED_CATEGORIES:
      raise BadLabelError(f"Bad label {text!r}: it contains {ch!r} (U+{ord(ch):04X}); "
                          "expected text without control characters, line breaks or "
                          "double quotes (a quoting fault in the data?).")
  return name


def end_id_of(num_labels: int) -> int:
  """END's id for K = `num_labels` labels (output only): K."""
  return num_labels


def start_id_of(num_labels: int) -> int:
  """START's id for K = `num_labels` labels (input of the first step only): K + 1."""
  return num_labels + 1


class LabelVocab:
  """Label names in training order. `names[i]` is the name of label id i."""

  def __init__(self, names: Sequence[str]):
    names = [str(n) for n in names]
    if not names:
      raise ValueError("LabelVocab needs at least one label name, got none.")
    seen = set()
    for n in names:
      if not n or clean_label(n) != n:
        raise BadLabelError(f"Bad label name {n!r}: empty, or with whitespace or control "
                            "characters at an end; expected clean_label(name) == name.")
      if n in seen:
        raise ValueError(f"Label name {n!r} appears twice in the vocabulary.")
      seen.add(n)
    self.names = names
    self._ids = {n: i for i, n in enumerate(names)}

  @classmethod
  def from_label_sets(cls, label_sets: Iterable[Iterable[str]],
                      all_names: Sequence[str] | None = None) -> "LabelVocab":
    """Training order from the training split's label sets: frequency desc, ties by name.

    Args:
      label_sets: one iterable of label names per training image.
      all_names: optional full list of the dataset's labels, so that a label that never
        occurs in the training split still gets an id (at the end, frequency 0).
    """
    counts = collections.Counter()
    for labels in label_sets:
      counts.update(set(labels))
    for n in all_names or ():
      counts.setdefault(n, 0)
    ordered = sorted(counts, key=lambda n: (-counts[n], n))
    return cls(ordered)

  @property
  def num_labels(self) -> int:
    """K, the number of real labels."""
    return len(self.names)

  @property
  def end_id(self) -> int:
    return end_id_of(len(self.names))

  @property
  def start_id(self) -> int:
    return start_id_of(len(self.names))

  def id(self, name: str) -> int:
    try:
      return self._ids[name]
    except KeyError:
      raise KeyError(f"Unknown label {name!r}; the vocabulary has {self.num_labels} labels: "
                     f"{', '.join(self.names[:20])}{' ...' if self.num_labels > 20 else ''}") from None

  def encode(self, names: Iterable[str]) -> list[int]:
    """Label names -> sorted distinct ids (the training order). Unknown name: KeyError."""
    return sorted({self.id(n) for n in names})

  def decode(self, ids: Iterable[int]) -> list[str]:
    """Ids -> names; stops at the first PAD (-1) or END id."""
    out = []
    for i in ids:
      i = int(i)
      if i < 0 or i >= self.num_labels:
        break
      out.append(self.names[i])
    return out

  def save(self, path: str | os.PathLike) -> None:
    """One name per line, in id order (the file exports ship as `labels.txt`)."""
    tf.io.gfile.makedirs(os.path.dirname(os.fspath(path)) or ".")
    with tf.io.gfile.GFile(os.fspath(path), "wb") as f:
      f.write(("\n".join(self.names) + "\n").encode("utf-8"))

  @classmethod
  def load(cls, path: str | os.PathLike) -> "LabelVocab":
    """Reads `save`'s file: UTF-8, one name per line (split on "\n" only)."""
    with tf.io.gfile.GFile(os.fspath(path), "rb") as f:
      data = f.read()
    try:
      names = data.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
      raise BadLabelError(f"{os.fspath(path)}: not UTF-8 ({e}); expected the labels.txt "
                          "that LabelVocab.save writes.") from None
    while names and not names[-1]:
      names.pop()
    try:
      return cls(names)
    except ValueError as e:
      raise BadLabelError(f"{os.fspath(path)}: {e}") from None

  def __eq__(self, other):
    return isinstance(other, LabelVocab) and self.names == other.names

  def __repr__(self):
    return f"LabelVocab({self.num_labels} labels: {self.names[:5]}...)"


def sequence_targets(multi_hot: tf.Tensor, max_labels: int | None = None) -> tf.Tensor:
  """Multi-hot labels -> label sequences in id (training) order, then END, -1 padded.

  Args:
    multi_hot: [batch, K] float or bool; nonzero = label present.
    max_labels: keep at most this many labels per image (the most frequent ones);
      None keeps all.

  Returns:
    int32 [batch, T] with T = (most labels of any image in the batch, capped) + 1:
    row b is [ids of b ascending..., END = K, -1, -1, ...].
  """
  multi_hot = tf.cast(multi_hot, tf.bool)  # [B, K]
  k = tf.shape(multi_hot)[1]
  iota = tf.range(k)[tf.newaxis, :]  # [1, K]
  # Present labels sort first (by id), absent ones after them.
  order = tf.argsort(tf.where(multi_hot, iota, k + iota), axis=1, stable=True)  # [B, K]
  counts = tf.reduce_sum(tf.cast(multi_hot, tf.int32), axis=1)  # [B]
  if max_labels is not None:
    counts = tf.minimum(counts, max_labels)
  t = tf.reduce_max(counts) + 1
  order = tf.concat([order, tf.zeros_like(order[:, :1])], axis=1)[:, :t]  # [B, T]
  pos = tf.range(t)[tf.newaxis, :]  # [1, T]
  counts = counts[:, tf.newaxis]  # [B, 1]
  targets = tf.where(pos < counts, order, tf.where(pos == counts, k, PAD_ID))
  return tf.cast(targets, tf.int32)


def teacher_forcing_inputs(target_ids: tf.Tensor, start_id: int) -> tf.Tensor:
  """[l1, l2, END, -1] -> [START, l1, l2, END]: step t reads label t-1 (START at t = 0).

  Positions whose target is padding are masked by the loss; their input is irrelevant.
  """
  start = tf.fill(tf.shape(target_ids[:, :1]), tf.cast(start_id, target_ids.dtype))
  return tf.concat([start, target_ids[:, :-1]], axis=1)  # [B, T]
