"""Distil ResNet-20 from a Wide ResNet on CIFAR-10, within one time budget on one GPU.

    python benchmarks/cifar10_distill.py --data /tmp/cifar10/train --out runs/distill --budget 570

1. The teacher: ``wrn16_4`` (Zagoruyko & Komodakis 2016, 2.7M parameters) trained by
   ``benchmarks/cifar10.py`` on the same 45,000 images, without label smoothing (a smoothed
   teacher distils worse: Müller et al. 2019, arXiv:1906.02629).
2. The students: ResNet-20 runs distilled from it (Hinton et al. 2015, arXiv:1503.02531), several
   recipes at once as parallel processes. A small net's training loop is bound by kernel launches,
   so the GPU has room for several; each student's held-out accuracy is measured on the same
   5,000 images. One of them runs with ``--compile-mode reduce-overhead`` (CUDA graphs), so that
   its epoch time next to the others' shows what the graphs save.

Every run checkpoints after each epoch into ``--out/<name>``, so a run stopped by the budget
continues with ``--resume`` (the same command again). Writes ``summary.json`` with each run's
last and best held-out accuracy, epoch time and total time. Quick CPU check of the plumbing:
``--device cpu --teacher-epochs 1 --student-epochs 1 --train-limit 512 --val-limit 256``.

The shipped ``resnet20.cifar10`` came from two calls on one H200 (results in benchmarks/README.md):

    python benchmarks/cifar10_distill.py --data D --out /tmp/kd --budget 545     # teacher, 3 students
    python benchmarks/cifar10_distill.py --data D --out /tmp/kd2 --teacher-file /tmp/kd/teacher/last.safetensors \
        --init /tmp/kd/kd/last.safetensors --students kd_graphs --student-lr 0.03 --warmup-epochs 1 --budget 220

(the second stopped after 79 of its 100 epochs; its ``last.safetensors`` is the shipped file).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from runlog import summarise  # benchmarks/runlog.py, beside this script

HERE = Path(__file__).resolve().parent

# name -> options of benchmarks/cifar10.py (on top of its default recipe and the shared ones below)
STUDENTS = {
    "kd": ["--distill", "0.9", "--distill-temperature", "4"],
    # also the first measurement of CUDA graphs (ignored without --compile, i.e. on the CPU)
    "kd_erase": ["--distill", "0.9", "--distill-temperature", "4", "--erase", "0.5", "--compile-mode", "reduce-overhead"],
    "kd_half": ["--distill", "0.5", "--distill-temperature", "4"],
    "kd_graphs": ["--distill", "0.9", "--distill-temperature", "4", "--compile-mode", "reduce-overhead"],
    # "function matching" (Beyer et al. 2022, arXiv:2106.05237): the teacher labels the very mixed
    # images the student sees, and only its labels count. A teacher that fits 99.9% of the
    # training images says little beyond the hard label on them; on mixtures it says more.
    "fm": ["--distill", "1.0", "--distill-temperature", "4", "--mixup", "1.0", "--cutmix", "1.0",
           "--compile-mode", "reduce-overhead"],
}


def launch(name: str, args: list[str], out: Path, resume: bool, limit: float) -> subprocess.Popen:
    """Start ``benchmarks/cifar10.py`` for run ``name`` under a time limit, logging to ``out/name.log``."""
    run = out / name
    cmd = [sys.executable, str(HERE / "cifar10.py"), "--out", str(run), "--log-json", *args]
    if resume and (run / "state.safetensors").is_file():
        cmd.append("--resume")
    log = out / f"{name}.log"
    mode = "a" if resume else "w"
    with open(log, mode) as stdout, open(out / f"{name}.err", mode) as stderr:  # the child keeps its own copies
        return subprocess.Popen(["timeout", str(int(limit)), *cmd], stdout=stdout, stderr=stderr,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="the ImageFolder tree of the CIFAR-10 training set")
    p.add_argument("--out", default="runs/distill")
    p.add_argument("--budget", type=float, default=570, help="seconds for everything (default 570)")
    p.add_argument("--teacher", default="wrn16_4")
    p.add_argument("--teacher-epochs", type=int, default=50)
    p.add_argument("--student-epochs", type=int, default=100)
    p.add_argument("--teacher-file", help="distil from this trained checkpoint instead of training a teacher")
    p.add_argument("--students", nargs="+", default=["kd", "kd_erase", "kd_half"], choices=list(STUDENTS))
    p.add_argument("--student-lr", type=float, default=0.1, help="peak learning rate at batch 256 (default 0.1)")
    p.add_argument("--warmup-epochs", type=float, default=2)
    p.add_argument("--init", help="students start from these weights (e.g. a finished student, for a second cycle)")
    p.add_argument("--resume", action="store_true", help="continue the runs in --out")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--train-limit", type=int)
    p.add_argument("--val-limit", type=int)
    args = p.parse_args(argv)

    t0 = time.monotonic()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    common = ["--data", args.data]
    for flag, value in (("--device", args.device), ("--train-limit", args.train_limit), ("--val-limit", args.val_limit)):
        if value is not None:
            common += [flag, str(value)]
    if args.device != "cpu":
        common.append("--compile")

    teacher_file = Path(args.teacher_file).resolve() if args.teacher_file else out / "teacher" / "last.safetensors"
    teacher_done = bool(args.teacher_file) or summarise(out / "teacher.log").get("epochs") == args.teacher_epochs
    if not teacher_done:
        proc = launch("teacher", [*common, "--model", args.teacher, "--epochs", str(args.teacher_epochs),
                                     "--label-smoothing", "0"],
                         out, args.resume, args.budget - (time.monotonic() - t0))
        print(f"teacher exit {proc.wait()}", flush=True)
    print("teacher:", teacher_file, json.dumps(summarise(out / "teacher.log")), flush=True)
    if not teacher_file.is_file():
        print("no teacher checkpoint: stopping", flush=True)
        return 1

    left = args.budget - (time.monotonic() - t0)
    student = [*common, "--model", "resnet20", "--teacher", str(teacher_file), "--epochs", str(args.student_epochs),
               "-b", "256", "--lr", str(args.student_lr), "--warmup-epochs", str(args.warmup_epochs),
               "--label-smoothing", "0", "--ema", "0.999"] + (["--init", args.init] if args.init else [])
    procs = {name: launch(name, [*student, *STUDENTS[name]], out, args.resume, left) for name in args.students}
    for name, proc in procs.items():
        print(f"{name} exit {proc.wait()}", flush=True)

    summary = {"budget_s": args.budget, "wall_s": round(time.monotonic() - t0, 1), "init": args.init,
               "student_lr": args.student_lr,
               "teacher": {"model": args.teacher, "file": str(teacher_file), **summarise(out / "teacher.log")},
               "students": {name: {"options": STUDENTS[name], **summarise(out / f"{name}.log")} for name in args.students}}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
