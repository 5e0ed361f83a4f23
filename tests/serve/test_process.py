"""``emovision serve`` as a user starts it: its own process, on a checkpoint, an ONNX file and a
speaker-normalised model, answering the page, the API and a speaker key, then stopping on SIGTERM."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from live_server import post_file

from emovision import Recognizer


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def serve_process(model: Path) -> Iterator[str]:
    """``emovision serve MODEL`` in a child process; yields its URL once /api/health answers."""
    port = _free_port()
    command = [sys.executable, "-m", "emovision", "serve", str(model), "--port", str(port)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if child.poll() is not None:
                raise AssertionError(f"serve exited with {child.returncode}: {child.stdout.read()[-2000:]}")
            try:
                if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "serve did not answer within 90 s"
            time.sleep(0.2)
        yield url
    finally:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout=30)
        finally:
            child.kill()
    # uvicorn shuts down gracefully, then re-raises the signal so the exit status tells it
    log = child.stdout.read()
    assert child.returncode in (0, -signal.SIGTERM) and "Finished server process" in log, log[-2000:]


def _post(url: str, wav: Path, **params) -> dict:
    response = post_file(url, wav, **params)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def onnx_file(trained_model, tmp_path_factory) -> Path:
    from emovision.inference.onnx_export import export_onnx

    return export_onnx(trained_model.checkpoint, tmp_path_factory.mktemp("onnx") / "tiny.onnx").path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["checkpoint", "onnx"])
def test_serve_answers_the_page_and_the_api_as_the_python_api(kind, trained_model, onnx_file):
    model = trained_model.checkpoint if kind == "checkpoint" else onnx_file
    wav = trained_model.test_wavs[3]
    expected = Recognizer.load(model).predict(wav)
    with serve_process(model) as url:
        health = httpx.get(f"{url}/api/health").json()
        assert health["backend"] == ("torch" if kind == "checkpoint" else "onnx")
        assert health["explainable"] is (kind == "checkpoint")
        page = httpx.get(url)
        assert page.status_code == 200 and '<canvas id="spectrogram"' in page.text
        assert httpx.get(f"{url}/static/app.js").status_code == 200
        body = _post(url, wav)
        assert body["emotion"] == expected.label
        assert body["probabilities"] == pytest.approx(expected.probabilities, abs=1e-5)


@pytest.mark.slow
def test_serve_enrols_a_speaker_key_on_a_speaker_normalised_model(normalised_run):
    run, _, tiny = normalised_run
    first, second = tiny.test_wavs[:2]
    reference = Recognizer.load(run / "best.pth")
    cold = reference.predict(second)
    reference.adapt([first])
    enrolled = reference.predict(second)
    with serve_process(run / "best.pth") as url:
        assert httpx.get(f"{url}/api/health").json()["speaker_normalised"] is True
        assert _post(url, first, speaker="tab-1")["speaker"] == {
            "mode": "cold",
            "recordings": 0,
            "seconds": 0.0,
        }
        answer = _post(url, second, speaker="tab-1")
        assert answer["speaker"]["mode"] == "enrolled" and answer["speaker"]["recordings"] == 1
        assert answer["probabilities"] == pytest.approx(enrolled.probabilities, abs=1e-5)
        alone = _post(url, second)
        assert alone["probabilities"] == pytest.approx(cold.probabilities, abs=1e-5)
        assert httpx.delete(f"{url}/api/speakers/tab-1").status_code == 200
        assert httpx.delete(f"{url}/api/speakers/tab-1").status_code == 404
