"""Keras weights files checked against the model before they are loaded: one clear error.

    weights_files.load(model, path, what="model.backbone_weights",
                       fields="model.small_cnn_filters")

`load` reads the file with h5py first and compares its layers and weight shapes with those
of `model`; a file that does not fit raises `WeightsFileError` (a ValueError) naming the
file, the first layer that differs, the shape the model expects and the shape the file
holds, and the config fields that likely differ. A truncated file, a file that is not HDF5
and a file in the other Keras format raise it too. No weight values are printed (Keras' own
error on a shape mismatch prints the whole variable).

Both Keras formats are read as Keras reads them:
  `.weights.h5` (Keras 3, `model.save_weights`): weights by object path
      ("layers/conv2d_1/vars/0"); each layer's "vars" group names its layer. The model's
      own layout is recorded by Keras' own walk of the model (what `model.save_weights`
      would write, without writing anything).
  `.h5` / `.hdf5` (legacy, e.g. keras.applications' ImageNet files): the layers with
      weights in order (root attribute `layer_names`, each layer's `weight_names`).
"""

from __future__ import annotations

import os
import re
import tempfile
from typing import NamedTuple

import h5py

LEGACY_SUFFIXES = (".h5", ".hdf5")


class WeightsFileError(ValueError):
  """A weights file that cannot be loaded into the model (mismatch, damage, format)."""


class Layer(NamedTuple):
  """One layer of a weights file: where it is, its name, its weights' shapes in order."""
  path: str
  name: str
  shapes: tuple[tuple[int, ...], ...]


def _natural(text: str) -> list:
  """Sort key: "conv2d_10" after "conv2d_2" (h5py lists a group's members by name)."""
  return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _decode(value) -> str:
  return value.decode("utf8") if hasattr(value, "decode") else str(value)


def _keras3_layers(root: h5py.Group) -> list[Layer]:
  """The "vars" groups of a Keras 3 weights file (with at least one weight), in path order."""
  found = []

  def visit(name, obj):
    if isinstance(obj, h5py.Group) and name.rsplit("/", 1)[-1] == "vars" and len(obj):
      shapes = tuple(tuple(int(d) for d in obj[k].shape) for k in sorted(obj, key=_natural))
      layer_path = name[:-len("/vars")] if name != "vars" else "(model)"
      found.append(Layer(layer_path, _decode(obj.attrs.get("name", layer_path)), shapes))

  root.visititems(visit)
  return sorted(found, key=lambda layer: _natural(layer.path))


def _legacy_layers(root: h5py.Group) -> list[Layer]:
  """The layers with weights of a legacy .h5 file, in the file's order."""
  if "layer_names" not in root.attrs and "model_weights" in root:
    root = root["model_weights"]
  found = []
  for name in (_decode(n) for n in root.attrs["layer_names"]):
    names = [_decode(w) for w in root[name].attrs.get("weight_names", [])]
    if names:
      found.append(Layer(name, name, tuple(tuple(int(d) for d in root[name][w].shape)
                                           for w in names)))
  return found


def _is_legacy(root: h5py.Group) -> bool:
  return "layer_names" in root.attrs or (
      "model_weights" in root and "layer_names" in root["model_weights"].attrs)


def read_layers(path: str) -> tuple[str, list[Layer]]:
  """("keras3" | "legacy", the file's layers with weights). WeightsFileError if unreadable."""
  if not os.path.isfile(path):
    raise WeightsFileError(f"Weights file {path!r} does not exist (or is not a file).")
  if not h5py.is_hdf5(path):
    raise WeightsFileError(
        f"Weights file {path!r} is not an HDF5 file ({os.path.getsize(path)} bytes): Keras "
        "weights files (.weights.h5, .h5) are HDF5. Is it another kind of file, or cut short "
        "before its header?")
  try:
    with h5py.File(path, "r") as f:
      if _is_legacy(f):
        return "legacy", _legacy_layers(f)
      return "keras3", _keras3_layers(f)
  except (OSError, KeyError, RuntimeError, ValueError) as e:
    raise WeightsFileError(
        f"Weights file {path!r} cannot be read ({type(e).__name__}: "
        f"{str(e).splitlines()[0][:200]}): truncated or damaged? Copy or write it "
        "again.") from e


def _all_layer_names(model) -> list[str]:
  """The names of `model`'s layers, nested models' layers included, in model order."""
  names = []
  for layer in model.layers:
    names.append(layer.name)
    if hasattr(layer, "layers"):
      names.extend(_all_layer_names(layer))
  return names


def _keras3_recorded(model) -> list[Layer]:
  """The layout `model.save_weights` writes, recorded by Keras' own walk of the model
  (saving_lib._save_state) into a store that keeps the shapes only: nothing is written."""
  from keras.src.saving import saving_lib  # pylint: disable=g-import-not-at-top

  class Entry(dict):
    def __setitem__(self, key, value):
      super().__setitem__(key, tuple(int(d) for d in value.shape))

  class ShapeStore(saving_lib.H5IOStore):  # pylint: disable=abstract-method
    def __init__(self):  # pylint: disable=super-init-not-called  (no file)
      self.entries = {}

    def __bool__(self):  # `_save_state` saves a layer's variables only into a true store
      return True

    def make(self, path, metadata=None):
      name = (metadata or {}).get("name") or path or "(model)"
      return self.entries.setdefault(path or "(model)", (name, Entry()))[1]

    def close(self):
      pass

  store = ShapeStore()
  saving_lib._save_state(model, weights_store=store, assets_store=None,  # pylint: disable=protected-access
                         inner_path="", visited_saveables=set())
  return [Layer(path, name, tuple(entry[k] for k in sorted(entry, key=_natural)))
          for path, (name, entry) in store.entries.items() if entry]


def model_layers(model, kind: str) -> list[Layer]:
  """The layers `model` would read from a file of `kind` ("keras3" | "legacy"), in the
  model's layer order."""
  if kind == "legacy":  # as keras' legacy_h5_format: trainable, then non-trainable weights
    out = []
    for layer in model.layers:
      weights = list(layer.trainable_weights) + list(layer.non_trainable_weights)
      if weights:
        out.append(Layer(layer.name, layer.name,
                         tuple(tuple(int(d) for d in w.shape) for w in weights)))
    return out
  try:
    layers = _keras3_recorded(model)
  except (ImportError, AttributeError, TypeError, ValueError):  # Keras internals moved
    with tempfile.TemporaryDirectory(prefix="cnn_rnn_tf_weights_") as folder:
      path = os.path.join(folder, "expected.weights.h5")
      model.save_weights(path)
      with h5py.File(path, "r") as f:
        layers = _keras3_layers(f)
  order = {name: i for i, name in reversed(list(enumerate(_all_layer_names(model))))}
  return sorted(layers, key=lambda layer: order.get(layer.name, len(order)))


def _shown(shapes) -> str:
  return ", ".join(str(s) for s in shapes) if shapes else "no weights"


def _mismatch(want: Layer, got: Layer) -> str:
  return (f"layer {want.name!r} ({want.path}) expects weights of shapes "
          f"[{_shown(want.shapes)}], the file holds [{_shown(got.shapes)}]"
          f"{'' if got.name == want.name else f' (file layer {got.name!r})'}")


def first_difference(expected: list[Layer], found: list[Layer], kind: str) -> str | None:
  """What differs first (in the model's layer order) between the model's layers and the
  file's, or None if they fit. Keras 3 files match by path, legacy files by position."""
  if kind == "keras3":
    by_path = {layer.path: layer for layer in found}
    for want in expected:
      if want.path not in by_path:
        return (f"the model's layer {want.name!r} ({want.path}, weights of shapes "
                f"[{_shown(want.shapes)}]) is not in the file")
      if by_path[want.path].shapes != want.shapes:
        return _mismatch(want, by_path[want.path])
    extra = [layer for layer in found if layer.path not in {w.path for w in expected}]
    if extra:
      return (f"the file has layer {extra[0].name!r} ({extra[0].path}, shapes "
              f"[{_shown(extra[0].shapes)}]), which the model does not have")
    return None
  for want, got in zip(expected, found):
    if want.shapes != got.shapes:
      return _mismatch(want, got)
  if len(expected) != len(found):
    return (f"the model has {len(expected)} layers with weights, the file {len(found)} "
            f"(the file's first: {found[0].name!r})" if found else "the file has no weights")
  return None


def check(model, path: str, *, what: str, fields: str) -> None:
  """Raises WeightsFileError unless the weights file `path` fits `model`.

  Args:
    model: the built Keras model the file is to be loaded into.
    path: the weights file.
    what: where the file comes from, for the message (e.g. "model.backbone_weights").
    fields: the config fields that likely differ when it does not fit, for the message
      (e.g. "model.backbone, model.small_cnn_filters").
  """
  kind, found = read_layers(path)
  if kind == "keras3" and path.endswith(LEGACY_SUFFIXES) and not path.endswith(".weights.h5"):
    raise WeightsFileError(
        f"Weights file {path!r} ({what}) is a Keras 3 .weights.h5 file but named like a "
        "legacy .h5 file, which Keras reads the other way: rename it to *.weights.h5.")
  if kind == "legacy" and path.endswith(".weights.h5"):
    raise WeightsFileError(
        f"Weights file {path!r} ({what}) is a legacy Keras .h5 file but named *.weights.h5, "
        "which Keras reads as the Keras 3 format: rename it to *.h5.")
  difference = first_difference(model_layers(model, kind), found, kind)
  if difference:
    raise WeightsFileError(
        f"Weights file {path!r} ({what}) does not fit model {model.name!r}: {difference}. "
        f"Likely differs: {fields}.")


def load(model, path: str, *, what: str, fields: str) -> None:
  """`check`, then `model.load_weights(path)`; an error Keras still raises is re-raised as a
  WeightsFileError with its first line only (Keras' messages may hold weight values)."""
  check(model, path, what=what, fields=fields)
  try:
    model.load_weights(path)
  except (ValueError, OSError, KeyError, TypeError) as e:
    first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    raise WeightsFileError(f"Weights file {path!r} ({what}) could not be loaded into model "
                           f"{model.name!r}: {first}. Likely differs: {fields}.") from None
