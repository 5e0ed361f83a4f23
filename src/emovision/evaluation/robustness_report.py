"""The report of a robustness evaluation: ``robustness.json`` (per run and condition, and per
condition over runs), ``robustness.md`` and ``robustness.png``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from emovision import plots
from emovision.data.corruption import Condition, CorruptionPlan
from emovision.data.speaker_norm import MODES, mode_label
from emovision.files import atomic_write_bytes
from emovision.inference.runs import FoldRun
from emovision.system import software_versions
from emovision.tables import ResultTable, mean_std
from emovision.training.metrics import fold_summary
from emovision.training.options import run_options

FUSION_PREFIX = "fusion/"
FUSION_MODELS = ("image", "linear", "fusion")


def build_report(
    record: dict,
    runs: list[FoldRun],
    results: dict[str, dict[str, dict]],
    conditions: list[Condition],
    plan: CorruptionPlan,
    corpus: str,
    root: str | Path,
    classes: list[str],
    enrol: int = 5,
) -> dict:
    """The content of ``robustness.json``; a condition of runs scored in every mode (normalised in the
    data pipeline) gets ``modes``: the enrolled and transductive fold summaries beside the cold one."""
    folds = [_fold_entry(run, results[run.name]) for run in runs]
    summaries = [_condition_summary(condition, runs, results, classes) for condition in conditions]
    first = runs[0].checkpoint
    fused = [folds for name, folds in sorted(results.items()) if name.startswith(FUSION_PREFIX)]
    fusion = [_fusion_summary(condition, fused, classes) for condition in conditions] if fused else []
    return {
        "corpus": corpus,
        "root": str(root),
        "classes": classes,
        "features_file": record.get("features_file"),
        "plan": plan.to_dict(),
        "conditions": summaries,
        "folds": folds,
        "repeats": int(record.get("repeats", 1)),
        "train_config": first.get("train_config"),
        "feature_config": first["feature_config"],
        "versions": software_versions(),
        "enrol": enrol,
        **({"fusion": fusion} if fused else {}),
    }


def _fold_entry(run: FoldRun, conditions: dict[str, dict]) -> dict:
    """One fold run's entry: its fold, seed and reported test WA/UA, whether the clean condition
    reproduces the reported confusion, and its metrics per condition name (``conditions``)."""
    reported = run.metrics["test"]
    clean = conditions["clean"]
    return {
        "run": run.name,
        "fold": run.metrics["fold"]["name"],
        "test": run.metrics["fold"]["test"],
        "seed": run.metrics["train_config"]["seed"],
        "reported": {"wa": reported["wa"], "ua": reported["ua"]},
        "clean_matches_reported": clean["confusion"] == reported["confusion"],
        "conditions": conditions,
    }


def _condition_summary(
    condition: Condition, runs: list[FoldRun], results: dict[str, dict[str, dict]], classes: list[str]
) -> dict:
    """One condition over the runs: the fold summary, the mean NLL (nats) and, when every run was scored
    in every mode, the enrolled and transductive fold summaries (``modes``)."""
    per_run = [results[run.name][condition.name] for run in runs]
    modes = {
        mode: fold_summary([m["modes"][mode] for m in per_run], classes)
        for mode in MODES[1:]
        if all("modes" in m for m in per_run)
    }
    return {
        "name": condition.name,
        **asdict(condition),
        **fold_summary(per_run, classes),
        "nll_mean": float(np.mean([m["nll"] for m in per_run])),
        **({"modes": modes} if modes else {}),
    }


def _fusion_summary(condition: Condition, fused: list[dict[str, dict]], classes: list[str]) -> dict:
    """One condition over the folds' fused results (``fused``: per fold, metrics per condition name): the
    fold summary of the image models, the linear model and the fusion, per mode too when every fold has
    them."""
    entries = [fold[condition.name] for fold in fused]
    row = {"name": condition.name}
    row |= {model: fold_summary([e[model] for e in entries], classes) for model in FUSION_MODELS}
    if all("modes" in e for e in entries):
        row["modes"] = {
            mode: {m: fold_summary([e["modes"][mode][m] for e in entries], classes) for m in FUSION_MODELS}
            for mode in MODES[1:]
        }
    return row


def write_report(report: dict, run_dir: Path) -> None:
    """``robustness.json``, ``robustness.md`` and ``robustness.png`` in ``run_dir``."""
    atomic_write_bytes(run_dir / "robustness.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(run_dir / "robustness.md", robustness_markdown(report).encode())
    by_name = {c["name"]: c for c in report["conditions"]}
    plan = report["plan"]
    snrs = list(plan["snrs"])
    noise_ua = {n: [by_name[Condition("noise", n, s).name]["ua_mean"] for s in snrs] for n in plan["noises"]}
    rt60s = list(plan["rt60s"])
    reverb_ua = [by_name[Condition("reverb", rt60_s=r).name]["ua_mean"] for r in rt60s]
    plots.robustness_curves(
        snrs,
        noise_ua,
        rt60s,
        reverb_ua,
        by_name["clean"]["ua_mean"],
        run_dir / "robustness.png",
        _title(report),
        chance=1.0 / len(report["classes"]),
    )


def condition_table(report: dict) -> ResultTable:
    """WA and UA per condition (clean first), the UA change from clean, pooled figures and the NLL."""
    clean_ua = report["conditions"][0]["ua_mean"]
    modes = [mode for mode in MODES[1:] if "modes" in report["conditions"][0]]
    names = [mode_label(mode, report.get("enrol", 5)) for mode in modes]
    table = ResultTable(
        ["condition", "WA", "UA", "ΔUA", "pooled WA", "pooled UA", "NLL"]
        + [f"{name} {kind}" for name in names for kind in ("UA", "pooled UA")],
        title=f"robustness of {_title(report)}: {len(report['folds'])} fold runs",
    )
    for c in report["conditions"]:
        table.add(
            c["name"], mean_std(c, "wa"), mean_std(c),
            "" if c["name"] == "clean" else f"{c['ua_mean'] - clean_ua:+.3f}",
            f"{c['pooled']['wa']:.3f}", f"{c['pooled']['ua']:.3f}", f"{c['nll_mean']:.3f}",
            *(v for m in modes for v in (mean_std(c["modes"][m]), f"{c['modes'][m]['pooled']['ua']:.3f}")),
        )  # fmt: skip
    return table


def fusion_condition_table(report: dict) -> ResultTable:
    """The image models, the linear model and their fusion per condition: UA over the folds and pooled."""
    modes = [mode for mode in MODES[1:] if "modes" in report["fusion"][0]]
    names = [mode_label(mode, report.get("enrol", 5)) for mode in modes]
    table = ResultTable(
        ["condition", "image UA", "linear UA", "fusion UA", "pooled image", "pooled linear", "pooled fusion"]
        + [f"{name} fusion UA" for name in names],
        title="late fusion with openSMILE functionals: UA over the folds (cold"
        + (", and the fusion with the speaker enrolled from clean recordings" if modes else "")
        + ")",
    )
    for c in report["fusion"]:
        table.add(
            c["name"],
            *(mean_std(c[m]) for m in FUSION_MODELS),
            *(f"{c[m]['pooled']['ua']:.3f}" for m in FUSION_MODELS),
            *(mean_std(c["modes"][mode]["fusion"]) for mode in modes),
        )
    return table


def robustness_markdown(report: dict) -> str:
    """A Markdown table of WA/UA per condition (clean first) with the UA change from clean."""
    plan = report["plan"]
    runs = report["folds"]
    lines = [
        f"# Robustness: {_title(report)}",
        "",
        f"Corpus {report['corpus']} under `{report['root']}`, {len(runs)} fold runs; seed {plan['seed']}, "
        f"babble of {plan['babble_talkers']} talkers"
        + (f", noise recordings: {len(plan['noise_files'])}" if plan["noise_files"] else "")
        + ". SNR over the active speech; reverberation by a synthetic room of the given RT60.  ",
        "WA and UA: mean ± standard deviation over the fold runs; ΔUA: change of the mean UA from clean; "
        "NLL: mean over runs of the utterances' negative log-likelihood of the true class (nats).  ",
        f"Mode: {report.get('mode', 'any')} (any: no speaker normalisation; cold: each corrupted recording "
        "by itself, with the enrolled and transductive modes beside it, whose statistics come from the "
        "speaker's clean recordings; transductive: features normalised by all of the speaker's clean "
        "recordings).",
        "",
        *condition_table(report).markdown(),
    ]
    mismatched = [f["run"] for f in runs if not f["clean_matches_reported"]]
    lines += [
        "",
        "Clean reproduces every fold run's reported test metrics."
        if not mismatched
        else f"Clean differs from the reported test metrics of: {', '.join(mismatched)} "
        "(audio, corpus or device other than at training time).",
        "",
    ]
    if report.get("fusion"):
        lines += [
            "## Late fusion with openSMILE functionals",
            "",
            "Per fold: the image models (mean over the fold's runs), the linear model on the functionals "
            "of the corrupted recording, and their fusion with the fold's weight (`fusion.json`). UA: "
            "mean ± standard deviation over the folds, and pooled.",
            "",
            *fusion_condition_table(report).markdown(),
            "",
        ]
    return "\n".join(lines)


def _title(report: dict) -> str:
    config = report.get("train_config") or {}
    options = run_options(config)
    model = config.get("model", "model")
    return f"{model}, {report['feature_config']['kind']}" + (f" ({', '.join(options)})" if options else "")
