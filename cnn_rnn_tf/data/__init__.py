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

See inputs.py (dataset_for, uses_feature_cache), sources/ (one module per source: splits,
label conventions, bad data, offline TFDS), pipeline.py (order of operations, resuming,
distribution), feature_cache.py (key, layout), precision.py (data.precision=auto by measurement),
tfds_prepare.py (one preparer at a time) and the images module cnn_rnn_tf/images.py.
"""

import importlib

# name -> the submodule it lives in (None: the name is the submodule). Loaded on first
# use (PEP 562), so that `python -m cnn_rnn_tf.data.make_synthetic` reaches
# `runtime.setup()` before TensorFlow is imported, and its start-up stays quiet.
_PUBLIC = {
    "feature_cache": None, "inputs": None, "options": None, "pipeline": None,
    "sources": None,
    "feature_dataset": "feature_cache",
    "ALL": "inputs", "CALIBRATION": "inputs", "FIT": "inputs", "dataset_for": "inputs",
    "EmptyPartError": "inputs",
    "in_calibration_part": "inputs", "uses_feature_cache": "inputs",
    "image_dataset": "pipeline", "ImageDatasetOptions": "pipeline",
    "BadDataError": "sources", "get_source": "sources", "SOURCES": "sources",
    "Source": "sources",
}
__all__ = sorted(_PUBLIC)


def __getattr__(name):
  if name not in _PUBLIC:
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
  module = importlib.import_module(f"{__name__}.{_PUBLIC[name] or name}")
  value = module if _PUBLIC[name] is None else getattr(module, name)
  globals()[name] = value
  return value


def __dir__():
  return __all__
