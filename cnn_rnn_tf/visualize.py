r"""See what a CNN-RNN learned: label neighbours, joint-space neighbours, attention per step.

Flags in, one library call out (`analysis.output.visualize_workdir`; the definitions are in
the modules of cnn_rnn_tf/analysis/):

  python -m cnn_rnn_tf.visualize --workdir=runs/demo/seed0/cnn_rnn \
      [--images a.png b.jpg ...] [--out_dir=runs/demo/seed0/cnn_rnn/visualize]

Without `--images`, a synthetic_scenes workdir shows the first `--num_images` (4) images of
its evaluation split. Does the attention find the objects? (synthetic_scenes only; writes
<out_dir>/hit_rate.json and prints it):

  python -m cnn_rnn_tf.visualize --workdir=runs/demo/seed0/cnn_rnn --hit_rate_images=200
"""

from absl import app
from absl import flags

from cnn_rnn_tf import runtime

_METRICS = ("cosine", "euclidean")  # = analysis.neighbours.METRICS (kept here: no TF import)
_METHODS = ("grad_cam", "grad_cam_logit", "occlusion")  # = analysis.attention.METHODS

_WORKDIR = flags.DEFINE_string("workdir", None, "A CNN-RNN workdir that cnn_rnn_tf.train wrote.")
_IMAGES = flags.DEFINE_multi_string("images", None, "Image files; `--images a.png b.png` or "
                                    "repeated `--images=a.png --images=b.png` (globs allowed).")
_OUT_DIR = flags.DEFINE_string("out_dir", None, "Output folder (default: <workdir>/visualize).")
_NUM_NEIGHBOURS = flags.DEFINE_integer("num_neighbours", 3, "Neighbours per label and image.")
_METRIC = flags.DEFINE_enum("metric", "cosine", list(_METRICS),
                            "Distance in the embedding spaces.")
_METHOD = flags.DEFINE_enum("method", "grad_cam", list(_METHODS),
                            "Attention method (cnn_rnn_tf/analysis/attention.py).")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 4, "Without --images: show this many images "
                                   "of the evaluation split (synthetic_scenes workdirs only).")
_HIT_RATE_IMAGES = flags.DEFINE_integer(
    "hit_rate_images", 0, "If > 0: measure the attention box hit rate on this many images of "
    "--split (synthetic_scenes workdirs only).")
_SPLIT = flags.DEFINE_string("split", None, "Split for the images and the hit rate (default: "
                             "the config's data.eval_split).")
_CHECKPOINT = runtime.define_checkpoint_flag()
_PROGRESS = runtime.define_progress_flag()
flags.mark_flag_as_required("workdir")


def main(argv):
  runtime.setup(progress=_PROGRESS.value)
  from cnn_rnn_tf.analysis import output  # pylint: disable=g-import-not-at-top
  # `--images a.png b.png`: absl takes the first; the rest arrive as positional arguments.
  out = output.visualize_workdir(
      _WORKDIR.value, image_patterns=list(_IMAGES.value or []) + list(argv[1:]),
      out_dir=_OUT_DIR.value, num_neighbours=_NUM_NEIGHBOURS.value, metric=_METRIC.value,
      method=_METHOD.value, num_images=_NUM_IMAGES.value,
      hit_rate_images=_HIT_RATE_IMAGES.value, split=_SPLIT.value,
      checkpoint=_CHECKPOINT.value)
  print(f"Wrote {out['markdown']}")
  if out["hit_rate"] is not None:
    r = out["hit_rate"]
    print(f"{r['method']} peak inside the predicted label's box: {100 * r['rate']:.1f}% of "
          f"{r['steps']} steps (chance {100 * r['chance']:.1f}%) on {r['split']}, "
          f"{r['images']} images -> {out['hit_rate_file']}")


if __name__ == "__main__":
  app.run(main)
