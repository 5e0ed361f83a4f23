"""What a late fusion leaves in a folder: ``fusion.json`` and ``fusion.md`` (WA/UA per fold and pooled
for the image model, the linear model and the fusion, with paired differences; every mode's with a
centred linear model) and ``fusion-model.npz``, the fusion to deploy
(:mod:`emovision.inference.fusion_model`): the linear model retrained on every speaker, with the folds'
median ``C``, weight and temperature."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np

from emovision.data.speaker_norm import ENROL_DRAWS, MODES, FunctionalsCentre, mode_label
from emovision.data.store import open_info
from emovision.evaluation.functionals_table import FunctionalsTable
from emovision.evaluation.fusion import MODELS
from emovision.evaluation.linear_model import C_GRID, LinearTraining, centred_training, fit_linear_pipeline
from emovision.files import atomic_write_bytes
from emovision.inference.fusion_model import FILE_NAME, LinearFusion
from emovision.tables import ResultTable, mean_std, paired_table
from emovision.training.calibration import VALIDATION_SPEAKERS
from emovision.training.metrics import fold_summary, paired_difference


def write_fused(
    folds: list[dict],
    classes: list[str],
    out: Path,
    table: FunctionalsTable,
    speakers: set[str],
    models: str,
    mode: str,
    linear: LinearTraining,
) -> dict:
    """The fusion report of the fused ``folds`` and the fusion to deploy (trained as ``linear`` says, its
    copy kinds settled, on the functionals in ``table`` of every one of ``speakers``; ``models``: the
    :func:`~emovision.inference.runs.fingerprint` of the fold models it goes with), written to ``out``:
    ``fusion.json``, ``fusion.md`` and ``fusion-model.npz``; ``mode``: how the test speakers were scored
    (:func:`emovision.training.modes.runs_mode`; transductive when the functionals are
    speaker-normalised). Returns the report."""
    deployed = deploy_fusion(folds, table, speakers, classes, linear)
    deployed.info["fingerprint"] = models
    deployed.save(out / FILE_NAME)
    report = fusion_report(folds, classes, out, table.path) | {
        "fitted_on": folds[0].get("fitted_on", VALIDATION_SPEAKERS),
        "deployed": deployed.describe(),
        "mode": "cold" if linear.centre is not None else mode,
        **linear.report_fields(),
    }
    return write_fusion(report, out)


def deploy_fusion(
    folds: list[dict],
    table: FunctionalsTable,
    speakers: set[str],
    classes: list[str],
    linear: LinearTraining,
) -> LinearFusion:
    """The fusion to deploy: the linear model trained as ``linear`` says on the functionals of every
    utterance of ``speakers`` (and of their copies of its settled ``copy_kinds``; speaker-centred with its
    ``centre``) with the folds' median ``C`` (the lower middle one, a value of the grid), the folds'
    median image weight and median fused temperature."""
    copy_kinds, centre = linear.kinds, linear.centre
    x, y = table.training(speakers, copy_kinds)
    clean = sum(speaker in speakers for _, speaker, _ in table.utterances.values())
    copies = len(y) - clean
    centring = None
    if centre is not None:
        centring = FunctionalsCentre(table.training(speakers)[0].mean(axis=0), centre.weight)
        x, y = centred_training(table, speakers, copy_kinds, centring, centre.rng("deployed"))
    c = statistics.median_low(f["C"] for f in folds)
    pipeline = fit_linear_pipeline(c, x, y, linear.scaling)
    info = open_info(table.path)
    return LinearFusion.from_pipeline(
        pipeline,
        feature_set=info.functionals,
        sample_rate=info.config.sample_rate,
        classes=list(classes),
        weight=round(float(statistics.median(f["weight"] for f in folds)), 2),
        temperature=float(statistics.median(f["temperature"] for f in folds)),
        centre=centring,
        info={
            "C": c,
            "speakers": len(speakers),
            "utterances": clean,
            "copies": copies,
            "folds": len(folds),
            "speaker_norm": bool(info.config.speaker_norm),
            "copy_kinds": list(copy_kinds),
        },
    )


def write_fusion(report: dict, out: Path) -> dict:
    """``fusion.json`` and ``fusion.md`` of ``report`` in ``out``; returns ``report``."""
    atomic_write_bytes(out / "fusion.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "fusion.md", fusion_markdown(report).encode())
    return report


def fusion_report(folds: list[dict], classes: list[str], run_dir: Path, table_path: Path) -> dict:
    summary = {key: fold_summary([f[key] for f in folds], classes) for key in MODELS}
    modes = {
        mode: {key: fold_summary([f["modes"][mode][key] for f in folds], classes) for key in MODELS}
        for mode in MODES[1:]
        if folds and all("modes" in f for f in folds)
    }
    paired = {
        f"{a} - {b}": paired_difference(np.array([f[a]["ua"] - f[b]["ua"] for f in folds]))
        for a, b in (("fusion", "image"), ("fusion", "linear"), ("image", "linear"))
    }
    return {
        "cv": str(run_dir),
        "functionals_file": str(table_path),
        "classes": classes,
        "folds": folds,
        "summary": summary,
        "paired_ua": paired,
        **({"modes": modes} if modes else {}),
    }


def fusion_fold_table(report: dict) -> ResultTable:
    """Per fold: the image, linear and fused UA, and the weight and C chosen for it."""
    table = ResultTable(["fold", "test", "image UA", "linear UA", "fusion UA", "weight", "C"], labels=2)
    for f in report["folds"]:
        table.add(
            f["name"], "+".join(f["test"]), f"{f['image']['ua']:.3f}", f"{f['linear']['ua']:.3f}",
            f"{f['fusion']['ua']:.3f}", f"{f['weight']:.1f}", f"{f['C']:g}",
        )  # fmt: skip
    return table


def fusion_model_table(report: dict) -> ResultTable:
    """The image model, the linear model and their fusion over the folds."""
    table = ResultTable(
        ["model", "WA", "UA", "pooled WA", "pooled UA"],
        title="late fusion with openSMILE functionals (test speakers)",
    )
    for key, s in report["summary"].items():
        table.add(key, mean_std(s, "wa"), mean_std(s), f"{s['pooled']['wa']:.3f}", f"{s['pooled']['ua']:.3f}")
    return table


def fusion_modes_table(report: dict) -> ResultTable | None:
    """A centred fusion's pooled UA per model in every mode (cold, enrolled-K, transductive), or None."""
    if "modes" not in report:
        return None
    k = report.get("centre", {}).get("enrol", 5)
    names = ["cold", *(mode_label(mode, k) for mode in report["modes"])]
    table = ResultTable(
        ["model", *(f"{name} UA" for name in names), *(f"{name} pooled UA" for name in names)],
        title="late fusion in every mode (the linear model on speaker-centred functionals)",
    )
    for key in MODELS:
        rows = [report["summary"][key], *(report["modes"][mode][key] for mode in report["modes"])]
        table.add(key, *(mean_std(r) for r in rows), *(f"{r['pooled']['ua']:.3f}" for r in rows))
    return table


def fusion_markdown(report: dict) -> str:
    """The fusion report as Markdown: per-fold UA, summary rows, paired ΔUA."""
    lines = [
        f"# Late fusion: {report['cv']}",
        "",
        f"Functionals: `{report['functionals_file']}`{_copies_note(report.get('copy_kinds'))}; folds' image "
        f"weights, C{_grid_note(report.get('c_grid'))} and temperatures chosen on "
        f"{report.get('fitted_on', VALIDATION_SPEAKERS)}.  ",
        f"Mode: {report.get('mode', 'any')} (cold: each test recording scored by itself, as a server "
        "gives it; transductive: each test speaker normalised by all of its recordings).",
        "",
        *fusion_fold_table(report).markdown(),
        "",
        *fusion_model_table(report).markdown(),
        "",
        *paired_table(list(report["paired_ua"].items())).markdown(),
    ]
    modes = fusion_modes_table(report)
    if modes is not None:
        centre = report["centre"]
        lines += [
            "",
            f"The linear model trained on speaker-centred functionals (prior weight {centre['weight']:g} "
            f"recordings, draw seed {centre['seed']}): each test recording centred by itself (cold), by "
            f"{centre['enrol']} of the speaker's other recordings ({ENROL_DRAWS} draws) or by all of them; the "
            "image models are scored cold in every mode.",
            "",
            *modes.markdown(),
        ]
    deployed = report.get("deployed")
    if deployed:
        lines += [
            "",
            f"To deploy: `{FILE_NAME}`, the linear model on {deployed['functionals']} retrained on all "
            f"{deployed['utterances']} utterances of the {deployed['speakers']} speakers"
            f"{_deployed_copies(deployed)} (C {deployed['C']:g}), "
            f"image weight {deployed['weight']:g}, temperature {deployed['temperature']:.2f} (medians over the "
            "folds); predict and serve use it with the fold ensemble under --fusion on.",
        ]
    return "\n".join(lines) + "\n"


def _copies_note(kinds: list[str] | None) -> str:
    if not kinds:
        return ""
    return f", the linear model also trained on the training speakers' {', '.join(kinds)} copies"


def _deployed_copies(deployed: dict) -> str:
    if not deployed.get("copies"):
        return ""
    return f" and their {deployed['copies']} {', '.join(deployed['copy_kinds'])} copies"


def _grid_note(grid: list[float] | None) -> str:
    """`` (among …)`` for a C grid other than the default, else nothing."""
    if grid is None or tuple(grid) == C_GRID:
        return ""
    return f" (among {', '.join(f'{c:g}' for c in grid)})"
