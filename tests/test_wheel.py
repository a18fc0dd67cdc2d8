"""The package as users install it: `make wheel`, installed into a fresh virtualenv, works.

The module fixture builds the wheel once as `make wheel` does (`pip wheel --no-deps`) and
installs it with --no-deps into a temporary venv whose dependencies come from this
interpreter's site-packages (a path in a .pth file: that folder's own .pth files, among them
the editable install of the checkout, are not run). The tests then check, from a folder
outside the repository:

- the wheel holds every file of the package and of configs/ (as `cnn_rnn_tf/configs/`,
  setup.py), so nothing a run reads is left behind;
- every module of the package imports there, and is the wheel's copy, not the checkout's
  (among them `cnn_rnn_tf.demo_config`, the demo's config: it used to be read from
  configs/demo.py by file path, which an installed wheel does not have);
- the train binary loads a config by name (`--config=csv:runlocal`, found by
  `config_cli.config_file` in the wheel's `cnn_rnn_tf/configs/`) and trains 2 steps.

The demo itself (all its stages, at runlocal size) runs in tests/test_demo.py; what could
make it fail only from a wheel (a module or file not shipped, a path into the checkout) is
what these tests check.
"""

import glob
import os
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, cwd, timeout=600):
  # Without PYTHONPATH: a checkout on it would be imported instead of the installed wheel.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
  assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-3000:]}"
  return result.stdout


def _package_files() -> set[str]:
  """The checkout's package files as the wheel names them (configs/ -> cnn_rnn_tf/configs/)."""
  found = set()
  for folder, target in (("cnn_rnn_tf", "cnn_rnn_tf"), ("configs", "cnn_rnn_tf/configs")):
    for dirpath, dirnames, files in os.walk(os.path.join(ROOT, folder)):
      dirnames[:] = [d for d in dirnames if d != "__pycache__"]
      rel = os.path.relpath(dirpath, os.path.join(ROOT, folder))
      for name in files:
        if not name.endswith((".pyc", ".pyo")):
          found.add(os.path.normpath(os.path.join(target, rel, name)).replace(os.sep, "/"))
  return found


class Installed:
  """The built wheel, and the venv's python and site-packages it is installed into."""

  def __init__(self, wheel: str, python: str, site: str, cwd):
    self.wheel, self.python, self.site, self.cwd = wheel, python, site, cwd


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp("wheel")
  dist = tmp_path / "dist"
  _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), ROOT], ROOT)
  wheels = glob.glob(str(dist / "cnn_rnn_tf-*.whl"))
  assert len(wheels) == 1, os.listdir(dist)

  venv = tmp_path / "venv"
  _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], tmp_path)
  python = str(venv / "bin" / "python")
  _run([python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheels[0]], tmp_path)
  site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
              tmp_path).strip()
  with open(os.path.join(site, "_dependencies.pth"), "w") as f:
    f.write(sysconfig.get_paths()["purelib"] + "\n")
  cwd = tmp_path / "elsewhere"
  cwd.mkdir()
  return Installed(wheels[0], python, site, cwd)


@pytest.mark.slow
def test_the_wheel_holds_every_package_file(installed):
  with zipfile.ZipFile(installed.wheel) as wheel:
    shipped = set(wheel.namelist())
  expected = _package_files()
  assert "cnn_rnn_tf/demo_config.py" in expected and "cnn_rnn_tf/configs/csv.py" in expected
  assert not expected - shipped, sorted(expected - shipped)


# Run in the venv: every module is found in the wheel; the libraries and the demo binary are
# imported (the binaries, `app.run`, define absl flags of the same names: each is compiled only).
_IMPORT_ALL = """
import importlib, importlib.util, sys
binaries = set(sys.argv[2].split(","))
for name in sys.argv[1].split(","):
  origin = importlib.util.find_spec(name).origin
  if name in binaries and name != "cnn_rnn_tf.demo":
    compile(open(origin).read(), origin, "exec")
  else:
    origin = importlib.import_module(name).__file__
  print(name, origin)
"""


@pytest.mark.slow
def test_every_module_imports_from_the_wheel(installed):
  files = sorted(f for f in _package_files() if f.endswith(".py"))
  modules = [f[:-3].replace("/", ".").removesuffix(".__init__") for f in files]
  binaries = [m for m, f in zip(modules, files)
              if '\nif __name__ == "__main__"' in open(_checkout_path(f)).read()]
  assert "cnn_rnn_tf.train" in binaries and "cnn_rnn_tf.demo" in binaries
  libraries = [m for m in modules if m not in binaries]
  out = _run([installed.python, "-c", _IMPORT_ALL, ",".join(libraries + binaries),
              ",".join(binaries)], installed.cwd)
  where = dict(line.split(" ", 1) for line in out.splitlines() if line.startswith("cnn_rnn_tf"))
  assert sorted(where) == sorted(modules)
  for name, path in where.items():
    assert path.startswith(installed.site), (name, path)
  assert not (installed.cwd / "configs").exists()


def _checkout_path(wheel_name: str) -> str:
  """The checkout's file of a wheel file name (cnn_rnn_tf/configs/x.py -> configs/x.py)."""
  if wheel_name.startswith("cnn_rnn_tf/configs/"):
    return os.path.join(ROOT, "configs", wheel_name[len("cnn_rnn_tf/configs/"):])
  return os.path.join(ROOT, wheel_name)


@pytest.mark.slow
def test_the_wheel_trains_with_a_named_config(installed):
  """`--config=csv:runlocal` in a folder without configs/: the wheel's copy trains 2 steps."""
  python, site, cwd = installed.python, installed.site, installed.cwd
  resolved = _run([python, "-c", "from cnn_rnn_tf import config_cli; "
                   "print(config_cli.config_file('csv:runlocal'))"], cwd)
  resolved = resolved.strip().splitlines()[-1]
  assert resolved == os.path.join(site, "cnn_rnn_tf", "configs", "csv.py") + ":runlocal", resolved
  assert not (cwd / "configs").exists()
  from PIL import Image  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  (cwd / "mine" / "img").mkdir(parents=True)
  rng = np.random.default_rng(0)
  lines = ["image_name,tags"]
  for i, labels in enumerate(["cat dog", "dog", "cat", "sky cat", "dog sky", "sky"]):
    Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(
        cwd / "mine" / "img" / f"{i}.png")
    lines.append(f"img/{i}.png,{labels}")
  (cwd / "mine" / "train.csv").write_text("\n".join(lines) + "\n")
  _run([python, "-m", "cnn_rnn_tf.train", "--config=csv:runlocal", "--workdir=runs/mine",
        "--config.data.train_csv=mine/train.csv", "--config.train.num_steps=2",
        "--config.train.eval_every=-1"], cwd)
  assert (cwd / "runs" / "mine" / "checkpoints" / "ckpt-2.index").exists()
  with open(cwd / "runs" / "mine" / "config.json") as f:
    saved = f.read()
  assert '"source": "csv"' in saved and '"batch_size": 8' in saved  # csv.py, runlocal
