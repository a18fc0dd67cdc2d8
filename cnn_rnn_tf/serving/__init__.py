"""Serving the exported SavedModel: a gRPC client, the output format, a test server.

  client   PredictionService client (tensorflow-serving-api): `python -m cnn_rnn_tf.serving.client`
  format   request inputs from image files and the text / JSON output, shared by the client
           and `cnn_rnn_tf.predict` so that both print the same
  server   a stand-in PredictionService server for tests (the TF Serving binary cannot be
           installed where the tests run); production uses `tensorflow/serving`, see export/
"""
