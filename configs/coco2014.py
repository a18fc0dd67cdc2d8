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

`configs/coco2014.py:resnet101` is the modern protocol (ML-GCN, ASL, Query2Label): ResNet-101
ImageNet weights (~/.keras/models/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5),
fine-tuned end to end at 448x448 with augmentation, Adam 1e-4, batch 32, ~40 epochs. How its
numbers compare: same split (train2014 -> val2014) and metrics (mAP over 80 classes; C-F1 and
O-F1) as the published ones it follows, ML-GCN's 83.0 mAP and Query2Label's 84.9 (ResNet-101,
448 px; the orderless RNN with ResNet-101 at 288 px reports O-F1 about 77); not the same
recipe (one learning rate, this package's augmentation, no ASL loss or transformer decoder),
so expect it below them. No full run of it has been made with this package yet (a GPU job);
its figures are not published here.
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  args = config_lib.parse_variant(arg, ("paper", "runlocal", "resnet101"), "coco2014")
  config = config_lib.default_config()
  config.data.source = "coco2014"
  config.data.eval_split = "validation"  # the paper evaluates on val2014
  config.train.batch_size = 128  # 82k training images: larger batches, fewer steps per epoch
  config.train.num_steps = 30000  # ~46 epochs of 82k images
  config.train.checkpoint_every = 2000  # a checkpoint every ~3 epochs
  if "resnet101" in args:  # the modern protocol (docstring)
    config_lib.resnet101_protocol(config, num_steps=100000)  # ~40 epochs of 82k (ASL: 40)
  return config_lib.variant_args(config, arg, "coco2014", extra=("resnet101",))
