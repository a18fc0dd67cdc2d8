"""The workdir's lock: one trainer per workdir.

    from cnn_rnn_tf.workdir import locking
    with locking.lock("runs/demo"):       # the trainer, chief only
      ...
"""

from __future__ import annotations

import contextlib
import json
import os
import socket

from absl import logging

from cnn_rnn_tf import process
from cnn_rnn_tf.workdir import layout


class WorkdirLockedError(RuntimeError):
  """Another live process holds the workdir."""


def _read_lock(path: str) -> dict:
  try:
    with open(path) as f:
      return json.load(f)
  except (OSError, ValueError):
    return {}


@contextlib.contextmanager
def lock(workdir: str):
  """Holds `<workdir>/.lock` (host and pid) while the block runs; for the trainer.

  A live holder raises WorkdirLockedError naming its host and pid. A lock left by a dead
  process on this host is taken over with a warning; one from another host cannot be
  checked, so it is refused (delete the .lock file if that run is gone). Only local
  folders are locked (a remote workdir, e.g. gs://, logs a warning). Evaluate and export
  do not take the lock: they read finished checkpoints.
  """
  if "://" in workdir:
    logging.warning("Workdir %s is not on a local file system: not locked.", workdir)
    yield
    return
  os.makedirs(workdir, exist_ok=True)
  path = layout.lock_path(workdir)
  me = {"host": socket.gethostname(), "pid": os.getpid()}
  tmp = f"{path}.{me['host']}.{me['pid']}"
  with open(tmp, "w") as f:
    json.dump(me, f)
  try:
    for _ in range(3):
      try:
        os.link(tmp, path)  # atomic: fails if the lock exists
        break
      except FileExistsError:
        holder = _read_lock(path)
        host, pid = holder.get("host"), holder.get("pid")
        if host == me["host"] and isinstance(pid, int) and pid != me["pid"] and not process.alive(pid):
          logging.warning("Taking over the stale lock %s of process %d on %s (not running).",
                          path, pid, host)
          with contextlib.suppress(FileNotFoundError):
            os.remove(path)
          continue
        if not holder:
          raise WorkdirLockedError(
              f"Workdir {workdir!r} is locked ({path} exists but is unreadable); if no "
              "trainer runs there, delete that file.")
        raise WorkdirLockedError(
            f"Workdir {workdir!r} is in use by process {pid} on host {host} ({path}). Wait "
            "for it, or use another --workdir; if that process is gone, delete the lock file.")
    else:
      raise WorkdirLockedError(f"Could not take the lock {path}.")
  finally:
    os.remove(tmp)
  try:
    yield
  finally:
    if _read_lock(path) == me:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)
