"""Data: sources (VOC 2007, COCO 2014, CSV, synthetic_scenes), the tf.data image pipeline and
the feature cache of the frozen backbone.

    from cnn_rnn_tf import data as data_lib
    ds = data_lib.dataset_for(config, "train", vocab, training=True, cache_dir=cache_dir,
                              start_step=0)      # the one builder: images or cached features
    source = data_lib.get_source(config.data)
    vocab = LabelVocab.from_label_sets(source.train_label_sets(), all_names=source.label_names)
    ds = data_lib.image_dataset(source, "trainval", vocab, image_size=224, batch_size=32,
                                training=True, seed=0, start_step=0)
    path = data_lib.feature_cache.build(source, "trainval", vocab, "vgg16", "imagenet", 224,
                                        cache_dir="/data/feature_cache")
    ds = data_lib.feature_dataset(path, batch_size=64, training=True, seed=0)

See inputs.py (dataset_for, uses_feature_cache), sources.py (splits, label conventions, bad
data, offline TFDS), pipeline.py (order of operations, resuming, distribution),
feature_cache.py (key, layout), precision.py (data.precision=auto by measurement),
tfds_prepare.py (one preparer at a time) and the images module cnn_rnn_tf/images.py.
"""

from cnn_rnn_tf.data import feature_cache
from cnn_rnn_tf.data import inputs
from cnn_rnn_tf.data import options
from cnn_rnn_tf.data import pipeline
from cnn_rnn_tf.data import sources
from cnn_rnn_tf.data.feature_cache import feature_dataset
from cnn_rnn_tf.data.inputs import ALL
from cnn_rnn_tf.data.inputs import CALIBRATION
from cnn_rnn_tf.data.inputs import dataset_for
from cnn_rnn_tf.data.inputs import FIT
from cnn_rnn_tf.data.inputs import in_calibration_part
from cnn_rnn_tf.data.inputs import uses_feature_cache
from cnn_rnn_tf.data.pipeline import image_dataset
from cnn_rnn_tf.data.sources import BadDataError
from cnn_rnn_tf.data.sources import get_source
from cnn_rnn_tf.data.sources import SOURCES
from cnn_rnn_tf.data.sources import Source
