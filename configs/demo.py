r"""The demo on synthetic_scenes with the small CNN, on a CPU, in minutes.

  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/e2e   # end to end
  python -m cnn_rnn_tf.train --config=configs/demo.py:heads --workdir=runs/heads \
      --config.model.backbone_weights=runs/e2e/backbone.weights.h5   # frozen backbone

Arguments, comma-separated: "heads" (both heads on the frozen features of a backbone file),
"runlocal" (tiny data and a few steps, for tests). This file is what `--config=` takes; the
fields and their reasons live in the package, `cnn_rnn_tf/demo_config.py`, so that
`python -m cnn_rnn_tf.demo` finds them in an installed wheel too.
"""

from cnn_rnn_tf.demo_config import get_config  # pylint: disable=unused-import
