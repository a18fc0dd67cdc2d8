r"""Data sources: where the examples of a split come from, and the dataset's label names.

A config value picks the source (the registry: a plain dict):

    source = get_source(config.data)      # SOURCES[config.data.source](config.data)
    source.name                # "voc2007" | "coco2014" | "csv" | "synthetic_scenes"
    source.label_names         # all label names, in the source's own order
    vocab = LabelVocab.from_label_sets(source.train_label_sets(), all_names=source.label_names)
    source.num_examples("test")            # after skipping
    source.skipped                         # {"missing_file": 2, ...}, all splits used so far
    ds = source.examples("test")   # {'image': string, 'label_ids': int32 [n], 'key': string}

`examples` yields *undecoded* images (the encoded bytes for TFDS sources, the file path for
CSV; `source.read_image(image)` turns either into encoded bytes), so that the pipeline
(`pipeline.image_dataset`) can shuffle and skip before it pays for decoding. `label_ids` are
indices into `source.label_names`, distinct; the pipeline maps them to vocab ids.

Splits (the config's `data.train_split` / `data.eval_split` names -> the source's own):

  voc2007           "trainval" -> TFDS "train+validation" (5011 images; the paper trains on
                    it), "test" -> "test" (4952, the paper evaluates on it); "train" and
                    "validation" are the TFDS halves of trainval.
  coco2014          "train" (82783), "validation" (40504; the paper's evaluation split; "val"
                    also accepted). TFDS "test" has no annotations and is refused.
  csv               "train" reads `data.train_csv`; "eval", "test" and "validation" read
                    `data.eval_csv`.
  synthetic_scenes  "train", "test".

One module per source, each with its own part of this story (config fields, label
conventions, bad data, where the offline archives go):

  base.py         `Source` (what every source provides), `SplitIndex`, `Problem`,
                  `BadDataError` and the skip reasons
  tfds_source.py  `TfdsSource`, the common part of the TFDS sources; offline preparation
                  (`data.manual_dir`: the archive names of voc2007 and coco2014)
  voc2007.py      PASCAL VOC 2007 (`data.voc_labels`)
  coco2014.py     MS-COCO 2014 (`data.coco_empty_images`)
  csv_source.py   CSV files (the Planet format): columns, bad data, the image check, NUS-WIDE
  synthetic.py    the project's synthetic scenes (`data.synthetic_*`)
  hygiene.py      duplicate rows and train/eval overlap (by path or content); the CSV
                  source counts them into `source.hygiene` (`data.allow_overlap`)

A new source: a `base.Source` subclass in its own module here, and one entry in `SOURCES`.
"""

from __future__ import annotations

from cnn_rnn_tf.data.sources.base import BAD_LABEL
from cnn_rnn_tf.data.sources.base import BadDataError
from cnn_rnn_tf.data.sources.base import EMPTY_LABELS
from cnn_rnn_tf.data.sources.base import format_problems
from cnn_rnn_tf.data.sources.base import LABEL_NOT_IN_VOCAB
from cnn_rnn_tf.data.sources.base import MALFORMED_ROW
from cnn_rnn_tf.data.sources.base import MISSING_FILE
from cnn_rnn_tf.data.sources.base import Problem
from cnn_rnn_tf.data.sources.base import SKIP_HINT
from cnn_rnn_tf.data.sources.base import Source
from cnn_rnn_tf.data.sources.base import SplitIndex
from cnn_rnn_tf.data.sources.base import UNDECODABLE_IMAGE
from cnn_rnn_tf.data.sources.base import UNKNOWN_LABEL
from cnn_rnn_tf.data.sources.coco2014 import Coco2014Source
from cnn_rnn_tf.data.sources.csv_source import CsvSource
from cnn_rnn_tf.data.sources.synthetic import SyntheticScenesSource
from cnn_rnn_tf.data.sources.tfds_source import TfdsSource
from cnn_rnn_tf.data.sources.voc2007 import Voc2007Source

SOURCES = {
    "voc2007": Voc2007Source,
    "coco2014": Coco2014Source,
    "csv": CsvSource,
    "synthetic_scenes": SyntheticScenesSource,
}


def get_source(config) -> Source:
  """The source that `config.source` names, configured by the rest of `config` (config.data)."""
  name = str(config.source)
  if name not in SOURCES:
    raise ValueError(f"Unknown data.source {name!r}; expected one of {sorted(SOURCES)}.")
  return SOURCES[name](config)
