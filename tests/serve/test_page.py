"""End to end: the real page in headless Chromium (Debian's ``chromium``, driven by Playwright).

Chromium is installed by ``make browser`` (a prerequisite of ``make test``); without it these
tests fail with that hint rather than being skipped.
"""

from __future__ import annotations

import base64
import io
import shutil
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import soundfile as sf
from live_server import post_audio, serving
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from emovision import Recognizer

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
COUNT_PAINTED = """id => {
    const canvas = document.getElementById(id);
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let painted = 0;
    for (let i = 3; i < pixels.length; i += 4) painted += pixels[i] > 0 ? 1 : 0;
    return [canvas.width, canvas.height, painted];
}"""


@pytest.fixture(scope="module")
def server_url(recognizer) -> Iterator[str]:
    with serving(recognizer) as url:
        yield url


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    if not shutil.which(CHROMIUM):
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with sync_playwright() as driver:
        yield driver


def _launch(playwright: Playwright, *extra: str) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=[*ARGS, *extra], timeout=60_000)


def _open(browser: Browser, url: str) -> tuple[Page, list[str]]:
    page = browser.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("body[data-state=ready]")
    return page, errors


def _shown(page: Page) -> dict:
    rows = page.eval_on_selector_all(
        "#probabilities .row", "rows => rows.map(row => [row.dataset.class, Number(row.dataset.probability)])"
    )
    return {
        "emotion": page.text_content("#emotion"),
        "confidence": page.inner_text("#confidence"),
        "bars": rows,
    }


def _api(url: str, name: str, data: bytes, **params) -> dict:
    response = post_audio(url, name, data, **params)
    assert response.status_code == 200, response.text
    return response.json()


def test_uploaded_emodb_file_shows_the_apis_answer(playwright, server_url, recognizer, emodb_wavs):
    browser = _launch(playwright)
    try:
        page, errors = _open(browser, server_url)
        assert "alexnet_gap" in page.inner_text("#model")
        wav = emodb_wavs[150]
        page.set_input_files("#file", str(wav))
        page.wait_for_selector("body[data-state=done]")
        shown = _shown(page)
        answer = _api(server_url, wav.name, wav.read_bytes())
        assert shown["emotion"] == answer["emotion"]
        assert shown["confidence"] == f"{100 * answer['confidence']:.1f} %"
        assert [name for name, _ in shown["bars"]] == recognizer.classes
        assert dict(shown["bars"]) == pytest.approx(answer["probabilities"], abs=1e-9)
        assert page.evaluate(COUNT_PAINTED, "spectrogram") == [201, 128, 201 * 128]
        width, height, painted = page.evaluate(COUNT_PAINTED, "timeline")
        assert painted > 0.3 * width * height
        assert wav.name in page.inner_text("#source") and "3 segment(s)" in page.inner_text("#source")
        plain = page.evaluate(CANVAS_PIXELS, "spectrogram")
        page.check("#explain")
        assert "Where the decision for " + answer["emotion"] in page.inner_text("#spectrogram-note")
        assert "(grad-cam)" in page.inner_text("#spectrogram-note")
        assert page.evaluate(CANVAS_PIXELS, "spectrogram") != plain  # the map is laid over it
        page.uncheck("#explain")
        assert page.evaluate(CANVAS_PIXELS, "spectrogram") == plain
        turns = _api(server_url, wav.name, wav.read_bytes(), turns="true", min_confidence="0.4")["turns"]
        unsure = sum(turn["emotion"] == "uncertain" for turn in turns)
        assert f"{len(turns)} speech turn(s), {unsure} uncertain" in page.inner_text("#turns-note")
        width, height, painted = page.evaluate(COUNT_PAINTED, "turns")
        assert painted > 0.3 * width * height  # one turn over most of a 2-s recording

        page.set_input_files(
            "#file", files=[{"name": "notes.wav", "mimeType": "audio/wav", "buffer": b"oops"}]
        )
        page.wait_for_selector("body[data-state=error]")
        assert "notes.wav: unreadable audio" in page.inner_text("#status")
        assert not [e for e in errors if "422" not in e], errors
    finally:
        browser.close()


CANVAS_PIXELS = """(id) => {
    const canvas = document.getElementById(id);
    return canvas.toDataURL();
}"""

RECORDED_WAV = """async () => {
    const response = await fetch(document.getElementById("playback").src);
    const bytes = new Uint8Array(await response.arrayBuffer());
    let text = "";
    for (const byte of bytes) text += String.fromCharCode(byte);
    return btoa(text);
}"""


def test_microphone_recording_is_sent_as_wav(playwright, server_url, emodb_wavs, tmp_path):
    """Chromium's fake microphone plays a real emoDB file; the page records, encodes WAV, uploads.

    The WAV checked is the blob the page uploaded (also the one it plays back).
    """
    source = tmp_path / "microphone.wav"
    samples, rate = sf.read(emodb_wavs[60], dtype="int16")
    sf.write(source, samples, rate, subtype="PCM_16")
    browser = _launch(
        playwright,
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
        f"--use-file-for-fake-audio-capture={source}",
    )
    try:
        page, errors = _open(browser, server_url)
        with page.expect_request(lambda request: "/api/predict" in request.url) as sent:
            page.click("#record")
            page.wait_for_selector("body[data-state=recording]")
            page.wait_for_timeout(1800)
            page.click("#record")
        page.wait_for_selector("body[data-state=done]")
        assert sent.value.method == "POST"
        wav = base64.b64decode(page.evaluate(RECORDED_WAV))
        audio, audio_rate = sf.read(io.BytesIO(wav), dtype="float32")
        assert sf.info(io.BytesIO(wav)).subtype == "PCM_16" and audio.ndim == 1
        assert 1.0 < audio.size / audio_rate < 4.0
        assert np.sqrt(np.mean(audio**2)) > 1e-3
        assert page.get_attribute("#playback", "src").startswith("blob:")
        assert _shown(page)["emotion"] == _api(server_url, "recording.wav", wav)["emotion"]
        assert not errors, errors
    finally:
        browser.close()


def test_a_tab_enrols_its_speaker_and_can_start_over(playwright, normalised_run):
    """With a speaker-normalised model the page sends one key per tab: the second upload is scored
    with the first (as the API would score it), and "start over" makes the next upload cold again."""
    out, _, model = normalised_run
    recognizer = Recognizer.load(out / "best.pth")
    first, second = model.test_wavs[:2]
    browser = _launch(playwright)
    try:
        with serving(recognizer) as url:
            page, errors = _open(browser, url)
            assert page.is_visible("#speaker") and "no recording yet" in page.inner_text("#enrolled")
            page.set_input_files("#file", str(first))
            page.wait_for_selector("body[data-state=done]")
            assert "1 recording(s) enrolled; this recording was scored by itself" in page.inner_text(
                "#enrolled"
            )
            page.set_input_files("#file", str(second))
            page.wait_for_selector("body[data-state=done]")
            text = page.inner_text("#enrolled")
            assert (
                "2 recording(s) enrolled" in text and "normalised by 1 earlier recording(s) (2.0 s)" in text
            )
            reference = recognizer.with_speaker(recognizer.new_enrolment())
            reference.adapt([first])
            expected = reference.predict(second).probabilities
            assert dict(_shown(page)["bars"]) == pytest.approx(expected, abs=1e-6)
            key = page.evaluate("() => sessionStorage.getItem('emovision-speaker')")
            page.click("#start-over")
            page.wait_for_function(
                "() => document.getElementById('enrolled').textContent.includes('no recording')"
            )
            assert httpx.delete(f"{url}/api/speakers/{key}").status_code == 404  # forgotten on the server
            page.set_input_files("#file", str(second))
            page.wait_for_selector("body[data-state=done]")
            assert "this recording was scored by itself" in page.inner_text("#enrolled")
            assert not errors, errors
    finally:
        browser.close()
