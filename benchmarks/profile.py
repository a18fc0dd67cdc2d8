r"""Per-op profile of a registry backbone: which ops take the time, serving and fine-tuning.

    python -m benchmarks.profile --backbone=convnext_tiny [--batch_size=8] [--image_size=224] \
        [--steps=3] [--top=12] [--modes=serving,fine_tuning] [--precisions=float32,bfloat16] \
        [--jit_compile=false] [--out=/tmp/profile_convnext_tiny.json]

For each mode and precision (the backbone at its default size, random weights: same speed):

  serving      the compiled forward pass, `backbone(images, training=False)`
  fine_tuning  forward and backward of a trainable backbone, `training=True`: the gradient of
               the features' mean with respect to every trainable variable

One warm-up call, then `steps` calls under the TensorFlow profiler
(`tf.profiler.experimental`); the trace (`*.xplane.pb`) is read back offline. Each op's
*self* time (its duration less the ops nested in it on the same thread: a function call op
counts only its own overhead, an XLA cluster its HLO ops) is summed over the CPU threads and
grouped twice:

  by op        the TensorFlow op type (`_MklNativeFusedConv2D`, `Erf`, `BatchMatMulV2`, ...),
               or `xla:<hlo>` for the HLO ops of a compiled cluster
  by layer     op type x the kind of layer it belongs to (the layer's name with its block
               numbers removed: `convnext_tiny_stage_block_depthwise_conv`)

and printed as the top `top` of each, as the share of the profiled op time and ms per call.
The images/s of the same calls without the profiler is printed beside it. `--tiny` (tests):
small_cnn at 32 px, batch 2, one step.
"""

from __future__ import annotations

import collections
import glob
import os
import re
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf
from tensorflow.tsl.profiler.protobuf import xplane_pb2

import benchmarks

from benchmarks.backbone_calls import make_call
from benchmarks.backbone_calls import POLICIES
from cnn_rnn_tf import backbones
from cnn_rnn_tf import runtime

_BACKBONE = flags.DEFINE_string("backbone", "convnext_tiny", "A registry name.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 8, "Images per call.")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", None, "Input size (default: the registry's).")
_STEPS = flags.DEFINE_integer("steps", 3, "Profiled calls per mode and precision.")
_TOP = flags.DEFINE_integer("top", 12, "Rows printed per table.")
_MODES = flags.DEFINE_list("modes", ["serving", "fine_tuning"], "serving, fine_tuning.")
_PRECISIONS = flags.DEFINE_list("precisions", ["float32", "bfloat16"], "float32, bfloat16.")
_JIT = flags.DEFINE_boolean("jit_compile", False, "Compile each call with XLA.")
_TINY = flags.DEFINE_boolean("tiny", False, "small_cnn, 32 px, batch 2, 1 step (tests).")
_OUT = flags.DEFINE_string("out", None, "Where the JSON goes (default: none).")

# Profiler events that are the runtime's bookkeeping, not an op's work.
# (`Run` of KernelAndDeviceFunc::, `BlockUntilReady` of an XLA executable: waiting for work
# that other threads record.)
_FRAMEWORK = re.compile(r"(::|^end: |^EagerExecute|^EagerLocalExecute|^EagerKernelExecute|"
                        r"^TFE_|^FunctionRun|^Rendezvous|^BlockUntilReady$)")
_CALL_OPS = {"StatefulPartitionedCall", "PartitionedCall", "_XlaRun", "_XlaCompile",
             "XlaLaunch", "While", "If"}


def layer_kind(op_name: str) -> str:
  """'m_backbone/m/stage_0_block_2_dense_1/MatMul' -> 'stage_block_dense' (no numbers)."""
  parts = [p for p in op_name.split("/") if p and p != "gradient_tape"]
  layer = parts[2] if len(parts) > 3 else (parts[-2] if len(parts) > 1 else parts[0])
  return re.sub(r"_+", "_", re.sub(r"\d+", "", layer)).strip("_") or layer


def _is_op(name: str) -> bool:
  """A TensorFlow op's event, "its/name:Type" (no spaces, one colon)."""
  return re.fullmatch(r"[^\s:]+:[^\s:]+", name) is not None


def self_times(line, names) -> list[tuple[str, str | None, int]]:
  """[(event name, enclosing TF op name or None, self time ps)] of one XLine."""
  events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
  out, stack = [], []  # stack: [index into out, end ps, tf op name]
  for e in events:
    while stack and e.offset_ps >= stack[-1][1]:
      stack.pop()
    name = names[e.metadata_id]
    parent_op = next((s[2] for s in reversed(stack) if s[2]), None)
    if stack:
      out[stack[-1][0]][2] -= e.duration_ps
    out.append([name, parent_op, e.duration_ps])
    stack.append((len(out) - 1, e.offset_ps + e.duration_ps, name if _is_op(name) else None))
  return [tuple(x) for x in out]


def op_table(xspace_path: str) -> dict[tuple[str, str], float]:
  """{(op type, layer kind): self seconds} over the host CPU plane of one trace."""
  space = xplane_pb2.XSpace()
  with open(xspace_path, "rb") as f:
    space.ParseFromString(f.read())
  table = collections.Counter()
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      if line.name == "python":
        continue
      for name, parent, ps in self_times(line, names):
        if _FRAMEWORK.search(name) or ps <= 0:
          continue
        if _is_op(name):  # a TensorFlow op, "its/name:Type"
          op_name, op_type = name.rsplit(":", 1)
          if op_type in _CALL_OPS:
            continue
          table[(op_type, layer_kind(op_name))] += ps * 1e-12
        elif parent:  # an HLO op of an XLA cluster inside a TensorFlow op
          table[("xla:" + re.sub(r"\.\d+$", "", name), layer_kind(parent.rsplit(":", 1)[0]))] += (
              ps * 1e-12)
  if not table:
    raise RuntimeError(f"No TensorFlow op events in the profile {xspace_path}.")
  return dict(table)


def profile_one(call, images, steps: int, folder: str) -> dict:
  """{images_per_second, seconds_per_call, ops: {(type, kind): s per call}} of one call."""
  np.asarray(call(images))  # tracing, oneDNN primitives, XLA compilation
  t = time.perf_counter()
  for _ in range(steps):
    np.asarray(call(images))
  seconds = (time.perf_counter() - t) / steps
  logdir = tempfile.mkdtemp(dir=folder)
  tf.profiler.experimental.start(logdir)
  for _ in range(steps):
    np.asarray(call(images))
  tf.profiler.experimental.stop()
  (path,) = glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True)
  ops = {k: v / steps for k, v in op_table(path).items()}
  return {"images_per_second": int(images.shape[0]) / seconds, "seconds_per_call": seconds,
          "ops": ops}


def top_rows(ops: dict, top: int, by_layer: bool) -> list[dict]:
  """The `top` largest groups: {op, layer?, ms_per_call, share} (share of all op time)."""
  groups = collections.Counter()
  for (op_type, kind), s in ops.items():
    groups[(op_type, kind) if by_layer else (op_type,)] += s
  total = sum(groups.values())
  rows = []
  for key, s in groups.most_common(top):
    row = {"op": key[0], "ms_per_call": round(1000 * s, 2), "share": round(s / total, 4)}
    if by_layer:
      row["layer"] = key[1]
    rows.append(row)
  return rows


def run(name: str, size: int, batch: int, steps: int, top: int, modes, precisions,
        jit: bool) -> dict:
  images = tf.random.uniform([batch, size, size, 3], 0, 255, seed=0)
  result = {"backbone": name, "image_size": size, "batch_size": batch, "steps": steps,
            "jit_compile": jit, "tensorflow": tf.__version__,
            "load_average_before": [round(x, 2) for x in os.getloadavg()], "profiles": {}}
  with tempfile.TemporaryDirectory() as folder:
    for mode in modes:
      for precision in precisions:
        p = profile_one(make_call(name, size, precision, mode, jit), images, steps, folder)
        result["profiles"][f"{mode}/{precision}"] = {
            "images_per_second": round(p["images_per_second"], 3),
            "profiled_ms_per_call": round(1000 * sum(p["ops"].values()), 1),
            "by_op": top_rows(p["ops"], top, False),
            "by_layer": top_rows(p["ops"], top, True)}
  result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  return result


def print_profiles(result: dict) -> None:
  for key, p in result["profiles"].items():
    print(f"== {result['backbone']} {result['image_size']}px batch {result['batch_size']} "
          f"{key}{' jit' if result['jit_compile'] else ''}: {p['images_per_second']:.2f} "
          f"images/s; {p['profiled_ms_per_call']:.0f} ms of op time per call")
    for row in p["by_op"]:
      print(f"   {row['share']:6.1%} {row['ms_per_call']:9.1f} ms  {row['op']}")
    print("   -- by layer kind:")
    for row in p["by_layer"]:
      print(f"   {row['share']:6.1%} {row['ms_per_call']:9.1f} ms  {row['op']} in "
            f"{row['layer']}")


def main(argv):
  del argv
  runtime.setup()
  for value, known in ((_MODES.value, ("serving", "fine_tuning")),
                       (_PRECISIONS.value, tuple(POLICIES))):
    if set(value) - set(known):
      raise app.UsageError(f"Unknown {sorted(set(value) - set(known))}; expected {known}.")
  if _TINY.value:
    name, size, batch, steps = "small_cnn", 32, 2, 1
  else:
    name, steps, batch = _BACKBONE.value, _STEPS.value, _BATCH_SIZE.value
    size = backbones.backbone_image_size(name, _IMAGE_SIZE.value)
  result = run(name, size, batch, steps, _TOP.value, _MODES.value, _PRECISIONS.value,
               _JIT.value)
  print_profiles(result)
  if _OUT.value:
    benchmarks.write_json(_OUT.value, result)


if __name__ == "__main__":
  app.run(main)
