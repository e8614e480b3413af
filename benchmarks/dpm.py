"""The deformable part model (DPM, Felzenszwalb et al. 2010) on ``shapes-det`` and on the nuts photos:
mAP@0.5 and seconds per image, in the table format of ``rcnn_lineage.py``.

    python benchmarks/dpm.py --shapes-train 120 --shapes-test 100                    # shapes-det only
    python benchmarks/dpm.py --nuts ../shared/data/nuts/train --json out.json        # and the nuts photos

* shapes-det: the first ``--shapes-train`` training images and ``--shapes-test`` test images of the
  built-in set (1-4 objects of 8 classes) rendered at ``--shapes-size`` pixels;
* nuts: the Pascal VOC photos, the same held-out photos as ``rcnn_lineage.py`` (ids 3, 7, 17),
  resized like its detectors (shorter side ``--min-size``, longer at most ``--max-size``).

Timing per held-out image, in eval mode: *features* (the HOG pyramid, scikit-image), *scoring*
(filter correlations, distance transforms, candidate boxes) and *post-processing* (calibration,
NMS, clipping). The fit's total seconds replace "train s/step". No CNN runs, so the "CNN inputs"
column is 0 and "proposals" are the root windows scored (every position of every level).
This script is not part of the package: it imports archzoo, never the other way round.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import archzoo  # noqa: E402
from archzoo.engine.metrics import DetectionMeter  # noqa: E402


def shapes(n_train: int, n_test: int, size: int):
    from archzoo.data.shapes import CLASS_NAMES, generate

    def records(data):
        return [{"image": data.images[i].float() / 255, "boxes": data.target(i)["boxes"],
                 "labels": data.target(i)["labels"]} for i in range(len(data))]

    return list(CLASS_NAMES), records(generate(n_train, size=size, objects=(1, 4), stream="train")), \
        records(generate(n_test, size=size, objects=(1, 4), stream="test"))


def resized(photo: dict, min_size: int, max_size: int) -> dict:
    h, w = photo["image"].shape[-2:]
    s = min(min_size / min(h, w), max_size / max(h, w))
    image = F.interpolate(photo["image"][None], scale_factor=s, mode="bilinear", antialias=True,
                          recompute_scale_factor=True, align_corners=False)[0]
    return {**photo, "image": image, "boxes": photo["boxes"] * s}


def measure(label: str, names, train, test, kwargs: dict, fit: dict) -> dict:
    torch.manual_seed(0)
    model = archzoo.create_model("dpm_hog", num_classes=len(names), **kwargs)
    start = time.perf_counter()
    model.fit([p["image"] for p in train], [{"boxes": p["boxes"], "labels": p["labels"]} for p in train],
              log=lambda r: print(f"  {label}: {r}", flush=True), **fit)
    fit_s = time.perf_counter() - start
    meter = DetectionMeter(len(names), names)
    feat = score = post = 0.0
    windows = 0
    with torch.inference_mode():
        for p in test:
            t0 = time.perf_counter()
            pyr = model.pyramid(p["image"])
            t1 = time.perf_counter()
            levels = model.score_pyramid(pyr)
            t2 = time.perf_counter()
            det = model.detect_image(p["image"])  # the whole detector again; its post-processing by difference
            t3 = time.perf_counter()
            feat, score = feat + t1 - t0, score + t2 - t1
            post += max((t3 - t2) - (t2 - t0), 0.0)
            windows += sum(ls.scores[0].size for ls in levels)
            meter.update([det], [{"boxes": p["boxes"], "labels": p["labels"]}], None)
    n = len(test)
    return {"detector": f"DPM ({label})", "features_s": feat / n, "scoring_s": score / n, "post_s": post / n,
            "total_s": (feat + score + post) / n, "windows_per_image": windows / n, "fit_s": fit_s,
            "params_m": sum(q.numel() for q in model.parameters()) / 1e6, "map50": meter.compute()["map50"],
            "train_images": len(train), "test_images": n, "top_scale": float(model.top_scale)}


def table(rows: list[dict]) -> str:
    lines = ["| detector | proposals s/img | network s/img | post-proc. s/img | total s/img | CNN inputs/img | "
             "proposals/img | train s (fit) | params (M) | mAP@0.5 |", "|" + "---|" * 10]
    for r in rows:
        lines.append(f"| {r['detector']} | - | {r['features_s']:.3f} HOG + {r['scoring_s']:.3f} filters | "
                     f"{r['post_s']:.4f} | {r['total_s']:.3f} | 0 | {r['windows_per_image']:.0f} windows | "
                     f"{r['fit_s']:.0f} | {r['params_m']:.3f} | {r['map50']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shapes-train", type=int, default=120)
    p.add_argument("--shapes-test", type=int, default=100)
    p.add_argument("--shapes-size", type=int, default=64)
    p.add_argument("--nuts", type=Path, default=None, help="the nuts VOC folder (../shared/data/nuts/train)")
    p.add_argument("--held-out", default="3,7,17")
    p.add_argument("--min-size", type=int, default=320)
    p.add_argument("--max-size", type=int, default=480)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--nuts-max-scale", type=float, default=1.0,
                   help="largest upsampling of a nuts photo for a root (default 1: the photo's own resolution, parts at 2x, "
                        "as in the paper; the model's default 4 let small upsampled windows win: mAP 0.000)")
    p.add_argument("--nuts-negatives", type=int, default=150, help="hard negatives per photo, class and round (default 150)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    if args.shapes_train:
        names, train, test = shapes(args.shapes_train, args.shapes_test, args.shapes_size)
        rows.append(measure(f"shapes-det {args.shapes_size}px", names, train, test,
                            dict(root_sizes=((4, 4),), num_parts=4, part_size=(3, 3), max_scale=3.0),
                            dict(rounds=args.rounds)))
        print(table(rows), flush=True)
    if args.nuts is not None:
        from rcnn_lineage import load_voc_folder

        names, photos = load_voc_folder(args.nuts)
        held = set(args.held_out.split(","))
        photos = [resized(x, args.min_size, args.max_size) for x in photos]
        test = [x for x in photos if x["id"] in held]
        train = [x for x in photos if x["id"] not in held]
        rows.append(measure("nuts", names, train, test,
                            dict(root_sizes=((5, 5),), num_parts=6, part_size=(3, 3), max_scale=args.nuts_max_scale),
                            dict(rounds=args.rounds, negatives_per_image=args.nuts_negatives)))
    machine = (f"{torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()}, "
               f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(table(rows))
    print(machine)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
                                               "machine": machine, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
