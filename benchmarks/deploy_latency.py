"""Batch-1 CPU latency of deployed models: PyTorch eager vs onnxruntime float32 vs onnxruntime INT8.

    python benchmarks/deploy_latency.py                      # the default five, 2 threads
    python benchmarks/deploy_latency.py resnet50 --threads 2 --rounds 50 --json out.json

Each model is exported with :func:`archzoo.deploy.export.export_onnx` (checked against PyTorch) and
quantized with :func:`archzoo.deploy.quantize.quantize_int8` (QDQ, per-channel int8 weights); the
three runtimes then run in one process, interleaved round by round (the order rotating), so
machine noise falls on all three alike. Reported: median milliseconds per image, frames per second
and the speed-up of onnxruntime over eager (eager ms / ort ms). ``resnet20`` runs the shipped
CIFAR-10 weights at 32x32; the others random weights at their card's input size (the INT8 file is
calibrated on a few random inputs: its speed is what is measured here, its accuracy is guarded by
``archzoo export --int8``). The detector runs its whole graph (decoding and NMS included).
Subnormal floats are flushed to zero in PyTorch (``torch.set_flush_denormal``), as random weights
can produce them and trained ones do not. On a loaded machine run ``--threads 1`` too: PyTorch's
OpenMP threads wait for each other at every operator, which a busy CPU punishes far more than
onnxruntime's pool.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch

import archzoo
from archzoo.deploy.export import export_onnx, ort_session
from archzoo.deploy.graph import export_graph
from archzoo.deploy.quantize import quantize_int8

DEFAULT = ["resnet50", "mobilenet_v2", "efficientnet_b0", "resnet20", "ssdlite320_mobilenet_v2"]


def build(name: str):
    """``(model, meta)``: shipped weights for resnet20 (CIFAR-10, 32x32), random weights otherwise."""
    if name == "resnet20":
        return archzoo.load_model("resnet20.cifar10")
    model = archzoo.create_model(name).eval()
    # norm layers with random scales and shifts, as trained ones have: freshly initialised nets zero the
    # last norm of each residual block, and their activations shrink to subnormal floats (~1e-30),
    # which cost eager PyTorch 10-100x per operator (flush-to-zero is per thread); detectors' scores
    # would tie, and NMS on ties differs between runtimes by rounding, failing the export's check
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
    if model.card.task == "detection":
        # and keep what a deployment keeps: with the default 0.001 the 300 kept among thousands of
        # near-equal random scores differ between runtimes by rounding (a trained model's do not)
        model.score_thresh = 0.05
    return model, {"model": name}


def cpu_line(threads: int) -> str:
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} logical cores, {threads} threads (torch and onnxruntime)"


def load_line() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "load: unknown"


def measure(name: str, threads: int, rounds: int, warmup: int, tmp: Path) -> dict:
    model, meta = build(name)
    report = export_onnx(model, meta, tmp / f"{name}.onnx")
    spec = export_graph(model)
    size = tuple(report["metadata"]["input_size"])
    x = spec.sample(size, 1, seed=0)
    calib = [spec.sample(size, 1, seed=s)[0].numpy() for s in range(1, 9)]
    quantize_int8(tmp / f"{name}.onnx", tmp / f"{name}.int8.onnx", calib)
    sessions = {k: ort_session(str(tmp / f"{name}{s}.onnx"), threads) for k, s in (("ort", ""), ("int8", ".int8"))}
    feeds = {k: {i.name: a.numpy() for i, a in zip(s.get_inputs(), x)} for k, s in sessions.items()}

    def eager():
        with torch.inference_mode():
            spec.module(*x)

    runs = {"eager": eager, **{k: (lambda s=s, f=feeds[k]: s.run(None, f)) for k, s in sessions.items()}}
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {k: [] for k in runs}
    order = list(runs)
    for r in range(rounds):
        for k in order[r % 3:] + order[:r % 3]:
            t0 = time.perf_counter()
            runs[k]()
            times[k].append((time.perf_counter() - t0) * 1000)
    ms = {k: statistics.median(v) for k, v in times.items()}
    detections = {"detections": len(sessions["ort"].run(None, feeds["ort"])[0])} if spec.task == "detection" else {}
    return {"model": name, "task": model.card.task, "input": list(size), "max_abs_diff": report["max_abs_diff"], **detections,
            **{f"{k}_ms": v for k, v in ms.items()}, **{f"{k}_fps": 1000 / v for k, v in ms.items()},
            "ort_speedup": ms["eager"] / ms["ort"], "int8_speedup": ms["eager"] / ms["int8"]}


def table(rows: list[dict]) -> str:
    lines = ["| model | input | eager ms (fps) | ort float ms (fps) | ort INT8 ms (fps) | ort/eager | INT8/eager |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        cell = lambda k, r=r: f"{r[k + '_ms']:.1f} ({r[k + '_fps']:.0f})"
        lines.append(f"| {r['model']} | {'x'.join(map(str, r['input'][1:]))} | {cell('eager')} | {cell('ort')} | "
                     f"{cell('int8')} | {r['ort_speedup']:.2f}x | {r['int8_speedup']:.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("models", nargs="*", help=f"registered models (default: {' '.join(DEFAULT)})")
    p.add_argument("--threads", type=int, default=2, help="threads for torch and onnxruntime (default 2)")
    p.add_argument("--rounds", type=int, default=30, help="timed calls of each runtime (default 30)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # random weights can give subnormal activations (EfficientNet's are ~1e-20), which cost x86 CPUs
    # 10-100x per operation in eager PyTorch; trained weights do not, so neither may the measurement
    torch.set_flush_denormal(True)
    names = args.models or [n for n in DEFAULT if n in archzoo.list_models()]
    before = load_line()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            rows.append(measure(name, args.threads, args.rounds, args.warmup, Path(tmp)))
            print(json.dumps(rows[-1]), flush=True)
    after = load_line()
    print(f"\n{cpu_line(args.threads)}\nbefore: {before}\nafter:  {after}\n")
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": cpu_line(args.threads), "load_before": before,
                                               "load_after": after, "torch": torch.__version__,
                                               "onnxruntime": __import__("onnxruntime").__version__, "rows": rows},
                                              indent=1))


if __name__ == "__main__":
    main()
