r"""PASCAL VOC 2007 with the paper's settings: frozen VGG16 fc7, d=64, ReLU-LSTM 512.

  python -m cnn_rnn_tf.train --config=configs/voc2007.py --workdir=runs/voc2007 \
      --config.data.data_dir=$HOME/tensorflow_datasets
  python -m cnn_rnn_tf.evaluate --workdir=runs/voc2007        # VOC 2007 test, mAP

Trains on trainval (TFDS train+validation), evaluates on test, as the paper. The VGG16
ImageNet weights come from Keras' cache (~/.keras/models/vgg16_weights_tf_dim_ordering_tf_
kernels.h5) or `--config.model.backbone_weights=/path/to/file.h5`. The frozen backbone
runs once into the feature cache; the head then trains in minutes. Everything not set here
is `config_lib.default_config()` (the paper's head, VGG16, beam 3, test split).

`configs/voc2007.py:runlocal` shrinks it for a laptop or a test (`config_lib.runlocal`: the
small CNN trained end to end, 32x32, a few steps; no ImageNet weights needed).
`configs/voc2007.py:paper` trains the head exactly as the paper (`config_lib.PAPER`: the
fields where the default recipe departs from it); arguments combine: `:paper,runlocal`.

`configs/voc2007.py:resnet101` is the modern protocol (ML-GCN, ASL, Query2Label): ResNet-101
ImageNet weights (~/.keras/models/resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5),
fine-tuned end to end at 448x448 with augmentation, Adam 1e-4, batch 32, ~38 epochs. How its
numbers compare: same split (trainval -> test) and metric (mAP over the 20 classes) as the
published ones it follows, ML-GCN's 94.0 mAP (ResNet-101, 448 px; the CNN-RNN paper's VGG16:
84.0); not the same recipe (one learning rate for backbone and head, this package's
augmentation, the CNN-RNN head or `model.head=bce`, no ML-GCN graph or ASL loss), so expect
it below them. No full run of it has been made with this package yet (it needs a GPU: about
twice VGG16's GFLOP per image at 448 px, see `make bench`); its figures are not published here.
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  args = config_lib.parse_variant(arg, ("paper", "runlocal", "resnet101"), "voc2007")
  config = config_lib.default_config()
  config.data.source = "voc2007"
  config.data.train_split = "trainval"  # the paper trains on trainval, tests on test
  config.train.num_steps = 6000  # ~75 epochs of 5011 trainval images at batch 64
  if "resnet101" in args:  # the modern protocol (docstring)
    config_lib.resnet101_protocol(config, num_steps=6000)  # ~38 epochs of 5011 images
  return config_lib.variant_args(config, arg, "voc2007", extra=("resnet101",))
