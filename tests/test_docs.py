"""The commands of README.md, BUILD.md, benchmarks/README.md and export/README.md run as written.

Cheap checks (every test run): every `python -m MODULE` of the docs names a module of this
repository; every binary answers `--help` with a usage that names it (absl's `--help` exits
with code 1); every `--flag` a documented command passes is a flag of that binary and every
`--config.a.b=...` a field of the config it loads; every `make TARGET` is a Makefile target;
a demo workdir is written the way the demo lays it out. Slow: a runlocal workdir trained as
the README says, then `evaluate`, `export`, `predict` and `visualize` run on it from another
folder.
"""

import functools
import os
import re
import shlex
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOCS = ("README.md", "BUILD.md", "benchmarks/README.md", "export/README.md")
# Binaries that import TensorFlow at module level: seconds to start, so their checks are slow.
_HEAVY = ("benchmarks.extract", "benchmarks.serving", "benchmarks.backbones", "benchmarks.profile")
BINARIES = ("cnn_rnn_tf.train", "cnn_rnn_tf.evaluate", "cnn_rnn_tf.export",
            "cnn_rnn_tf.predict", "cnn_rnn_tf.visualize", "cnn_rnn_tf.demo",
            "cnn_rnn_tf.serving.client", "cnn_rnn_tf.serving.server",
            "cnn_rnn_tf.data.make_synthetic", "benchmarks.run",
            "benchmarks.train_throughput", "benchmarks.strategy") + _HEAVY


def _env():
  """This checkout first on the path (the venv may hold an editable install of another)."""
  return {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}


def doc_commands() -> list[tuple[str, str]]:
  """(doc, command) for every shell line in the docs' code blocks, continuations joined."""
  out = []
  for doc in DOCS:
    text = open(os.path.join(ROOT, doc), encoding="utf-8").read()
    blocks = [m.group(2) for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M)
              if m.group(1) in ("", "sh", "bash")]
    blocks += re.findall(r"\n\n((?:    .+\n)+)", text)  # indented blocks
    for block in blocks:
      block = re.sub(r"\\\n\s*", " ", block)
      for line in block.splitlines():
        line = line.split(" # ")[0].strip()
        if re.search(r"(^|\s|/)(python\S*\s+-m|make)\s", line + " "):
          out.append((doc, line))
  return out


def python_commands():
  """(doc, module, args) of every `python -m MODULE args` in the docs."""
  out = []
  for doc, line in doc_commands():
    match = re.search(r"python\S*\s+-m\s+(\S+)(.*)", line)
    if match and not match.group(1).startswith(("pip", "pytest", "venv")):
      args = shlex.split(match.group(2).replace("[", " ").replace("]", " ").replace("|", " "))
      out.append((doc, match.group(1), args))
  return out


@functools.lru_cache(maxsize=None)
def helpfull(module: str) -> str:
  result = subprocess.run([sys.executable, "-m", module, "--helpfull"], cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)
  return result.stdout


def _mark(module):
  return pytest.param(module, marks=pytest.mark.slow) if module in _HEAVY else module


def test_docs_have_commands():
  modules = {m for _, m, _ in python_commands()}
  assert {"cnn_rnn_tf.train", "cnn_rnn_tf.evaluate", "cnn_rnn_tf.export",
          "cnn_rnn_tf.predict", "cnn_rnn_tf.visualize"} <= modules, modules


def test_every_documented_module_is_a_binary_here():
  for doc, module, _ in python_commands():
    assert module in BINARIES, f"{doc}: `python -m {module}` is not a binary of this repository"


def test_make_targets_exist():
  makefile = open(os.path.join(ROOT, "Makefile")).read()
  targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
  for doc, line in doc_commands():
    for target in re.findall(r"(?:^|\s)make\s+([\w-]+)", line):
      assert target in targets, f"{doc}: `make {target}` is not a Makefile target"


def test_demo_workdirs_follow_the_demo_layout():
  """The demo writes runs/demo/{backbone, seed<S>/<head>}: documented paths must match."""
  for doc, module, args in python_commands():
    for arg in args:
      match = re.match(r"--workdir=(runs/demo\S*)", arg)
      if match and module != "cnn_rnn_tf.demo":
        assert re.fullmatch(r"runs/demo/(backbone|seed\d+/(cnn_rnn|bce))", match.group(1)), (
            f"{doc}: {module} {arg}: the demo writes runs/demo/seed<S>/<head>")


@pytest.mark.parametrize("module", [_mark(m) for m in BINARIES])
def test_help_names_the_binary(module):
  result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=300, check=False)
  assert result.returncode == 1, result.stdout[-2000:]  # absl: --help exits with 1
  assert f"python -m {module}" in result.stdout, result.stdout[:2000]
  if module.startswith("cnn_rnn_tf."):  # quiet by default: no TensorFlow start-up lines
    assert "cudart_stub" not in result.stdout and "cpu_feature_guard" not in result.stdout, (
        result.stdout[:2000])


# Every binary has --progress=auto|on|off (runtime.define_progress_flag).
@pytest.mark.parametrize("module", [m for m in BINARIES if m.startswith("cnn_rnn_tf.")])
def test_every_binary_has_a_progress_flag(module):
  assert re.search(r"--progress: <auto\|on\|off>", helpfull(module)), module


@pytest.mark.parametrize("module", [_mark(m) for m in BINARIES])
def test_documented_flags_exist(module):
  """Every --flag a doc passes to `module` is one of its flags; --config.* fields exist."""
  from helpers import load_config_file  # pylint: disable=g-import-not-at-top
  commands = [(doc, args) for doc, m, args in python_commands() if m == module]
  if not commands:
    pytest.skip(f"no documented command runs {module}")
  known = helpfull(module)
  for doc, args in commands:
    config = None
    for arg in args:
      if not arg.startswith("--"):
        continue
      name, _, value = arg[2:].partition("=")
      if name.startswith("config."):
        assert config is not None, f"{doc}: {module} {arg} before --config"
        node = config
        for part in name.split(".")[1:]:
          assert part in node, f"{doc}: {module} {arg}: no config field {name[7:]!r}"
          node = node[part]
        continue
      assert re.search(rf"--(\[no\])?{re.escape(name)}:", known), (
          f"{doc}: {module} has no flag --{name}")
      if name == "config":
        path, _, config_arg = value.partition(":")
        config = load_config_file(os.path.join(ROOT, path), config_arg or None)


def _run(cmd, cwd, timeout=900):
  result = subprocess.run([sys.executable, "-m"] + cmd, cwd=cwd, env=_env(),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False)
  assert result.returncode == 0, f"{' '.join(cmd)}:\n{result.stdout[-3000:]}"
  return result.stdout


@pytest.mark.slow
def test_binaries_on_a_runlocal_workdir_from_another_folder(tmp_path):
  """The README's train -> evaluate -> export -> predict -> visualize, cwd outside the repo."""
  workdir = str(tmp_path / "runs" / "mine")
  _run(["cnn_rnn_tf.train", "--config=configs/demo.py:runlocal", f"--workdir={workdir}",
        f"--config.data.data_dir={tmp_path / 'tfds'}"], ROOT)
  elsewhere = tmp_path / "elsewhere"
  elsewhere.mkdir()
  out = _run(["cnn_rnn_tf.evaluate", f"--workdir={workdir}"], elsewhere)
  assert "C-P" in out or os.path.exists(os.path.join(workdir, "eval", "metrics.json"))
  _run(["cnn_rnn_tf.export", f"--workdir={workdir}",
        "--export_base=export/models/cnn_rnn"], elsewhere)
  assert os.listdir(elsewhere / "export" / "models" / "cnn_rnn") == ["1"]
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  photos = elsewhere / "photos"
  photos.mkdir()
  rng = np.random.default_rng(0)
  for i in range(2):
    tf.io.write_file(str(photos / f"p{i}.png"), tf.io.encode_png(
        rng.integers(0, 255, [40, 40, 3], dtype=np.uint8)))
  _run(["cnn_rnn_tf.predict", "--saved_model=export/models/cnn_rnn/1", "photos/",
        "--output=labels.csv"], elsewhere)
  rows = open(elsewhere / "labels.csv").read().splitlines()
  assert len(rows) == 3 and all("p0.png" in r or "p1.png" in r for r in rows[1:]), rows
  _run(["cnn_rnn_tf.visualize", f"--workdir={workdir}", "--images", "photos/p0.png"],
       elsewhere)
  assert os.path.exists(os.path.join(workdir, "visualize", "visualize.md"))


def _slug(heading: str) -> str:
  """GitHub's anchor of a Markdown heading: lower case, punctuation dropped, spaces to '-'."""
  return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_method_contents_list_every_section_in_order():
  """docs/method.md's "Contents:" line links each `## ` section, in the page's order."""
  text = open(os.path.join(ROOT, "docs", "method.md"), encoding="utf-8").read()
  sections = [_slug(line[3:]) for line in text.splitlines() if line.startswith("## ")]
  contents = text.split("Contents:", 1)[1].split("\n\n", 1)[0]
  linked = re.findall(r"\]\(#([^)]+)\)", contents)
  assert linked == sections, (f"missing from the contents: {sorted(set(sections) - set(linked))}; "
                              f"not a section: {sorted(set(linked) - set(sections))}")
