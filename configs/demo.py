r"""The demo on synthetic_scenes with the small CNN, on a CPU, in minutes.

End to end (the small CNN trains from scratch together with the head):

  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/e2e

Heads on a frozen backbone (the paper's setting: the CNN is fixed, its features cached; the
demo first trains the backbone end to end, then both heads on its frozen features):

  python -m cnn_rnn_tf.train --config=configs/demo.py:heads --workdir=runs/heads \
      --config.model.backbone_weights=runs/e2e/backbone.weights.h5

Arguments (comma-separated): "heads" as above; "runlocal" shrinks everything for tests
(synthetic_scenes/small, 32x32, a few steps). The fields and their reasons live in the
package, `cnn_rnn_tf/demo_config.py`, so that `python -m cnn_rnn_tf.demo` finds them in an
installed wheel too; this file is what `--config=` takes.
"""

from cnn_rnn_tf.demo_config import get_config  # pylint: disable=unused-import
