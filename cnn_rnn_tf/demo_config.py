r"""The demo's config: synthetic_scenes with the small CNN, on a CPU, in minutes.

A module of the package (not only a file under configs/) so that the demo runs from an
installed wheel too:

    from cnn_rnn_tf import demo_config
    config = demo_config.get_config("heads,runlocal")

`configs/demo.py` re-exports `get_config`, so the training binary takes it as a config file:

  python -m cnn_rnn_tf.train --config=configs/demo.py --workdir=runs/e2e

Heads on a frozen backbone (the paper's setting: the CNN is fixed, its features cached; the
demo first trains the backbone end to end, then both heads on its frozen features):

  python -m cnn_rnn_tf.train --config=configs/demo.py:heads --workdir=runs/heads \
      --config.model.backbone_weights=runs/e2e/backbone.weights.h5

The backbone of the transfer protocol T (another task on other images, as ImageNet is for
VOC in the paper): the scene type only, one label per image, drawn with another seed:

  python -m cnn_rnn_tf.train --config=configs/demo.py:transfer --workdir=runs/scene

Arguments (comma-separated): "heads" as above; "transfer" the T backbone; "runlocal" shrinks
everything for tests (synthetic_scenes/small, 32x32, a few steps). Everything not set here is
`config_lib.default_config()` (synthetic_scenes, the paper's head, beam 3).
"""

from __future__ import annotations

from cnn_rnn_tf import config_lib


def get_config(arg=None):
  args = config_lib.parse_variant(arg, ("heads", "transfer", "runlocal"), "demo",
                                  exclusive=("heads", "transfer"))
  config = config_lib.default_config()
  config.model.backbone = "small_cnn"  # trains from scratch on a CPU in minutes
  config.model.backbone_weights = None  # e2e: random init; heads: the e2e run's file
  config.model.image_size = 64  # synthetic_scenes' native size
  config.model.small_cnn_filters = (16, 32, 64, 64)  # the default 32/64/128/128: 3x slower
  config.model.lstm_units = 128  # paper: 512; 20 labels need less (256 trained 2.4x slower)
  config.model.dropout = 0.3  # paper: 0.5; less for a small model and data set
  config.decode.max_length = 8  # a scene holds at most 8 objects
  config.train.eval_every = -1  # the demo evaluates every run itself (evaluate_lib.evaluate)

  if "heads" in args:
    # Frozen backbone (the default; set model.backbone_weights), cached features.
    config.train.num_steps = 1000  # ~10 epochs; a run ~18 s (CNN-RNN) / ~5 s (BCE) on 2 cores
    config.train.learning_rate = 1e-3  # a small head on fixed features learns fast
    config.train.steps_per_loop = 50  # a tiny head: Python overhead would dominate
  else:
    config.model.train_backbone = True  # trained from scratch together with the head
    config.data.cache_features = False  # features change every step
    config.train.optimizer = "adam"  # from scratch, Adam converges in fewer steps than RMSProp
    config.train.batch_size = 32  # more updates per image seen: from scratch, that helps
    config.train.num_steps = 750  # 24,000 images (4 epochs): ~1.5 min on 2 CPU cores
    config.train.learning_rate = 1e-3  # Adam from scratch
    config.train.checkpoint_every = 250  # three checkpoints in a short run
  if "transfer" in args:
    config.data.synthetic_seed = 1  # other images than the heads train and test on
    config.data.synthetic_labels = "scene"  # another task: which of the 6 scenes
    config.model.head = "bce"  # one label per image; the backbone is what is kept
    config.train.num_steps = 400  # 12,800 images: 6 scene types are learned fast
    config.train.checkpoint_every = 200

  if "runlocal" in args:
    config.data.synthetic_config = "small"  # 300 train / 100 test images, 32x32
    config.model.image_size = 32
    config.model.lstm_units = 32
    config.model.embedding_dim = 16
    config.train.batch_size = 16
    config.train.num_steps = 6
    config.train.log_every = 2
    config.train.checkpoint_every = 3
  return config
