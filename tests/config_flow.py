"""A flow tracer: where the config goes, followed as data from `train_lib.train`.

    stays = config_flow.trace(lambda: train_lib.train(config, workdir), config)
    config_flow.returns(stays)     # how often the flow enters a module it had left earlier

With `sys.setprofile`, every call of a function of the package that receives the config, or
one of its sub-ConfigDicts (`config.model`, ...), as an argument is noted with its module, in
call order; consecutive calls in one module are one stay. A return is a stay in a module the
flow had stayed in before. Copies of the config (`config_lib.resolve_paths`) are other
objects: the flow follows the config it was given.
"""

import sys

import ml_collections


def _ids(config) -> set[int]:
  found, todo = set(), [config]
  while todo:
    node = todo.pop()
    found.add(id(node))
    todo += [v for v in node.values() if isinstance(v, ml_collections.ConfigDict)]
  return found


def trace(run, config, package: str = "cnn_rnn_tf") -> list[str]:
  """Runs `run()`; returns the stays (module names, consecutive repeats merged)."""
  ids, calls = _ids(config), []

  def profile(frame, event, arg):
    del arg
    if event != "call":
      return
    module = frame.f_globals.get("__name__", "")
    if not module.startswith(package):
      return
    code = frame.f_code
    count = code.co_argcount + code.co_kwonlyargcount
    local = frame.f_locals
    if any(id(local.get(name)) in ids for name in code.co_varnames[:count]):
      calls.append((module, code.co_name))

  sys.setprofile(profile)
  try:
    run()
  finally:
    sys.setprofile(None)
  stays = []
  for module, function in calls:
    if not stays or stays[-1][0] != module:
      stays.append((module, [function]))
    else:
      stays[-1][1].append(function)
  return stays


def returns(stays) -> int:
  """How many stays are in a module the flow had left earlier."""
  seen, count = set(), 0
  for module, _ in stays:
    count += module in seen
    seen.add(module)
  return count


def describe(stays) -> str:
  return "\n".join(f"{i:2d} {m}: {', '.join(dict.fromkeys(f))}" for i, (m, f) in enumerate(stays))


if __name__ == "__main__":  # python tests/config_flow.py: prints the flow of a tiny run
  import tempfile  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import config_lib, train_lib  # pylint: disable=g-import-not-at-top
  cfg = config_lib.runlocal(config_lib.default_config())
  cfg.train.num_steps = 2
  with tempfile.TemporaryDirectory() as w:
    result = trace(lambda: train_lib.train(cfg, w), cfg)
  print(describe(result))
  print(f"{len(result)} stays in {len({m for m, _ in result})} modules, {returns(result)} returns")
