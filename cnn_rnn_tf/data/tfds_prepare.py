"""TFDS preparation that several processes may start at once (multi-machine runs).

    builder = tfds_prepare.prepare(lambda: tfds.builder("voc/2007", data_dir=d),
                                   tfds.download.DownloadConfig(manual_dir=m))

The first process prepares while holding an `fcntl.flock` on a lock file in the data_dir;
the others wait for it and then find the dataset prepared (no FileExistsError).
"""

from __future__ import annotations

import fcntl
import os
from typing import Any, Callable

from absl import logging


def prepare(make_builder: Callable[[], Any], download_config=None, *, builder=None):
  """A prepared TFDS builder; preparation serialized by a lock file in the data_dir.

  Several processes (the workers of a multi-machine run, on a shared data_dir) may find the
  dataset missing at once; without a lock they all generate it and the later ones fail with
  FileExistsError. Here the first one prepares while holding `fcntl.flock` on
  `<data_dir>/.<name>-<config>-<version>.prepare.lock`; the others wait, then build a fresh
  builder that finds the prepared data. `make_builder()` makes a new builder; `builder`, if
  given, is one made already (used as is when its data is prepared).
  """
  builder = builder if builder is not None else make_builder()
  if builder.is_prepared():
    return builder
  root = os.fspath(builder.data_dir_root)
  os.makedirs(root, exist_ok=True)
  config = builder.builder_config.name if builder.builder_config else "default"
  lock_path = os.path.join(root, f".{builder.name}-{config}-{builder.version}.prepare.lock")
  with open(lock_path, "a") as lock:
    try:
      fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      logging.info("Waiting for another process to prepare %s/%s in %s (lock %s).",
                   builder.name, config, root, lock_path)
      fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      builder = make_builder()  # sees what another process may have prepared meanwhile
      builder.download_and_prepare(download_config=download_config)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)
  return builder
