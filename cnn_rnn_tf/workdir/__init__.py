"""A workdir's layout, and the trained models it holds; shared by train, evaluate, export.

    from cnn_rnn_tf import workdir
    trained = workdir.load_trained("runs/demo")                 # checkpoint="auto"
    trained.config, trained.vocab, trained.backbone, trained.head, trained.checkpoint_path

    with workdir.lock("runs/demo"):                             # the trainer, chief only
      workdir.check_resume(config, "runs/demo")                 # before anything is written
      workdir.save_config(config, "runs/demo")

One module per job; this package re-exports their public names, so `workdir.X` works for
each of them:

  layout       paths (`LAYOUT`, `config_path`, ...), config.json, labels.txt, thresholds.json
  resume       `check_resume`: which config changes a resumed run accepts
  checkpoints  `build_backbone_and_head`, `resolve_checkpoint`, strict restore, `load_trained`
  locking      `lock`: one trainer per workdir
  compute      compute.json: the backbone's precision and XLA mode, resolved once per run

Layout (`layout` owns every path; nobody else joins names onto a workdir):

  config.json          the resolved config, optional paths absolute (`config_path`)
  config_history.jsonl the settings a resumed run changed, with the step (`resume`;
                       `config_history_path`)
  labels.txt           the label vocabulary in training order, id = line number (`labels_path`)
  checkpoints/         the latest checkpoints: head, the backbone when it was trained,
                       optimizer, step (`checkpoints_dir`)
  best/                the best checkpoint so far, `best/ckpt-<step>`, when the run kept one
                       (`train.keep_best`), and best/best.json {"metric", "value", "step"}
                       (`best_dir`, `best_json_path`)
  train/               TensorBoard summaries and log.jsonl (`train_dir`)
  eval/                metrics.json, metrics.md, predictions.npz (`eval_dir`)
  data_report.json     examples skipped as bad data, by reason (`data_report_path`)
  backbone.weights.h5  the trained backbone, reusable as a frozen `model.backbone_weights`
                       (`backbone_weights_path`)
  thresholds.json      {"step", "thresholds": {label name: threshold}}: per-class (bce: of its
                       probabilities; cnn_rnn: of its marginals)
                       thresholds fitted on the held-out part of the training split
                       (calibration.py); evaluate and export use them (`thresholds_path`,
                       `save_thresholds`, `load_thresholds`)
  compute.json         how the backbone computes in training and in inference (precision,
                       XLA), resolved once when the run started; evaluate, export and
                       load_trained reuse it (`compute_path`, `workdir.compute`)
  .lock                host and pid of the trainer that holds the workdir (`lock`)

A frozen backbone is not checkpointed: its weights come from `config.model.backbone_weights`
again (an absolute path in config.json).

Which checkpoint evaluate and export take (`--checkpoint`, the one rule, `resolve_checkpoint`):

  auto    (default) best/ when the run kept a best checkpoint, else the latest in checkpoints/
  latest  the latest in checkpoints/
  best    the one in best/ (an error when the run kept none)
  <path>  a checkpoint prefix (`.../ckpt-300`) or a folder of checkpoints (its latest)

A corrupt (unreadable, e.g. truncated) checkpoint picked by a rule or a folder is named in a
warning and the newest readable older checkpoint of the same folder is restored instead; with
none readable, `CorruptCheckpointError` names the files and asks for another `--checkpoint=`.

Restoring is strict: the checkpoint must hold exactly the variables the saved config builds
(head, and backbone when it was trained); a mismatch names the fields and shapes.
"""

# pylint: disable=g-importing-member,useless-import-alias
from cnn_rnn_tf.workdir.checkpoints import build_backbone_and_head
from cnn_rnn_tf.workdir.checkpoints import check_checkpoint
from cnn_rnn_tf.workdir.checkpoints import CHECKPOINT_RULES
from cnn_rnn_tf.workdir.checkpoints import CheckpointMismatchError
from cnn_rnn_tf.workdir.checkpoints import CorruptCheckpointError
from cnn_rnn_tf.workdir.checkpoints import load_trained
from cnn_rnn_tf.workdir.checkpoints import make_checkpoint
from cnn_rnn_tf.workdir.checkpoints import remove_temp_checkpoints
from cnn_rnn_tf.workdir.checkpoints import resolve_checkpoint
from cnn_rnn_tf.workdir.checkpoints import restore_checkpoint
from cnn_rnn_tf.workdir.checkpoints import restore_model
from cnn_rnn_tf.workdir.checkpoints import restore_weights
from cnn_rnn_tf.workdir.checkpoints import rng_state
from cnn_rnn_tf.workdir.checkpoints import Trained
from cnn_rnn_tf.workdir.layout import backbone_weights_path
from cnn_rnn_tf.workdir.layout import best_dir
from cnn_rnn_tf.workdir.layout import best_json_path
from cnn_rnn_tf.workdir.layout import checkpoints_dir
from cnn_rnn_tf.workdir.layout import compute_path
from cnn_rnn_tf.workdir.layout import config_history_path
from cnn_rnn_tf.workdir.layout import config_path
from cnn_rnn_tf.workdir.layout import data_report_path
from cnn_rnn_tf.workdir.layout import eval_dir
from cnn_rnn_tf.workdir.layout import feature_cache_dir
from cnn_rnn_tf.workdir.layout import LAYOUT
from cnn_rnn_tf.workdir.layout import labels_path
from cnn_rnn_tf.workdir.layout import load_config
from cnn_rnn_tf.workdir.layout import load_or_make_vocab
from cnn_rnn_tf.workdir.layout import load_thresholds
from cnn_rnn_tf.workdir.layout import load_vocab
from cnn_rnn_tf.workdir.layout import lock_path
from cnn_rnn_tf.workdir.layout import save_config
from cnn_rnn_tf.workdir.layout import save_thresholds
from cnn_rnn_tf.workdir.layout import thresholds_path
from cnn_rnn_tf.workdir.layout import train_dir
from cnn_rnn_tf.workdir.locking import lock
from cnn_rnn_tf.workdir.locking import WorkdirLockedError
from cnn_rnn_tf.workdir.resume import check_resume
from cnn_rnn_tf.workdir.resume import record_changes
from cnn_rnn_tf.workdir.resume import ONLY_FOR_HEAD
from cnn_rnn_tf.workdir.resume import RESUME_MAY_CHANGE
