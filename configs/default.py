r"""Default configuration (`cnn_rnn_tf.config_lib.default_config`): frozen VGG16 fc7 features,
the paper's head (d=64, ReLU-LSTM 512, RMSProp, weight decay 1e-4, dropout 0.5), on synthetic_scenes.

  python -m cnn_rnn_tf.train --config=configs/default.py --workdir=/tmp/run \
      [--config.train.num_steps=100 ...]

`configs/default.py:runlocal` shrinks it for a laptop or a test (`config_lib.runlocal`);
`:paper` trains the head exactly as the paper (`config_lib.PAPER`).
"""

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  config = config_lib.default_config()
  return config_lib.variant_args(config, arg, "default")
