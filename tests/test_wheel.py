"""The package as users install it: `make wheel`, installed into a fresh virtualenv, runs the demo.

The demo used to read configs/demo.py by file path, which an installed wheel does not have;
its config is now the module `cnn_rnn_tf.demo_config`. The test builds the wheel as
`make wheel` does (`pip wheel --no-deps`), installs it with --no-deps into a temporary venv
whose dependencies come from this interpreter's site-packages (a path in a .pth file: that
folder's own .pth files, among them the editable install of the checkout, are not run), and
runs the demo at runlocal size from a folder outside the repository. It checks that the
package imported there is the wheel's copy, not the checkout. There, too, the train binary
loads a config by name (`--config=csv:runlocal`): the wheel ships `configs/*.py` as
`cnn_rnn_tf/configs/` (setup.py), found by `config_cli.config_file`.
"""

import glob
import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, cwd, timeout=600):
  # Without PYTHONPATH: a checkout on it would be imported instead of the installed wheel.
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  result = subprocess.run(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=timeout, check=False)
  assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-3000:]}"
  return result.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_the_demo(tmp_path):
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
  where = _run([python, "-c", "import cnn_rnn_tf.demo_config as m; print(m.__file__)"], cwd)
  assert where.strip().splitlines()[-1].startswith(site), where

  _trains_with_a_named_config(python, site, cwd)

  workdir = cwd / "runs" / "demo"
  out = _run([python, "-m", "cnn_rnn_tf.demo", "--size=runlocal", "--seeds=0",
              f"--workdir={workdir}"], cwd, timeout=1200)
  assert "Report: " in out
  assert (workdir / "report.md").exists()
  assert (workdir / "seed0" / "cnn_rnn" / "config.json").exists()
  assert sorted(os.listdir(cwd / "export" / "models")) == ["bce", "cnn_rnn"]


def _trains_with_a_named_config(python, site, cwd):
  """`--config=csv:runlocal` in a folder without configs/: the wheel's copy trains 2 steps."""
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
