"""``archzoo serve``'s page in a real browser: Debian's headless Chromium driven by Playwright.

Starts the app with uvicorn on a free loopback port (in a thread), picks an image in the page,
presses Analyze and checks that what the page shows equals the ``POST /predict`` answer; saves a
screenshot. Needs /usr/bin/chromium (``apt-get install chromium``) and ``pip install playwright``
(no browser download: Playwright drives the system Chromium). Under ``CI=true`` a missing browser
fails; elsewhere the test skips with the reason.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import threading
import time

import pytest
from PIL import Image

from helpers import in_ci

CHROMIUM = os.environ.get("ARCHZOO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _missing(reason: str):
    if in_ci():
        pytest.fail(f"{reason} (CI=true needs the browser: .ci/run installs it)", pytrace=False)
    pytest.skip(reason)


@contextlib.contextmanager
def chromium_page():
    """A Playwright page in the system's headless Chromium (fails under CI=true when missing, else skips)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install playwright)")
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)) and not shutil.which(CHROMIUM):
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.js_errors = errors
            yield page
        finally:
            browser.close()


def free_socket() -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    return s


@contextlib.contextmanager
def uvicorn_thread(app):
    """``app`` served by uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    sock = free_socket()
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def test_page_analyze_shows_the_predict_answer(tmp_path):
    import httpx

    from archzoo.serve import create_app, load_served

    # a CIFAR-sized picture with structure (a disc on a gradient), so the classes are not all alike
    y, x = [v.astype("float32") for v in __import__("numpy").mgrid[0:32, 0:32]]
    rgb = __import__("numpy").stack([x * 8, y * 8, 255 - ((x - 16) ** 2 + (y - 12) ** 2 < 60) * 200], -1)
    path = tmp_path / "disc.png"
    Image.fromarray(rgb.clip(0, 255).astype("uint8")).save(path)
    app = create_app([load_served("resnet20.cifar10"), load_served("unet.membrane")])
    with uvicorn_thread(app) as url, chromium_page() as page:
        want = httpx.post(f"{url}/predict", files={"image": (path.name, path.read_bytes(), "image/png")},
                          data={"model": "resnet20.cifar10"}, timeout=60).json()
        page.goto(url + "/")
        page.wait_for_selector("#model option[value='resnet20.cifar10']", state="attached")
        page.select_option("#model", "resnet20.cifar10")
        page.set_input_files("#file", str(path))
        page.click("#analyze")
        page.wait_for_selector("#top tr[data-class]", timeout=60_000)
        page.wait_for_function("document.getElementById('overlay').naturalWidth > 0", timeout=30_000)
        rows = page.eval_on_selector_all("#top tr[data-class]", "rs => rs.map(r => [r.dataset.class, "
                                         "Number(r.dataset.value), r.querySelector('.val').textContent])")
        overlay_w = page.eval_on_selector("#overlay", "img => img.naturalWidth")
        shot = tmp_path / "serve_page.png"
        page.screenshot(path=str(shot), full_page=True)
        assert page.js_errors == []
    assert [r[0] for r in rows] == [t["class"] for t in want["top"]][:5]
    assert [r[1] for r in rows] == pytest.approx([t["probability"] for t in want["top"]][:5], abs=1e-9)
    assert rows[0][2] == f"{100 * want['top'][0]['probability']:.2f}%"
    assert overlay_w == 32  # the CAM overlay at the model's input size
    assert Image.open(shot).size[0] > 100
    if os.environ.get("ARCHZOO_KEEP_SCREENSHOTS"):
        shutil.copy(shot, os.environ["ARCHZOO_KEEP_SCREENSHOTS"])


def test_page_shows_an_upload_error(tmp_path):
    """A file that is not an image: the page shows the server's 4xx message, not a broken result."""
    from archzoo.serve import create_app, load_served

    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    with uvicorn_thread(create_app([load_served("resnet20.cifar10")])) as url, chromium_page() as page:
        page.goto(url + "/")
        page.wait_for_selector("#model option", state="attached")
        page.set_input_files("#file", str(bad))
        page.click("#analyze")
        page.wait_for_function("document.getElementById('error').textContent.length > 0", timeout=30_000)
        text = page.text_content("#error")
    assert text.startswith("400: ") and "not an image" in text
