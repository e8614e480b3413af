"""The ASGI app of ``archzoo serve``: a page, ``POST /predict``, ``GET /models``, ``GET /health``.

Inference runs off the event loop, in a thread pool of ``workers`` threads; at most ``queue``
more requests wait for one, and a request beyond that is answered 503 at once (``{"error": ...}``)
rather than piling up. A request that takes over ``timeout_s`` is answered 504 (its inference
finishes in the background and still holds its place until then, so a stuck model cannot make
the queue grow). Every error is JSON ``{"error": "..."}`` with a 4xx/5xx status that says what
was wrong; bad uploads never reach a 500.
"""

import asyncio
import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from .runtime import DEFAULT_MAX_PIXELS, BadUpload, Served, check_image_bytes, predict_upload

FIELD = "image"
log = logging.getLogger(__name__)


class _Slots:
    """A counter of requests admitted (running or waiting), refusing beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used, self._lock = limit, 0, threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self.used >= self.limit:
                return False
            self.used += 1
            return True

    def give(self, *_) -> None:
        with self._lock:
            self.used -= 1


def create_app(models: list[Served], *, max_upload_mb: float = 10.0, timeout_s: float = 30.0, queue: int = 8,
               workers: int = 1, max_pixels: int = DEFAULT_MAX_PIXELS):
    """The FastAPI app serving ``models`` (the first is the default of ``POST /predict``)."""
    if not models:
        raise ValueError("create_app needs at least one model")
    by_name = {m.name: m for m in models}
    max_bytes = int(max_upload_mb * 1024 * 1024)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="archzoo-serve")
    slots = _Slots(workers + queue)
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="archzoo serve", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.state.pool, app.state.slots = pool, slots
    page = resources.files(__package__).joinpath("static/index.html").read_text(encoding="utf-8")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request, exc):  # 404/405 as JSON too
        return error(exc.status_code, str(exc.detail))

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(models), "busy": slots.used, "capacity": slots.limit}

    @app.get("/models")
    async def list_models():
        return {"default": models[0].name, "models": [m.describe() for m in models]}

    @app.post("/predict")
    async def predict(request: Request):
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes + 64 * 1024:
            return error(413, f"upload of {int(length):,} bytes is over the limit of {max_bytes:,} bytes "
                              "(the server's --max-upload-mb)")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(415, f"send the picture as multipart/form-data in the field '{FIELD}'")
        try:
            form = await request.form(max_files=2, max_fields=8)
        except Exception as e:  # malformed multipart bodies
            return error(400, f"cannot read the multipart form: {getattr(e, 'detail', e)}")
        try:
            upload = form.get(FIELD)
            if not isinstance(upload, UploadFile):
                got = ", ".join(repr(k) for k in form) or "none"
                what = "is not a file" if upload is not None else "is missing"
                return error(422, f"field '{FIELD}' {what}: send the picture as a file in the form field "
                                  f"'{FIELD}' (fields received: {got})")
            name = form.get("model") or models[0].name
            if not isinstance(name, str):
                return error(422, "field 'model' must be text: the name of a served model (GET /models)")
            if name not in by_name:
                return error(404, f"unknown model {str(name)!r}; this server has: {', '.join(by_name)}")
            data = await upload.read(max_bytes + 1)
            if len(data) > max_bytes:
                return error(413, f"field '{FIELD}' is over the limit of {max_bytes:,} bytes (the server's "
                                  "--max-upload-mb)")
            filename = upload.filename or "upload"
        finally:
            await form.close()
        try:  # the header checks are cheap: bad uploads are answered at once, without a place in the queue
            check_image_bytes(data, max_pixels)
        except BadUpload as e:
            return error(e.status, str(e))
        if not slots.take():
            return error(503, f"busy: {slots.limit} requests are already running or waiting; retry shortly")
        future = pool.submit(predict_upload, by_name[name], data, filename, max_pixels=max_pixels)
        future.add_done_callback(slots.give)
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), timeout_s)
        except asyncio.TimeoutError:
            return error(504, f"the prediction took over {timeout_s:g} s (the server's --timeout-s)")
        except BadUpload as e:
            return error(e.status, str(e))
        except ValueError as e:  # archzoo's UserError and Pillow's decoding complaints: about the input
            return error(400, f"field '{FIELD}': {e}")
        except Exception as e:  # a bug, not the upload's fault: JSON still, and the worker lives on
            log.exception("archzoo serve: prediction failed")
            return error(500, f"internal error ({type(e).__name__}): {e}")

    return app
