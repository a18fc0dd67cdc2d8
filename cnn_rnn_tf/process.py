"""Whether a process of this host is still running: stale lock and temporary-file detection.

    process.alive(1234)   # False once pid 1234 has exited (used by workdir.lock and the
                          # feature cache, which only trust pids of their own host)
"""

import os


def alive(pid: int) -> bool:
  """True while a process with this pid exists on this host (ours or another user's)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True  # someone else's process
  return True
