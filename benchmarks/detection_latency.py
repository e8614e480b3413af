"""Detection latency: archzoo's detectors against their references with the same weights, side by
side in one process, and SSDLite-MobileNetV2's frames per second at 320x320.

    python benchmarks/detection_latency.py                       # every detector with a reference
    python benchmarks/detection_latency.py ssd300_vgg16 --rounds 10 --threads 2 --json out.json

For each detector whose card names a reference (torchvision's RetinaNet, FCOS, SSD300 and
SSDLite320-MobileNetV3; effdet's EfficientDet D0), the reference is built with random weights,
its state dict converted into ours, and both are timed in eval mode under
``torch.inference_mode`` on the same images (alternating which goes first: ``latency.alternate``).
torchvision's detectors are timed end to end (a list of ``[3, H, W]`` images in 0..1 -> boxes:
resize, normalise, network, decoding, NMS), with the class logits raised so that both decode a
realistic number of boxes; effdet's ``EfficientDet`` module is the network alone (no decoding),
so ours is timed on ``forward_batch`` there. Reported: median milliseconds and the speed-up
``reference / ours`` (the goal is >= 1.0), with the number of detections each returned as a check.

The last row: ``ssdlite320_mobilenet_v2`` (no reference implementation: the MobileNetV2 paper's
"MobileSSD") in frames per second on one 320x320 frame, end to end.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import torch  # noqa: E402

import archzoo  # noqa: E402
from archzoo.weights import build_reference  # noqa: E402
from latency import alternate, median_ms  # noqa: E402

# detector -> the reference parameter that holds its sigmoid class-logit bias, raised so that boxes
# are decoded (the SSDs' softmax scores get a confident background instead: see _confident_background)
LOGIT_BIAS = {
    "retinanet_resnet50_fpn": "head.classification_head.cls_logits.bias",
    "fcos_resnet50_fpn": "head.classification_head.cls_logits.bias",
    "ssd300_vgg16": None,
    "ssdlite320_mobilenet_v3_large": None,
    "tf_efficientdet_d0": None,  # network only
}


def _confident_background(model: torch.nn.Module, num_classes: int = 91, margin: float = 10.0) -> None:
    """Raise the background logit of every SSD class predictor (biases ``[anchors * K]``): random
    weights otherwise score all 91 classes near 1/91, above the 0.001..0.01 thresholds, and the
    per-class NMS of ~300 x 91 candidates would dominate the time (a trained detector is confident)."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "classification" in name and name.endswith("bias") and p.numel() % num_classes == 0:
                p.view(-1, num_classes)[:, 0] += margin


def _image(h: int, w: int, seed: int) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def measure(name: str, rounds: int, warmup: int, size: tuple[int, int]) -> dict:
    card = archzoo.model_card(name)
    source = card.reference_source
    torch.manual_seed(0)
    ref = build_reference(card.reference).eval()
    bias = LOGIT_BIAS.get(name)
    if bias is not None:
        with torch.no_grad():
            ref.get_parameter(bias).add_(2.5)
    elif card.family in ("ssd", "ssdlite"):
        _confident_background(ref)
    ours = archzoo.create_model(name).eval()
    ours.load_state_dict(archzoo.convert_weights(name, ref.state_dict(), source=source))
    with torch.inference_mode():
        if source == "effdet":  # the network alone, at the card's square input
            x = torch.randn(1, *card.input_size, generator=torch.Generator().manual_seed(0))
            run_ours, run_ref = (lambda: ours.forward_batch(x)), (lambda: ref(x))
            found = ("-", "-")
        else:
            images = [_image(*size, seed=1)]
            run_ours, run_ref = (lambda: ours(images)), (lambda: ref(images))
            found = (len(run_ours()[0]["boxes"]), len(run_ref()[0]["boxes"]))
        a, b = alternate(run_ours, run_ref, rounds, warmup)
    return {"model": name, "reference": card.reference, "ours_ms": round(a, 2), "reference_ms": round(b, 2),
            "speedup": round(b / a, 3), "detections": found}


def mobile_ssd_fps(rounds: int, warmup: int) -> dict:
    model = archzoo.create_model("ssdlite320_mobilenet_v2").eval()
    _confident_background(model)
    frame = [_image(320, 320, seed=2)]
    with torch.inference_mode():
        ms = median_ms(lambda: model(frame), rounds, warmup)
    with torch.inference_mode():
        found = len(model(frame)[0]["boxes"])
    return {"model": "ssdlite320_mobilenet_v2", "ms": round(ms, 2), "fps": round(1000 / ms, 1), "detections": found}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=list(LOGIT_BIAS))
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--height", type=int, default=480, help="the test photo's height (torchvision resizes it)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [measure(m, args.rounds, args.warmup, (args.height, args.width)) for m in args.models]
    print(f"{'model':30} {'reference':40} {'ours ms':>9} {'ref ms':>9} {'speed-up':>8}  detections (ours, ref)")
    for r in rows:
        print(f"{r['model']:30} {r['reference']:40} {r['ours_ms']:9.1f} {r['reference_ms']:9.1f} {r['speedup']:8.3f}  "
              f"{r['detections']}")
    fps = mobile_ssd_fps(max(args.rounds, 10), args.warmup)
    print(f"{fps['model']} at 320x320, end to end: {fps['ms']:.1f} ms = {fps['fps']:.1f} FPS, {fps['detections']} boxes "
          f"({torch.get_num_threads()} threads, torch {torch.__version__}, {platform.processor() or platform.machine()})")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": torch.get_num_threads(), "torch": torch.__version__,
                                               "rows": rows, "mobile_ssd": fps}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
