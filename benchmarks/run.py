r"""Runs the benchmarks and writes one table: each figure with the command that measured it.

    python -m benchmarks.run --out=benchmarks [--only=extract,serving,train,strategy] \
        [--extract_images=192] [--serving_batch_calls=5] [--train_steps=300] \
        [--train_repeats=2] [--tiny]

(`make bench` is the first line; `--tiny` runs each benchmark at the tiny sizes of `TINY`,
to check that all of them run: tests/test_benchmarks.py, 7 min on a loaded 2-core machine.)
Each benchmark runs as its own subprocess, with the command
the table shows (less its `--out`, which only says where its JSON goes), so that every
figure of a row comes from one run of that command, and each benchmark starts with a fresh
TensorFlow runtime and its own memory:

  extract   benchmarks/extract.py           VGG16 fc7 from JPEG files: bfloat16 vs float32,
                                            the feature-cache pipeline vs the backbone alone
  serving   benchmarks/serving.py           the exported SavedModel: batch-1 latency, batch-32
                                            throughput, beam search's share; as exported and
                                            in the other precision
  train     benchmarks/train_throughput.py  the trainer on cached features: 1 vs 2 replicas;
                                            label orders frequent_first vs pla and mla
  strategy  benchmarks/strategy.py          the trainer's step on one device: the default
                                            strategy vs MirroredStrategy (make_strategy's
                                            choice)
  backbones benchmarks/backbones.py         every registry backbone at its default size:
                                            images/s, GFLOP, share of the matmul roofline,
                                            batch-1 serving latency; float32 and bfloat16
                                            serving and fine-tuning per CPU second, with and
                                            without XLA, ratio to resnet50 per GFLOP
  profile   benchmarks/profile.py           the top ops of convnext_tiny (any backbone with
                                            --backbone), serving and fine-tuning, both
                                            precisions

Writes `<out>/results.json` (the rows, and each benchmark's command, seconds and full JSON)
and `<out>/results.md` (the table). The defaults took 4 to 6 minutes on 2 cores before the
label-order rows, whose 4 training runs (pla and mla, 2 repeats) add a few minutes (more when
the machine is busy); the size flags above (and each benchmark's own flags, run alone) scale
them up.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

_OUT = flags.DEFINE_string("out", "benchmarks", "Folder of results.json and results.md.")
_ONLY = flags.DEFINE_list("only", None, "Benchmarks to run (default: every one of "
                         "`commands()`: extract, serving, train, strategy, backbones, "
                         "profile).")
_TINY = flags.DEFINE_boolean("tiny", False, "Tiny sizes (`TINY`, over the size flags): "
                             "checks that every benchmark runs (minutes); the "
                             "figures mean nothing.")
_EXTRACT_IMAGES = flags.DEFINE_integer("extract_images", 192,
                                       "JPEGs the extraction benchmark extracts (3 rounds).")
_SERVING_BATCH_CALLS = flags.DEFINE_integer("serving_batch_calls", 5,
                                            "Timed batch-32 serving_default calls per model.")
_TRAIN_STEPS = flags.DEFINE_integer("train_steps", 300, "Training steps per run (intervals "
                                    "of 100; the first is left out).")
_TRAIN_REPEATS = flags.DEFINE_integer("train_repeats", 2, "Runs per replica count (order "
                                      "1, 2, 2, 1).")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commands() -> dict[str, list[str]]:
  """Benchmark name -> its argv after `python -m` (without --out)."""
  return {
      "extract": ["benchmarks.extract", f"--num_images={_EXTRACT_IMAGES.value}", "--rounds=3",
                  "--batch_size=32", "--backbone_batches=1", "--float32_batches=1",
                  "--warmup_batches=0"],
      "serving": ["benchmarks.serving", "--batch_size=32",
                  f"--batch_calls={_SERVING_BATCH_CALLS.value}", "--latency_calls=7",
                  "--beam_calls=3", "--num_labels=20"],
      "train": ["benchmarks.train_throughput", "--replicas=1,2",
                f"--repeats={_TRAIN_REPEATS.value}", f"--num_steps={_TRAIN_STEPS.value}",
                "--log_every=100", "--steps_per_loop=50", "--batch_size=64",
                "--lstm_units=512", "--label_orders=frequent_first,pla,mla"],
      "strategy": ["benchmarks.strategy", "--steps=20", "--repeats=2"],
      "backbones": ["benchmarks.backbones", "--batch_size=8", "--rounds=3", "--latency_calls=5"],
      "profile": ["benchmarks.profile", "--backbone=convnext_tiny", "--batch_size=8",
                  "--steps=2", "--top=12"],
  }


# Tiny sizes of each benchmark (--tiny): its flags that replace those of `commands()`.
TINY = {
    "extract": ["--num_images=2", "--rounds=1", "--batch_size=2", "--backbone_batches=1",
                "--float32_batches=1", "--warmup_batches=0"],
    "serving": ["--batch_size=2", "--batch_calls=1", "--latency_calls=1", "--beam_calls=1"],
    "train": ["--replicas=1,2", "--repeats=1", "--num_steps=4", "--log_every=2",
              "--steps_per_loop=2", "--batch_size=8", "--lstm_units=16", "--num_examples=32",
              "--label_orders=frequent_first,pla"],
    "strategy": ["--steps=2", "--repeats=1"],
    "backbones": ["--tiny=true"],
    "profile": ["--tiny=true"],
}


def with_flags(argv: list[str], replacing: list[str]) -> list[str]:
  """argv with each --flag=value of `replacing` in place of the same flag's (or added).

      with_flags(["m", "--a=1", "--b=2"], ["--b=3", "--c=4"]) == ["m", "--a=1", "--b=3", "--c=4"]
  """
  new = dict(arg.split("=", 1) for arg in replacing)
  out = [f"{arg.split('=', 1)[0]}={new.pop(arg.split('=', 1)[0])}"
         if arg.split("=", 1)[0] in new else arg for arg in argv]
  return out + [f"{k}={v}" for k, v in new.items()]


def run_one(name: str, argv: list[str], folder: str) -> dict:
  """Runs one benchmark; returns {command, seconds, result | error}."""
  out = os.path.join(folder, f"{name}.json")
  log = os.path.join(folder, f"{name}.log")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
  record = {"command": "python -m " + shlex.join(argv),
            "load_average_before": [round(x, 2) for x in os.getloadavg()]}
  print(f"== {name}: {record['command']}", flush=True)
  t = time.perf_counter()
  with open(log, "w") as stderr:  # stdout (each benchmark's summary) goes to ours
    proc = subprocess.run([sys.executable, "-m", *argv, f"--out={out}"], cwd=_ROOT, env=env,
                          stderr=stderr, check=False)
  record["seconds"] = round(time.perf_counter() - t, 1)
  record["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
  if proc.returncode == 0 and os.path.exists(out):
    with open(out) as f:
      record["result"] = json.load(f)
  else:
    with open(log) as f:
      tail = f.read()[-3000:]
    record["error"] = f"exit status {proc.returncode}; stderr ends with:\n{tail}"
    print(record["error"], file=sys.stderr, flush=True)
  print(f"== {name}: {record['seconds']:.0f} s", flush=True)
  return record


def _row(what: str, figure: float, unit: str, command: str, digits: int = 2) -> dict:
  return {"what": what, "figure": round(float(figure), digits), "unit": unit,
          "command": command}


def extract_rows(r: dict, command: str) -> list[dict]:
  ips, ratios = r["images_per_second"], r["ratios"]
  n = f"{r['num_images']} JPEGs 500x375, batch {r['batch_size']}"
  return [
      _row(f"VGG16 fc7 224x224, backbone alone, mixed bfloat16 ({n})", ips["backbone_bf16"],
           "images/s", command),
      _row("VGG16 fc7 224x224, backbone alone, float32", ips["backbone_float32"], "images/s",
           command),
      _row("Extraction pipeline JPEG -> feature cache, mixed bfloat16",
           ips["pipeline_bf16"], "images/s", command),
      _row("Pipeline / backbone alone, bfloat16 (goal >= 0.9)",
           ratios["pipeline_over_backbone_bf16"], "ratio", command, 3),
      _row("Pipeline / backbone alone, bfloat16, per CPU second of the process",
           ratios["cpu_pipeline_over_backbone_bf16"], "ratio", command, 3),
      _row("Backbone alone, bfloat16 / float32 (goal >= 5 needs AMX)",
           ratios["bf16_over_float32"], "ratio", command, 3),
      _row("Backbone alone, bfloat16 / float32, per CPU second of the process",
           ratios["cpu_bf16_over_float32"], "ratio", command, 3),
  ]


def serving_rows(r: dict, command: str) -> list[dict]:
  rows = []
  batch = r["batch_size"]
  m = r["model"]
  for name, v in r["variants"].items():
    label = (f"export as is ({v['precision']})" if name == "export"
             else f"{v['precision']} backbone")
    rows += [
        _row(f"serving_default latency, 1 JPEG 500x375, {label}", v["latency_ms_batch1"],
             "ms", command, 1),
        _row(f"serving_default throughput, batch {batch}, {label}", v["images_per_second"],
             "images/s", command),
        _row(f"Decoding share of serving_default (every decoder: beam path, marginals, "
             f"expected_f1), batch {batch}, {label} (beam {m['beam_size']}, "
             f"{m['num_labels']} labels, mean path length "
             f"{v[f'batch{batch}']['mean_path_length']:g}; goal <= 5%)",
             100 * v["beam_share_batch"], "%", command, 2),
        _row(f"Decoding share of serving_default, batch 1, {label}",
             100 * v["beam_share_batch1"], "%", command, 2),
    ]
  full = r.get("full_length")
  if full:
    rows.append(_row(
        f"Beam search share, worst case (every path {m['max_length']} labels), batch {batch}, "
        f"export as is ({r['export_precision']})", 100 * full["beam_share_batch"], "%",
        command, 2))
  decoders = r.get("decoders")
  if decoders:
    rows.append(_row(
        f"Decode time with expected_f1 ({decoders['num_samples']} samples) over without it "
        f"(path and marginals), predict_features, batch {batch}",
        decoders["expected_f1_over_path"], "ratio", command, 3))
    rows.append(_row(f"Decoding share of serving_default without expected_f1, batch {batch}",
                     100 * decoders["path_only_share_batch"], "%", command, 2))
  if "bf16_over_float32_images_per_second" in r:
    rows.append(_row(f"serving_default throughput, batch {batch}, bfloat16 / float32",
                     r["bf16_over_float32_images_per_second"], "ratio", command, 3))
    rows.append(_row(f"serving_default throughput, batch {batch}, bfloat16 / float32, per CPU "
                     "second of the process", r["bf16_over_float32_images_per_cpu_second"],
                     "ratio", command, 3))
  return rows


def train_rows(r: dict, command: str) -> list[dict]:
  rows = []
  runs = {k: len(s["runs"]) for k, s in r["settings"].items()}
  for replicas, s in r["settings"].items():
    rows.append(_row(
        f"CNN-RNN head training on cached {s['feature_dim']}-d features, {replicas} "
        f"replica{'s' if replicas != '1' else ''} (batch {r['config']['batch_size']}, "
        f"{s['num_labels']} labels, {r['config']['lstm_units']} units; median of "
        f"{runs[replicas]} runs' intervals)", s["sequences_per_second"], "sequences/s",
        command, 1))
  if "ratio" in r:
    rows.append(_row(f"Training throughput, {r['ratio']['what']} (the replicas share the "
                     "CPU's cores)", r["ratio"]["value"], "ratio", command, 3))
  for name, s in r.get("label_orders", {}).items():
    rows.append(_row(f"CNN-RNN head training steps/s, train.label_order={name} (1 replica, "
                     f"batch {r['config']['batch_size']})", s["steps_per_second"], "steps/s",
                     command, 2))
    if name != "frequent_first":
      rows.append(_row(f"Time per training step, {name} / frequent_first (goal <= 1.5)",
                       s["cost"], "ratio", command, 3))
  return rows


def strategy_rows(r: dict, command: str) -> list[dict]:
  what = {"end_to_end": "the demo's end-to-end step (small CNN + CNN-RNN head, batch 32)",
          "head": "the CNN-RNN head on 256-d features (batch 64)"}
  return [_row(f"One device, {what[kind]}: default strategy / MirroredStrategy",
               k["ratio_default_over_mirrored"], "ratio", command, 3)
          for kind, k in r["kinds"].items()]


def backbones_rows(r: dict, command: str) -> list[dict]:
  rows = []
  for label, b in r["backbones"].items():
    what = f"{label} {b['image_size']}x{b['image_size']}"
    rows.append(_row(f"{what}: GFLOP per image ({b['feature_dim']}-d features)",
                     b["gflop_per_image"], "GFLOP", command, 2))
    for precision in ("float32", "bfloat16"):
      p = b[precision]
      for mode in r["modes"]:
        for kind in r["kinds"]:
          rows.append(_row(f"{what}, {precision}, {mode}: {kind.replace('_', '-')} (batch "
                           f"{r['batch_size']})", p[mode][f"{kind}_images_per_cpu_second"],
                           "images/CPU s", command))
          ratio = p[mode].get(f"{kind}_ratio_to_resnet50_per_gflop")
          if ratio is not None and not label.startswith("resnet50"):
            rows.append(_row(f"{what}, {precision}, {mode}: {kind.replace('_', '-')} images "
                             "per CPU s x GFLOP / resnet50's, same run (convnext_tiny's "
                             "goal >= 0.7)", ratio, "ratio", command, 3))
        if "roofline_share" in p[mode]:
          rows.append(_row(f"{what}, {precision}, {mode}: serving share of the measured "
                           f"{r['matmul_size']}^3 matmul ({p['matmul_gflop_per_cpu_second']:g} "
                           "GFLOP per CPU s)", p[mode]["roofline_share"], "ratio", command, 3))
      if "latency_ms" in p:
        rows.append(_row(f"{what}, {precision}: serving_default latency, 1 JPEG",
                         p["latency_ms"], "ms", command, 1))
        rows.append(_row(f"{what}, {precision}: served export, batch 1",
                         p["export_images_per_second"], "images/s", command, 2))
    if "roofline_share_faster" in b:
      rows.append(_row(f"{what}: share of the matmul roofline in its faster mode "
                       f"({b['faster']}; goal >= 0.6)", b["roofline_share_faster"], "ratio",
                       command, 3))
  return rows


def profile_rows(r: dict, command: str) -> list[dict]:
  rows = []
  for key, p in r["profiles"].items():
    what = f"Profile of {r['backbone']} {r['image_size']}x{r['image_size']}, {key}"
    rows.append(_row(f"{what}: images/s (batch {r['batch_size']})", p["images_per_second"],
                     "images/s", command))
    for row in p["by_op"][:3]:
      rows.append(_row(f"{what}: share of op time in {row['op']}", 100 * row["share"], "%",
                       command, 1))
  return rows


ROWS = {"extract": extract_rows, "serving": serving_rows, "train": train_rows,
        "strategy": strategy_rows,
        "backbones": backbones_rows, "profile": profile_rows}


def markdown(results: dict) -> str:
  m = results["machine"]
  lines = [
      "# Benchmarks",
      "",
      f"`python -m benchmarks.run` on {results['created']}: {m['cpu_count']} CPU cores "
      f"({', '.join(m['cpu_flags']) or 'no AVX-512'}), {m['gpus']} GPUs, TensorFlow "
      f"{results['tensorflow']}; {results['seconds']:.0f} s in all. Load average (1 min) "
      f"before each benchmark: " + ", ".join(
          f"{k} {b['load_average_before'][0]:.1f}" for k, b in results["benchmarks"].items())
      + ". Each figure comes from one run of its command (run from the repository root); "
      "the full figures are in results.json.",
      "",
      "| What | Figure | Unit | Command |",
      "|---|---:|---|---|",
  ]
  for row in results["rows"]:
    lines.append(f"| {row['what']} | {row['figure']:g} | {row['unit']} | "
                 f"`{row['command']}` |")
  errors = {k: b["error"] for k, b in results["benchmarks"].items() if "error" in b}
  for name, error in errors.items():
    lines += ["", f"**{name} failed**: {error.splitlines()[0]}"]
  return "\n".join(lines) + "\n"


def cpu_flags() -> list[str]:
  try:
    with open("/proc/cpuinfo") as f:
      line = next((l for l in f if l.startswith("flags")), "")
  except OSError:
    line = ""
  return sorted(set(line.split()) & {"amx_bf16", "amx_tile", "avx512_bf16", "avx512f",
                                     "avx512_vnni"})


def main(argv):
  del argv
  only = _ONLY.value or list(commands())
  unknown = set(only) - set(ROWS)
  if unknown:
    raise app.UsageError(f"Unknown benchmark(s) {sorted(unknown)}; expected {sorted(ROWS)}.")
  t = time.perf_counter()
  benchmarks, rows = {}, []
  with tempfile.TemporaryDirectory() as folder:
    for name, argv_ in commands().items():
      if name not in only:
        continue
      if _TINY.value:
        argv_ = with_flags(argv_, TINY.get(name, []))
      benchmarks[name] = record = run_one(name, argv_, folder)
      if "result" in record:
        rows += ROWS[name](record["result"], record["command"])
  tf_version = next((b["result"].get("tensorflow") for b in benchmarks.values()
                     if "result" in b and "tensorflow" in b["result"]), None)
  gpus = benchmarks.get("extract", {}).get("result", {}).get("machine", {}).get("gpus", 0)
  results = {
      "created": time.strftime("%Y-%m-%d %H:%M %Z"),
      "seconds": round(time.perf_counter() - t, 1),
      "machine": {"cpu_count": os.cpu_count(), "cpu_flags": cpu_flags(), "gpus": gpus,
                  "processor": platform.processor() or platform.machine()},
      "tensorflow": tf_version,
      "rows": rows,
      "benchmarks": benchmarks,
  }
  table = markdown(results)
  os.makedirs(_OUT.value, exist_ok=True)
  with open(os.path.join(_OUT.value, "results.json"), "w") as f:
    json.dump(results, f, indent=1)
  with open(os.path.join(_OUT.value, "results.md"), "w") as f:
    f.write(table)
  print(table)
  print(f"wrote {os.path.join(_OUT.value, 'results.json')} and results.md")
  failed = [k for k, b in benchmarks.items() if "error" in b]
  if failed:
    raise SystemExit(f"Benchmark(s) failed: {', '.join(failed)} (see results.json).")


if __name__ == "__main__":
  app.run(main)
