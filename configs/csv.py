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
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "csv"
  config.data.train_split = "train"
  config.data.eval_split = "eval"
  config.model.backbone = "vgg16"
  config.model.backbone_weights = "imagenet"
  config.model.train_backbone = False
  config.train.num_steps = 5000
  if arg == "runlocal":
    config.model.backbone = "small_cnn"
    config.model.backbone_weights = None
    config.model.image_size = 32
    config.train.num_steps = 10
    config.train.batch_size = 8
  return config
