"""``predict``, ``export``, ``serve`` and ``evaluate``: using a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from emovision.cli.common import Command, console, err_console
from emovision.errors import AudioError, EmovisionError
from emovision.files import check_writable_folder

if TYPE_CHECKING:
    from emovision.data.vad import VadOptions
    from emovision.inference.predict import Recognizer
    from emovision.inference.results import Failure, TurnPrediction


def _evaluate_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument("features", type=Path, help="features file of another corpus (the model's features)")
    parser.add_argument(
        "--out", type=Path, required=True, help="folder for summary.json, summary.md, confusion.png"
    )
    parser.add_argument(
        "--map",
        default=None,
        help="FILE_CLASS=MODEL_CLASS,… where the class names differ (e.g. happy=happiness)",
    )
    parser.add_argument(
        "--enrol",
        type=int,
        default=5,
        help="speaker-normalised models: recordings of each speaker the enrolled mode uses (K)",
    )
    parser.add_argument(
        "--answers",
        choices=("all", "shared"),
        default="all",
        help="classes the model may answer: all of its own (default), or only those the file's classes "
        "match (the cross-corpus protocol on shared classes)",
    )


def _run_evaluate(args: argparse.Namespace) -> int:
    from emovision.data.speaker_norm import MODES, mode_label
    from emovision.evaluation.transfer import evaluate_on, parse_map

    if args.enrol < 1:
        raise EmovisionError(f"--enrol must be at least 1 recording, got {args.enrol}")
    summary = evaluate_on(args.model, args.features, args.out, parse_map(args.map), args.enrol, args.answers)
    dropped = sum(summary["dropped"].values())
    modes = summary.get("modes")
    how = (
        "cold; " + ", ".join(f"{mode_label(name, args.enrol)} UA {modes[name]['ua']:.3f}" for name in MODES)
        if modes
        else "the model uses no speaker information"
    )
    console.print(
        f"{args.model} on {args.features}: WA {summary['wa']:.3f}, UA {summary['ua']:.3f} over "
        f"{summary['utterances']} utterances ({how}; answers: {args.answers}; {dropped} of classes the model does not know dropped); "
        f"{args.out / 'summary.md'}",
        markup=False,
        soft_wrap=True,
    )
    return 0


def _predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", type=Path, help="trained model: checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="audio files or folders (searched recursively)"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object per line instead of a table")
    parser.add_argument(
        "--timeline",
        type=Path,
        default=None,
        metavar="PNG",
        help="draw the emotion over time of recordings of 4 segments or more (several: PNG-<file>.png)",
    )
    parser.add_argument(
        "--explain",
        type=Path,
        default=None,
        metavar="DIR",
        help="for each recording, where in the spectrogram the decision came from: DIR/<file>.png (the "
        "map over the spectrogram, the emotion over time beneath) and DIR/<file>.npy (the map, bins × "
        "frames); the attention map of an attention-head model, Grad-CAM otherwise; --json adds the "
        "per-frame weight",
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=64, help="segments per model call")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding audio (default: up to 4)")
    parser.add_argument(
        "--calibration",
        default="auto",
        choices=("auto", "on", "off"),
        help="temperature-scaled probabilities: auto (when the model has a temperature), on (require one), off",
    )
    _fusion_argument(parser)
    parser.add_argument(
        "--same-speaker",
        action="store_true",
        help="the recordings are all one speaker's: a speaker-normalised model (train or extract "
        "--speaker-norm) is first adapted to their pooled statistics (without it, each recording is "
        "scored by itself: the cold mode)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    _turns_arguments(parser)


def _turns_arguments(parser: argparse.ArgumentParser) -> None:
    """``predict --turns`` and its options: output file, confidence floor, speech detector, the turns'
    normalisation, and the detector's durations (s)."""
    turns = parser.add_argument_group("speech turns (--turns)")
    turns.add_argument(
        "--turns",
        action="store_true",
        help="find the speech turns first and give each its emotion (one row per turn; silence is not scored)",
    )
    turns.add_argument(
        "--turns-out",
        type=Path,
        default=None,
        metavar="FILE",
        help="also write the turns: .csv, .jsonl, or .vtt subtitles (several recordings: FILE-<file>.vtt)",
    )
    turns.add_argument(
        "--min-confidence",
        type=float,
        default=0.0,
        metavar="P",
        help="a turn whose top probability is below P (0…1) is reported as 'uncertain'",
    )
    turns.add_argument(
        "--vad", default="auto", help="speech detector: auto (silero when installed), silero, energy"
    )
    turns.add_argument(
        "--normalise",
        choices=("causal", "recording", "turn"),
        default="causal",
        help="speaker-normalised models: each turn by the turns before it (causal, usable live), by all "
        "of the recording's turns, or by itself",
    )
    turns.add_argument("--min-speech", type=float, default=0.25, help="shortest turn kept (s)")
    turns.add_argument("--min-silence", type=float, default=0.4, help="shortest pause that ends a turn (s)")
    turns.add_argument("--vad-padding", type=float, default=0.1, help="seconds added around each turn")


def _fusion_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--fusion",
        default="off",
        choices=("auto", "on", "off"),
        help="the late fusion with openSMILE functionals of a cv or ensemble folder (fusion-model.npz): "
        "off (default: image models alone), on (require it), auto (when there is one); it needs the "
        "opensmile extra, and one fitted without fuse --augment degrades in noise",
    )


def _run_predict(args: argparse.Namespace) -> int:
    """Exit status 0: every file predicted; 1: some failed (listed on stderr); 2: none could be used."""
    import json

    from emovision.inference.results import Failure, save_timelines
    from emovision.inference.sources import find_audio
    from emovision.progress import progress_bar

    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    if args.explain is not None:
        if args.turns or args.turns_out:
            raise EmovisionError("--explain explains whole recordings: leave out --turns and --turns-out")
        check_writable_folder(args.explain, "--explain")
    if args.turns or args.turns_out:
        return _run_turns(args)
    recognizer = _load_recognizer(args)
    if args.explain is not None:
        recognizer.require_explainable()
        return _run_explain(args, recognizer)
    files, failures = find_audio(args.paths)
    _speaker_statistics(recognizer, files, args.same_speaker)
    predictions = []
    with progress_bar(not args.quiet and bool(files), console=err_console, transient=True) as bar:
        task = bar.add_task("predicting", total=len(files))
        for result in recognizer.iter_predict(files, workers=args.workers):
            bar.advance(task)
            if isinstance(result, Failure):
                failures.append(result)
                continue
            predictions.append(result)
            if args.json:
                sys.stdout.write(json.dumps(result.to_dict()) + "\n")
                sys.stdout.flush()
    if predictions and not args.json:
        table = Table(title=f"{args.model.name}: {len(predictions)} recording(s)")
        for column in ("file", "emotion", "confidence", "top 3"):
            table.add_column(column, justify="right" if column == "confidence" else "left")
        for item in predictions:
            top = ", ".join(f"{name} {p:.2f}" for name, p in item.top(3))
            table.add_row(item.source, item.label, f"{item.confidence:.2f}", top)
        console.print(table, highlight=False)
    if args.timeline and predictions:
        written = save_timelines(predictions, args.timeline)
        for path in written:
            err_console.print(f"timeline: {path}", highlight=False, markup=False, soft_wrap=True)
        if not written:
            err_console.print("timeline: no recording is 4 segments or longer", highlight=False)
    return _exit_status(len(predictions), failures, "predicted")


def _load_recognizer(args: argparse.Namespace) -> Recognizer:
    """The model of ``predict`` with its device, batch size (segments), calibration and fusion."""
    from emovision.inference.predict import Recognizer

    return Recognizer.load(
        args.model,
        device=args.device,
        batch_size=args.batch_size,
        calibration=args.calibration,
        fusion=args.fusion,
    )


def _run_explain(args: argparse.Namespace, recognizer) -> int:
    """``predict --explain DIR``: each recording predicted and explained, one after another."""
    import json

    from emovision.inference.explain import save_explanation
    from emovision.inference.results import Failure
    from emovision.inference.sources import find_audio
    from emovision.progress import progress_bar

    files, failures = find_audio(args.paths)
    _speaker_statistics(recognizer, files, args.same_speaker)
    done, stems = [], set()
    with progress_bar(not args.quiet and bool(files), console=err_console, transient=True) as bar:
        task = bar.add_task("explaining", total=len(files))
        for path in files:
            bar.advance(task)
            try:
                explanation = recognizer.explain(path)
            except AudioError as exc:
                failures.append(Failure(str(path), exc.reason))
                continue
            stem = path.stem
            while stem in stems:
                stem += "_"
            stems.add(stem)
            png, _ = save_explanation(explanation, args.explain, stem)
            item = explanation.prediction
            done.append((item, png))
            if args.json:
                record = {**item.to_dict(), "explanation": {**explanation.to_dict(), "png": str(png)}}
                sys.stdout.write(json.dumps(record) + "\n")
                sys.stdout.flush()
    if done and not args.json:
        table = Table(title=f"{args.model.name}: {len(done)} recording(s) explained in {args.explain}")
        for column in ("file", "emotion", "confidence", "picture"):
            table.add_column(column, justify="right" if column == "confidence" else "left")
        for item, png in done:
            table.add_row(item.source, item.label, f"{item.confidence:.2f}", png.name)
        console.print(table, highlight=False)
    return _exit_status(len(done), failures, "explained")


def _speaker_statistics(recognizer, files: list[Path], same_speaker: bool) -> None:
    """Adapt a speaker-normalised model to ``files`` (``--same-speaker``), or say what it does without."""
    if same_speaker and files:
        used = recognizer.adapt(files)
        err_console.print(f"speaker statistics: {used} recording(s)", highlight=False)
    elif recognizer.fusion_speaker_normalised:
        raise EmovisionError(
            "this fusion's linear model takes speaker-normalised functionals: give one speaker's "
            "recordings with --same-speaker, or use --fusion off"
        )
    elif recognizer.speaker_normalised:
        err_console.print(
            "note: this model is speaker-normalised; each recording is scored by itself (the cold mode). "
            "For one speaker's recordings, --same-speaker uses their pooled statistics (more accurate)",
            highlight=False,
        )


def _run_turns(args: argparse.Namespace) -> int:
    """``predict --turns``: a table (or JSON lines) of every recording's turns; the same exit
    statuses as predict."""
    from emovision.data.vad import VadOptions, resolve_detector
    from emovision.inference.sources import find_audio
    from emovision.inference.turns import check_turns_path, write_turns

    if not 0.0 <= args.min_confidence <= 1.0:
        raise EmovisionError(f"--min-confidence must be between 0 and 1, got {args.min_confidence:g}")
    options = VadOptions(min_speech=args.min_speech, min_silence=args.min_silence, padding=args.vad_padding)
    detector = resolve_detector(args.vad)
    if args.turns_out:
        check_turns_path(args.turns_out)
    recognizer = _load_recognizer(args)
    files, failures = find_audio(args.paths)
    _speaker_statistics(recognizer, files, args.same_speaker)
    results = _turns_of_files(args, recognizer, files, failures, detector, options)
    if not args.json:
        _print_turn_tables(results)
    if args.turns_out and results:
        for path in write_turns(results, args.turns_out):
            err_console.print(f"turns: {path}", highlight=False, markup=False, soft_wrap=True)
    return _exit_status(len(results), failures, "analysed")


def _turns_of_files(
    args: argparse.Namespace,
    recognizer: Recognizer,
    files: list[Path],
    failures: list[Failure],
    detector: str,
    options: VadOptions,
) -> list[TurnPrediction]:
    """The speech turns of each of ``files`` (``--json``: written as JSON lines at once); a file that
    cannot be read is added to ``failures``."""
    import json

    from emovision.inference.results import Failure
    from emovision.progress import progress_bar

    results = []
    with progress_bar(not args.quiet and bool(files), console=err_console, transient=True) as bar:
        task = bar.add_task("speech turns", total=len(files))
        for path in files:

            def show(done: float, total: float, name: str = path.name) -> None:
                bar.update(task, description=f"{name}: {done:.0f} of {total:.0f} s")

            try:
                result = recognizer.predict_turns(
                    path,
                    vad=detector,
                    vad_options=options,
                    min_confidence=args.min_confidence,
                    progress=show,
                    normalise=args.normalise,
                )
            except AudioError as exc:
                failures.append(Failure(str(path), exc.reason))
                continue
            finally:
                bar.advance(task)
            results.append(result)
            if args.json:
                for row in result.to_dicts():
                    sys.stdout.write(json.dumps(row) + "\n")
                sys.stdout.flush()
    return results


def _print_turn_tables(results: list[TurnPrediction]) -> None:
    """Each recording's turns as a heading and a table: start and end (s), emotion, confidence, top 3."""
    for result in results:
        heading = f"{result.source}: {len(result.turns)} turn(s) in {result.duration:.1f} s"
        console.print(heading, highlight=False, markup=False, soft_wrap=True)  # a long path stays whole
        table = Table()
        for column in ("start", "end", "emotion", "confidence", "top 3"):
            table.add_column(column, justify="right" if column in ("start", "end", "confidence") else "left")
        for turn in result.turns:
            top = sorted(turn.probabilities.items(), key=lambda item: -item[1])[:3]
            table.add_row(
                f"{turn.start:.2f}", f"{turn.end:.2f}", turn.emotion, f"{turn.confidence:.2f}",
                ", ".join(f"{name} {p:.2f}" for name, p in top),
            )  # fmt: skip
        console.print(table, highlight=False)


def _exit_status(done: int, failures: list, verb: str) -> int:
    """0: all done; 1: some failed (listed on stderr); an error when none could be used (one
    recording: its reason)."""
    if not done and len(failures) == 1:
        raise EmovisionError(f"{failures[0].source}: {failures[0].reason}")
    for failure in failures:
        err_console.print(
            f"[yellow]skipped[/] {escape(f'{failure.source}: {failure.reason}')}",
            highlight=False,
            soft_wrap=True,
        )
    if not done:
        raise EmovisionError(f"no recording could be used ({len(failures)} failed)")
    if failures:
        err_console.print(f"{done} {verb}, {len(failures)} failed", highlight=False)
        return 1
    return 0


def _embed_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="trained model: checkpoint (.pth) or cv folder (PyTorch)")
    parser.add_argument(
        "paths", type=Path, nargs="+", metavar="PATH", help="audio files or folders (searched recursively)"
    )
    parser.add_argument(
        "-o", "--out", type=Path, required=True, help="FILE.npy (+ FILE.csv index) or FILE.parquet"
    )
    parser.add_argument("--turns", action="store_true", help="one vector per speech turn instead of per file")
    parser.add_argument("--vad", default="auto", help="speech detector for --turns: auto, silero, energy")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_embed(args: argparse.Namespace) -> int:
    """Exit status 0: every file embedded; 1: some failed (listed on stderr); 2: none could be used."""
    from emovision.data.vad import resolve_detector
    from emovision.errors import AudioError
    from emovision.inference.embeddings import check_embeddings_path, write_embeddings
    from emovision.inference.predict import Recognizer
    from emovision.inference.results import Failure
    from emovision.inference.sources import find_audio
    from emovision.progress import progress_bar

    check_embeddings_path(args.out)
    detector = resolve_detector(args.vad)
    recognizer = Recognizer.load(args.model, device=args.device, fusion="off")
    files, failures = find_audio(args.paths)
    items = []
    with progress_bar(not args.quiet and bool(files), console=err_console, transient=True) as bar:
        task = bar.add_task("embeddings", total=len(files))
        for path in files:
            try:
                items.append(recognizer.embed(path, turns=args.turns, vad=detector))
            except AudioError as exc:
                failures.append(Failure(str(path), exc.reason))
            finally:
                bar.advance(task)
    if items:
        written = write_embeddings(items, args.out)
        rows = sum(item.vectors.shape[0] for item in items)
        console.print(
            f"{rows} vector(s) of {items[0].vectors.shape[1]} values from {len(items)} recording(s): "
            + ", ".join(map(str, written)),
            markup=False,
            soft_wrap=True,
        )
    return _exit_status(len(items), failures, "embedded")


def _export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        type=Path,
        help="checkpoint (.pth) made by emovision train, or a cv folder (its fold ensemble)",
    )
    parser.add_argument(
        "-o", "--output", type=Path, default=None, help="ONNX file to write (default: MODEL with .onnx)"
    )
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: the exporter's)")


def _run_export(args: argparse.Namespace) -> int:
    from emovision.inference.fusion_model import FILE_NAME as FUSION_FILE
    from emovision.inference.onnx_export import export_onnx

    output = args.output or args.model.with_suffix(".onnx")
    if output.suffix.lower() != ".onnx":
        raise EmovisionError(f"the output {output} must end in .onnx (that is how models are recognised)")
    result = export_onnx(args.model, output, args.opset)
    axis = "dynamic" if result.dynamic_time else f"fixed at {result.frames} frames"
    console.print(
        f"wrote {result.path} ({result.size_bytes / 1e6:.1f} MB): batch axis dynamic, time axis {axis}; "
        f"ONNX Runtime matches PyTorch within {result.max_difference:.1e}",
        highlight=False,
    )
    if (args.model / FUSION_FILE).is_file():
        console.print(
            f"note: the file holds the fold ensemble only; the late fusion ({FUSION_FILE}) needs openSMILE "
            "and is used by predict and serve on the cv folder",
            highlight=False,
        )
    return 0


def _serve_arguments(parser: argparse.ArgumentParser) -> None:
    from emovision import serve

    parser.add_argument(
        "model", type=Path, help="trained model: checkpoint (.pth), ONNX file (.onnx) or cv folder (ensemble)"
    )
    parser.add_argument(
        "--host", default=serve.DEFAULT_HOST, help="interface to listen on (default: this machine only)"
    )
    parser.add_argument("--port", type=int, default=serve.DEFAULT_PORT)
    parser.add_argument(
        "--max-upload-mb", type=float, default=serve.DEFAULT_MAX_UPLOAD_MB, help="largest audio file, MB"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=serve.DEFAULT_MAX_SECONDS, help="longest recording, seconds"
    )
    parser.add_argument(
        "--concurrency", type=int, default=serve.DEFAULT_CONCURRENCY, help="predictions at once"
    )
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument(
        "--max-speakers",
        type=int,
        default=serve.DEFAULT_MAX_SPEAKERS,
        help="speaker keys held in memory (the least recently used is dropped)",
    )
    parser.add_argument(
        "--speaker-ttl",
        type=float,
        default=serve.DEFAULT_SPEAKER_TTL,
        help="seconds a speaker key is kept after its last use",
    )
    _fusion_argument(parser)


def _run_serve(args: argparse.Namespace) -> int:
    from emovision.serve import serve

    if args.max_speakers < 1 or not args.speaker_ttl > 0:
        raise EmovisionError("--max-speakers must be at least 1 and --speaker-ttl positive")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        err_console.print(
            f"[yellow]warning:[/] listening on {args.host}: other machines can reach this server",
            highlight=False,
        )
    serve(
        args.model,
        host=args.host,
        port=args.port,
        max_upload_mb=args.max_upload_mb,
        max_seconds=args.max_seconds,
        concurrency=args.concurrency,
        device=args.device,
        fusion=args.fusion,
        max_speakers=args.max_speakers,
        speaker_ttl=args.speaker_ttl,
    )
    return 0


COMMANDS = {
    "evaluate": Command(
        _evaluate_arguments, _run_evaluate, "score a trained model on another corpus's features"
    ),
    "predict": Command(
        _predict_arguments, _run_predict, "emotions of audio files, folders and long recordings"
    ),
    "embed": Command(
        _embed_arguments, _run_embed, "embeddings of recordings or speech turns for your own models"
    ),
    "export": Command(_export_arguments, _run_export, "export a checkpoint to ONNX (runs without PyTorch)"),
    "serve": Command(_serve_arguments, _run_serve, "web page and REST API for a trained model"),
}
