"""The server's speaker keys: what it knows of each speaker, in memory only, bounded and expiring.

``POST /api/predict?speaker=KEY`` scores an upload with the statistics of the recordings uploaded
before under ``KEY`` (none: the cold mode), then adds the upload to them. Keys are held in memory
only, never written anywhere: at most ``max_speakers`` (the least recently used is dropped to make
room for a new one, never an error) and each for ``ttl_seconds`` after its last use.
``DELETE /api/speakers/KEY`` forgets one.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from emovision.errors import EmovisionError
from emovision.inference.enrolment import Enrolment

MAX_KEY_LENGTH = 128


def check_key(key: str) -> str:
    """``key`` when it is a usable speaker key (1–128 printable characters), else :class:`EmovisionError`."""
    if not key or len(key) > MAX_KEY_LENGTH:
        raise EmovisionError(f"a speaker key must hold 1 to {MAX_KEY_LENGTH} characters, got {len(key)}")
    if not key.isprintable():
        raise EmovisionError("a speaker key must not hold control characters")
    return key


class SpeakerStore:
    """Enrolments by key, least recently used first; thread-safe."""

    def __init__(
        self,
        factory: Callable[[], Enrolment],
        max_speakers: int,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_speakers < 1 or ttl_seconds <= 0:
            raise EmovisionError("--max-speakers must be at least 1 and --speaker-ttl positive")
        self._factory = factory
        self.max_speakers = max_speakers
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._entries: OrderedDict[str, tuple[Enrolment, float]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def get(self, key: str) -> Enrolment:
        """The enrolment of ``key``, created empty when unknown (dropping the least recently used key
        when the store is full)."""
        with self._lock:
            self._expire()
            entry = self._entries.pop(key, None)
            enrolment = entry[0] if entry is not None else self._factory()
            self._entries[key] = (enrolment, self._clock())
            while len(self._entries) > self.max_speakers:
                self._entries.popitem(last=False)
            return enrolment

    def delete(self, key: str) -> bool:
        """Forget ``key``; whether it was known."""
        with self._lock:
            self._expire()
            return self._entries.pop(key, None) is not None

    def _expire(self) -> None:
        limit = self._clock() - self.ttl_seconds
        while self._entries and next(iter(self._entries.values()))[1] < limit:
            self._entries.popitem(last=False)
