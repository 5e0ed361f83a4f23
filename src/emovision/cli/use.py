"""``predict``, ``export``, ``serve`` and ``evaluate``: using a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from emovision.cli.common import console, err_console
from emovision.errors import EmovisionError


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


def _run_evaluate(args: argparse.Namespace) -> int:
    from emovision.transfer import evaluate_on, parse_map

    summary = evaluate_on(args.model, args.features, args.out, parse_map(args.map))
    dropped = sum(summary["dropped"].values())
    console.print(
        f"{args.model} on {args.features}: WA {summary['wa']:.3f}, UA {summary['ua']:.3f} over "
        f"{summary['utterances']} utterances ({dropped} of classes the model does not know dropped); "
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
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--batch-size", type=int, default=64, help="segments per model call")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding audio (default: up to 4)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _run_predict(args: argparse.Namespace) -> int:
    """Exit status 0: every file predicted; 1: some failed (listed on stderr); 2: none could be used."""
    import json

    from emovision.predict import Failure, Recognizer, find_audio, save_timelines
    from emovision.progress import progress_bar

    if args.workers is not None and args.workers < 1:
        raise EmovisionError("--workers must be at least 1")
    recognizer = Recognizer.load(args.model, device=args.device, batch_size=args.batch_size)
    files, failures = find_audio(args.paths)
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
    if not predictions and len(failures) == 1:
        raise EmovisionError(f"{failures[0].source}: {failures[0].reason}")
    for failure in failures:
        err_console.print(
            f"[yellow]skipped[/] {escape(f'{failure.source}: {failure.reason}')}",
            highlight=False,
            soft_wrap=True,
        )
    if args.timeline and predictions:
        written = save_timelines(predictions, args.timeline)
        for path in written:
            err_console.print(f"timeline: {path}", highlight=False, markup=False, soft_wrap=True)
        if not written:
            err_console.print("timeline: no recording is 4 segments or longer", highlight=False)
    if not predictions:
        raise EmovisionError(f"no recording could be used ({len(failures)} failed)")
    if failures:
        err_console.print(f"{len(predictions)} predicted, {len(failures)} failed", highlight=False)
        return 1
    return 0


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
    from emovision.onnx_export import export_onnx

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


def _run_serve(args: argparse.Namespace) -> int:
    from emovision.serve import serve

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
    )
    return 0
