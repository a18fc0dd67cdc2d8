r"""MS-COCO 2014 with the paper's settings: frozen VGG16 fc7, d=64, ReLU-LSTM 512, top-3.

  python -m cnn_rnn_tf.train --config=configs/coco2014.py --workdir=runs/coco2014
  python -m cnn_rnn_tf.evaluate --workdir=runs/coco2014        # val2014: C-/O-P/R/F1, MAP@10

Train on train2014, evaluate on val2014 (the paper's protocol). Images without any object
annotation are skipped and counted (`data.coco_empty_images="skip"`); "keep" trains them
with an empty label set (the target sequence is just END).
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "coco2014"
  config.data.train_split = "train"
  config.data.eval_split = "validation"
  config.data.coco_empty_images = "skip"

  config.model.backbone = "vgg16"
  config.model.backbone_weights = "imagenet"
  config.model.image_size = 224
  config.model.train_backbone = False

  config.decode.beam_size = 3
  config.decode.max_length = 10
  config.decode.min_length = 0  # paper: no minimum length on COCO

  config.train.batch_size = 128
  config.train.num_steps = 30000  # ~46 epochs of 82k images
  config.train.learning_rate = 1e-4
  config.train.checkpoint_every = 2000
  if arg == "runlocal":
    config.train.num_steps = 10
    config.train.batch_size = 8
    config.train.log_every = 1
  return config
