"""``archzoo serve``: models behind a web page and a JSON API (FastAPI + uvicorn).

:func:`load_served` loads a model once; :func:`create_app` builds the ASGI app; the page is
``static/index.html``. See docs/serve.md.
"""

from .app import create_app
from .runtime import BadUpload, Served, load_served, predict_upload

__all__ = ["BadUpload", "Served", "create_app", "load_served", "predict_upload"]
