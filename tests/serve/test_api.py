"""HTTP tests of the REST API against a real uvicorn server on loopback."""

from __future__ import annotations

import base64
import copy
import io
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import soundfile as sf
from live_server import MAX_SECONDS, MAX_UPLOAD_BYTES, post_audio, running_server, serving

from emovision import Recognizer
from emovision.cli import build_parser
from emovision.serve import create_app


@pytest.fixture(scope="module")
def server_url(recognizer) -> Iterator[str]:
    with serving(recognizer) as url:
        yield url


def _wav_bytes(samples: np.ndarray, rate: int, fmt: str = "WAV") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt)
    return buffer.getvalue()


def test_health_reports_the_model_and_limits(server_url, recognizer):
    body = httpx.get(f"{server_url}/api/health").json()
    assert body["status"] == "ok" and body["backend"] == "torch" and body["model"] == "alexnet_gap"
    assert body["classes"] == recognizer.classes and body["sample_rate"] == 16000
    assert body["max_upload_bytes"] == MAX_UPLOAD_BYTES and body["max_seconds"] == MAX_SECONDS


def test_predict_answers_like_the_python_api(server_url, recognizer, emodb_wavs):
    wav = emodb_wavs[101]
    response = post_audio(server_url, wav.name, wav.read_bytes())
    assert response.status_code == 200
    body = response.json()
    expected = recognizer.predict(wav).to_dict()
    assert body["file"] == wav.name and body["emotion"] == expected["emotion"]
    assert body["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)
    assert body["duration"] == pytest.approx(2.0, abs=1e-3) and body["spectrogram"] is None
    assert len(body["segments"]) == len(expected["segments"]) == 3
    for got, want in zip(body["segments"], expected["segments"], strict=True):
        assert (got["start"], got["end"], got["emotion"]) == (want["start"], want["end"], want["emotion"])


def test_spectrogram_is_the_feature_the_model_saw(server_url, recognizer, emodb_wavs):
    wav = emodb_wavs[102]
    body = post_audio(server_url, wav.name, wav.read_bytes(), spectrogram="true").json()
    image = body["spectrogram"]
    assert (image["width"], image["height"], image["kind"]) == (201, 128, "logmelspec")
    levels = np.frombuffer(base64.b64decode(image["data"]), dtype=np.uint8).reshape(128, 201)
    features = recognizer.predict(wav, keep_features=True).features[0]
    expected = np.round(255 * np.clip((features + 80) / 80, 0, 1))[::-1]
    assert np.abs(levels.astype(int) - expected).max() <= 1
    assert image["seconds"] == pytest.approx(2.01)


def test_long_recording_gets_a_timeline(server_url, emodb_wavs):
    """8 s of real speech at 8 kHz (small upload): 9 segments with increasing times."""
    speech = np.concatenate([sf.read(wav, dtype="float32")[0] for wav in emodb_wavs[200:204]])
    data = _wav_bytes(speech[::2], 11025)
    body = post_audio(server_url, "long.wav", data).json()
    starts = [segment["start"] for segment in body["segments"]]
    assert starts == [float(i) for i in range(9)] and body["segments"][-1]["end"] == pytest.approx(8.0)


def test_turns_of_a_conversation(server_url, recognizer, emodb_wavs):
    """Three utterances with 0.8 s of room noise between them: the turns the Python API finds."""
    rng = np.random.default_rng(0)
    rate = sf.info(emodb_wavs[200]).samplerate
    parts = []
    for wav in emodb_wavs[200:203]:
        parts += [
            rng.standard_normal(int(0.8 * rate)).astype(np.float32) * 1e-4,
            sf.read(wav, dtype="float32")[0],
        ]
    data = _wav_bytes(np.concatenate(parts), rate)
    body = post_audio(server_url, "talk.wav", data, turns="true").json()
    expected = recognizer.predict_turns(data, name="talk.wav")
    assert [(t["start"], t["emotion"]) for t in body["turns"]] == [
        (round(t.start, 3), t.emotion) for t in expected.turns
    ]
    assert len(body["turns"]) == 3 and body["emotion"] in recognizer.classes
    unsure = post_audio(server_url, "talk.wav", data, turns="true", min_confidence="1").json()
    assert {t["emotion"] for t in unsure["turns"]} == {"uncertain"}
    assert post_audio(server_url, "talk.wav", data).json()["turns"] is None
    refused = post_audio(server_url, "talk.wav", data, turns="true", min_confidence="2")
    assert refused.status_code == 422 and "min_confidence" in refused.text
    quiet = _wav_bytes(rng.standard_normal(32000) * 1e-3, 16000)
    none = post_audio(server_url, "quiet.wav", quiet, turns="true")
    assert none.status_code == 422 and "no speech found" in none.json()["detail"]


def _refusals(emodb_wavs) -> list[tuple[str, dict, int, str]]:
    wav = emodb_wavs[0].read_bytes()
    speech = np.concatenate([sf.read(w, dtype="float32")[0] for w in emodb_wavs[:8]])
    return [
        ("empty file", {"files": {"file": ("e.wav", b"", "audio/wav")}}, 400, "empty"),
        ("corrupt", {"files": {"file": ("c.wav", wav[:44] + b"\x01" * 500, "audio/wav")}}, 422, "c.wav"),
        ("not audio", {"files": {"file": ("notes.txt", b"hello", "text/plain")}}, 415, "not audio"),
        ("truncated", {"files": {"file": ("t.wav", b"RIFF\x10\x00\x00\x00WAVE", "audio/wav")}}, 422, "unreadable"),
        ("json body", {"json": {"file": "x"}}, 415, "multipart/form-data"),
        ("raw body", {"content": wav, "headers": {"content-type": "audio/wav"}}, 415, "multipart/form-data"),
        ("no field", {"files": {"audio": ("a.wav", wav, "audio/wav")}}, 422, "field 'file'"),
        ("no body", {"headers": {"content-type": "multipart/form-data; boundary=x"}}, 422, "field 'file'"),
        ("too large", {"files": {"file": ("big.wav", wav * 5, "audio/wav")}}, 413, "larger than the limit"),
        ("body too large", {"files": {"file": ("huge.wav", wav * 20, "audio/wav")}}, 413, "larger than the limit"),
        ("too long", {"files": {"file": ("long.wav", _wav_bytes(speech[::4], 5512), "audio/wav")}}, 413, "too long"),
        ("too long to explain", {"files": {"file": ("long.wav", _wav_bytes(speech[::4], 5512), "audio/wav")}, "params": {"explain": "true"}}, 413, "too long"),
        ("silent", {"files": {"file": ("s.wav", _wav_bytes(np.zeros(8000), 8000), "audio/wav")}}, 422, "silent"),
        ("too short", {"files": {"file": ("short.wav", _wav_bytes(np.ones(100) * 0.1, 16000), "audio/wav")}}, 422, "too short"),
    ]  # fmt: skip


def test_bad_requests_get_a_json_4xx_and_the_server_keeps_working(server_url, emodb_wavs):
    for name, request, status, message in _refusals(emodb_wavs):
        response = httpx.post(f"{server_url}/api/predict", timeout=60, **request)
        assert response.status_code == status, (name, response.text)
        assert response.headers["content-type"] == "application/json", name
        assert message in response.json()["detail"], (name, response.json())
    assert httpx.get(f"{server_url}/api/health").status_code == 200
    assert post_audio(server_url, emodb_wavs[0].name, emodb_wavs[0].read_bytes()).status_code == 200


def test_oversized_streamed_body_is_refused_while_reading(server_url):
    """A chunked upload without Content-Length is cut off at the limit, not stored."""
    chunks_sent = 0

    def body():
        nonlocal chunks_sent
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        for _ in range(200):
            chunks_sent += 1
            yield b"\x00" * 50_000

    headers = {"content-type": "multipart/form-data; boundary=b"}
    response = httpx.post(f"{server_url}/api/predict", content=body(), headers=headers, timeout=60)
    assert response.status_code == 413 and "larger than the limit" in response.json()["detail"]


def test_concurrent_clients_get_consistent_answers(server_url, emodb_wavs):
    files = emodb_wavs[300:308]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda wav: post_audio(server_url, wav.name, wav.read_bytes()), files * 2))
    assert all(r.status_code == 200 for r in responses)
    for first, second in zip(responses[:8], responses[8:], strict=True):
        assert first.json() == second.json()


def test_busy_server_answers_503_instead_of_hanging(recognizer, emodb_wavs):
    slow = copy.copy(recognizer)

    def predict_slowly(*args, **kwargs):
        time.sleep(1.5)
        return recognizer.predict(*args, **kwargs)

    slow.predict = predict_slowly
    app = create_app(slow, concurrency=1, queue_timeout=0.3)
    wav = emodb_wavs[5]
    with running_server(app) as url, ThreadPoolExecutor(2) as pool:
        first = pool.submit(post_audio, url, wav.name, wav.read_bytes())
        time.sleep(0.3)
        second = pool.submit(post_audio, url, wav.name, wav.read_bytes())
        answers = sorted([first.result(), second.result()], key=lambda r: r.status_code)
    assert [r.status_code for r in answers] == [200, 503]
    assert answers[1].headers["retry-after"] == "5" and "busy" in answers[1].json()["detail"]


def test_openapi_documents_the_upload(server_url):
    schema = httpx.get(f"{server_url}/openapi.json").json()
    operation = schema["paths"]["/api/predict"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    component = schema["components"]["schemas"][form["$ref"].rsplit("/", 1)[-1]]
    assert "file" in component["required"]
    assert {"200", "413", "415", "422"} <= set(operation["responses"])
    assert "/api/health" in schema["paths"]
    docs = httpx.get(f"{server_url}/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


def test_page_and_assets_are_served(server_url):
    page = httpx.get(server_url)
    assert page.status_code == 200 and 'id="emotion"' in page.text
    for asset in ("app.js", "style.css", "recorder-worklet.js"):
        assert httpx.get(f"{server_url}/static/{asset}").status_code == 200


def test_serve_command_binds_to_localhost_by_default():
    args = build_parser().parse_args(["serve", "model.onnx"])
    assert args.host == "127.0.0.1" and args.port == 8000


def test_explain_returns_the_map_laid_out_as_the_spectrogram(server_url, recognizer, emodb_wavs):
    wav = emodb_wavs[101]
    assert httpx.get(f"{server_url}/api/health").json()["explainable"] is True
    body = post_audio(server_url, wav.name, wav.read_bytes(), explain="true").json()
    expected = recognizer.explain(wav)
    assert body["emotion"] == expected.prediction.label
    assert body["probabilities"] == pytest.approx(expected.prediction.probabilities, abs=1e-6)
    shown = body["explanation"]
    assert shown["method"] == "grad-cam" and shown["explained"] == body["emotion"]
    assert shown["frame_weights"] == pytest.approx(expected.frame_weights.tolist(), abs=1e-5)
    picture = body["spectrogram"]
    assert (shown["map"]["width"], shown["map"]["height"]) == (picture["width"], picture["height"])
    levels = np.frombuffer(base64.b64decode(shown["map"]["data"]), np.uint8).reshape(picture["height"], -1)
    np.testing.assert_allclose(levels, np.round(255 * expected.saliency[::-1]), atol=1)


def test_an_onnx_server_says_it_cannot_explain(trained_model, tmp_path, emodb_wavs):
    from emovision.inference.onnx_export import export_onnx

    onnx = export_onnx(trained_model.checkpoint, tmp_path / "tiny.onnx").path
    with serving(Recognizer.load(onnx)) as url:
        assert httpx.get(f"{url}/api/health").json()["explainable"] is False
        wav = emodb_wavs[101]
        refused = post_audio(url, wav.name, wav.read_bytes(), explain="true")
        assert refused.status_code == 422 and "ONNX model cannot be explained" in refused.json()["detail"]
        assert post_audio(url, wav.name, wav.read_bytes()).status_code == 200
