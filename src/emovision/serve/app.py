"""FastAPI application: the page at ``/``, ``POST /api/predict``, ``DELETE /api/speakers/KEY``,
``GET /api/health``, docs at ``/docs``.

A speaker-normalised model scores an upload by itself (the cold mode) unless the request names a
speaker key (``?speaker=KEY``): then by the statistics of the recordings uploaded before under that
key, after which the upload joins them (:mod:`emovision.serve.speakers`; memory only, bounded).
``?explain=true`` adds where in the spectrogram the decision came from (:mod:`emovision.inference.explain`);
a model that cannot be explained (ONNX) answers it with 422, and ``/api/health`` says which.

Uploads are multipart forms with the audio in the field ``file``. Every refusal is a 4xx
JSON body ``{"detail": "..."}``: 413 for a body over the upload limit (checked from
``Content-Length`` before reading and while reading a chunked body) or a recording over
the duration limit (checked from the file header before decoding), 415 for a request that
is not ``multipart/form-data`` or a part that is not audio, 400 for an empty file, 422
for a missing field or audio that cannot be decoded or used, 503 when the inference
queue stays full for ``queue_timeout`` seconds. At most ``concurrency`` predictions run
at once, in worker threads, so the event loop keeps answering.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import HTTPException, RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import emovision
from emovision.errors import AudioError, EmovisionError, TooLongError
from emovision.inference.predict import Recognizer
from emovision.inference.results import Prediction, TurnPrediction
from emovision.serve import (
    DEFAULT_CONCURRENCY,
    DEFAULT_HOST,
    DEFAULT_MAX_SECONDS,
    DEFAULT_MAX_SPEAKERS,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    DEFAULT_SPEAKER_TTL,
)
from emovision.serve.speakers import MAX_KEY_LENGTH, SpeakerStore, check_key
from emovision.serve.state import ServeState, Slots

if TYPE_CHECKING:
    from emovision.inference.explain import Explanation  # imports torch, which an ONNX server does without

STATIC = Path(__file__).resolve().parent / "static"
MULTIPART_OVERHEAD = 64 * 1024
SPECTROGRAM_MAX_COLUMNS = 1200
AUDIO_PART_TYPES = ("application/octet-stream", "application/ogg", "video/ogg", "")


class SegmentOut(BaseModel):
    start: float = Field(description="segment start, seconds")
    end: float = Field(description="segment end, seconds (clipped to the recording)")
    emotion: str
    probabilities: dict[str, float]


class SpectrogramOut(BaseModel):
    """Channel 0 of the feature the model saw, as 8-bit grey levels (0 = floor, 255 = 0 dB)."""

    width: int = Field(description="columns (frames, max-pooled when the recording is long)")
    height: int = Field(description="rows: frequency bins or mel bands, the highest first")
    data: str = Field(description="base64 of height × width uint8 values, row by row")
    seconds: float = Field(description="duration covered by the columns, seconds")
    floor_db: float = Field(description="dB level of value 0 (value 255 is 0 dB)")
    kind: str = Field(description="feature type")


class TurnOut(BaseModel):
    start: float = Field(description="turn start, seconds")
    end: float = Field(description="turn end, seconds")
    emotion: str = Field(description="the most probable class, or 'uncertain' below min_confidence")
    confidence: float = Field(description="probability of the most probable class")
    probabilities: dict[str, float]


class SpeakerOut(BaseModel):
    mode: str = Field(description="cold (the recording by itself) or enrolled")
    recordings: int = Field(description="recordings behind the speaker statistics used")
    seconds: float = Field(description="seconds of audio behind them")


class MapOut(BaseModel):
    """A saliency map as 8-bit levels (0: not salient, 255: the most salient), laid out as the spectrogram."""

    width: int = Field(description="columns, as the spectrogram's (max-pooled alike when long)")
    height: int = Field(description="rows, the highest frequency first")
    data: str = Field(description="base64 of height × width uint8 values, row by row")


class ExplanationOut(BaseModel):
    method: str = Field(description="attention (the model's own weights) or grad-cam")
    explained: str = Field(description="the class the map is for (the predicted one)")
    frame_seconds: float = Field(description="seconds per frame of frame_weights")
    frame_weights: list[float] = Field(description="per frame: the map summed over frequency, summing to 1")
    map: MapOut


class PredictionOut(BaseModel):
    file: str
    emotion: str
    confidence: float
    probabilities: dict[str, float]
    duration: float | None = Field(description="seconds")
    segments: list[SegmentOut]
    spectrogram: SpectrogramOut | None = None
    turns: list[TurnOut] | None = Field(default=None, description="speech turns, when asked for")
    speaker: SpeakerOut | None = Field(default=None, description="speaker-normalised models: how")
    explanation: ExplanationOut | None = Field(default=None, description="where the decision came from")


class HealthOut(BaseModel):
    status: str
    version: str
    model: str
    backend: str
    classes: list[str]
    sample_rate: int | None
    max_upload_bytes: int
    max_seconds: float
    speaker_normalised: bool = Field(description="whether speaker keys change the scores")
    explainable: bool = Field(description="whether explain=true is available (not for ONNX models)")


class _BodyLimit:
    """ASGI middleware: a POST body over ``max_bytes`` is answered 413 JSON without being stored."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _drain(receive, int(length))
            response = JSONResponse({"detail": self._message()}, status_code=413)
            await response(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, self._message())
            return message

        await self.app(scope, limited, send)

    def _message(self) -> str:
        return f"the upload is larger than the limit of {_megabytes(self.max_bytes - MULTIPART_OVERHEAD)}"


async def _drain(receive: Receive, length: int, cap: int = 256 * 1024 * 1024) -> None:
    """Read and drop up to ``cap`` bytes of a refused body, so the client gets to read the answer."""
    seen = 0
    while seen < min(length, cap):
        message = await receive()
        if message["type"] != "http.request":
            return
        seen += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


def create_app(
    model: Recognizer | str | Path,
    max_upload_bytes: int = int(DEFAULT_MAX_UPLOAD_MB * 1024 * 1024),
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    queue_timeout: float = 60.0,
    device: str = "cpu",
    fusion: str = "off",
    max_speakers: int = DEFAULT_MAX_SPEAKERS,
    speaker_ttl: float = DEFAULT_SPEAKER_TTL,
) -> FastAPI:
    """The application around ``model`` (a :class:`Recognizer`, or the path of a checkpoint/ONNX file).

    ``max_upload_bytes``: largest audio file; ``max_seconds``: longest recording;
    ``concurrency``: predictions at once; ``queue_timeout``: seconds a request may wait;
    ``fusion``: a cv folder's late fusion (see :meth:`Recognizer.load`); ``max_speakers`` and
    ``speaker_ttl`` (seconds): the bound and the lifetime of speaker keys.
    """
    if max_upload_bytes < 1 or max_seconds <= 0 or concurrency < 1 or queue_timeout <= 0:
        raise EmovisionError("upload limit, duration limit, concurrency and queue timeout must be positive")
    recognizer = _servable(model, device, fusion)
    app = FastAPI(
        title="emovision",
        version=emovision.__version__,
        description="Speech emotion recognition: upload a recording, get the emotion.",
        form_limits={"max_files": 1, "max_fields": 4},
    )
    app.add_middleware(_BodyLimit, max_bytes=max_upload_bytes + MULTIPART_OVERHEAD)
    app.state.recognizer = recognizer
    app.state.speakers = SpeakerStore(recognizer.new_enrolment, max_speakers, speaker_ttl)
    state = ServeState(
        recognizer=recognizer,
        speakers=app.state.speakers,
        slots=Slots(concurrency),
        max_upload_bytes=max_upload_bytes,
        max_seconds=max_seconds,
        queue_timeout=queue_timeout,
        explain_refusal=_why_not_explainable(recognizer),
    )
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(AudioError, _audio_error)
    app.add_exception_handler(EmovisionError, _user_error)
    _add_routes(app, Handlers(state))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def _servable(model: Recognizer | str | Path, device: str, fusion: str) -> Recognizer:
    """``model`` (loaded when it is a path) if it can score uploads, else :class:`EmovisionError`."""
    recognizer = (
        model if isinstance(model, Recognizer) else Recognizer.load(model, device=device, fusion=fusion)
    )
    if recognizer.config is None:
        raise EmovisionError(
            "this model's feature configuration is unknown (trained on a legacy pickle): "
            "it cannot be served on audio"
        )
    if recognizer.fusion_speaker_normalised:
        raise EmovisionError(
            "this fusion's linear model takes speaker-normalised functionals, which one upload cannot "
            "provide: serve it with --fusion off"
        )
    return recognizer


def _add_routes(app: FastAPI, handlers: Handlers) -> None:
    """Route the page, the health check, forgetting a speaker key and predicting to ``handlers``."""
    app.get("/", include_in_schema=False)(handlers.page)
    app.get("/api/health", response_model=HealthOut, summary="the model and the limits")(handlers.health)
    app.delete(
        "/api/speakers/{key}",
        summary="forget what the server knows of a speaker key",
        responses={404: {"description": "unknown key"}},
    )(handlers.forget)
    app.post(
        "/api/predict",
        response_model=PredictionOut,
        summary="the emotion of an uploaded recording",
        dependencies=[Depends(_require_multipart)],
        responses={
            code: {"description": text}
            for code, text in (
                (400, "empty file"),
                (413, "file or recording too large"),
                (415, "not multipart/form-data, or not audio"),
                (422, "missing field or unusable audio"),
                (503, "too busy, retry later"),
            )
        },
    )(handlers.predict)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming the field ``file`` when it is missing, else every invalid parameter and why."""
    missing = [error for error in exc.errors() if error.get("type") == "missing"]
    if missing and missing[0].get("loc", [None])[-1] == "file":
        message = "no audio: send it as multipart/form-data in the field 'file'"
    else:
        message = "; ".join(f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg')}" for e in exc.errors())
    return JSONResponse({"detail": message}, status_code=422)


async def _audio_error(request: Request, exc: AudioError) -> JSONResponse:
    """413 for a recording over the duration limit, 422 for other unusable audio."""
    status = 413 if isinstance(exc, TooLongError) else 422
    return JSONResponse({"detail": str(exc)}, status_code=status)


async def _user_error(request: Request, exc: EmovisionError) -> JSONResponse:
    """422 for any other error the library raises on a request (a bad speaker key, say)."""
    return JSONResponse({"detail": str(exc)}, status_code=422)


class Handlers:
    """The routes' handlers, around the model and limits they share."""

    def __init__(self, state: ServeState) -> None:
        self.state = state

    async def page(self) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def health(self) -> HealthOut:
        recognizer = self.state.recognizer
        return HealthOut(
            status="ok",
            version=emovision.__version__,
            model=str(recognizer.model.get("name", "")),
            backend=recognizer.backend,
            classes=recognizer.classes,
            sample_rate=recognizer.config.sample_rate,
            max_upload_bytes=self.state.max_upload_bytes,
            max_seconds=self.state.max_seconds,
            speaker_normalised=recognizer.speaker_normalised,
            explainable=self.state.explain_refusal is None,
        )

    async def forget(self, key: str) -> dict:
        if not self.state.speakers.delete(check_key(key)):
            raise HTTPException(404, "no such speaker key (never used, expired or dropped)")
        return {"deleted": key}

    async def predict(
        self,
        file: Annotated[UploadFile, File(description="audio: WAV, FLAC, OGG or MP3")],
        spectrogram: Annotated[bool, Query(description="also return the spectrogram the model saw")] = False,
        turns: Annotated[
            bool, Query(description="also find the speech turns, each with its emotion")
        ] = False,
        min_confidence: Annotated[
            float, Query(ge=0.0, le=1.0, description="turns below this top probability are 'uncertain'")
        ] = 0.0,
        speaker: Annotated[
            str | None,
            Query(
                max_length=MAX_KEY_LENGTH,
                description="a key for the speaker: the upload is scored with the statistics of the "
                "earlier uploads under the same key, then joins them",
            ),
        ] = None,
        explain: Annotated[
            bool,
            Query(
                description="also return where in the spectrogram the decision came from: a saliency "
                "map laid out as the spectrogram (which is then returned too)"
            ),
        ] = False,
    ) -> PredictionOut:
        if explain and self.state.explain_refusal is not None:
            raise HTTPException(422, self.state.explain_refusal)
        data, name = await _read_upload(file, self.state.max_upload_bytes)
        model, enrol = self._model_for(speaker)
        async with self.state.slots.hold(self.state.queue_timeout):
            found = None
            if turns:
                found = await run_in_threadpool(
                    model.predict_turns,
                    data,
                    name=name,
                    min_confidence=min_confidence,
                    max_seconds=self.state.max_seconds,
                )
            result, explanation = await self._score(model, data, name, spectrogram, explain, enrol)
        return _response(result, self.state.recognizer, found, explanation)

    def _model_for(self, speaker: str | None) -> tuple[Recognizer, bool]:
        """The model to score with under the key ``speaker``, and whether the upload joins its statistics."""
        model = self.state.recognizer
        enrol = speaker is not None and model.speaker_normalised
        if speaker is not None:
            check_key(speaker)
            if enrol:
                model = model.with_speaker(self.state.speakers.get(speaker))
        return model, enrol

    async def _score(
        self, model: Recognizer, data: bytes, name: str, keep_features: bool, explain: bool, enrol: bool
    ) -> tuple[Prediction, Explanation | None]:
        """The prediction for the audio file ``data``, and the explanation of it when ``explain``."""
        max_seconds = self.state.max_seconds
        if explain:
            explanation = await run_in_threadpool(
                model.explain, data, name=name, max_seconds=max_seconds, enrol=enrol
            )
            return explanation.prediction, explanation
        prediction = await run_in_threadpool(
            model.predict, data, name=name, keep_features=keep_features, max_seconds=max_seconds, enrol=enrol
        )
        return prediction, None


async def _read_upload(file: UploadFile, max_upload_bytes: int) -> tuple[bytes, str]:
    """The bytes and the base name of an uploaded audio part: 415 if it is not audio, 400 if empty,
    413 if over ``max_upload_bytes``."""
    content_type = (file.content_type or "").split(";")[0].strip().lower()
    if not (content_type.startswith("audio/") or content_type in AUDIO_PART_TYPES):
        raise HTTPException(415, f"'{file.filename}' is {content_type}, not audio")
    data = await file.read()
    name = Path(file.filename or "upload").name
    if not data:
        raise HTTPException(400, f"'{name}' is empty (0 bytes)")
    if len(data) > max_upload_bytes:
        raise HTTPException(413, f"'{name}' is larger than the limit of {_megabytes(max_upload_bytes)}")
    return data, name


async def _require_multipart(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "multipart/form-data":
        raise HTTPException(
            415,
            f"send multipart/form-data with the audio in the field 'file', not {content_type or 'no type'}",
        )


def _why_not_explainable(recognizer: Recognizer) -> str | None:
    try:
        recognizer.require_explainable()
    except EmovisionError as exc:
        return f"explain=true: {exc}"
    return None


def _response(
    prediction: Prediction,
    recognizer: Recognizer,
    turns: TurnPrediction | None,
    explanation: Explanation | None = None,
) -> PredictionOut:
    body = prediction.to_dict()
    if turns is not None:
        body["turns"] = [turn.to_dict() for turn in turns.turns]
    if prediction.features is not None:
        body["spectrogram"] = _spectrogram(prediction.features, prediction.duration or 0.0, recognizer)
    if explanation is not None:
        image = _image(explanation.saliency)
        body["explanation"] = {
            **explanation.to_dict(),
            "map": {"width": image.shape[1], "height": image.shape[0], "data": _base64(image)},
        }
    return PredictionOut(**body)


def _spectrogram(features: np.ndarray, seconds: float, recognizer: Recognizer) -> dict:
    """Channel 0 of ``features`` ``(C, F, T)`` in dB as an 8-bit image, at most 1200 columns wide."""
    config = recognizer.config
    frames = features.shape[2]
    image = _image(np.clip((features[0] + config.top_db) / config.top_db, 0.0, 1.0))
    return {
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "data": _base64(image),
        "seconds": float(frames * config.hop_ms / 1000 if frames else seconds),
        "floor_db": -float(config.top_db),
        "kind": config.kind,
    }


def _image(levels: np.ndarray) -> np.ndarray:
    """Values ``(F, T)`` in [0, 1] as 8-bit rows, the highest frequency first, at most
    ``SPECTROGRAM_MAX_COLUMNS`` columns (groups of frames max-pooled)."""
    frames = levels.shape[1]
    if frames > SPECTROGRAM_MAX_COLUMNS:
        edges = np.linspace(0, frames, SPECTROGRAM_MAX_COLUMNS + 1).astype(int)
        levels = np.maximum.reduceat(levels, edges[:-1], axis=1)
    return np.round(255 * levels).astype(np.uint8)[::-1]


def _base64(image: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(image).tobytes()).decode("ascii")


def _megabytes(count: int) -> str:
    return f"{count / (1024 * 1024):.1f} MB"


def serve(
    model: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
    max_seconds: float = DEFAULT_MAX_SECONDS,
    concurrency: int = DEFAULT_CONCURRENCY,
    device: str = "cpu",
    fusion: str = "off",
    max_speakers: int = DEFAULT_MAX_SPEAKERS,
    speaker_ttl: float = DEFAULT_SPEAKER_TTL,
) -> None:
    """Load ``model`` and serve the page and the API with uvicorn until interrupted."""
    import uvicorn

    app = create_app(
        model,
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_seconds=max_seconds,
        concurrency=concurrency,
        device=device,
        fusion=fusion,
        max_speakers=max_speakers,
        speaker_ttl=speaker_ttl,
    )
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5)
