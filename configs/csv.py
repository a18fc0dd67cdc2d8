r"""Your own images: a CSV with an image path column and a space-separated labels column.

  python -m cnn_rnn_tf.train --config=configs/csv.py --workdir=runs/mine \
      --config.data.train_csv=/data/mine/train.csv --config.data.eval_csv=/data/mine/val.csv
  python -m cnn_rnn_tf.evaluate --workdir=runs/mine

CSV format (Planet style), paths relative to the CSV's folder or absolute:

  image_name,tags
  img/0001.jpg,person dog sofa
  img/0002.png,sky clouds

Change `data.image_column`, `data.labels_column`, `data.label_separator` for other headers.
Defaults: frozen VGG16 fc7 + feature cache (the paper's recipe). Bad rows stop the run with
the file and row named; `--config.data.skip_bad_examples=True` skips and counts them.

`configs/csv.py:runlocal` (with the two CSV flags) trains the small CNN end to end at 32x32
for a few steps (`config_lib.runlocal`): a quick check of your CSV files.
`configs/csv.py:paper` trains the head exactly as the paper (`config_lib.PAPER`: the
fields where the default recipe departs from it); arguments combine: `:paper,runlocal`.
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "csv"
  config.data.eval_split = "eval"  # the rows of data.eval_csv
  config.train.num_steps = 5000  # a few thousand images: ~50 epochs at batch 64
  return config_lib.variant_args(config, arg, "csv")
