"""`synthetic_scenes`: a procedural multi-label dataset with scene context, as a TFDS builder.

Importing this module registers the builder; everything is drawn with NumPy from a seed, so
nothing is downloaded and the same seed always gives byte-identical examples:

    import tensorflow_datasets as tfds
    import cnn_rnn_tf.data.synthetic_scenes  # registers 'synthetic_scenes'

    ds = tfds.load('synthetic_scenes', split='train', data_dir=d)        # config 'default'
    ds = tfds.load('synthetic_scenes/small', split='test', data_dir=d)   # 32x32, for tests
    # Another seed (or size): builder keyword arguments derive a config 'default_seed3', so
    # its files never mix with the seed-0 ones:
    ds = tfds.load('synthetic_scenes/default/seed=3', split='train', data_dir=d)
    ds = tfds.load('synthetic_scenes', builder_kwargs=dict(seed=3, num_train=500), data_dir=d)
    # Or a named config of your own:
    from cnn_rnn_tf.data.synthetic_scenes import SyntheticScenes, SyntheticScenesConfig
    cfg = SyntheticScenesConfig(name='seed3', seed=3, image_size=48, num_train=2000)
    builder = SyntheticScenes(config=cfg, data_dir=d); builder.download_and_prepare()

Build a config and print the time (default: 13 s on 2 idle CPU cores, 19 s on busy ones;
`small`: about 1 s; TensorFlow's import adds a few seconds):

    python -m cnn_rnn_tf.data.make_synthetic --data_dir=/tmp/tfds [--config=small] [--seed=3]

One example (`generate_example(rng, image_size)` is the pure NumPy generator the builder calls):

    image   uint8 [H, W, 3]
    labels  the distinct labels of the image, ids ascending (>= 1 label)
    objects [{'label': ..., 'bbox': (ymin, xmin, ymax, xmax) in [0, 1]}], one per drawn object
    scene   the scene the objects were drawn from (not a label; for analysis)

The generative process
----------------------
1. Scene: uniform over the six `SCENE_NAMES`.
2. Labels: each label of the scene (`SCENE_OBJECTS`) is present independently with its
   probability p, with 1..n instances (uniform):

     scene    label: p / max instances
     beach    sun .5/1  umbrella .6/2  boat .5/2  shell .5/3  person .5/2  bird .3/2
     street   car .7/3  window .6/3  traffic_light .5/1  person .6/2  dog .25/1  tree .3/2
     kitchen  apple .6/3  plate .6/2  knife .5/1  cup .5/2  mushroom .2/2
     park     ball .6/3  tree .6/3  bench .5/1  dog .4/1  person .5/2  bird .3/2  sun .3/1
     forest   tree .9/4  mushroom .6/3  bird .5/3
     office   monitor .6/3  book .6/3  cup .5/1  person .4/1

   A draw is rejected and redrawn (from the same generator, so still deterministic) unless:
   - the image has at least one object;
   - `ALWAYS_WITH`: a dog is always with a person, a knife always with a plate;
   - every look-alike in the image has a witness (`WITNESSES`): another label of the image
     that never occurs with its twin (see 4), so the label is decidable from the image.
3. `NEVER_TOGETHER`: two labels that share no scene never co-occur (127 of the 190 pairs),
   e.g. apple/ball, monitor/window, sun/car, tree/book, mushroom/person.
4. `LOOKALIKES`: apple/ball (a red disc) and monitor/window (a cyan panel in a black
   frame) are drawn by the same code from the same random numbers: same shape, colour,
   colour jitter, size range, instance count and placement. Alone they are identical; an
   apple is a red disc in a kitchen (with a plate, knife, cup or mushroom), a ball one in a
   park (with a tree, bench, dog, person, bird or sun); a window is a panel in a street (with
   a car, traffic light, dog or tree), a monitor one in an office (with a book or cup).
   A person does not tell a window from a monitor (people are in both scenes).
5. Appearance (`APPEARANCES`, `SIZE_RANGE`): each label is a flat-coloured composite of
   discs, rectangles, triangles, half discs and stripes in its bounding box; the box height is
   uniform in the label's range (fractions of the image side, at least 3 pixels), width =
   height x aspect (`object_shape`, `render_object`). Small objects: bird 6-10% of the
   side, shell 7-12%, apple/ball 7-16%, mushroom 8-14%, knife 7-10% high (3.5x as wide);
   large ones: tree 28-50%, person 22-40%. Boxes are placed uniformly, at most 35% of the
   smaller box covered by another (partial occlusion; an instance that does not fit in 30
   tries is dropped; the labels are those of the drawn objects). Larger objects are drawn
   first, so small ones stay on top.
6. Background and noise: the background carries NO scene information: the same
   distribution for every scene (a random grey level 90..170, a slight random tint, smooth
   cloud-like texture), so the scene is visible only through the objects, which the
   look-alikes need. On it: 0-3 unlabelled clutter shapes (disc, square or triangle, 5-15%
   of the side, uniform random colour: now and then one resembles a labelled object), then
   the objects. Every object's colour is scaled by U(0.8, 1.2) and shifted by N(0, 10) per
   channel, and blended over the background with opacity U(0.55, 1) (faint objects);
   finally pixel noise N(0, sigma), sigma ~ U(4, 20) per image, over everything.
"""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any, Callable

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

# --------------------------------------------------------------------------------------
# The world: scenes, labels, co-occurrence rules.
# --------------------------------------------------------------------------------------

# scene -> {label: (probability present, max instances)}; see the module docstring.
SCENE_OBJECTS: dict[str, dict[str, tuple[float, int]]] = {
    "beach": {"sun": (0.5, 1), "umbrella": (0.6, 2), "boat": (0.5, 2), "shell": (0.5, 3),
              "person": (0.5, 2), "bird": (0.3, 2)},
    "street": {"car": (0.7, 3), "window": (0.6, 3), "traffic_light": (0.5, 1),
               "person": (0.6, 2), "dog": (0.25, 1), "tree": (0.3, 2)},
    "kitchen": {"apple": (0.6, 3), "plate": (0.6, 2), "knife": (0.5, 1), "cup": (0.5, 2),
                "mushroom": (0.2, 2)},
    "park": {"ball": (0.6, 3), "tree": (0.6, 3), "bench": (0.5, 1), "dog": (0.4, 1),
             "person": (0.5, 2), "bird": (0.3, 2), "sun": (0.3, 1)},
    "forest": {"tree": (0.9, 4), "mushroom": (0.6, 3), "bird": (0.5, 3)},
    "office": {"monitor": (0.6, 3), "book": (0.6, 3), "cup": (0.5, 1), "person": (0.4, 1)},
}
SCENE_NAMES: list[str] = sorted(SCENE_OBJECTS)
LABEL_NAMES: list[str] = sorted({l for objs in SCENE_OBJECTS.values() for l in objs})

# Pairs drawn by the same code from the same random numbers (identical alone).
LOOKALIKES: list[tuple[str, str]] = [("apple", "ball"), ("monitor", "window")]
# label -> the label it never appears without.
ALWAYS_WITH: dict[str, str] = {"dog": "person", "knife": "plate"}

_SCENES_OF: dict[str, set[str]] = {
    l: {s for s, objs in SCENE_OBJECTS.items() if l in objs} for l in LABEL_NAMES}
# Label pairs (a < b by name) that share no scene, so never co-occur.
NEVER_TOGETHER: list[tuple[str, str]] = [
    (a, b) for a, b in itertools.combinations(LABEL_NAMES, 2)
    if not _SCENES_OF[a] & _SCENES_OF[b]]
_TWIN: dict[str, str] = {**{a: b for a, b in LOOKALIKES}, **{b: a for a, b in LOOKALIKES}}
# look-alike -> the labels whose presence tells it from its twin (never with the twin).
WITNESSES: dict[str, set[str]] = {
    l: {o for s in _SCENES_OF[l] for o in SCENE_OBJECTS[s]
        if o != l and o not in _TWIN and not _SCENES_OF[o] & _SCENES_OF[_TWIN[l]]}
    for l in _TWIN}

# --------------------------------------------------------------------------------------
# Appearance: each label is parts (mask in unit box coordinates, RGB) drawn in its bbox.
# --------------------------------------------------------------------------------------

_Mask = np.ndarray  # bool [h, w]
_Parts = list[tuple[_Mask, tuple[int, int, int]]]


def _box(u, v, u0, u1, v0, v1) -> _Mask:
  """Rows u0..u1, columns v0..v1 of the unit box (u down, v right, both in [0, 1])."""
  return (u >= u0) & (u < u1) & (v >= v0) & (v < v1)


def _ellipse(u, v, cu, cv, ru, rv) -> _Mask:
  return ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0


def _triangle_up(u, v, u0, u1, v0, v1) -> _Mask:
  """Apex at the top centre, base along row u1."""
  half = (u - u0) / (u1 - u0) * (v1 - v0) / 2
  return (u >= u0) & (u < u1) & (np.abs(v - (v0 + v1) / 2) <= half)


def _trapezoid_down(u, v, u0, u1, inset) -> _Mask:
  """Full width at row u0, narrowing by `inset` on each side at row u1 (a hull)."""
  t = (u - u0) / (u1 - u0)
  return (u >= u0) & (u < u1) & (v >= inset * t) & (v <= 1 - inset * t)


SKIN, DARK, WHITE = (235, 185, 145), (25, 25, 25), (245, 245, 245)
BROWN = (110, 65, 25)


def _red_disc(u, v) -> _Parts:  # apple / ball
  return [(_ellipse(u, v, .5, .5, .5, .5), (215, 30, 30))]


def _panel(u, v) -> _Parts:  # monitor / window
  return [(_box(u, v, 0, 1, 0, 1), DARK), (_box(u, v, .15, .85, .12, .88), (90, 205, 235))]


def _person(u, v) -> _Parts:
  return [(_ellipse(u, v, .15, .5, .15, .3), SKIN), (_box(u, v, .3, 1, .1, .9), (50, 70, 170))]


def _sun(u, v) -> _Parts:
  return [(_ellipse(u, v, .5, .5, .5, .5), (255, 215, 0))]


def _umbrella(u, v) -> _Parts:
  canopy = _ellipse(u, v, .5, .5, .5, .5) & (u < .5)
  stripes = canopy & (np.floor(v * 6) % 2 == 0)
  return [(_box(u, v, .45, 1, .46, .56), DARK), (canopy, WHITE), (stripes, (220, 20, 60))]


def _boat(u, v) -> _Parts:
  return [(_box(u, v, 0, .65, .47, .53), DARK), (_triangle_up(u, v, .05, .62, .12, .88), WHITE),
          (_trapezoid_down(u, v, .62, 1, .2), BROWN)]


def _shell(u, v) -> _Parts:
  fan = _triangle_up(u, v, 0, 1, 0, 1)
  return [(fan, (250, 225, 170)), (fan & (np.floor(v * 5) % 2 == 1), (205, 150, 110))]


def _car(u, v) -> _Parts:
  body = _box(u, v, 0, .4, .22, .78) | _box(u, v, .35, .8, 0, 1)
  wheels = _ellipse(u, v, .78, .25, .22, .12) | _ellipse(u, v, .78, .75, .22, .12)
  return [(body, (160, 40, 200)), (wheels, DARK)]


def _traffic_light(u, v) -> _Parts:
  return [(_box(u, v, 0, 1, 0, 1), (45, 45, 45)),
          (_ellipse(u, v, .18, .5, .12, .32), (230, 20, 20)),
          (_ellipse(u, v, .5, .5, .12, .32), (240, 200, 0)),
          (_ellipse(u, v, .82, .5, .12, .32), (20, 200, 60))]


def _plate(u, v) -> _Parts:
  return [(_ellipse(u, v, .5, .5, .5, .5), (165, 165, 175)),
          (_ellipse(u, v, .5, .5, .36, .36), WHITE)]


def _knife(u, v) -> _Parts:
  return [(_box(u, v, .2, .8, .35, 1), (210, 210, 225)), (_box(u, v, 0, 1, 0, .35), DARK)]


def _cup(u, v) -> _Parts:
  handle = _ellipse(u, v, .5, .8, .28, .2) & ~_ellipse(u, v, .5, .8, .14, .09)  # a ring
  return [(handle | _box(u, v, 0, 1, 0, .75), (240, 130, 30))]


def _dog(u, v) -> _Parts:
  tan = (200, 150, 90)
  return [(_box(u, v, .6, 1, .25, .35) | _box(u, v, .6, 1, .65, .75), tan),
          (_ellipse(u, v, .5, .5, .25, .35), tan), (_ellipse(u, v, .3, .85, .3, .15), tan),
          (_ellipse(u, v, .25, .9, .06, .04), DARK)]


def _bench(u, v) -> _Parts:
  wood = (150, 100, 45)
  return [(_box(u, v, 0, .25, 0, 1) | _box(u, v, .4, .6, 0, 1), wood),
          (_box(u, v, .6, 1, .08, .18) | _box(u, v, .6, 1, .82, .92), DARK)]


def _tree(u, v) -> _Parts:
  return [(_box(u, v, .7, 1, .4, .6), BROWN), (_triangle_up(u, v, 0, .75, 0, 1), (35, 140, 45))]


def _mushroom(u, v) -> _Parts:
  return [(_box(u, v, .5, 1, .35, .65), WHITE),
          (_ellipse(u, v, .55, .5, .55, .5) & (u < .55), (250, 110, 170))]


def _bird(u, v) -> _Parts:
  line = 0.15 + 0.7 * (1 - 2 * np.abs(v - .5))  # a 'v': wing tips high, body low
  return [(np.abs(u - line) <= .2, DARK)]


def _book(u, v) -> _Parts:
  return [(_box(u, v, 0, 1, 0, 1), (30, 115, 115)), (_box(u, v, .82, .95, .08, 1), WHITE)]


# appearance -> (draw function, (min, max) height as a fraction of the image side, width / height)
_APPEARANCE_SPECS: dict[str, tuple[Callable[..., _Parts], tuple[float, float], float]] = {
    "red_disc": (_red_disc, (0.07, 0.16), 1.0),
    "panel": (_panel, (0.12, 0.24), 1.25),
    "person": (_person, (0.22, 0.40), 0.5),
    "sun": (_sun, (0.16, 0.28), 1.0),
    "umbrella": (_umbrella, (0.20, 0.32), 1.0),
    "boat": (_boat, (0.18, 0.30), 1.1),
    "shell": (_shell, (0.07, 0.12), 1.0),
    "car": (_car, (0.12, 0.20), 1.8),
    "traffic_light": (_traffic_light, (0.20, 0.32), 0.4),
    "plate": (_plate, (0.14, 0.24), 1.0),
    "knife": (_knife, (0.07, 0.10), 3.5),
    "cup": (_cup, (0.12, 0.18), 1.0),
    "dog": (_dog, (0.12, 0.20), 1.5),
    "bench": (_bench, (0.12, 0.18), 2.0),
    "tree": (_tree, (0.28, 0.50), 0.7),
    "mushroom": (_mushroom, (0.08, 0.14), 1.0),
    "bird": (_bird, (0.06, 0.10), 1.6),
    "book": (_book, (0.10, 0.18), 0.8),
}
# label -> appearance; only the LOOKALIKES share one.
APPEARANCES: dict[str, str] = {
    **{l: l for l in LABEL_NAMES if l in _APPEARANCE_SPECS},
    "apple": "red_disc", "ball": "red_disc", "monitor": "panel", "window": "panel"}
SIZE_RANGE: dict[str, tuple[float, float]] = {
    l: _APPEARANCE_SPECS[a][1] for l, a in APPEARANCES.items()}

_MIN_PIXELS = 3
_MAX_OVERLAP = 0.35  # of the smaller box's area: partial occlusion, never full
_PLACEMENT_TRIES = 30
_MAX_REDRAWS = 1000
_COLOUR_SCALE = (0.8, 1.2)
_COLOUR_NOISE = 10.0
_OPACITY = (0.55, 1.0)  # per object: faint objects blend into the background
_PIXEL_NOISE = (4.0, 20.0)  # per-image range of the pixel noise's standard deviation
_CLUTTER_MAX = 3  # unlabelled shapes of random colour per image: 0..3
_CLUTTER_SIZE = (0.05, 0.15)


def object_shape(label: str, image_size: int, rng: np.random.Generator) -> tuple[int, int]:
  """Random (height, width) in pixels of one instance of `label`."""
  lo, hi = SIZE_RANGE[label]
  aspect = _APPEARANCE_SPECS[APPEARANCES[label]][2]
  h = max(_MIN_PIXELS, int(round(rng.uniform(lo, hi) * image_size)))
  w = max(_MIN_PIXELS, min(image_size, int(round(h * aspect))))
  return h, w


def render_object(label: str, height: int, width: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
  """One instance of `label` in a [height, width] box.

  Returns:
    rgb: float32 [height, width, 3], the object's colours (jittered by `rng`).
    alpha: float32 [height, width], its opacity (one random value in `_OPACITY`) on the
      pixels it covers, 0 elsewhere.
  """
  try:
    draw = _APPEARANCE_SPECS[APPEARANCES[label]][0]
  except KeyError:
    raise KeyError(f"Unknown label {label!r}; synthetic_scenes labels: {LABEL_NAMES}") from None
  u = ((np.arange(height) + 0.5) / height)[:, None]  # [h, 1] rows in (0, 1)
  v = ((np.arange(width) + 0.5) / width)[None, :]  # [1, w] columns in (0, 1)
  scale = rng.uniform(*_COLOUR_SCALE)
  shift = rng.normal(0.0, _COLOUR_NOISE, size=3)  # [3]
  opacity = rng.uniform(*_OPACITY)
  rgb = np.zeros((height, width, 3), np.float32)
  mask = np.zeros((height, width), bool)
  for part, colour in draw(u, v):
    part = np.broadcast_to(part, (height, width))
    rgb[part] = np.asarray(colour, np.float32) * scale + shift
    mask |= part
  return rgb, np.where(mask, np.float32(opacity), np.float32(0.0))


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
  """float32 [size, size, 3]: grey level + tint + smooth texture; the same for all scenes."""
  grid = 5
  pos = np.arange(size) * (grid - 1) / max(size - 1, 1)  # [size] in 0..grid-1
  interp = np.maximum(0.0, 1.0 - np.abs(pos[:, None] - np.arange(grid)[None, :]))  # [size, grid]
  coarse = rng.normal(0.0, 18.0, size=(grid, grid))
  texture = interp @ coarse @ interp.T  # [size, size], bilinear upsampling
  base = rng.uniform(90.0, 170.0) + rng.normal(0.0, 6.0, size=3)  # [3]
  return (base[None, None, :] + texture[:, :, None]).astype(np.float32)


def _draw_clutter(image: np.ndarray, rng: np.random.Generator) -> None:
  """Draws 0.._CLUTTER_MAX unlabelled discs, squares or triangles of uniform random colour."""
  size = image.shape[0]
  for _ in range(int(rng.integers(0, _CLUTTER_MAX + 1))):
    h = max(_MIN_PIXELS, int(round(rng.uniform(*_CLUTTER_SIZE) * size)))
    y0, x0 = (int(c) for c in rng.integers(0, size - h + 1, size=2))
    u = ((np.arange(h) + 0.5) / h)[:, None]  # [h, 1]
    v = ((np.arange(h) + 0.5) / h)[None, :]  # [1, h]
    shapes = (_ellipse(u, v, .5, .5, .5, .5), np.ones((h, h), bool),
              _triangle_up(u, v, 0, 1, 0, 1))
    mask = np.broadcast_to(shapes[rng.integers(len(shapes))], (h, h))
    image[y0:y0 + h, x0:x0 + h][mask] = rng.uniform(0.0, 255.0, size=3)


def _overlap_ok(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
  y0, x0, y1, x1 = box
  area = (y1 - y0) * (x1 - x0)
  for b0, a0, b1, a1 in placed:
    inter = max(0, min(y1, b1) - max(y0, b0)) * max(0, min(x1, a1) - max(x0, a0))
    if inter > _MAX_OVERLAP * min(area, (b1 - b0) * (a1 - a0)):
      return False
  return True


def _valid_label_set(labels: set[str]) -> bool:
  if not labels:
    return False
  if any(l in labels and other not in labels for l, other in ALWAYS_WITH.items()):
    return False
  return all(labels & WITNESSES[l] for l in labels if l in WITNESSES)


def generate_example(rng: np.random.Generator, image_size: int = 64) -> dict[str, Any]:
  """Draws one scene; deterministic given the state of `rng`.

  Args:
    rng: the NumPy generator to draw from (the builder uses one per example, seeded with
      (config seed, split, index)).
    image_size: side of the square image in pixels (>= 16).

  Returns:
    {'image': uint8 [image_size, image_size, 3],
     'labels': distinct label names, in `LABEL_NAMES` order,
     'objects': [{'label': name, 'bbox': float32 [4] (ymin, xmin, ymax, xmax) in [0, 1]}],
     'scene': scene name}
  """
  if int(image_size) != image_size or image_size < 16:
    raise ValueError(f"image_size must be an integer >= 16, got {image_size!r}.")
  image_size = int(image_size)
  for _ in range(_MAX_REDRAWS):
    scene = SCENE_NAMES[rng.integers(len(SCENE_NAMES))]
    instances = []  # label names, one per instance
    for label, (p, max_count) in SCENE_OBJECTS[scene].items():
      if rng.random() < p:
        instances += [label] * int(rng.integers(1, max_count + 1))
    if not _valid_label_set(set(instances)):
      continue
    # Sizes, then placement largest first (drawn first, so small objects stay on top).
    shapes = [object_shape(l, image_size, rng) for l in instances]
    order = sorted(range(len(instances)), key=lambda i: -shapes[i][0] * shapes[i][1])
    placed, objects = [], []
    for i in order:
      h, w = shapes[i]
      for _ in range(_PLACEMENT_TRIES):
        y0 = int(rng.integers(0, image_size - h + 1))
        x0 = int(rng.integers(0, image_size - w + 1))
        if _overlap_ok((y0, x0, y0 + h, x0 + w), placed):
          placed.append((y0, x0, y0 + h, x0 + w))
          objects.append(instances[i])
          break
    if not _valid_label_set(set(objects)):
      continue
    image = _background(rng, image_size)  # [S, S, 3]
    _draw_clutter(image, rng)
    for label, (y0, x0, y1, x1) in zip(objects, placed):
      rgb, alpha = render_object(label, y1 - y0, x1 - x0, rng)
      alpha = alpha[:, :, None]  # [h, w, 1]
      image[y0:y1, x0:x1] = (1 - alpha) * image[y0:y1, x0:x1] + alpha * rgb
    sigma = rng.uniform(*_PIXEL_NOISE)
    image += rng.normal(0.0, sigma, size=image.shape).astype(np.float32)
    image = np.clip(np.round(image), 0, 255).astype(np.uint8)
    labels = [l for l in LABEL_NAMES if l in set(objects)]
    boxes = np.asarray(placed, np.float32) / image_size  # [num_objects, 4]
    return {
        "image": image,
        "labels": labels,
        "objects": [{"label": l, "bbox": b} for l, b in zip(objects, boxes)],
        "scene": scene,
    }
  raise RuntimeError(f"No valid scene in {_MAX_REDRAWS} draws at image_size={image_size}.")


# --------------------------------------------------------------------------------------
# The TFDS builder.
# --------------------------------------------------------------------------------------

_SPLITS = ("train", "test")


@dataclasses.dataclass(eq=False)
class SyntheticScenesConfig(tfds.core.BuilderConfig):
  """A size and seed of `synthetic_scenes`. A custom one needs a name of its own.

  Attributes:
    image_size: side of the square RGB images in pixels (>= 16).
    num_train: examples in the `train` split.
    num_test: examples in the `test` split.
    seed: the seed of every example: example i of split s draws from
      `np.random.default_rng([seed, s, i])` (s = 0 train, 1 test).
  """
  image_size: int = 64
  num_train: int = 6000
  num_test: int = 1500
  seed: int = 0

  def __post_init__(self):
    if not isinstance(self.image_size, int) or self.image_size < 16:
      raise ValueError(f"Config {self.name!r}: image_size must be an int >= 16, "
                       f"got {self.image_size!r}.")
    for field in ("num_train", "num_test", "seed"):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 0:
        raise ValueError(f"Config {self.name!r}: {field} must be an int >= 0, got {value!r}.")


class SyntheticScenes(tfds.core.GeneratorBasedBuilder):
  """Procedural multi-label scenes (see the module docstring). Offline, seeded."""

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {
      "1.0.0": "Initial release: 20 labels, 6 scenes, 2 look-alike pairs, NumPy drawing.",
  }
  BUILDER_CONFIGS = [
      SyntheticScenesConfig(
          name="default", description="64x64 RGB, 6000 train / 1500 test, seed 0."),
      SyntheticScenesConfig(
          name="small", image_size=32, num_train=300, num_test=100,
          description="32x32 RGB, 300 train / 100 test, seed 0: for tests."),
  ]
  DEFAULT_BUILDER_CONFIG_NAME = "default"
  # tfds' own `code_path` needs the `importlib_resources` package (an etils extra that
  # tensorflow-datasets does not install) for any builder inside a package.
  code_path = epath.Path(__file__)

  def __init__(self, *, config: str | SyntheticScenesConfig | None = None,
               image_size: int | None = None, num_train: int | None = None,
               num_test: int | None = None, seed: int | None = None, **kwargs):
    """Like any builder; the optional overrides derive a config from `config`.

    Args:
      config: a config name ('default', 'small') or a `SyntheticScenesConfig`.
      image_size, num_train, num_test, seed: overrides; each one that differs from the
        base config is appended to its name (`default_seed3`, `small_size48_train1000`), so
        every distinct dataset gets a directory of its own.
      **kwargs: `data_dir`, `version`, ... as for `tfds.core.DatasetBuilder`.
    """
    overrides = {k: v for k, v in dict(image_size=image_size, num_train=num_train,
                                       num_test=num_test, seed=seed).items() if v is not None}
    if overrides:
      config = _derive_config(self.builder_configs, config, overrides)
    super().__init__(config=config, **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    size = self.builder_config.image_size
    label = tfds.features.ClassLabel(names=LABEL_NAMES)
    return tfds.core.DatasetInfo(
        builder=self,
        description=(
            "Procedural multi-label scenes: 20 labels drawn in 6 scene types, with label pairs "
            "that never co-occur and look-alike labels told apart only by context. See "
            "cnn_rnn_tf/data/synthetic_scenes.py."),
        features=tfds.features.FeaturesDict({
            "image": tfds.features.Image(shape=(size, size, 3)),
            "labels": tfds.features.Sequence(label),
            "objects": tfds.features.Sequence({
                "label": label,
                "bbox": tfds.features.BBoxFeature(),
            }),
            "scene": tfds.features.ClassLabel(names=SCENE_NAMES),
        }),
        supervised_keys=None,
    )

  def _split_generators(self, dl_manager: tfds.download.DownloadManager):
    del dl_manager  # Nothing to download: everything is drawn from the seed.
    cfg = self.builder_config
    sizes = {"train": cfg.num_train, "test": cfg.num_test}
    return {split: self._generate_examples(split_id, sizes[split])
            for split_id, split in enumerate(_SPLITS)}

  def _generate_examples(self, split_id: int, num_examples: int):
    cfg = self.builder_config
    for i in range(num_examples):
      rng = np.random.default_rng([cfg.seed, split_id, i])
      yield i, generate_example(rng, cfg.image_size)


def _derive_config(builder_configs: dict[str, SyntheticScenesConfig],
                   base: str | SyntheticScenesConfig | None,
                   overrides: dict[str, int]) -> SyntheticScenesConfig:
  """`base` with `overrides`, named after the fields that changed."""
  if base is None:
    base = SyntheticScenes.DEFAULT_BUILDER_CONFIG_NAME
  if isinstance(base, str):
    if base not in builder_configs:
      raise ValueError(f"Unknown synthetic_scenes config {base!r}; "
                       f"available: {sorted(builder_configs)}.")
    base = builder_configs[base]
  tags = {"image_size": "size", "num_train": "train", "num_test": "test", "seed": "seed"}
  changed = {k: v for k, v in overrides.items() if v != getattr(base, k)}
  if not changed:
    return base
  name = base.name + "".join(f"_{tags[k]}{changed[k]}" for k in tags if k in changed)
  return dataclasses.replace(base, name=name, description=f"{base.name} with {changed}.",
                             **changed)


def prepare(data_dir: str, config: str = "default", **overrides) -> SyntheticScenes:
  """Generates a config into `data_dir` (once; safe with several processes) -> the builder.

  `overrides`: image_size, num_train, num_test, seed (None: the config's value).
  """
  from cnn_rnn_tf.data import tfds_prepare  # pylint: disable=g-import-not-at-top
  return tfds_prepare.prepare(
      lambda: SyntheticScenes(config=config, data_dir=data_dir, **overrides),
      tfds.download.DownloadConfig(try_download_gcs=False))
