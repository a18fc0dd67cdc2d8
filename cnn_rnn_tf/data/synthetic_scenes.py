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

One example (`generate_example(rng, image_size)`, in scene_drawing.py with the tables named below,
is the pure NumPy generator the builder calls):

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

from etils import epath
import numpy as np
import tensorflow_datasets as tfds

# The world and the drawing (NumPy only); these names are part of this module's interface.
from cnn_rnn_tf.data.scene_drawing import ALWAYS_WITH  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import APPEARANCES  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import generate_example
from cnn_rnn_tf.data.scene_drawing import LABEL_NAMES
from cnn_rnn_tf.data.scene_drawing import LOOKALIKES  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import NEVER_TOGETHER  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import object_shape  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import render_object  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import SCENE_NAMES
from cnn_rnn_tf.data.scene_drawing import SCENE_OBJECTS  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import SIZE_RANGE  # pylint: disable=unused-import
from cnn_rnn_tf.data.scene_drawing import WITNESSES  # pylint: disable=unused-import

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
