"""What the request handlers of :mod:`emovision.serve.app` share: the model, the speaker keys,
the limits and the prediction slots."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi.exceptions import HTTPException

from emovision.inference.predict import Recognizer
from emovision.serve.speakers import SpeakerStore


class Slots:
    """``concurrency`` prediction slots: one semaphore per event loop (uvicorn runs one; tests several)."""

    def __init__(self, concurrency: int) -> None:
        self.concurrency = concurrency
        self._by_loop: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def get(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._by_loop:
            self._by_loop[loop] = asyncio.Semaphore(self.concurrency)
        return self._by_loop[loop]

    @asynccontextmanager
    async def hold(self, timeout_seconds: float) -> AsyncIterator[None]:
        """Hold a slot for the block: 503 (``Retry-After: 5``) when none frees within ``timeout_seconds``."""
        semaphore = self.get()
        try:
            await asyncio.wait_for(semaphore.acquire(), timeout_seconds)
        except TimeoutError:
            raise HTTPException(503, "the server is busy: retry later", {"Retry-After": "5"}) from None
        try:
            yield
        finally:
            semaphore.release()


@dataclass(frozen=True)
class ServeState:
    """One application's model and limits.

    ``max_upload_bytes``: largest audio file; ``max_seconds``: longest recording; ``queue_timeout``:
    seconds a request may wait for a slot; ``explain_refusal``: why ``explain=true`` is refused, or
    ``None`` when the model can be explained.
    """

    recognizer: Recognizer
    speakers: SpeakerStore
    slots: Slots
    max_upload_bytes: int
    max_seconds: float
    queue_timeout: float
    explain_refusal: str | None
