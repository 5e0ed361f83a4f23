"""Run an ASGI app with a real uvicorn server on a free loopback port, in a background thread; uploads to
``/api/predict``.

A helper module, not a ``conftest.py``: a second conftest module would shadow the top-level one
for the tests that ``from conftest import`` its helpers.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from emovision.inference.predict import Recognizer
from emovision.serve import create_app

MAX_UPLOAD_BYTES = 400_000
MAX_SECONDS = 12.0


@contextmanager
def running_server(app) -> Iterator[str]:
    """Serve ``app`` until the block ends; yields the base URL ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    try:
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serving(recognizer: Recognizer) -> Iterator[str]:
    """The test server: ``recognizer`` behind 400 kB uploads, 12 s recordings, 2 predictions at once."""
    app = create_app(recognizer, max_upload_bytes=MAX_UPLOAD_BYTES, max_seconds=MAX_SECONDS, concurrency=2)
    with running_server(app) as url:
        yield url


def post_audio(url: str, name: str, data: bytes, content_type: str = "audio/wav", **params) -> httpx.Response:
    """``POST url/api/predict`` with one uploaded file and query ``params``."""
    files = {"file": (name, data, content_type)}
    return httpx.post(f"{url}/api/predict", files=files, params=params, timeout=60)


def post_file(url: str, path: Path, **params) -> httpx.Response:
    """:func:`post_audio` of the file at ``path``, as WAV."""
    return post_audio(url, path.name, path.read_bytes(), **params)
