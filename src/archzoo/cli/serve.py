"""``archzoo serve CKPT [CKPT ...]``: models behind a web page and a JSON API.

    archzoo serve resnet20.cifar10 unet.membrane yolov8n.nuts --port 8000
    archzoo serve runs/c10/best.safetensors --runtime onnx --max-upload-mb 5 --timeout-s 10

Open http://127.0.0.1:8000/ : choose a model, pick or drop an image, press Analyze; the page shows
the top-5 classes with a class activation map (classifiers), the drawn boxes (detectors) or the
mask overlay (segmenters). The API:

* ``POST /predict``: multipart form, the image in field ``image``, optional ``model`` (default:
  the first one) -> ``archzoo predict --json``'s entry for the image, plus ``overlay_png``
  (base64 PNG). Bad uploads get a 4xx ``{"error": ...}`` saying what is wrong; a full queue 503;
  a prediction slower than ``--timeout-s`` 504.
* ``GET /models``, ``GET /health``.

Models (checkpoints, shipped weights ``<model>.<tag>``, or registered names with random weights)
are loaded once at start; ``--runtime onnx`` exports each to ONNX (checked against PyTorch) and
runs it in onnxruntime. Inference runs in ``--workers`` threads; ``--queue`` more requests may wait.
"""

from __future__ import annotations

import argparse


def _number(kind, lo, name, hi=None):
    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if not v >= lo or (hi is not None and v > hi):
            raise argparse.ArgumentTypeError(f"must be {lo}..{hi}, got {text}" if hi is not None
                                             else f"must be at least {lo}, got {text}")
        return v

    parse.__name__ = name
    return parse


def register(subparsers) -> None:
    from ..serve.runtime import DEFAULT_MAX_PIXELS, RUNTIMES

    p = subparsers.add_parser("serve", help="serve models behind a web page and a JSON API (POST /predict)",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", metavar="CKPT",
                   help="checkpoint files, shipped weights <model>.<tag>, or registered model names")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=_number(int, 0, "port", 65535), default=8000, help="port (default 8000; 0: any free one)")
    p.add_argument("--runtime", choices=RUNTIMES, default="torch", help="PyTorch (default) or onnxruntime")
    p.add_argument("--max-upload-mb", type=_number(float, 0.001, "size"), default=10.0,
                   help="largest upload accepted, in MiB (default 10; larger: 413)")
    p.add_argument("--max-pixels", type=_number(int, 1, "pixels"), default=DEFAULT_MAX_PIXELS,
                   help=f"largest image accepted, width x height (default {DEFAULT_MAX_PIXELS:,}; larger: 413)")
    p.add_argument("--timeout-s", type=_number(float, 0.001, "seconds"), default=30.0,
                   help="answer 504 when a prediction takes longer (default 30)")
    p.add_argument("--queue", type=_number(int, 0, "count"), default=8,
                   help="requests that may wait for a worker; more are answered 503 (default 8)")
    p.add_argument("--workers", type=_number(int, 1, "count"), default=1, help="inference threads (default 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import socket

    import uvicorn
    from PIL import Image

    from ..serve import create_app, load_served
    from ..validate import UserError

    served = [load_served(c, args.runtime) for c in args.checkpoints]
    names = [s.name for s in served]
    if len(set(names)) != len(names):
        raise UserError(f"two models would have the same name on the page: {names}; rename a checkpoint file")
    # Pillow's own decompression-bomb guard, process-wide, at the server's limit (the app checks each
    # upload's header against it first and answers 413)
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    app = create_app(served, max_upload_mb=args.max_upload_mb, timeout_s=args.timeout_s, queue=args.queue,
                     workers=args.workers, max_pixels=args.max_pixels)
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        sock.close()
        raise UserError(f"cannot listen on {args.host}:{args.port}: {e.strerror or e}") from None
    port = sock.getsockname()[1]
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"archzoo serve: {', '.join(names)} ({args.runtime}) on http://{host}:{port}/", flush=True)
    try:
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    finally:
        sock.close()
    return 0
