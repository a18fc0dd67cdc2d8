"""cnn_rnn_tf: CNN-RNN multi-label image classification (Wang et al., CVPR 2016).

Modules, imports flowing one way (data and model know nothing of training; export
knows the model, not the trainer). One line per module, its name in the first column; a
subpackage is `name/`, its modules indented under it (tests/test_imports.py checks that
every module file is listed and every listed module exists):

  vocab           label vocabulary (frequency order), START / END ids, sequence targets
  label_order     the order of the training sequence: fixed, random, orderless PLA / MLA
  relu_lstm       the ReLU-LSTM recurrent layer
  backbones       VGG16 fc7 and a small CNN, both images [B, H, W, 3] in 0..255 -> features
  weights_files   Keras weights files checked against the model before loading (clear errors)
  fast_layers     faster layers with the same weights for keras.applications backbones
                  (ConvNeXt's depthwise conv, pointwise Dense + GELU)
  head_layers     the CNN-RNN head's layers (tied label embedding, joint space), its step view
  model           the CNN-RNN head and the BCE baseline head (Keras functional models)
  losses          the per-label loss table (bce, asl) and the CNN-RNN's sequence loss
  decoders        the named decoders, each declared once (TF-free)
  decoding        greedy and beam search, the greedy free-running pass, in TensorFlow ops
  sampling        seeded ancestral sampling of label sets (the expected_f1 decoder's)
  expected_f1     the set of maximal expected example-F1 (GFM) from a label distribution
  inference       predictions of any head from features, and what counts as predicted
  calibration     the BCE head's per-class thresholds (max per-class F1)
  images          checks (format, pixel limit), decodes and resizes image bytes (TF ops)
  image_headers   image containers walked in-graph: GIF frames, JPEG segments, EXIF orientation
  image_files     image files on the Python side: read, header, load; errors name the file
  data/           tf.data input
    sources/        the data sources behind one registry (SOURCES, get_source)
      base          the Source interface, bad-data problems and their messages
      tfds_source   a TFDS dataset as a source; where offline archives go (manual_dir)
      voc2007       PASCAL VOC 2007 (TFDS voc/2007)
      coco2014      MS-COCO 2014 (TFDS coco/2014)
      csv_source    your own images: a CSV of paths and labels
      synthetic     the package's synthetic_scenes dataset
      hygiene       duplicate rows and train/eval overlap, counted
    synthetic_scenes  the procedural multi-label dataset (a TFDS builder)
    scene_drawing   the NumPy world and generator behind synthetic_scenes
    make_synthetic  generates a synthetic_scenes config into a TFDS data_dir (binary)
    tfds_prepare    TFDS preparation that several processes may start at once
    pipeline        a split -> batches of resized RGB images and multi-hot labels
    feature_cache   the frozen backbone's features of a split, extracted once
    inputs          the one input builder: a config and a split -> batches
    options         the tf.data options and parallelism every dataset uses
    precision       data.precision: float32 or mixed bfloat16 for the backbone
  metrics         C-P/C-R/C-F1, O-P/O-R/O-F1, set-level metrics; the tables of metrics and
                  label-set rules; NumPy only
  ranking         AP (three conventions), mAP, MAP@10, top-k masks; NumPy only
  multilabel      the set metrics (C-/O-P/R/F1, exact match, E-P/R/F1, Hamming); NumPy only
  rule_masks      what counts as predicted: the label-set rules' masks; NumPy only
  metrics_markdown  the metrics reports as Markdown tables
  config_lib      the default config (every field, with why) and its variants
  config_checks   validate: types, ranges, "did you mean"
  config_rules    the checks between config fields (config_checks runs them)
  config_cli      the binaries' config flags (by name or file), one-line flag errors
  workdir/        a workdir's files -> models
    layout          paths, config / labels / thresholds files
    resume          the resume check and config_history.jsonl
    checkpoints     building models, restore, load_trained, corrupt-checkpoint fallback
    locking         the workdir lock
    compute         compute.json: the backbone's precision and XLA mode, once per run
  process         whether a process of this host still runs (stale locks, temp files)
  runtime         process set-up of the binaries: quiet start, CPU devices, progress mode
  progress        terminal progress bars
  metric_writer   scalar metrics to the log, TensorBoard and a JSON-lines file
  periodic        the training loop's periodic work as small named objects
  distribute      the tf.distribute strategy of a run, and which process is the chief
  optim           the training recipe: optimizer, schedule, gradient clipping, EMA, AdamW
  train_lib       the distributed custom training loop
  train_end       what follows the loop: stream teardown, backbone file, thresholds
  train           binary: trains a head
  evaluate_lib    decoding + metrics over a split
  evaluate        binary: evaluates a workdir
  export_lib      SavedModel export for TF Serving
  export_inputs   the exported signatures' input checks and warmup requests
  export          binary: exports a workdir
  predict         binary: local predictions through tf.saved_model.load
  serving/        TF Serving clients and a test stand-in server
    format          what predict and the client share: inputs, batches, output
    local           a SavedModel in this process (the library of predict)
    client_lib      gRPC PredictionService client
    client          binary: the client
    server_lib      a TEST STAND-IN for the TF Serving binary
    server          binary: the stand-in server
  analysis/       what a CNN-RNN learned
    common          a trained workdir, the head's tables, the path
    neighbours      label / joint-space neighbours
    attention       per-step attention maps (Grad-CAM, occlusion)
    hit_rate        the box hit rate on synthetic_scenes
    output          Markdown, JSON and PNG overlays
  visualize       binary: the analysis of a workdir
  demo_lib        the demo: heads under three protocols, export, report
  demo_report     the demo's texts: what it prints, report.md
  demo_config     the demo's config (a module, so it works from a wheel)
  report          the demo's figures and Markdown report
  demo            binary: the demo
"""

__version__ = "0.1.0"
