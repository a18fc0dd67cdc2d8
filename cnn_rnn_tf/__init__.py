"""cnn_rnn_tf: CNN-RNN multi-label image classification (Wang et al., CVPR 2016).

Modules, imports flowing one way (data and model know nothing of training; export
knows the model, not the trainer):

  vocab         label vocabulary (frequency order), START / END ids, sequence targets
  relu_lstm     the ReLU-LSTM recurrent layer
  backbones     VGG16 fc7 and a small CNN, both images [B, H, W, 3] in 0..255 -> features
  model         the CNN-RNN head and the BCE baseline head (Keras functional models)
  decoding      greedy and beam search in TensorFlow ops
  data/         sources (VOC 2007, COCO 2014, CSV, synthetic_scenes), pipeline, feature cache
  metrics       C-P/C-R/C-F1, O-P/O-R/O-F1, AP (three conventions), MAP@10; NumPy only
  train_lib     the distributed custom training loop (binary: cnn_rnn_tf.train)
  evaluate_lib  decoding + metrics over a split (binary: cnn_rnn_tf.evaluate)
  export_lib    SavedModel export for TF Serving (binary: cnn_rnn_tf.export)
  predict       local predictions through tf.saved_model.load (binary)
  serving/      gRPC PredictionService client; a test stand-in server
  analysis/     label / joint-space neighbours, per-step attention maps, box hit rate
                (binary: cnn_rnn_tf.visualize)
  demo_lib      the demo (binary: cnn_rnn_tf.demo), `demo_config` its config, `report` its
                figures
  config_lib    the default config; workdir: a workdir's files -> models; inference: decoding
  workdir/      layout (paths, config/labels/thresholds files), resume (the resume check),
                checkpoints (models, restore, load_trained), locking (the workdir lock)
"""

__version__ = "0.1.0"
