"""Issue 18, INT8 and FP16 with an accuracy guard: on real images the guard accepts resnet20.cifar10's
and unet.membrane's INT8 files (scores recomputed here), refuses a badly calibrated one (both numbers
said, nothing written), and refuses bad calibration folders."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import onnx
import pytest
import torch
from helpers import CIFAR_TAR, shared_data

import archzoo
from archzoo.cli.main import main
from archzoo.deploy.export import ort_session, read_metadata
from archzoo.deploy.quantize import OnnxModel, quantize_model
from archzoo.validate import UserError

pytestmark = pytest.mark.filterwarnings("ignore")


@pytest.fixture(scope="module")
def cifar(tmp_path_factory) -> dict[str, Path]:
    """From the CIFAR-10 tar: 30 images of each class to score on, the next 5 of each to calibrate on."""
    tar = shared_data(CIFAR_TAR)
    root = tmp_path_factory.mktemp("cifar")
    taken: dict[str, int] = {}
    with tarfile.open(tar, "r:gz") as tf:
        for member in tf:
            parts = Path(member.name).parts
            if not member.isfile() or len(parts) < 3:
                continue
            cls = parts[-2]
            k = taken.get(cls, 0)
            if k >= 35:
                continue
            taken[cls] = k + 1
            target = root / ("eval" if k < 30 else "calib") / cls / parts[-1]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(tf.extractfile(member).read())
    assert len(taken) == 10
    return {"eval": root / "eval", "calib": root / "calib"}


def _accuracy(session_or_model, data_dir: Path, model, meta) -> float:
    from archzoo.cli.eval import load_eval_data
    from archzoo.engine.evaluate import evaluate_model

    data, _, _ = load_eval_data(str(data_dir), meta, None, False, task="classification")
    net = session_or_model if isinstance(session_or_model, torch.nn.Module) else OnnxModel(session_or_model, model)
    m = evaluate_model(net, data, input_size=32, mean=meta["mean"], std=meta["std"], class_names=meta["class_names"],
                       device="cpu", workers=0)
    return float(m["accuracy"])


def test_int8_accepted_on_cifar10_scores_as_the_guard_says(cifar, tmp_path, capsys):
    out = tmp_path / "r20.int8.onnx"
    assert main(["export", "resnet20.cifar10", "--out", str(out), "--int8", "--calib", str(cifar["calib"]),
                 "--eval", str(cifar["eval"]), "--max-drop", "3", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    guard = report["guard"]
    model, meta = archzoo.load_model("resnet20.cifar10")
    # the float number is PyTorch's accuracy (onnxruntime in float32 gives the same answers) ...
    assert guard["count"] == 300 and guard["calibration_images"] == 50
    assert guard["float"] == pytest.approx(_accuracy(model, cifar["eval"], model, meta), abs=1.5 / 300)
    assert guard["float"] > 0.7  # the shipped weights are good (88% held out): the drop means something
    # ... and the quantized number is the written file's
    assert guard["quantized"] == pytest.approx(_accuracy(ort_session(out), cifar["eval"], model, meta), abs=1e-9)
    assert guard["drop_points"] == pytest.approx(100 * (guard["float"] - guard["quantized"])) and guard["drop_points"] <= 3
    # it is an INT8 file: int8 weights per channel behind QuantizeLinear/DequantizeLinear, 3x+ smaller
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8 = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert int8, "no int8 convolution weights"
    scales = {t.name: t for t in proto.graph.initializer}
    per_channel = [n for n in proto.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in {t.name for t in int8}]
    assert any(len(scales[n.input[1]].dims) == 1 and scales[n.input[1]].dims[0] > 1 for n in per_channel)
    assert report["bytes"] == out.stat().st_size and out.stat().st_size * 3 < report["float_bytes"]
    md = read_metadata(out)
    assert md["quantization"]["mode"] == "int8" and md["class_names"][0] == "airplane"


def test_int8_refused_when_calibration_is_useless(cifar, tmp_path, capsys):
    """Calibrated on one black picture, the activation ranges are far too narrow: the accuracy
    collapses, the guard refuses with both numbers, and nothing is written."""
    from PIL import Image

    black = tmp_path / "black"
    black.mkdir()
    Image.new("RGB", (32, 32)).save(black / "0.png")
    out = tmp_path / "bad.int8.onnx"
    assert main(["export", "resnet20.cifar10", "--out", str(out), "--int8", "--calib", str(black),
                 "--eval", str(cifar["eval"])]) == 2
    err = capsys.readouterr().err
    assert "nothing was written" in err and "--max-drop 1" in err
    numbers = [float(v) for v in __import__("re").findall(r"float (0\.\d+), int8 (0\.\d+)", err)[0]]
    assert numbers[0] - numbers[1] > 0.01
    assert not out.exists() and list(tmp_path.iterdir()) == [black]


def test_fp16_accepted_and_stored_in_half_precision(cifar, tmp_path, capsys):
    out = tmp_path / "r20.fp16.onnx"
    assert main(["export", "resnet20.cifar10", "--out", str(out), "--fp16", "--eval", str(cifar["eval"]),
                 "--json"]) == 0
    guard = json.loads(capsys.readouterr().out)["guard"]
    assert abs(guard["drop_points"]) <= 1.0 and guard["mode"] == "fp16"
    proto = onnx.load(str(out))
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    assert proto.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT


def test_int8_segmenter_guard_scores_mean_iou_on_held_out_membrane_slices(tmp_path):
    """unet.membrane, calibrated on 4 training slices, scored on the 5 held-out ones (20-24)."""
    membrane = shared_data("membrane")
    calib, held = tmp_path / "calib", tmp_path / "held"
    calib.mkdir()
    for n in (0, 6, 12, 18):
        (calib / f"{n}.png").symlink_to((membrane / "image" / f"{n}.png").resolve())
    for sub in ("image", "label"):
        (held / sub).mkdir(parents=True)
        for n in range(20, 25):
            (held / sub / f"{n}.png").symlink_to((membrane / sub / f"{n}.png").resolve())
    model, meta = archzoo.load_model("unet.membrane")
    report = quantize_model(model, meta, tmp_path / "u.onnx", calib=calib, eval_data=held, max_drop=2.0)
    guard = report["guard"]
    assert guard["metric"] == "mean IoU" and guard["count"] == 5
    listed = archzoo.shipped.SHIPPED[("unet", "membrane")].metrics["held_out_miou"]
    assert guard["float"] == pytest.approx(listed, abs=0.002)  # the float file scores what PyTorch does
    assert guard["drop_points"] <= 2.0 and (tmp_path / "u.onnx").is_file()


@pytest.mark.parametrize("case,needle", [("empty", "holds no images"), ("file", "not a folder"),
                                         ("broken", "cannot read"), ("missing", "not a folder")])
def test_bad_calibration_folder_exits_2_and_writes_nothing(case, needle, cifar, tmp_path, capsys):
    calib = tmp_path / "calib"
    if case == "empty":
        calib.mkdir()
        (calib / "notes.txt").write_text("no pictures here")
    elif case == "file":
        calib.write_text("x")
    elif case == "broken":
        calib.mkdir()
        (calib / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "m.onnx"
    assert main(["export", "resnet20.cifar10", "--out", str(out), "--int8", "--calib", str(calib),
                 "--eval", str(cifar["eval"])]) == 2
    assert needle in capsys.readouterr().err
    assert not out.exists()


def test_detectors_are_refused_by_the_guard(tmp_path):
    model = archzoo.create_model("yolov8n", num_classes=2, image_size=64).eval()
    with pytest.raises(UserError, match="detector"):
        quantize_model(model, {}, tmp_path / "d.onnx", calib=tmp_path, eval_data=tmp_path)
    assert not (tmp_path / "d.onnx").exists()
