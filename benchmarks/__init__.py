"""Benchmarks (commands, not tests): `python -m benchmarks.extract --num_images=256`."""


def write_json(path: str, result: dict) -> None:
  """Writes a benchmark's result as JSON (making its folder) and says where."""
  import json  # pylint: disable=g-import-not-at-top
  import os  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w") as f:
    json.dump(result, f, indent=1)
  print(f"wrote {path}")
