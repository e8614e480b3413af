"""``write_web_folder``: the in-browser page gives ``archzoo predict``'s answer.

Exports the shipped ``resnet20.cifar10`` with :func:`archzoo.deploy.export.export_onnx`, writes the
static folder, serves it with ``http.server`` on a free loopback port, opens it in headless Chromium
(onnxruntime-web's WASM backend) and compares the page's top-5 with ``archzoo predict --json``.
Needs onnxruntime-web (``npm install onnxruntime-web``; ``$ARCHZOO_ORT_WEB``) and Chromium: under
``CI=true`` their absence fails, elsewhere it skips.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import threading

import numpy as np
import pytest
from PIL import Image

from helpers import in_ci, shared_data
from test_serve_browser import chromium_page, free_socket

from archzoo.validate import UserError


@contextlib.contextmanager
def static_server(folder):
    """``folder`` served by ``http.server`` on a free loopback port, in a thread; yields its URL."""
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, ".wasm": "application/wasm",
                          ".mjs": "text/javascript", ".js": "text/javascript"}

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(Quiet, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.shutdown()
        server.server_close()


def _ort_web_or_skip():
    from archzoo.deploy.web import find_ort_web

    try:
        return find_ort_web()
    except UserError as e:
        if in_ci():
            pytest.fail(f"{e} (CI=true: .ci/run installs it)", pytrace=False)
        pytest.skip(str(e))


def cifar_like(path, seed: int):
    """A 32x32 picture with structure: a coloured disc over a smooth gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:32, 0:32].astype(np.float32)
    cx, cy, r = rng.uniform(8, 24, 2).tolist() + [rng.uniform(5, 10)]
    base = np.stack([x * rng.uniform(2, 8), y * rng.uniform(2, 8), np.full_like(x, rng.uniform(0, 255))], -1)
    disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
    base[disc] = rng.uniform(0, 255, 3)
    Image.fromarray(base.clip(0, 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def web_folder(tmp_path_factory):
    from archzoo.deploy.export import export_onnx, read_metadata
    from archzoo.deploy.web import write_web_folder
    from archzoo.io import load_model

    _ort_web_or_skip()
    tmp = tmp_path_factory.mktemp("web")
    model, meta = load_model("resnet20.cifar10", need_head=True)
    onnx = tmp / "resnet20.onnx"
    export_onnx(model, meta, onnx)
    return write_web_folder(onnx, tmp / "site", read_metadata(onnx))


def test_web_folder_contents(web_folder):
    names = {p.relative_to(web_folder).as_posix() for p in web_folder.rglob("*") if p.is_file()}
    assert {"index.html", "app.js", "meta.json", "model.onnx", "ort/ort.wasm.min.js",
            "ort/ort-wasm-simd-threaded.wasm", "ort/ort-wasm-simd-threaded.mjs"} <= names
    meta = json.loads((web_folder / "meta.json").read_text())
    assert meta["task"] == "classification" and meta["input_size"] == [3, 32, 32]
    assert meta["class_names"][:2] == ["airplane", "automobile"]
    page = (web_folder / "index.html").read_text()
    assert "http://" not in page and "https://" not in page  # nothing is fetched from elsewhere


def test_page_in_chromium_equals_predict(web_folder, tmp_path, capsys):
    from archzoo.cli.main import main

    images = [cifar_like(tmp_path / f"img{i}.png", i) for i in range(3)]
    assert main(["predict", "resnet20.cifar10", *map(str, images), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)["predictions"]
    got = []
    with static_server(web_folder) as url, chromium_page() as page:
        page.goto(url + "/index.html")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        for i, image in enumerate(images):
            page.set_input_files("#file", str(image))
            page.wait_for_selector(f"body[data-done='{i + 1}']", timeout=60_000)
            got.append(page.evaluate("window.archzooResult"))
        page.screenshot(path=str(tmp_path / "web_page.png"), full_page=True)
        assert page.text_content("#error") == "" and page.js_errors == []
    for g, w in zip(got, want):
        assert g["top"][0]["class"] == w["top"][0]["class"]
        assert [t["index"] for t in g["top"]] == [t["index"] for t in w["top"]]
        assert [t["probability"] for t in g["top"]] == pytest.approx([t["probability"] for t in w["top"]], abs=1e-3)


def test_missing_ort_web_names_the_install(tmp_path, monkeypatch):
    from archzoo.deploy import web

    monkeypatch.setenv("ARCHZOO_ORT_WEB", str(tmp_path))
    with pytest.raises(UserError, match="npm install onnxruntime-web"):
        web.find_ort_web()
    monkeypatch.delenv("ARCHZOO_ORT_WEB")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm: nothing global either
    with pytest.raises(UserError, match="npm install onnxruntime-web"):
        web.find_ort_web()


def test_detector_page_in_chromium_equals_predict(tmp_path, capsys):
    """yolov8n.nuts in the browser: on a picture at the model's input size (no resampling in the
    canvas), the page's detections are ``archzoo predict``'s (scores to 1e-3, boxes to 0.5 px)."""
    from archzoo.cli.main import main
    from archzoo.deploy.export import export_onnx, read_metadata
    from archzoo.deploy.web import write_web_folder
    from archzoo.io import load_model

    _ort_web_or_skip()
    photo = shared_data("nuts/train/0.jpg")
    image = tmp_path / "nuts320.png"
    Image.open(photo).convert("RGB").resize((320, 320), Image.Resampling.BILINEAR).save(image)
    model, meta = load_model("yolov8n.nuts", need_head=True)
    export_onnx(model, meta, tmp_path / "y.onnx")
    site = write_web_folder(tmp_path / "y.onnx", tmp_path / "site", read_metadata(tmp_path / "y.onnx"))
    assert main(["predict", "yolov8n.nuts", str(image), "--json"]) == 0
    want = json.loads(capsys.readouterr().out)["predictions"][0]["detections"]
    with static_server(site) as url, chromium_page() as page:
        page.goto(url + "/index.html")
        page.wait_for_selector("body[data-ready='1']", timeout=60_000)
        page.set_input_files("#file", str(image))
        page.wait_for_selector("body[data-done='1']", timeout=60_000)
        got = page.evaluate("window.archzooResult")["detections"]
        page.screenshot(path=str(tmp_path / "detector_page.png"), full_page=True)
    assert len(want) >= 3 and len(got) == len(want)
    for g, w in zip(got, want):
        assert g["label"] == w["label"]
        assert g["score"] == pytest.approx(w["score"], abs=1e-3)
        assert g["box"] == pytest.approx(w["box"], abs=0.5)
