"""The import graph of cnn_rnn_tf/: no cycle, and the arrows point one way.

Parsed from the source (ast), every `import` statement including those inside functions, so
nothing is imported and a lazy import cannot hide an arrow. The rules (README, BRIEF of
issue 11): data and model modules import nothing of training; export and serving import no
binary and not the trainer; evaluation never imports the trainer.
"""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = "cnn_rnn_tf"

# Modules of the data and model layer (prefix match: "cnn_rnn_tf.data" covers data/*).
DATA_AND_MODEL = ("cnn_rnn_tf.data", "cnn_rnn_tf.images", "cnn_rnn_tf.image_files",
                  "cnn_rnn_tf.image_headers",
                  "cnn_rnn_tf.vocab", "cnn_rnn_tf.relu_lstm", "cnn_rnn_tf.backbones",
                  "cnn_rnn_tf.head_layers", "cnn_rnn_tf.model", "cnn_rnn_tf.decoding",
                  "cnn_rnn_tf.inference", "cnn_rnn_tf.metrics", "cnn_rnn_tf.ranking",
                  "cnn_rnn_tf.losses", "cnn_rnn_tf.decoders", "cnn_rnn_tf.rule_masks",
                  "cnn_rnn_tf.sampling", "cnn_rnn_tf.multilabel")
TRAINING = ("cnn_rnn_tf.train_lib", "cnn_rnn_tf.distribute", "cnn_rnn_tf.train",
            "cnn_rnn_tf.evaluate_lib", "cnn_rnn_tf.evaluate", "cnn_rnn_tf.demo",
            "cnn_rnn_tf.demo_lib", "cnn_rnn_tf.demo_report")
BINARIES = ("cnn_rnn_tf.train", "cnn_rnn_tf.evaluate", "cnn_rnn_tf.export",
            "cnn_rnn_tf.predict", "cnn_rnn_tf.visualize", "cnn_rnn_tf.demo")
EXPORT_AND_SERVING = ("cnn_rnn_tf.export_lib", "cnn_rnn_tf.export_inputs", "cnn_rnn_tf.serving")


def _module_files() -> dict[str, str]:
  """{"cnn_rnn_tf.data.sources": path, "cnn_rnn_tf.data": .../data/__init__.py, ...}."""
  modules = {}
  for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
    for name in files:
      if not name.endswith(".py"):
        continue
      rel = os.path.relpath(os.path.join(folder, name), ROOT)[:-3].split(os.sep)
      if rel[-1] == "__init__":
        rel = rel[:-1]
      modules[".".join(rel)] = os.path.join(folder, name)
  return modules


def _imports(path: str, module: str, modules) -> set[str]:
  """The package modules `path` imports (anywhere in the file)."""
  is_package = path.endswith("__init__.py")
  found = set()
  for node in ast.walk(ast.parse(open(path).read(), path)):
    if isinstance(node, ast.Import):
      names = [a.name for a in node.names]
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:  # relative import
        parts = module.split(".")
        parts = parts if is_package else parts[:-1]
        parts = parts[:len(parts) - node.level + 1]
        base = ".".join(parts + ([base] if base else []))
      # `from a import b`: b is a module if a.b is one, else a name inside a.
      names = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
               for a in node.names]
    else:
      continue
    for name in names:
      while name and name not in modules:  # `import cnn_rnn_tf.data.sources as x`
        name = name.rpartition(".")[0]
      if name.startswith(PACKAGE) and name != module:
        found.add(name)
  return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
  modules = _module_files()
  return {m: _imports(p, m, modules) for m, p in modules.items()}


def _reachable(graph, start: str) -> dict[str, list[str]]:
  """Every module `start` imports, directly or not: name -> the chain that reaches it."""
  chains, todo = {}, [(start, [start])]
  while todo:
    node, chain = todo.pop()
    for nxt in sorted(graph.get(node, ())):
      if nxt not in chains:
        chains[nxt] = chain + [nxt]
        todo.append((nxt, chain + [nxt]))
  return chains


def _in(module: str, group) -> bool:
  return any(module == g or module.startswith(g + ".") for g in group)


def test_the_parser_sees_known_imports(graph):
  # A check of the test itself: arrows that exist today must be found.
  assert "cnn_rnn_tf.model" in graph["cnn_rnn_tf.inference"]
  assert "cnn_rnn_tf.data.sources" in graph["cnn_rnn_tf.data.inputs"]  # `from pkg import mod`
  assert "cnn_rnn_tf.evaluate_lib" in graph["cnn_rnn_tf.evaluate"]  # inside main()
  assert "cnn_rnn_tf.workdir" in graph["cnn_rnn_tf.evaluate_lib"]


def test_no_import_cycle(graph):
  cycles = []
  for module in sorted(graph):
    chain = _reachable(graph, module).get(module)
    if chain:
      cycles.append(" -> ".join(chain))
  assert not cycles, "Import cycles:\n" + "\n".join(cycles)


def _violations(graph, sources, forbidden) -> list[str]:
  found = []
  for module in sorted(graph):
    if not _in(module, sources):
      continue
    for target, chain in sorted(_reachable(graph, module).items()):
      if _in(target, forbidden):
        found.append(" -> ".join(chain))
  return found


def test_data_and_model_import_nothing_of_training(graph):
  bad = _violations(graph, DATA_AND_MODEL, TRAINING)
  assert not bad, "Data/model modules reach training code:\n" + "\n".join(bad)


def test_export_and_serving_import_no_binary_and_not_the_trainer(graph):
  bad = _violations(graph, EXPORT_AND_SERVING, BINARIES + ("cnn_rnn_tf.train_lib",))
  assert not bad, "Export/serving reach a binary or the trainer:\n" + "\n".join(bad)


def test_evaluation_does_not_import_the_trainer(graph):
  bad = _violations(graph, ("cnn_rnn_tf.evaluate_lib", "cnn_rnn_tf.evaluate",
                            "cnn_rnn_tf.workdir", "cnn_rnn_tf.config_lib",
                            "cnn_rnn_tf.config_checks", "cnn_rnn_tf.config_cli"),
                    ("cnn_rnn_tf.train_lib", "cnn_rnn_tf.train"))
  assert not bad, "Evaluation reaches the trainer:\n" + "\n".join(bad)


def test_config_lib_imports_no_package_module(graph):
  # configs/*.py import config_lib; keeping it a leaf keeps every config file cheap to load.
  # Its checks import it, the decoder table (`decoders`, a leaf of plain Python) and, for the
  # train.keep_best check, the metric table (inside the check) from `metrics`, which imports
  # only `ranking` and `decoders`, leaves (NumPy only).
  assert graph["cnn_rnn_tf.config_lib"] == set()
  assert graph["cnn_rnn_tf.config_checks"] <= {"cnn_rnn_tf.config_lib", "cnn_rnn_tf.metrics",
                                               "cnn_rnn_tf.decoders", "cnn_rnn_tf.config_rules"}
  assert graph["cnn_rnn_tf.config_rules"] <= {"cnn_rnn_tf.config_lib", "cnn_rnn_tf.decoders"}
  assert graph["cnn_rnn_tf.config_cli"] <= {"cnn_rnn_tf.config_lib", "cnn_rnn_tf.config_checks"}
  assert graph["cnn_rnn_tf.metrics"] <= {"cnn_rnn_tf.ranking", "cnn_rnn_tf.multilabel",
                                        "cnn_rnn_tf.decoders"}
  assert graph["cnn_rnn_tf.multilabel"] <= {"cnn_rnn_tf.ranking"}
  assert graph["cnn_rnn_tf.ranking"] == set()
  assert graph["cnn_rnn_tf.decoders"] == set()


def _module_map() -> set[str]:
  """The modules cnn_rnn_tf/__init__.py's map lists, as dotted names.

  The map's rule: one line per module, two spaces in, its name in the first column
  (`vocab`); a subpackage is `name/` and its modules are indented two more spaces under it
  (`data/` then `    sources`). Anything after the name is its description.
  """
  doc = open(os.path.join(ROOT, PACKAGE, "__init__.py")).read().split('"""')[1]
  listed, parents = set(), []
  for line in doc.split("\n\n", 1)[1].splitlines():
    stripped = line.lstrip(" ")
    depth = (len(line) - len(stripped)) // 2 - 1
    if not stripped or depth < 0 or depth > len(parents):
      continue
    name = stripped.split()[0]
    parents = parents[:depth]
    if name.endswith("/"):
      parents.append(name[:-1])
      name = name[:-1]
    listed.add(".".join([PACKAGE, *parents[:depth], name]))
  return listed


def test_the_module_map_lists_every_module_and_only_modules():
  """Every module file under cnn_rnn_tf/ (not __init__ / __main__) has its line in the map of
  cnn_rnn_tf/__init__.py, and every name in the map is a module or subpackage."""
  modules = {m for m in _module_files() if m != PACKAGE and not m.endswith(".__main__")}
  listed = _module_map()
  assert not modules - listed, f"missing from the map in cnn_rnn_tf/__init__.py: {sorted(modules - listed)}"
  assert not listed - modules, f"listed in cnn_rnn_tf/__init__.py but no such module: {sorted(listed - modules)}"
