"""The tiny trained model behind a real uvicorn server, shared by the API and page tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from live_server import MAX_SECONDS, MAX_UPLOAD_BYTES, running_server

from emovision.predict import Recognizer
from emovision.serve import create_app


@pytest.fixture(scope="session")
def recognizer(trained_model) -> Recognizer:
    return Recognizer.load(trained_model.checkpoint)


@pytest.fixture(scope="session")
def server_url(recognizer) -> Iterator[str]:
    """Base URL of the server; limits: 400 kB uploads, 12 s recordings, 2 predictions at once."""
    app = create_app(recognizer, max_upload_bytes=MAX_UPLOAD_BYTES, max_seconds=MAX_SECONDS, concurrency=2)
    with running_server(app) as url:
        yield url
