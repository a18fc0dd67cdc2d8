"""Serving the exported SavedModel: in-process, through gRPC, and a test server.

  local       an export loaded in this process (`tf.saved_model.load`): the library of
              `python -m cnn_rnn_tf.predict`
  client_lib  PredictionService client (tensorflow-serving-api); binary:
              `python -m cnn_rnn_tf.serving.client`
  format      inputs (files, folders, globs), batching with a progress bar, failures, and
              the text / JSON / CSV / JSON Lines output, shared by local and client_lib
              so that both give the same
  server_lib  a stand-in PredictionService server for tests (the TF Serving binary cannot be
              installed where the tests run); binary: `python -m cnn_rnn_tf.serving.server`.
              Production uses `tensorflow/serving`, see export/README.md.
Nothing here imports a binary.
"""
