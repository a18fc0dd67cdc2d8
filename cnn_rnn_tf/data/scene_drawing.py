"""The NumPy side of `synthetic_scenes`: the world (scenes, labels, co-occurrence rules), the
labels' appearance, and `generate_example`, the pure generator the TFDS builder calls.

    rng = np.random.default_rng([seed, split, i])
    example = scene_drawing.generate_example(rng, image_size=64)
    # {'image': uint8 [H, W, 3], 'labels': [...], 'objects': [...], 'scene': str}

The generative process is described in the docstring of `synthetic_scenes.py` (the builder),
which a test checks against the tables here.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np

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
