"""The binaries' config flags: `--config=` by name or file, and one-line flag errors.

    from cnn_rnn_tf import config_cli
    _CONFIG = config_cli.define_config_file_flag("config", "Config: a name or a file.")
    app.run(main, flags_parser=config_cli.flags_parser)

`--config=csv:runlocal` is the package's `configs/csv.py:runlocal` (`config_file`), from a
clone or an installed wheel alike; a path loads as `config_flags.DEFINE_config_file` loads
it. An unknown `--config.x` field or a bad value gives one line ("did you mean"), not a
traceback, and exit status 2.
"""

from __future__ import annotations

import os
import sys

from absl import flags
import ml_collections
from ml_collections import config_flags

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib


def named_configs() -> dict[str, str]:
  """The configs shipped with the package: name -> file ({"csv": ".../configs/csv.py", ...}).

  An installed wheel holds them as `cnn_rnn_tf/configs/*.py` (setup.py maps the top-level
  `configs/` there); a checkout reads its top-level `configs/`.
  """
  package = os.path.dirname(os.path.abspath(__file__))
  for folder in (os.path.join(package, "configs"), os.path.join(os.path.dirname(package), "configs")):
    if os.path.isdir(folder):
      return {f[:-3]: os.path.join(folder, f) for f in sorted(os.listdir(folder))
              if f.endswith(".py") and not f.startswith("_")}
  return {}


def config_file(spec: str) -> str:
  """A `--config=` value with a config name replaced by the package's file; paths unchanged.

      config_file("voc2007:runlocal")         # ".../configs/voc2007.py:runlocal"
      config_file("configs/voc2007.py:paper")  # unchanged: a path (a "/" or ".py", or a file)

  Raises ValueError for a bare name that is neither a file nor a named config.
  """
  name, sep, arg = spec.partition(":")
  if not name or os.path.exists(name) or name.endswith(".py") or "/" in name or os.sep in name:
    return spec
  named = named_configs()
  if name not in named:
    raise ValueError(f"no file {name!r} and no named config {name!r} (named "
                     f"configs: {', '.join(named)}; or give a path such as configs/csv.py)")
  return named[name] + sep + arg


def define_config_file_flag(name: str, help_string: str, flag_values=None, sys_argv=None):
  """`config_flags.DEFINE_config_file` that also takes a config name (`config_file`).

      _CONFIG = config_cli.define_config_file_flag("config", "Config: a name or a file.")
      # --config=csv:runlocal or --config=configs/csv.py:runlocal or --config=/my/config.py

  `sys_argv`: where config_flags finds the `--<name>.a.b` overrides (default sys.argv).
  """

  flag_values = flags.FLAGS if flag_values is None else flag_values
  holder = config_flags.DEFINE_config_file(name, None, help_string, flag_values=flag_values,
                                           lock_config=True, sys_argv=sys_argv)
  _look_up_names(flag_values[name])
  return holder


def _look_up_names(flag) -> None:
  """Puts `config_file`'s name lookup in front of the flag's config file parser.

  config_flags has no documented hook for it: `Flag.parser` is absl's public attribute, but
  the parser it holds is config_flags' own (not exported), so it is wrapped, not subclassed.
  """

  class NamedConfigParser:
    def __init__(self, parser):
      self._parser = parser

    def parse(self, path):
      return self._parser.parse(config_file(path))

    def __getattr__(self, attr):  # flag_type() and the rest: the file parser's
      return getattr(self._parser, attr)

  flag.parser = NamedConfigParser(flag.parser)


def _config_flags(argv, flag_values) -> dict[str, ml_collections.ConfigDict]:
  """The config flags (`--config`, ...) used in `argv`: name -> their config (loaded anew:
  a failed parse leaves the flag without a value)."""
  found = {}
  for name in {a[2:].split(".", 1)[0] for a in argv[1:] if a.startswith("--") and "." in
               a.split("=", 1)[0]}:
    if name not in flag_values:
      continue
    flag = flag_values[name]
    config = flag.value if isinstance(flag.value, ml_collections.ConfigDict) else flag.default
    if not isinstance(config, ml_collections.ConfigDict):
      given = [a.split("=", 1)[1] for a in argv[1:] if a.startswith(f"--{name}=")]
      try:
        config = flag.parser.parse(given[-1]) if given else None
      except Exception:  # pylint: disable=broad-except
        config = None
    if isinstance(config, ml_collections.ConfigDict):
      found[name] = config
  return found


def _unknown_override(argv, configs: dict[str, ml_collections.ConfigDict],
                      hint: str = "") -> str | None:
  """One line naming the first `--<config flag>.a.b` override whose field does not exist."""
  for name, config in configs.items():
    known = config_lib.field_names(config)
    prefixes = {n.rsplit(".", i)[0] for n in known for i in range(n.count(".") + 1)}
    for arg in argv[1:]:
      if not arg.startswith(f"--{name}."):
        continue
      field = arg[len(name) + 3:].split("=", 1)[0]
      if field in prefixes:
        continue
      close = config_checks.closest_field(field, known)
      line = f"Unknown config field --{name}.{field}"
      if close:
        line += f"; did you mean --{name}.{close}?"
      return line + (f" ({hint})" if hint else "")
  return None


def _first_line(error: BaseException) -> str:
  text = str(error).strip().strip("'\"")
  return text.splitlines()[0] if text else ""


def _short(error: BaseException) -> str:
  """A flag error in one line: config_flags embeds the config file's whole traceback."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip()]
  if len(lines) > 1 and any(l.startswith("Traceback") for l in lines):
    return f"{lines[0]} {lines[-1]}"
  return " ".join(lines)


def define_overrides_flag(name: str, config: ml_collections.ConfigDict, help_string: str,
                          hint: str = ""):
  """`config_flags.DEFINE_config_dict` whose bad overrides exit with one line.

  DEFINE_config_dict applies the `--<name>.a.b=value` overrides of sys.argv when it is
  defined (at import of the binary), so their errors cannot wait for `flags_parser`.
  `hint` is added to the unknown-field line (e.g. which fields may be set).
  """
  try:
    return config_flags.DEFINE_config_dict(name, config, help_string, lock_config=True)
  except flags.Error as e:
    line = f"Flags parsing error: {_short(e)}"
  except (AttributeError, KeyError, TypeError, ValueError) as e:
    line = _unknown_override(sys.argv, {name: config}, hint) or (
        f"Bad --{name} override: {type(e).__name__}: {_first_line(e)}")
  sys.stderr.write(f"FATAL {line}\n")
  sys.exit(2)


def _load_error(value) -> Exception | None:
  """The error of a config file flag's value whose file failed to load, or None.

  config_flags defers that error (an IOError) to the first use of the config: its stand-in
  value raises on any attribute access. There is no documented check, so this one function
  asks the value what it does, rather than testing a private class.
  """
  if value is None or isinstance(value, ml_collections.ConfigDict):
    return None
  try:
    getattr(value, "keys")
  except OSError as e:
    return e
  return None


def _is_config_flag(flag) -> bool:
  """Whether `flag` is config_flags' (its public `get_config_filename` refuses others)."""
  try:
    config_flags.get_config_filename(flag)
  except TypeError:
    return False
  return True


def _check_loaded(flag_values) -> None:
  """Raises OSError for a config file flag whose file failed to load."""
  for name in flag_values:
    flag = flag_values[name]
    error = _load_error(flag.value) if _is_config_flag(flag) else None
    if error is not None:
      raise OSError(f"--{name}: {_short(error)}") from error


def flags_parser(argv):
  """absl flag parsing with one-line errors: `app.run(main, flags_parser=...)`.

  An unknown `--config.a.b` field names the field and the closest known one; a bad flag
  value names the flag. Exits with status 2 (usage error) instead of a traceback.
  """
  try:
    remaining = flags.FLAGS(argv)
    _check_loaded(flags.FLAGS)
    return remaining
  except flags.Error as e:
    sys.stderr.write(f"FATAL Flags parsing error: {_short(e)}\n"
                     "Pass --helpshort or --helpfull to see help on flags.\n")
  except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
    line = _unknown_override(argv, _config_flags(argv, flags.FLAGS))
    if line is None:  # e.g. a config file that is missing or refuses its argument
      line = f"Flags parsing error: {type(e).__name__}: {_first_line(e)}"
    sys.stderr.write(f"FATAL {line}\n")
  sys.exit(2)
