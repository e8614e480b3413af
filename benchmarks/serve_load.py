"""Load on ``archzoo serve``: N concurrent clients for a bounded time, good and bad uploads mixed.

    python benchmarks/serve_load.py                                  # 16 clients, 60 s, resnet20.cifar10
    python benchmarks/serve_load.py --seconds 20 --clients 8 --models resnet20.cifar10 unet.membrane
    python benchmarks/serve_load.py --runtime onnx --json load.json

Starts ``archzoo serve`` as its own process on a free loopback port, waits for ``/health``, then
runs ``--clients`` asyncio clients (httpx), each sending one request after another until
``--seconds`` have passed. A seeded ``--bad-fraction`` of the requests are bad uploads of every
kind the server must refuse (zero bytes, text, a truncated PNG, a decompression-bomb header, an
oversized body, a wrong field name, an unknown model); the rest are PNG/JPEG pictures of a few
sizes for a random served model. Reports requests/s, p50/p99 latency (all requests, and the good
ones alone), the answers by kind — ``ok``, ``expected_4xx`` (the bad uploads' statuses, each as
expected), ``busy_503`` (the bounded queue shedding load), ``timeout_504`` and ``unexpected``
(anything else: a 500, a wrong status, a dropped connection; must be 0) — and the server's
resident memory (RSS, from /proc) at start, after a warm-up tenth of the run, and at the end.
Exits 1 when anything unexpected happened.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import random
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return float("nan")


def picture(w: int, h: int, seed: int, fmt: str) -> bytes:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], -1).astype(np.uint8)
    rgb[h // 4: h // 2, w // 4: w // 2] = rng.integers(0, 255, 3)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt)
    return buf.getvalue()


def bomb_header(width: int, height: int) -> bytes:
    data = bytearray(picture(8, 8, 0, "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def request_kinds(max_upload_mb: float) -> tuple[list, list]:
    """``(good, bad)``: good ``(name, files, data, 200)``; bad with the status the server must answer."""
    good = [(f"{fmt.lower()}_{w}x{h}", {"image": (f"p.{fmt.lower()}", picture(w, h, i, fmt), "image/png")}, 200)
            for i, (w, h, fmt) in enumerate([(32, 32, "PNG"), (64, 48, "PNG"), (120, 90, "JPEG"), (256, 256, "JPEG")])]
    noise = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(noise, "PNG")
    png = picture(32, 32, 9, "PNG")
    big = int(max_upload_mb * 1024 * 1024) + 200 * 1024
    bad = [("zero_bytes", {"image": ("a.png", b"", "image/png")}, 400),
           ("not_an_image", {"image": ("a.png", b"plain text, not a picture\n" * 20, "image/png")}, 400),
           ("truncated", {"image": ("a.png", noise.getvalue()[: len(noise.getvalue()) // 2], "image/png")}, 400),
           ("bomb_header", {"image": ("a.png", bomb_header(100_000, 100_000), "image/png")}, 413),
           ("oversized_bytes", {"image": ("a.png", b"\x89PNG" + bytes(big), "image/png")}, 413),
           ("wrong_field", {"file": ("a.png", png, "image/png")}, 422),
           ("unknown_model", {"image": ("a.png", png, "image/png")}, 404)]
    return good, bad


async def client(http, url, models, good, bad, bad_fraction, deadline, seed, log):
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        kind = rng.choice(bad) if rng.random() < bad_fraction else rng.choice(good)
        name, files, expected = kind
        data = {"model": "no-such-model" if name == "unknown_model" else rng.choice(models)}
        t0 = time.perf_counter()
        try:
            r = await http.post(url + "/predict", files=files, data=data)
            status, body = r.status_code, r.json()
        except Exception as e:  # a dropped connection, a non-JSON answer: unexpected
            status, body = None, {"error": f"{type(e).__name__}: {e}"}
        log.append((name, expected, status, time.perf_counter() - t0, body.get("error") if status != 200 else None))


def classify(expected: int, status: int | None) -> str:
    if status == expected == 200:
        return "ok"
    if status == expected:
        return "expected_4xx"
    if status == 503:
        return "busy_503"
    if status == 504:
        return "timeout_504"
    return "unexpected"


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_load(url, models, good, bad, args, pid) -> tuple[list, dict]:
    import httpx

    log: list = []
    memory = {"start_mib": rss_mib(pid)}
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(timeout=args.timeout_s + 30, limits=limits) as http:
        t0 = time.monotonic()
        deadline = t0 + args.seconds

        async def sample():  # RSS after a warm-up tenth of the run, and the peak seen every second
            await asyncio.sleep(args.seconds / 10)
            memory["warm_mib"] = memory["peak_mib"] = rss_mib(pid)
            while time.monotonic() < deadline:
                await asyncio.sleep(1)
                memory["peak_mib"] = max(memory["peak_mib"], rss_mib(pid))

        tasks = [client(http, url, models, good, bad, args.bad_fraction, deadline, args.seed + i, log)
                 for i in range(args.clients)]
        await asyncio.gather(sample(), *tasks)
        memory["seconds"] = round(time.monotonic() - t0, 1)
    memory["end_mib"] = rss_mib(pid)
    return log, memory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["resnet20.cifar10"], help="what archzoo serve loads")
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--seconds", type=float, default=60.0, help="how long the clients send requests")
    p.add_argument("--bad-fraction", type=float, default=0.3, help="share of bad uploads")
    p.add_argument("--runtime", choices=("torch", "onnx"), default="torch")
    p.add_argument("--workers", type=int, default=1, help="the server's inference threads")
    p.add_argument("--queue", type=int, default=32, help="the server's --queue (requests beyond it get 503)")
    p.add_argument("--timeout-s", type=float, default=30.0, help="the server's --timeout-s")
    p.add_argument("--max-upload-mb", type=float, default=2.0, help="the server's --max-upload-mb")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, help="also write the results to this file")
    args = p.parse_args(argv)

    port = free_port()
    cmd = [sys.executable, "-m", "archzoo", "serve", *args.models, "--port", str(port), "--runtime", args.runtime,
           "--workers", str(args.workers), "--queue", str(args.queue), "--timeout-s", str(args.timeout_s),
           "--max-upload-mb", str(args.max_upload_mb)]
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        import httpx

        t0 = time.monotonic()
        while True:
            if server.poll() is not None:
                print(server.stdout.read(), file=sys.stderr)
                raise SystemExit("archzoo serve exited before it answered /health")
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 300:
                raise SystemExit("archzoo serve did not answer /health within 300 s")
            time.sleep(0.2)
        startup = round(time.monotonic() - t0, 1)
        good, bad = request_kinds(args.max_upload_mb)
        log, memory = asyncio.run(run_load(url, args.models, good, bad, args, server.pid))
        alive = server.poll() is None
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()

    outcomes: dict[str, int] = {}
    by_kind: dict[str, dict[str, int]] = {}
    unexpected = []
    for name, expected, status, _, error in log:
        c = classify(expected, status)
        outcomes[c] = outcomes.get(c, 0) + 1
        by_kind.setdefault(name, {}).setdefault(str(status), 0)
        by_kind[name][str(status)] += 1
        if c == "unexpected" and len(unexpected) < 5:
            unexpected.append({"kind": name, "expected": expected, "status": status, "error": error})
    lat_all = [t for *_, t, _ in log]
    lat_good = [t for name, exp, st, t, _ in log if exp == st == 200]
    result = {
        "models": args.models, "runtime": args.runtime, "clients": args.clients, "seconds": memory["seconds"],
        "workers": args.workers, "queue": args.queue, "bad_fraction": args.bad_fraction,
        "server_startup_s": startup, "server_alive_at_end": alive,
        "requests": len(log), "requests_per_s": round(len(log) / memory["seconds"], 1),
        "good_per_s": round(len(lat_good) / memory["seconds"], 1),
        "latency_ms": {"p50": percentile(lat_all, 50), "p99": percentile(lat_all, 99),
                       "good_p50": percentile(lat_good, 50), "good_p99": percentile(lat_good, 99)},
        "outcomes": {k: outcomes.get(k, 0) for k in ("ok", "expected_4xx", "busy_503", "timeout_504", "unexpected")},
        "statuses_by_kind": by_kind, "unexpected_examples": unexpected,
        "server_rss_mib": {k: memory.get(k) for k in ("start_mib", "warm_mib", "peak_mib", "end_mib")},
        "machine": {"cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2), "python": platform.python_version()},
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 1 if outcomes.get("unexpected") or not alive else 0


if __name__ == "__main__":
    sys.exit(main())
