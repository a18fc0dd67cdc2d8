"""Progress bars for the terminal only: training, feature extraction, evaluation, prediction.

    from cnn_rnn_tf import progress
    with progress.bar(total=num_steps, desc="train", unit="step") as bar:
      ...
      bar.update(n)
      bar.set_postfix(loss=f"{loss:.3f}", ex_s=f"{rate:.0f}")

A bar is drawn (tqdm: rate and ETA) only where a person watches: mode "auto" (the default)
draws when stderr is a terminal and the environment variable CI is unset; "on" always; "off"
never. Binaries set the mode from their `--progress=auto|on|off` flag through
`runtime.setup`; log files and CI output therefore never get bar control characters. When no
bar is drawn, `bar()` returns an object with the same methods that does nothing, so callers
never branch on the mode.
"""

from __future__ import annotations

import os
import sys

MODES = ("auto", "on", "off")
_mode = "auto"


def set_mode(mode: str) -> None:
  """Sets the process-wide mode: "auto" (terminal and not CI), "on" or "off"."""
  global _mode
  if mode not in MODES:
    raise ValueError(f"Unknown progress mode {mode!r}; expected one of {MODES}.")
  _mode = mode


def enabled() -> bool:
  """Whether bars are drawn now (see the module docstring)."""
  if _mode == "auto":
    return sys.stderr.isatty() and not os.environ.get("CI")
  return _mode == "on"


class _NoBar:
  """What `bar()` returns when nothing is drawn: the tqdm methods the package uses, no-ops."""

  def __enter__(self):
    return self

  def __exit__(self, *exc):
    return False

  def update(self, n: int = 1) -> None:
    del n

  def set_postfix(self, *args, **kwargs) -> None:
    del args, kwargs

  def set_description(self, *args, **kwargs) -> None:
    del args, kwargs

  def close(self) -> None:
    pass


def bar(total: int | None = None, desc: str = "", unit: str = "it", initial: int = 0):
  """A tqdm bar on stderr (rate and ETA) when `enabled()`, else a no-op with the same methods.

  `total` None draws a counter with a rate but no ETA (e.g. a split of unknown size).
  """
  if not enabled():
    return _NoBar()
  import tqdm  # pylint: disable=g-import-not-at-top  (tensorflow-datasets depends on tqdm)
  return tqdm.tqdm(total=total, desc=desc, unit=unit, initial=initial, file=sys.stderr,
                   ncols=_columns(), leave=True, mininterval=0.5, smoothing=0.1)


def _columns() -> int:
  """The terminal's width; 100 where it reports none (a fresh pseudo-terminal says 0)."""
  try:
    columns = os.get_terminal_size(sys.stderr.fileno()).columns
  except (OSError, ValueError):
    columns = 0
  return columns if columns >= 40 else 100
