"""The web page and REST API of ``emovision serve`` (FastAPI + uvicorn).

The defaults live here so that the command line can show them without importing FastAPI;
``create_app`` and ``serve`` are imported from :mod:`emovision.serve.app` on first use.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 32.0
DEFAULT_MAX_SECONDS = 300.0
DEFAULT_CONCURRENCY = 1
DEFAULT_MAX_SPEAKERS = 1000
DEFAULT_SPEAKER_TTL = 3600.0

__all__ = ["create_app", "serve"]


def __getattr__(name: str):
    if name in __all__:
        from emovision.system import require

        require("fastapi", "serve", "emovision serve")
        require("uvicorn", "serve", "emovision serve")
        require("python_multipart", "serve", "emovision serve (file uploads)")
        from emovision.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'emovision.serve' has no attribute {name!r}")
