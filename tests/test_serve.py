"""``archzoo serve``'s app against httpx (FastAPI's TestClient): good answers equal ``archzoo
predict --json``'s, and every bad upload gets a 4xx JSON error saying what is wrong, never a 500."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import threading
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from fastapi.testclient import TestClient

from archzoo.serve import create_app, load_served
from archzoo.validate import UserError


@pytest.fixture(scope="module")
def served():
    return {name: load_served(name) for name in ("resnet20.cifar10", "unet.membrane", "yolov8n.nuts")}


@pytest.fixture(scope="module")
def client(served):
    app = create_app(list(served.values()), max_upload_mb=0.5, max_pixels=4_000_000)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def picture(w=48, h=40, seed=0, fmt="PNG") -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], -1).astype(np.uint8)
    rgb[h // 4: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A small PNG whose header claims ``width x height`` pixels (a decompression bomb's header)."""
    data = bytearray(picture(8, 8))
    ihdr = 8 + 8  # signature, then length and type of IHDR
    data[ihdr:ihdr + 8] = struct.pack(">II", width, height)
    data[ihdr + 13:ihdr + 17] = struct.pack(">I", zlib.crc32(bytes(data[ihdr - 4:ihdr + 13])))
    return bytes(data)


def post(client, data: bytes, name="x.png", model=None, field="image"):
    form = {"model": model} if model else None
    return client.post("/predict", files={field: (name, data, "image/png")}, data=form)


def predict_cli(tmp_path, capsys, ckpt: str, data: bytes, name: str) -> dict:
    from archzoo.cli.main import main

    path = tmp_path / name
    path.write_bytes(data)
    assert main(["predict", ckpt, str(path), "--json"]) == 0
    entry = json.loads(capsys.readouterr().out)["predictions"][0]
    entry["file"] = name
    return entry


def png_size(b64: str) -> tuple[int, int]:
    return Image.open(io.BytesIO(base64.b64decode(b64))).size


# ------------------------------------------------------------------ good answers


def test_health_and_models(client):
    assert client.get("/health").json()["status"] == "ok"
    info = client.get("/models").json()
    assert info["default"] == "resnet20.cifar10"
    tasks = {m["name"]: m["task"] for m in info["models"]}
    assert tasks == {"resnet20.cifar10": "classification", "unet.membrane": "segmentation",
                     "yolov8n.nuts": "detection"}
    r = client.get("/")
    assert r.status_code == 200 and "Analyze" in r.text and "/predict" in r.text


@pytest.mark.parametrize("model", ["resnet20.cifar10", "unet.membrane", "yolov8n.nuts"])
def test_predict_equals_archzoo_predict(client, tmp_path, capsys, model):
    data = picture(48, 40, seed=1)
    r = post(client, data, "pic.png", model=model)
    assert r.status_code == 200, r.text
    got = r.json()
    overlay = got.pop("overlay_png")
    want = predict_cli(tmp_path, capsys, model, data, "pic.png")
    assert got == want
    # the overlay: a CAM at the model's input (classifier), else the drawn picture at the image's size
    assert png_size(overlay) == ((32, 32) if model == "resnet20.cifar10" else (48, 40))


def test_default_model_is_the_first(client, tmp_path, capsys):
    data = picture(32, 32, seed=2, fmt="JPEG")
    r = post(client, data, "pic.jpg")
    assert r.status_code == 200
    assert {k: v for k, v in r.json().items() if k != "overlay_png"} == predict_cli(
        tmp_path, capsys, "resnet20.cifar10", data, "pic.jpg")


def test_onnx_runtime_answers_like_torch(served):
    onnx = load_served("resnet20.cifar10", runtime="onnx")
    with TestClient(create_app([onnx])) as c:
        got = post(c, picture(seed=3)).json()
    with TestClient(create_app([served["resnet20.cifar10"]])) as c:
        want = post(c, picture(seed=3)).json()
    assert [t["index"] for t in got["top"]] == [t["index"] for t in want["top"]]
    assert [t["probability"] for t in got["top"]] == pytest.approx([t["probability"] for t in want["top"]], abs=1e-5)
    assert c.get("/models").json()["models"][0]["runtime"] == "torch"


def test_registered_name_serves_random_weights():
    s = load_served("resnet20")
    assert s.name == "resnet20" and s.task == "classification" and len(s.describe()["classes"]) == 10


def test_unknown_checkpoint_is_a_user_error():
    with pytest.raises(UserError, match="no-such-model"):
        load_served("no-such-model")


# ------------------------------------------------------------------ bad uploads


def truncated() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    data = buf.getvalue()
    return data[: len(data) // 2]


BAD = [
    ("zero bytes", lambda: b"", 400, "empty (0 bytes)"),
    ("not an image", lambda: b"hello, this is text\n" * 10, 400, "not an image"),
    ("truncated", truncated, 400, "truncated"),
    ("text behind a PNG signature", lambda: b"\x89PNG\r\n\x1a\n" + b"garbage" * 50, 400, "field 'image' is not a"),
    ("JPEG signature, no picture", lambda: b"\xff\xd8\xff\xe0" + bytes(300), 400, "field 'image' is not a"),
    ("bomb header", lambda: png_claiming(100_000, 100_000), 413, "pixels"),
    ("over max pixels", lambda: png_claiming(3000, 2000), 413, "over the limit of 4,000,000"),
    ("too many bytes", lambda: b"\x89PNG" + bytes(900 * 1024), 413, "upload of 921,"),  # refused by its length
    ("just too many bytes", lambda: b"\x89PNG" + bytes(520 * 1024), 413, "field 'image' is over the limit of 524,288 bytes"),
]


def encoded(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


_RGB = Image.fromarray(np.random.default_rng(5).integers(0, 255, (50, 70, 3), dtype=np.uint8))
ODD_BUT_VALID = {
    "1x1": lambda: encoded(Image.new("RGB", (1, 1)), "PNG"),
    "1x3000": lambda: encoded(Image.new("RGB", (1, 3000)), "PNG"),
    "16-bit grey": lambda: encoded(Image.fromarray(np.arange(1600, dtype=np.uint16).reshape(40, 40) * 40), "PNG"),
    "grey+alpha": lambda: encoded(_RGB.convert("LA"), "PNG"),
    "CMYK JPEG": lambda: encoded(_RGB.convert("CMYK"), "JPEG"),
    "GIF": lambda: encoded(_RGB.convert("P"), "GIF"),
    "float TIFF": lambda: encoded(Image.fromarray(np.linspace(0, 300, 900, dtype=np.float32).reshape(30, 30)), "TIFF"),
}


@pytest.mark.parametrize("what", list(ODD_BUT_VALID))
def test_odd_but_valid_images_are_answered(client, tmp_path, capsys, what):
    data = ODD_BUT_VALID[what]()
    r = post(client, data, "odd.img")
    assert r.status_code == 200, r.text
    got = {k: v for k, v in r.json().items() if k != "overlay_png"}
    assert got == predict_cli(tmp_path, capsys, "resnet20.cifar10", data, "odd.img")


@pytest.mark.parametrize("what,make,status,message", BAD, ids=[b[0] for b in BAD])
def test_bad_upload_is_a_4xx_json_error(client, what, make, status, message):
    r = post(client, make())
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def test_wrong_field_name(client):
    r = post(client, picture(), field="file")
    assert r.status_code == 422
    assert "field 'image' is missing" in r.json()["error"] and "'file'" in r.json()["error"]


def test_image_field_is_not_a_file(client):
    r = client.post("/predict", data={"image": "cat.png"}, files={"photo": ("cat.png", picture(), "image/png")})
    assert r.status_code == 422 and "is not a file" in r.json()["error"]


def test_not_multipart(client):
    r = client.post("/predict", content=picture(), headers={"content-type": "image/png"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]


def test_model_field_is_a_file(client):
    r = client.post("/predict", files={"image": ("x.png", picture(), "image/png"), "model": ("m.txt", b"x", "text/plain")})
    assert r.status_code == 422 and "field 'model' must be text" in r.json()["error"]


def test_malformed_multipart_body(client):
    r = client.post("/predict", content=b"--xyz\r\nnot a part header\r\n\r\n",
                    headers={"content-type": "multipart/form-data; boundary=xyz"})
    assert 400 <= r.status_code < 500 and r.json()["error"]


def test_unknown_model(client):
    r = post(client, picture(), model="vgg99.imagenet")
    assert r.status_code == 404
    assert "vgg99.imagenet" in r.json()["error"] and "resnet20.cifar10" in r.json()["error"]


def test_unknown_path_is_json(client):
    r = client.get("/nothing-here")
    assert r.status_code == 404 and "error" in r.json()


def test_server_still_answers_after_bad_uploads(client):
    for _, make, _, _ in BAD:
        post(client, make())
    assert post(client, picture()).status_code == 200


# ------------------------------------------------------------------ timeout and queue


def test_slow_prediction_is_a_504(served, monkeypatch):
    import archzoo.serve.app as app_module

    release = threading.Event()
    monkeypatch.setattr(app_module, "predict_upload", lambda *a, **k: release.wait(10) and {})
    app = create_app([served["resnet20.cifar10"]], timeout_s=0.2)
    try:
        with TestClient(app) as c:
            r = post(c, picture())
            assert r.status_code == 504 and "--timeout-s" in r.json()["error"]
    finally:
        release.set()


def test_full_queue_is_a_503(served, monkeypatch):
    """One worker and a queue of 1: with two requests admitted, a third is refused at once."""
    import httpx

    import archzoo.serve.app as app_module

    release = threading.Event()

    def slow(*args, **kwargs):
        release.wait(10)
        return {"ok": True}

    monkeypatch.setattr(app_module, "predict_upload", slow)
    app = create_app([served["resnet20.cifar10"]], workers=1, queue=1, timeout_s=20)

    async def scenario():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            send = lambda: c.post("/predict", files={"image": ("x.png", picture(), "image/png")})
            first, second = asyncio.create_task(send()), asyncio.create_task(send())
            while app.state.slots.used < 2:
                await asyncio.sleep(0.01)
            third = await send()
            busy = (await c.get("/health")).json()["busy"]
            release.set()
            return [(await first).status_code, (await second).status_code, third.status_code], third.json(), busy

    codes, body, busy = asyncio.run(scenario())
    assert codes == [200, 200, 503] and "busy" in body["error"] and busy == 2
    deadline = time.monotonic() + 10
    while app.state.slots.used and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.slots.used == 0  # every slot given back


def test_cli_serve_refuses_a_missing_checkpoint(capsys):
    from archzoo.cli.main import main

    assert main(["serve", "missing/ckpt.safetensors", "--port", "0"]) == 2
    assert "missing/ckpt.safetensors" in capsys.readouterr().err


def test_cli_serve_answers_on_a_free_port():
    """``archzoo serve --port 0`` prints the port it took and answers there; a second server on
    that port is refused with a user error (exit 2)."""
    import subprocess
    import sys

    import httpx

    cmd = [sys.executable, "-m", "archzoo", "serve", "resnet20.cifar10", "--port", "0"]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = server.stdout.readline()
        assert line.startswith("archzoo serve: resnet20.cifar10 (torch) on http://127.0.0.1:"), line
        url = line.split(" on ")[1].strip().rstrip("/")
        assert httpx.get(url + "/health", timeout=30).json()["status"] == "ok"
        r = httpx.post(url + "/predict", files={"image": ("x.png", picture(), "image/png")}, timeout=60)
        assert r.status_code == 200 and len(r.json()["top"]) == 5
        port = url.rsplit(":", 1)[1]
        busy = subprocess.run([sys.executable, "-m", "archzoo", "serve", "resnet20.cifar10", "--port", port],
                              capture_output=True, text=True, timeout=120)
        assert busy.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in busy.stderr
    finally:
        server.terminate()
        server.wait(30)
