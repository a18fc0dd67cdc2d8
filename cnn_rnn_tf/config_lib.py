"""The default configuration, in the package so that any config file can start from it.

Config files (`configs/*.py`, or your own anywhere) do:

    from cnn_rnn_tf import config_lib

    def get_config(arg=None):
      config = config_lib.default_config()
      config.data.source = "csv"
      return config

and are loaded by the binaries with `--config=path/to/file.py`, overridden with
`--config.a.b=value`. The resolved config is saved into every workdir and export.
"""

import ml_collections


def default_config() -> ml_collections.ConfigDict:
  """Every field the library reads, with its default and a one-line why."""
  config = ml_collections.ConfigDict()
  config.seed = 0

  # ---- Data: cnn_rnn_tf.data ----
  config.data = data = ml_collections.ConfigDict()
  data.source = "synthetic_scenes"  # voc2007 | coco2014 | csv | synthetic_scenes
  data.data_dir = ml_collections.FieldReference(None, field_type=str)  # TFDS data_dir (None: ~/tensorflow_datasets)
  data.manual_dir = ml_collections.FieldReference(None, field_type=str)  # where original archives lie (VOC/COCO offline)
  data.train_split = "train"
  data.eval_split = "test"
  data.voc_labels = "labels"  # voc2007: "labels" (any instance) or "labels_no_difficult"
  data.coco_empty_images = "skip"  # coco2014: images without objects: "skip" (counted) or "keep" (empty label set)
  data.synthetic_config = "default"  # synthetic_scenes builder config
  data.train_csv = ""
  data.eval_csv = ""
  data.image_column = "image_name"
  data.labels_column = "tags"
  data.label_separator = " "
  data.skip_bad_examples = False  # True: skip and count bad rows/images instead of raising
  data.csv_empty_labels = "error"  # csv: a row without labels is bad data; "keep": a valid example (target END)
  data.check_images = "decode"  # csv: decode each image once per split (catches corrupt files); "header": fast
  data.shuffle_buffer = 2048
  data.deterministic = False  # True: fixed op order and seeds (reproducible, a bit slower)
  data.augment = False  # random flip + random crop; for fine-tuning the backbone
  data.cache_features = True  # frozen backbone: extract features once, train on the cache
  data.cache_dir = ml_collections.FieldReference(None, field_type=str)  # None: <workdir>/../feature_cache
  data.precision = "auto"  # backbone compute, extraction and training: auto | on (mixed_bfloat16) | off

  # ---- Model: cnn_rnn_tf.backbones, cnn_rnn_tf.model ----
  config.model = model = ml_collections.ConfigDict()
  model.head = "cnn_rnn"  # cnn_rnn | bce (the paper's binary cross-entropy baseline)
  model.backbone = "vgg16"  # vgg16 | small_cnn
  model.backbone_weights = ml_collections.FieldReference("imagenet", field_type=str)  # imagenet | None | path
  model.image_size = 224
  model.train_backbone = False  # the paper keeps the CNN frozen; True fine-tunes it
  model.embedding_dim = 64  # d, the joint space (paper: 64)
  model.lstm_units = 512  # ReLU-LSTM units (paper: 512)
  model.joint_activation = "relu"  # h in x_t = h(U_o o(t) + U_I I); the paper does not name it
  model.dropout = 0.5  # on the inputs of both projections into the joint space
  model.weight_decay = 1e-4  # L2 on all kernels and the label embedding
  model.max_labels = ml_collections.FieldReference(None, field_type=int)  # cap per training sequence

  # ---- Decoding: cnn_rnn_tf.decoding ----
  config.decode = decode = ml_collections.ConfigDict()
  decode.beam_size = 3
  decode.max_length = 10  # at most this many labels per image
  decode.min_length = 0  # END is masked until this many labels (paper: k on NUS-WIDE, 0 on COCO)

  # ---- Training: cnn_rnn_tf.train_lib ----
  config.train = train = ml_collections.ConfigDict()
  train.batch_size = 64  # global, over all replicas
  train.num_steps = 20000
  train.optimizer = "rmsprop"  # rmsprop (the paper's choice) | adam | sgd
  train.learning_rate = 1e-4
  train.momentum = 0.9  # RMSProp (and SGD) momentum, as the paper
  train.init_checkpoint = ml_collections.FieldReference(None, field_type=str)  # weights to start from (not resume)
  train.steps_per_loop = 1  # steps per tf.function call; >1 saves Python overhead on small heads
  train.log_every = 100
  train.checkpoint_every = 1000
  train.max_checkpoints = 3
  train.eval_every = 0  # evaluate on data.eval_split every N steps; 0: only at the end; -1: never
  train.keep_best = ""  # "" off; else a metric key ("top3.OF1", "mAP_noninterp"): best/ keeps its best checkpoint
  train.fallback_on_corrupt_checkpoint = True  # a corrupt latest checkpoint: warn, resume from the previous one
  return config
