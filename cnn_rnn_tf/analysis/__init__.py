"""See what a CNN-RNN learned: label neighbours, joint-space neighbours, attention per step.

The paper's sections 4.5 (Table 5: nearest labels in the label embedding; Fig. 9: nearest
labels of an image in the joint space) and 4.6 (Fig. 10: where the model looks at each step),
for a trained workdir. One module per job:

  neighbours  label_neighbours(head, vocab, k=3)     # {name: [(name, distance), ...]}
              joint_neighbours(backbone, head, vocab, images, k=3)   # [N] lists
  attention   attention_maps(backbone, head, images, paths)   # float32 [N, L, h, w] in [0, 1]
              upsample_maps, map_peak
  hit_rate    box_hit_rate(backbone, head, vocab, examples)  # synthetic_scenes boxes
              attention_box_hit_rate(workdir, split="test", num_images=200)
  output      write_visualizations(workdir, out_dir, images=images)  # Markdown + PNG + JSON
              visualize_workdir(workdir, ...)   # what `python -m cnn_rnn_tf.visualize` does
  common      load_cnn_rnn(workdir), the head's label rows and image embedding, the path

The binary:

  python -m cnn_rnn_tf.visualize --workdir=runs/demo/seed0/cnn_rnn \\
      [--images a.png b.jpg ...] [--out_dir=runs/demo/seed0/cnn_rnn/visualize]
"""

from cnn_rnn_tf.analysis.attention import attention_maps
from cnn_rnn_tf.analysis.attention import map_peak
from cnn_rnn_tf.analysis.attention import METHODS
from cnn_rnn_tf.analysis.attention import upsample_maps
from cnn_rnn_tf.analysis.hit_rate import attention_box_hit_rate
from cnn_rnn_tf.analysis.hit_rate import box_hit_rate
from cnn_rnn_tf.analysis.neighbours import joint_neighbours
from cnn_rnn_tf.analysis.neighbours import label_neighbours
from cnn_rnn_tf.analysis.neighbours import METRICS
from cnn_rnn_tf.analysis.output import visualize_workdir
from cnn_rnn_tf.analysis.output import write_visualizations
