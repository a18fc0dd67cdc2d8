r"""PASCAL VOC 2007 with the paper's settings: frozen VGG16 fc7, d=64, ReLU-LSTM 512.

  python -m cnn_rnn_tf.train --config=configs/voc2007.py --workdir=runs/voc2007 \
      --config.data.data_dir=$HOME/tensorflow_datasets
  python -m cnn_rnn_tf.evaluate --workdir=runs/voc2007        # VOC 2007 test, mAP

Trains on trainval (TFDS train+validation), evaluates on test, as the paper. The VGG16
ImageNet weights come from Keras' cache (~/.keras/models/vgg16_weights_tf_dim_ordering_tf_
kernels.h5) or `--config.model.backbone_weights=/path/to/file.h5`. The frozen backbone
runs once into the feature cache; the head then trains in minutes.
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "voc2007"
  config.data.train_split = "trainval"
  config.data.eval_split = "test"
  config.data.voc_labels = "labels"  # an object counts even if marked difficult

  config.model.backbone = "vgg16"
  config.model.backbone_weights = "imagenet"
  config.model.image_size = 224
  config.model.train_backbone = False  # paper: the CNN is kept unchanged

  config.decode.beam_size = 3
  config.decode.max_length = 10
  config.decode.min_length = 0

  config.train.batch_size = 64
  config.train.num_steps = 6000  # ~75 epochs of 5011 trainval images
  config.train.learning_rate = 1e-4
  config.train.checkpoint_every = 1000
  if arg == "runlocal":
    config.train.num_steps = 10
    config.train.batch_size = 8
    config.train.log_every = 1
  return config
