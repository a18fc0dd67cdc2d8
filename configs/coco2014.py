r"""MS-COCO 2014 with the paper's settings: frozen VGG16 fc7, d=64, ReLU-LSTM 512, top-3.

  python -m cnn_rnn_tf.train --config=configs/coco2014.py --workdir=runs/coco2014
  python -m cnn_rnn_tf.evaluate --workdir=runs/coco2014        # val2014: C-/O-P/R/F1, MAP@10

Train on train2014, evaluate on val2014 (the paper's protocol). Images without any object
annotation are skipped and counted (`data.coco_empty_images="skip"`, the default); "keep"
trains them with an empty label set (the target sequence is just END). Everything not set
here is `config_lib.default_config()` (the paper's head, VGG16, beam 3, no minimum length).

`configs/coco2014.py:runlocal` shrinks it for a laptop or a test (`config_lib.runlocal`).
`configs/coco2014.py:paper` trains the head exactly as the paper (`config_lib.PAPER`: the
fields where the default recipe departs from it); arguments combine: `:paper,runlocal`.
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "coco2014"
  config.data.eval_split = "validation"  # the paper evaluates on val2014
  config.train.batch_size = 128  # 82k training images: larger batches, fewer steps per epoch
  config.train.num_steps = 30000  # ~46 epochs of 82k images
  config.train.checkpoint_every = 2000  # a checkpoint every ~3 epochs
  return config_lib.variant_args(config, arg, "coco2014")
