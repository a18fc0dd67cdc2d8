r"""The demo: synthetic_scenes, the small CNN trained end to end with the head, on a CPU.

  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/demo/cnn_rnn
  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/demo/bce \
      --config.model.head=bce

`get_config("runlocal")` shrinks it further for tests (tiny data, a few steps).
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  config.data.source = "synthetic_scenes"
  config.data.synthetic_config = "default"
  config.data.train_split = "train"
  config.data.eval_split = "test"
  config.data.cache_features = False  # the backbone trains, so features change every step

  config.model.backbone = "small_cnn"
  config.model.backbone_weights = None
  config.model.image_size = 64
  config.model.train_backbone = True  # trained from scratch together with the head
  config.model.lstm_units = 256  # paper: 512; 20 labels need less, and the CPU thanks us
  config.model.dropout = 0.3  # paper: 0.5; less for a small model trained from scratch

  config.decode.beam_size = 3
  config.decode.max_length = 8

  config.train.batch_size = 64
  config.train.num_steps = 1200
  config.train.learning_rate = 1e-3  # from scratch: higher than the paper's fine-tuning rate
  config.train.log_every = 100
  config.train.checkpoint_every = 400

  if arg == "runlocal":
    config.data.synthetic_config = "small"
    config.model.image_size = 32
    config.model.lstm_units = 32
    config.model.embedding_dim = 16
    config.train.batch_size = 16
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.checkpoint_every = 3
  return config
