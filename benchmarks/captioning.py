"""Show, Attend and Tell on ``shapes-cap``: each decoder kind (LSTM, GRU, vanilla RNN) trained the
same way, scored on the test split's held-out compositions.

    python benchmarks/captioning.py [--epochs 15] [--rnn lstm gru rnn] [--out runs/captioning] [--json FILE]

Every run: ``archzoo.train("show_attend_tell_resnet18", "shapes-cap", ...)`` — ResNet-18's
stride-8 map (8x8 locations of 64-pixel images) trained from scratch with the decoder (embedding
128, hidden 256, attention 128), AdamW (lr 2e-3, weight decay 0.05 on weights), cosine schedule,
batches of 64, gradient norm clipped at 5, ``--epochs`` epochs over the 3,600 training images
(400 held out for validation), seed 0, one CPU thread. The best checkpoint (validation BLEU-4)
is then scored with ``archzoo.engine.evaluate_model`` on the 1,000 test images, greedy and with
beam search (width 3): BLEU-1..4 (torchmetrics), exact match overall, on the 485 images holding
a held-out colour-shape pair (never seen in training) and on the others. Trivial baseline: the
most frequent training caption for every image. Prints a Markdown table; ``--json`` writes the rows.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from collections import Counter

import torch

import archzoo
from archzoo.data import load_dataset
from archzoo.engine.captioning import CaptionMeter
from archzoo.engine.evaluate import evaluate_model
from archzoo.io import load_model

MODEL = "show_attend_tell_resnet18"
DECODER = dict(embed_dim=128, hidden_size=256, attention_dim=128)


def _cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def baseline(train, test) -> dict:
    """Every test image captioned with the most frequent training caption (first references)."""
    first = train.targets["captions"][:, 0]
    common = Counter(tuple(r.tolist()) for r in first).most_common(1)[0][0]
    meter = CaptionMeter(list(test.class_names))
    tokens = torch.tensor(common[1:]).expand(len(test), -1)  # without <start>
    meter.update(type("Out", (), {"tokens": tokens}), {"captions": test.targets["captions"],
                                                         "novel": test.targets["novel"]}, None)
    return meter.compute()


def run_one(rnn: str, epochs: int, out: str) -> dict:
    cpu0, wall0 = _cpu_seconds(), time.perf_counter()
    summary = archzoo.train(MODEL, "shapes-cap", out=f"{out}/{rnn}", overwrite=True, log="quiet",
                            model_kwargs={"rnn": rnn, **DECODER}, epochs=epochs, batch_size=64, opt="adamw", lr=2e-3,
                            clip_grad=5.0, seed=0, device="cpu")
    train_cpu, train_wall = _cpu_seconds() - cpu0, time.perf_counter() - wall0
    model, meta = load_model(f"{out}/{rnn}/best.safetensors")
    test = load_dataset("shapes-cap", val_split=0.0, subset="test").train
    row = {"rnn": rnn, "epochs": epochs, "best_epoch": summary["best_epoch"], "params": summary["params"],
           "val_bleu4": summary["best_val_bleu4"], "train_cpu_s": train_cpu, "train_wall_s": train_wall}
    for beam in (1, 3):
        model.beam_size = beam
        t0 = time.perf_counter()
        m = evaluate_model(model, test, input_size=meta["input_size"][-1], mean=meta["mean"], std=meta["std"],
                           class_names=meta["class_names"], batch_size=100, device="cpu")
        key = "greedy" if beam == 1 else f"beam{beam}"
        row[key] = {k: m[k] for k in ("bleu1", "bleu2", "bleu3", "bleu4", "exact_match", "novel_exact_match",
                                      "seen_exact_match")}
        row[key]["eval_wall_s"] = time.perf_counter() - t0
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--rnn", nargs="+", default=["lstm", "gru", "rnn"], choices=["lstm", "gru", "rnn"])
    p.add_argument("--out", default="runs/captioning")
    p.add_argument("--json", help="also write the rows to this file")
    args = p.parse_args()
    torch.set_num_threads(1)
    splits = load_dataset("shapes-cap", val_split=0.1)
    test = load_dataset("shapes-cap", val_split=0.0, subset="test").train
    rows = [{"rnn": "most frequent caption", "greedy": baseline(splits.train, test)}]
    for rnn in args.rnn:
        rows.append(run_one(rnn, args.epochs, args.out))
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=float)
    print("| decoder | decoding | BLEU-1 | BLEU-2 | BLEU-3 | BLEU-4 | exact match | held-out compositions | seen | "
          "train CPU s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        for key in ("greedy", "beam3"):
            if key not in r:
                continue
            m = r[key]
            cpu = f"{r['train_cpu_s']:.0f}" if "train_cpu_s" in r and key == "greedy" else ""
            print(f"| {r['rnn']} | {key} | {m['bleu1']:.3f} | {m['bleu2']:.3f} | {m['bleu3']:.3f} | {m['bleu4']:.3f} | "
                  f"{m['exact_match']:.1%} | {m.get('novel_exact_match', 0):.1%} | {m.get('seen_exact_match', 0):.1%} | "
                  f"{cpu} |")


if __name__ == "__main__":
    main()
