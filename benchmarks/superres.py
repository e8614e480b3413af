"""SRDenseNet (issue 21, item 1): train on random patches of photos, then PSNR/SSIM against bicubic
on whole held-out photos (Y channel, ``scale`` border pixels shaved), with wall and CPU times.

    python benchmarks/superres.py --data ../shared/data/nuts/train --scale 4 --epochs 12 --out runs/sr_bench
    python benchmarks/superres.py --data photos --scale 2 --epochs 4 --json

The run trains through ``archzoo.train`` (Adam, lr 1e-4 as the paper, cosine, no weight decay, L2)
on ``--patches-per-image`` random ``--image-size * scale`` HR patches of every training photo an
epoch; ``--held-out`` of the photos (seeded) are never trained on and are scored whole; the
built-in ``photos`` test set (scikit-image's camera, chelsea, coffee) is scored too. Prints one
JSON object (also written to ``OUT/benchmark.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="photos", help="a folder of photos, or photos (scikit-image's)")
    p.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--minutes", type=float, help="instead of --epochs: as many epochs as fit in about this many "
                                                  "minutes, from a timed probe of training steps")
    p.add_argument("--patches-per-image", type=int, default=16)
    p.add_argument("--image-size", type=int, default=24, help="LR patch side (HR: times the scale)")
    p.add_argument("-b", "--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--loss", choices=("l2", "l1"), default="l2")
    p.add_argument("--held-out", type=float, default=0.15)
    p.add_argument("--residual", action="store_true", help="global residual over bicubic (not the paper's)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/sr_bench")
    p.add_argument("--json", action="store_true", help="print only the JSON")
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    import archzoo
    from archzoo.superres.data import load_photos
    from archzoo.superres.infer import evaluate_photos

    splits = load_photos(args.data, val_split=args.held_out, seed=args.seed, patches_per_image=args.patches_per_image)
    name = f"srdensenet_x{args.scale}"
    if args.minutes:
        rate = probe(name, args)
        args.epochs = max(1, int(args.minutes * 60 * rate * 0.85 / len(splits.train)))
    load = os.getloadavg()[0]
    t0, c0 = time.perf_counter(), time.process_time()
    summary = archzoo.train(name, splits, out=args.out, overwrite=True, epochs=args.epochs, image_size=args.image_size,
                            batch_size=args.batch_size, opt="adamw", lr=args.lr, weight_decay=0.0, loss=args.loss,
                            workers=args.workers, seed=args.seed, device=args.device,
                            model_kwargs={"residual": True} if args.residual else None,
                            log="quiet" if args.json else "bar")
    train_s, train_cpu = time.perf_counter() - t0, time.process_time() - c0
    model, _ = archzoo.load_model(Path(args.out) / "last.safetensors")
    t1, c1 = time.perf_counter(), time.process_time()
    held = evaluate_photos(model, args.data, held_out=args.held_out, seed=args.seed, device=args.device)
    test = evaluate_photos(model, "photos", subset="test", device=args.device)
    eval_s, eval_cpu = time.perf_counter() - t1, time.process_time() - c1
    keep = ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic", "count")
    result = {
        "model": name, "residual": args.residual, "data": args.data, "train_photos": len(set(splits.train.items)),
        "patches_seen": summary["train_count"] * args.epochs, "hr_patch": args.image_size * args.scale,
        "epochs": args.epochs, "minutes": args.minutes, "batch_size": args.batch_size, "lr": args.lr, "loss": args.loss,
        "params": summary["params"], "device": summary["device"], "threads": args.threads,
        "train_wall_s": round(train_s, 1), "train_cpu_s": round(train_cpu, 1), "eval_wall_s": round(eval_s, 1),
        "eval_cpu_s": round(eval_cpu, 1), "load_avg_1min_at_start": round(load, 2), "load_avg_1min_at_end":
        round(os.getloadavg()[0], 2),
        "train_loss_first_epoch": summary["history"][0]["train_loss"], "train_loss_last_epoch": summary["train_loss"],
        "val_patch_psnr": summary.get("val_psnr"), "val_patch_psnr_bicubic": summary.get("val_psnr_bicubic"),
        "held_out": {k: held[k] for k in keep} | {"per_image": held["per_image"]},
        "photos_test": {k: test[k] for k in keep} | {"per_image": test["per_image"]},
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "benchmark.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


def probe(name: str, args) -> float:
    """Training patches per second of ``name`` on ``args.device`` (bf16 autocast on CUDA, as the trainer)."""
    import torch

    import archzoo

    model = archzoo.create_model(name, residual=args.residual).to(args.device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    x = torch.rand(args.batch_size, 1, args.image_size, args.image_size, device=args.device)
    cuda = str(args.device).startswith("cuda")
    for i in range(8):
        if i == 3:
            if cuda:
                torch.cuda.synchronize()
            t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = model(x).float().pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    if cuda:
        torch.cuda.synchronize()
    return 5 * args.batch_size / (time.perf_counter() - t)


if __name__ == "__main__":
    raise SystemExit(main())
