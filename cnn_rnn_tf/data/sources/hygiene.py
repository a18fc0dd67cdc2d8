"""Data hygiene: duplicate rows in a split, and images shared by the train and the eval split.

    dups = hygiene.duplicates(entries)                 # [(entry, the earlier entry it repeats)]
    shared = hygiene.overlap(train_entries, eval_entries)   # [Shared(eval, train, how)]

An `Entry` is one example as its source lists it: where it is (file and line), the image file
(an absolute path) and its labels. A duplicate repeats an earlier entry's path and labels (the
same image with other labels is not one: that is a labelling question, not a copy). An eval
entry overlaps the train split when its path is a train entry's path ("path"), or its file has
the same bytes as a train entry's file under another path ("content": SHA-256, computed only
for files whose size some file of the other split has, so a clean pair of splits costs one
`stat` per file). The CSV source (`csv_source.py`) counts both into `source.hygiene` (and so
into `<workdir>/data_report.json`), logs a warning, and with `data.allow_overlap=False`
refuses an overlap.
"""

from __future__ import annotations

import collections
import hashlib
import os
from typing import NamedTuple, Sequence

SAME_PATH, SAME_CONTENT = "path", "content"
_CHUNK = 1 << 20  # bytes read at a time when hashing a file


class Entry(NamedTuple):
  where: str  # e.g. "train.csv line 3 (image 'img/1.jpg')"
  path: str  # the image file, absolute
  labels: tuple[str, ...]


class Shared(NamedTuple):
  """An eval entry whose image is also in the train split."""
  eval: Entry
  train: Entry
  how: str  # SAME_PATH or SAME_CONTENT

  def __str__(self):
    return f"{self.eval.where} is {self.train.where} (same {self.how})"


def duplicates(entries: Sequence[Entry]) -> list[tuple[Entry, Entry]]:
  """Each entry that repeats an earlier one (same path and labels), with that earlier one."""
  first: dict[tuple[str, frozenset[str]], Entry] = {}
  found = []
  for entry in entries:
    identity = (os.path.normpath(entry.path), frozenset(entry.labels))
    if identity in first:
      found.append((entry, first[identity]))
    else:
      first[identity] = entry
  return found


def overlap(train: Sequence[Entry], evaluation: Sequence[Entry]) -> list[Shared]:
  """The eval entries whose image is a train entry's, by path or else by file content."""
  by_path = {}
  for entry in train:
    by_path.setdefault(os.path.normpath(entry.path), entry)
  shared, rest = [], []
  for entry in evaluation:
    match = by_path.get(os.path.normpath(entry.path))
    if match is not None:
      shared.append(Shared(entry, match, SAME_PATH))
    else:
      rest.append(entry)
  shared += _same_content(list(by_path.values()), rest)
  return shared


def _same_content(train: Sequence[Entry], evaluation: Sequence[Entry]) -> list[Shared]:
  """Eval entries whose file has the bytes of a train entry's file (another path)."""
  train_sizes = collections.defaultdict(list)
  for entry in train:
    size = _size(entry.path)
    if size is not None:
      train_sizes[size].append(entry)
  digests: dict[str, Entry] = {}  # of the train files whose size an eval file has
  hashed_sizes, candidates = set(), []
  for entry in evaluation:
    size = _size(entry.path)
    if size is None or size not in train_sizes:
      continue
    candidates.append(entry)
    if size not in hashed_sizes:
      hashed_sizes.add(size)
      for train_entry in train_sizes[size]:
        digests.setdefault(file_digest(train_entry.path), train_entry)
  shared = []
  for entry in candidates:
    match = digests.get(file_digest(entry.path))
    if match is not None:
      shared.append(Shared(entry, match, SAME_CONTENT))
  return shared


def _size(path: str) -> int | None:
  try:
    return os.stat(path).st_size
  except OSError:  # a missing file is reported as missing_file, not here
    return None


def file_digest(path: str) -> str:
  """SHA-256 (hex) of a file's bytes, read in chunks."""
  digest = hashlib.sha256()
  with open(path, "rb") as f:
    for chunk in iter(lambda: f.read(_CHUNK), b""):
      digest.update(chunk)
  return digest.hexdigest()
