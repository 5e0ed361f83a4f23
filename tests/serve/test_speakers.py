"""Speaker keys on a real server: each key's statistics are its own, bounded, deletable, checked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from live_server import post_file, running_server

from emovision import Recognizer
from emovision.inference.enrolment import Enrolment
from emovision.serve import create_app
from emovision.serve.speakers import SpeakerStore


@pytest.fixture(scope="module")
def normalised(normalised_run) -> tuple[Recognizer, list]:
    out, _, model = normalised_run
    return Recognizer.load(out / "best.pth"), model.test_wavs


@pytest.fixture(scope="module")
def server_url(normalised):
    app = create_app(normalised[0], concurrency=2, max_speakers=3)
    with running_server(app) as url:
        yield url


def test_each_key_is_scored_with_its_own_earlier_uploads_only(server_url, normalised):
    recognizer, wavs = normalised
    assert httpx.get(f"{server_url}/api/health").json()["speaker_normalised"] is True
    first = post_file(server_url, wavs[0], speaker="alice").json()
    assert first["speaker"] == {"mode": "cold", "recordings": 0, "seconds": 0.0}
    other = post_file(server_url, wavs[5], speaker="bob").json()
    assert other["speaker"]["recordings"] == 0  # alice's upload is not bob's
    cold = recognizer.with_speaker(recognizer.new_enrolment()).predict(wavs[5])
    assert other["probabilities"] == pytest.approx(cold.probabilities, abs=1e-6)
    second = post_file(server_url, wavs[5], speaker="alice").json()
    assert second["speaker"] == {"mode": "enrolled", "recordings": 1, "seconds": 2.0}
    reference = recognizer.with_speaker(recognizer.new_enrolment())
    reference.adapt([wavs[0]])
    assert second["probabilities"] == pytest.approx(reference.predict(wavs[5]).probabilities, abs=1e-6)
    assert second["probabilities"] != pytest.approx(other["probabilities"], abs=1e-6)
    keyless = post_file(server_url, wavs[5]).json()
    assert keyless["speaker"]["mode"] == "cold"
    assert keyless["probabilities"] == pytest.approx(other["probabilities"], abs=1e-6)


def test_keys_are_deleted_bounded_and_checked(server_url, normalised):
    _, wavs = normalised
    assert post_file(server_url, wavs[1], speaker="carol").status_code == 200
    assert httpx.delete(f"{server_url}/api/speakers/carol").status_code == 200
    assert httpx.delete(f"{server_url}/api/speakers/carol").status_code == 404
    assert post_file(server_url, wavs[1], speaker="carol").json()["speaker"]["recordings"] == 0
    for key in ("k1", "k2", "k3"):  # the store holds three: carol is dropped, never an error
        assert post_file(server_url, wavs[2], speaker=key).status_code == 200
    assert httpx.delete(f"{server_url}/api/speakers/carol").status_code == 404
    assert httpx.delete(f"{server_url}/api/speakers/k1").status_code == 200
    too_long = post_file(server_url, wavs[2], speaker="x" * 129)
    assert too_long.status_code == 422 and "128" in too_long.json()["detail"]
    control = post_file(server_url, wavs[2], speaker="a\tb")
    assert control.status_code == 422 and "control characters" in control.json()["detail"]


def test_concurrent_uploads_under_many_keys_keep_count(normalised):
    recognizer, wavs = normalised
    app = create_app(recognizer, concurrency=2, max_speakers=50)
    with running_server(app) as url:
        keys = [f"speaker-{i}" for i in range(6)]
        with ThreadPoolExecutor(6) as pool:
            codes = list(
                pool.map(lambda i: post_file(url, wavs[i % 4], speaker=keys[i % 6]).status_code, range(24))
            )
        assert codes == [200] * 24
        counts = [post_file(url, wavs[0], speaker=key).json()["speaker"]["recordings"] for key in keys]
        assert counts == [4] * 6


def test_the_store_expires_idle_keys_and_drops_the_least_recently_used():
    now = [0.0]
    store = SpeakerStore(lambda: Enrolment.empty(1), max_speakers=2, ttl_seconds=10, clock=lambda: now[0])
    a = store.get("a")
    store.get("b")
    assert store.get("a") is a  # a is now the most recently used
    store.get("c")
    assert len(store) == 2 and not store.delete("b") and store.get("a") is a
    now[0] = 11.0
    assert len(store) == 0
