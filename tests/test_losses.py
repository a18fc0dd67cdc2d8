"""The per-label loss table and the Asymmetric Loss (cnn_rnn_tf.losses)."""

import inspect
import os

import numpy as np
import pytest
import tensorflow as tf

from cnn_rnn_tf import config_checks
from cnn_rnn_tf import config_lib
from cnn_rnn_tf import losses
from cnn_rnn_tf import model as model_lib
from cnn_rnn_tf import train_lib
from helpers import load_config_file, tiny_head

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
K = 6


def _sigmoid(x):
  return 1.0 / (1.0 + np.exp(-x))


def _asl_numpy(logits, y, gamma_neg, gamma_pos, clip):
  """The formula of Ridnik et al. (2021), per example, in float64."""
  p = _sigmoid(logits)
  p_m = np.maximum(p - clip, 0.0)
  per_label = (-y * (1 - p) ** gamma_pos * np.log(p)
               - (1 - y) * p_m ** gamma_neg * np.log(1 - p_m))
  return per_label.sum(axis=1)


def _asl_grad_numpy(logits, y, gamma_neg, gamma_pos, clip):
  """d loss / d logits with the focusing weights (1-p)^g+ and p_m^g- held constant."""
  p = _sigmoid(logits)
  p_m = np.maximum(p - clip, 0.0)
  w_pos, w_neg = (1 - p) ** gamma_pos, p_m ** gamma_neg
  d_neg = np.where(p > clip, p * (1 - p) / (1 - p_m), 0.0)  # d/dx of -log(1 - p_m)
  return -y * w_pos * (1 - p) + (1 - y) * w_neg * d_neg


CASES = [dict(gamma_neg=4.0, gamma_pos=0.0, clip=0.05),  # the paper's COCO setting
         dict(gamma_neg=2.0, gamma_pos=1.0, clip=0.0),  # no clip: the log-sigmoid form
         dict(gamma_neg=0.0, gamma_pos=0.0, clip=0.0),  # plain BCE
         dict(gamma_neg=3.0, gamma_pos=2.0, clip=0.2)]


def _batch(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 3, (8, K)).astype(np.float32)
  y = (rng.random((8, K)) < 0.4).astype(np.float32)
  return logits, y


@pytest.mark.parametrize("settings", CASES)
def test_asl_equals_the_numpy_formula(settings):
  logits, y = _batch(0)
  got = losses.asl(logits, y, **settings).numpy()
  want = _asl_numpy(np.float64(logits), np.float64(y), **settings)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_asl_without_focusing_or_clip_is_bce():
  logits, y = _batch(1)
  np.testing.assert_allclose(losses.asl(logits, y, gamma_neg=0.0, gamma_pos=0.0, clip=0.0),
                             losses.bce(logits, y), rtol=1e-5)


@pytest.mark.parametrize("settings", CASES)
def test_asl_gradient_holds_the_focusing_weights_constant(settings):
  """The gradient equals the derivative with the weights constant: with gamma > 0 the
  derivative through the weights differs, so this fails without tf.stop_gradient."""
  logits, y = _batch(2)
  x = tf.constant(logits)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = tf.reduce_sum(losses.asl(x, y, **settings))
  got = tape.gradient(loss, x).numpy()
  want = _asl_grad_numpy(np.float64(logits), np.float64(y), **settings)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_asl_is_finite_for_extreme_logits():
  logits = np.array([[-100.0, -30.0, 0.0, 30.0, 100.0, 17.0]], np.float32)
  for y in (np.zeros_like(logits), np.ones_like(logits)):
    x = tf.constant(logits)
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = tf.reduce_sum(losses.asl(x, y))
    assert np.isfinite(loss.numpy()) and np.all(np.isfinite(tape.gradient(loss, x)))


def test_defaults_equal_the_configs():
  """LossOptions' defaults and each loss's keyword defaults are the config defaults."""
  config = config_lib.default_config()
  assert losses.LossOptions() == losses.loss_options(config)._replace(label_loss_settings=())
  assert config.model.label_loss in losses.LABEL_LOSSES
  asl_defaults = {k: v.default for k, v in inspect.signature(losses.asl).parameters.items()
                  if v.kind is v.KEYWORD_ONLY}
  assert asl_defaults == config.model.asl.to_dict()
  assert tuple(losses.LABEL_LOSSES) == config_lib.LABEL_LOSSES


def test_label_loss_and_its_settings_reach_both_heads():
  """model.label_loss=asl with model.asl's settings is the BCE head's loss and the CNN-RNN's
  side term (times model.side_loss_weight)."""
  config = config_lib.default_config()
  config.model.label_loss = "asl"
  config.model.asl.gamma_neg = 2.0
  options = losses.loss_options(config)
  rng = np.random.default_rng(3)
  feats = rng.normal(size=(4, 5)).astype(np.float32)
  y = (rng.random((4, K)) < 0.5).astype(np.float32)
  settings = dict(gamma_neg=2.0, gamma_pos=0.0, clip=0.05)
  bce_head = tiny_head(num_labels=K, feature_dim=5, head="bce")
  np.testing.assert_allclose(
      model_lib.head_loss(bce_head, feats, y, training=False, options=options),
      losses.asl(bce_head(feats), y, **settings), rtol=1e-5)
  head = tiny_head(num_labels=K, feature_dim=5)
  sequence = model_lib.head_loss(head, feats, y, training=False,
                                 options=options._replace(side_loss_weight=0.0))
  np.testing.assert_allclose(
      model_lib.head_loss(head, feats, y, training=False,
                          options=options._replace(side_loss_weight=0.5)) - sequence,
      0.5 * losses.asl(model_lib.marginal_logits(head, feats), y, **settings),
      rtol=1e-4, atol=1e-5)


def test_asl_settings_are_checked():
  for field, value in (("gamma_neg", -1.0), ("gamma_pos", float("nan")), ("clip", 1.0),
                       ("clip", -0.1)):
    config = config_lib.default_config()
    config.model.asl[field] = value
    with pytest.raises(config_lib.ConfigError, match=f"model.asl.{field} = "):
      config_checks.validate(config)


@pytest.mark.parametrize("head", ["cnn_rnn", "bce"])
def test_a_toy_loss_is_one_function_and_one_entry(tmp_path, monkeypatch, head):
  """A per-label loss registered once (and its name repeated for the TF-free config check)
  trains the BCE head and the CNN-RNN's side head."""
  calls = []

  def squared_error(logits, multi_hot):
    calls.append(tuple(logits.shape))
    p = tf.sigmoid(tf.cast(logits, tf.float32))
    return tf.reduce_sum(tf.square(p - tf.cast(multi_hot, tf.float32)), axis=1)

  monkeypatch.setitem(losses.LABEL_LOSSES, "squared_error", squared_error)
  monkeypatch.setattr(config_lib, "LABEL_LOSSES", tuple(losses.LABEL_LOSSES))
  config = load_config_file(os.path.join(ROOT, "configs", "demo.py"), "runlocal")
  config.data.data_dir = str(tmp_path / "tfds")
  config.train.update(num_steps=2, eval_every=-1)
  config.model.update(head=head, label_loss="squared_error")
  result = train_lib.train(config, str(tmp_path / "run"))
  assert result["step"] == 2 and np.isfinite(result["loss"])
  # Traced with the per-label logits [B, K] (the cnn_rnn's: its side head's).
  assert calls and all(len(shape) == 2 for shape in calls), calls


def test_a_saved_aux_bce_weight_loads_as_the_side_loss_weight(tmp_path):
  """A config.json written before the rename keeps its weight (workdir.load_config)."""
  import json  # pylint: disable=g-import-not-at-top
  from cnn_rnn_tf import workdir as workdir_lib  # pylint: disable=g-import-not-at-top
  w = str(tmp_path)
  workdir_lib.save_config(config_lib.default_config(), w)
  path = workdir_lib.config_path(w)
  with open(path) as f:
    saved = json.load(f)
  del saved["model"]["side_loss_weight"], saved["model"]["label_loss"], saved["model"]["asl"]
  saved["model"]["aux_bce_weight"] = 0.25
  with open(path, "w") as f:
    json.dump(saved, f)
  config = workdir_lib.load_config(w)
  assert config.model.side_loss_weight == 0.25 and config.model.label_loss == "bce"
  config_checks.validate(config)
