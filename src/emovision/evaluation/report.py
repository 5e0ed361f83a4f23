"""Compare finished runs: cross-validations (``summary.json``) and single folds (``metrics.json``),
their late fusions (``fusion.json``) and the robustness of cross-validations side by side
(``robustness.json``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from emovision.data.features import FeatureConfig
from emovision.data.speaker_norm import MODES, mode_label
from emovision.errors import EmovisionError
from emovision.files import read_json
from emovision.tables import ResultTable, mean_std, paired_change
from emovision.training.cv import summarize_folder, summary_options
from emovision.training.metrics import paired_difference
from emovision.training.options import run_options

MODELS = ("image", "linear", "fusion")


def cv_summary(folder: Path) -> dict | None:
    """A cv folder's summary: ``summary.json`` when every fold is finished, else the summary of the
    folds finished so far (its ``missing`` lists the others), so runs can be compared while they
    train; None for a folder that is no cv run."""
    if (folder / "summary.json").is_file():
        return read_json(folder / "summary.json", "cross-validation summary")
    if (folder / "cv.json").is_file():
        return summarize_folder(folder)
    return None


def load_run(folder: Path) -> dict:
    """One row: run, corpus, model, features, options, runs, WA/UA mean ± std, pooled WA/UA, and under
    ``modes`` the pooled UA in each evaluation mode (``—`` where the run cannot tell)."""
    metrics_path = folder / "metrics.json"
    summary = cv_summary(folder)
    if summary is not None:
        if "members" in summary:
            return _ensemble_row(folder, summary)
        pooled = summary["pooled"]
        config = summary["train_config"]
        wa = f"{summary['wa_mean']:.3f} ± {summary['wa_std']:.3f}"
        ua = f"{summary['ua_mean']:.3f} ± {summary['ua_std']:.3f}"
        count = len(summary["folds"])
        if summary.get("missing"):
            count = f"{count} of {count + len(summary['missing'])}"
        pooled_wa, pooled_ua = pooled["wa"], pooled["ua"]
        features = _describe_features(summary.get("feature_config"))
        corpus = summary.get("corpus") or "—"
        modes = mode_pooled_ua(summary)
    elif metrics_path.is_file():
        metrics = read_json(metrics_path, "metrics")
        config = metrics["train_config"]
        wa, ua = f"{metrics['test']['wa']:.3f}", f"{metrics['test']['ua']:.3f}"
        count, pooled_wa, pooled_ua = 1, metrics["test"]["wa"], metrics["test"]["ua"]
        features, corpus = "—", "—"
        recorded = metrics.get("test_modes") or {}
        modes = {m: recorded[m]["ua"] if recorded else None for m in MODES}
    else:
        raise EmovisionError(f"{folder} holds no run (no summary.json, cv.json or metrics.json)")
    options = summary_options(summary) if summary is not None else run_options(config)
    return {
        "run": str(folder),
        "corpus": corpus,
        "model": config["model"],
        "features": features,
        "options": ", ".join(options) or "baseline",
        "runs": count,
        "WA": wa,
        "UA": ua,
        "pooled WA": f"{pooled_wa:.3f}",
        "pooled UA": f"{pooled_ua:.3f}",
        "modes": _mode_cells(modes),
    }


def mode_pooled_ua(summary: dict) -> dict[str, float | None]:
    """Pooled UA of a cv summary in each evaluation mode: from its modes table; a run without speaker
    normalisation is the same in all three; one on features extracted with ``--speaker-norm`` is
    transductive only (None for the others); an ensemble (``members``) is known in the mode its members
    were scored in, or in all three when none uses speaker statistics (``mode`` ``any``)."""
    if summary.get("modes"):
        return {mode: summary["modes"][mode]["pooled"]["ua"] for mode in MODES}
    pooled = summary["pooled"]["ua"]
    if "members" in summary:
        return {mode: pooled if summary.get("mode") in ("any", mode) else None for mode in MODES}
    if summary.get("mode") == "transductive" or (summary.get("feature_config") or {}).get("speaker_norm"):
        return {"cold": None, "enrolled": None, "transductive": pooled}
    return dict.fromkeys(MODES, pooled)


def _ensemble_row(folder: Path, summary: dict) -> dict:
    """The row of a within-fold ensemble (``emovision ensemble``)."""
    members = summary["members"]
    pooled = summary["pooled"]
    return {
        "run": str(folder),
        "corpus": summary.get("corpus") or "—",
        "model": " + ".join(m["model"] for m in members),
        "features": "—",
        "options": f"within-fold ensemble of {len(members)} cvs",
        "runs": len(summary["folds"]),
        "WA": f"{summary['wa_mean']:.3f} ± {summary['wa_std']:.3f}",
        "UA": f"{summary['ua_mean']:.3f} ± {summary['ua_std']:.3f}",
        "pooled WA": f"{pooled['wa']:.3f}",
        "pooled UA": f"{pooled['ua']:.3f}",
        "modes": _mode_cells(mode_pooled_ua(summary)),
    }


def _mode_cells(modes: dict[str, float | None]) -> dict[str, str]:
    return {f"{mode} pooled UA": "—" if value is None else f"{value:.3f}" for mode, value in modes.items()}


def _describe_features(values: dict | None) -> str:
    """``"logmelspec 64×100"``: the feature type, bands × segment frames (and whether silence was cut and
    the features are speaker-normalised); ``"—"`` when unknown."""
    if not values:
        return "—"
    config = FeatureConfig.from_dict(values)
    trimmed = f", silence cut at {config.trim_db:g} dB" if config.trim_db is not None else ""
    normalised = ", speaker-normalised" if config.speaker_norm else ""
    return f"{config.kind} {config.height}×{config.segment_frames}{trimmed}{normalised}"


def compare_runs(folders: list[Path]) -> tuple[list[dict], list[dict]]:
    """One row per run (:func:`load_run`), and one per run of its pooled UA in each evaluation mode."""
    rows = []
    for folder in folders:
        try:
            rows.append(load_run(Path(folder)))
        except (KeyError, TypeError, ValueError) as exc:
            raise EmovisionError(f"{folder}: its summary or metrics file lacks {exc} (damaged?)") from None
    modes = [{"run": row["run"], **row.pop("modes")} for row in rows]
    return rows, modes


def paired_deltas(folders: list[Path]) -> list[dict]:
    """Test-speaker UA of every later cv run minus that of the first run before it with folds in common
    (same fold name and test speakers; a fold's repeats averaged first; :func:`first_shared`), paired over
    those folds in each evaluation mode both runs have (:func:`mode_fold_ua`): one row per such run with
    the run it is paired with and ``mean ± standard error (folds better/folds)`` per mode. A run of other
    folds (another corpus) starts a group of its own and gets no row."""
    summaries = [(str(f), cv_summary(Path(f))) for f in folders]
    per_fold = [(label, mode_fold_ua(summary)) for label, summary in summaries if summary is not None]
    rows = []
    for label, modes, base_label, base in first_shared(per_fold, lambda modes: _fold_keys(modes)):
        row = {"run": label, "from": base_label}
        for mode in MODES:
            if mode in base and mode in modes:
                shared = [ua - base[mode][key] for key, ua in modes[mode].items() if key in base[mode]]
                row[f"ΔUA {mode}"] = _paired(shared)
            else:
                row[f"ΔUA {mode}"] = "—"
        rows.append(row)
    return rows


def first_shared(runs: list[tuple[str, dict]], keys) -> list[tuple[str, dict, str, dict]]:
    """``(label, value, base label, base value)`` for every run of ``runs`` ``(label, value)`` after the
    first whose ``keys(value)`` (its folds) meet those of an earlier run: the base is the first such run."""
    pairs = []
    for number, (label, value) in enumerate(runs):
        folds = keys(value)
        base = next(((b, v) for b, v in runs[:number] if folds & keys(v)), None)
        if base is not None:
            pairs.append((label, value, *base))
    return pairs


def _fold_keys(modes: dict[str, dict[tuple, float]]) -> set[tuple]:
    return {key for folds in modes.values() for key in folds}


def mode_fold_ua(summary: dict) -> dict[str, dict[tuple, float]]:
    """UA per fold (keyed by fold name and test speakers, repeats averaged) in each mode the run has."""
    if summary.get("modes"):
        folds = {mode: summary["modes"][mode]["folds"] for mode in MODES}
    else:
        plain = [fold["ua"] for fold in summary["folds"]]
        available = mode_pooled_ua(summary)
        folds = {mode: plain for mode in MODES if available[mode] is not None}
    out = {}
    for mode, values in folds.items():
        grouped: dict[tuple, list[float]] = {}
        for fold, ua in zip(summary["folds"], values, strict=True):
            grouped.setdefault((fold["name"], tuple(fold["test"])), []).append(ua)
        out[mode] = {key: float(np.mean(v)) for key, v in grouped.items()}
    return out


def rows_table(rows: list[dict], title: str = "", labels: int = 1) -> ResultTable:
    """Rows of one kind (the same keys, in order) as a table; the first ``labels`` columns name the row."""
    table = ResultTable(list(rows[0]), title=title, labels=labels)
    for row in rows:
        table.add(*row.values())
    return table


def fusion_reports(folders: list[Path]) -> list[tuple[str, dict]]:
    """``(folder, fusion.json content)`` of every folder that has one (``emovision fuse``,
    ``cv --fusion`` or ``ensemble --functionals``)."""
    return [
        (str(f), read_json(Path(f) / "fusion.json", "fusion report"))
        for f in folders
        if (Path(f) / "fusion.json").is_file()
    ]


def fusion_rows(folders: list[Path]) -> list[dict]:
    """One row per fused run: what its linear model trained on, and UA (mean ± std over folds) of
    the image model, the linear model and the fusion, with the fusion's pooled UA."""
    rows = []
    for label, report in fusion_reports(folders):
        summary = report["summary"]
        rows.append(
            {
                "run": label,
                "linear model trained on": "clean + " + "+".join(report["copy_kinds"])
                if report.get("copy_kinds")
                else "clean",
                **{f"{m} UA": f"{summary[m]['ua_mean']:.3f} ± {summary[m]['ua_std']:.3f}" for m in MODELS},
                "pooled fusion UA": f"{summary['fusion']['pooled']['ua']:.3f}",
            }
        )
    return rows


def fusion_deltas(folders: list[Path]) -> list[dict]:
    """Paired UA differences of every later fused run's linear model and fusion from the first fused
    run before it with folds in common (same fold name and test speakers; :func:`first_shared`), over
    those folds; a fused run of other folds gets no row."""
    per_fold = [
        (label, {(f["name"], tuple(f["test"])): f for f in report["folds"]})
        for label, report in fusion_reports(folders)
    ]
    return [
        {
            "run": label,
            "from": base_label,
            **{
                f"Δ{m} UA": _paired(
                    [f[m]["ua"] - base[key][m]["ua"] for key, f in folds.items() if key in base]
                )
                for m in ("linear", "fusion")
            },
        }
        for label, folds, base_label, base in first_shared(per_fold, set)
    ]


def robustness_fusion_rows(folders: list[Path]) -> list[dict]:
    """Per condition the fusion's UA (mean ± std over folds) of every run whose ``robustness.json``
    scored its fusion (``robustness --fusion``): a column per run, cold, and for a speaker-centred
    fusion one more per mode it was scored in (``RUN enrolled-5``, ``RUN transductive``: the speaker's
    statistics from clean recordings); empty when none did."""
    found = [(label, report) for label, report in robustness_reports(folders) if report.get("fusion")]
    conditions: list[str] = []
    values: dict[tuple[str, str], str] = {}
    columns: list[str] = []
    for label, report in found:
        modes = [mode for mode in MODES[1:] if "modes" in report["fusion"][0]]
        names = {mode: f"{label} {mode_label(mode, report.get('enrol', 5))}" for mode in modes}
        columns += [label, *names.values()]
        for c in report["fusion"]:
            if c["name"] not in conditions:
                conditions.append(c["name"])
            values[label, c["name"]] = mean_std(c["fusion"])
            for mode, column in names.items():
                values[column, c["name"]] = mean_std(c["modes"][mode]["fusion"])
    return [
        {"condition": name, **{column: values.get((column, name), "—") for column in columns}}
        for name in conditions
    ]


def robustness_reports(folders: list[Path]) -> list[tuple[str, dict]]:
    """``(label, robustness.json content)`` of every folder that has one; the label is the folder's
    name, or its whole path where names repeat."""
    found = [
        (Path(f), read_json(Path(f) / "robustness.json", "robustness"))
        for f in folders
        if (Path(f) / "robustness.json").is_file()
    ]
    names = [folder.name for folder, _ in found]
    unique = len(set(names)) == len(names)
    return [(folder.name if unique else str(folder), report) for folder, report in found]


def robustness_rows(folders: list[Path]) -> list[dict]:
    """UA (mean ± std over fold runs) per condition and run, from each run's ``robustness.json``.

    One row per condition (clean first, then in the order the runs list them) with a column per
    run that has a ``robustness.json`` ("—" where a run lacks the condition); empty when none has.
    """
    found = robustness_reports(folders)
    conditions: list[str] = []
    values: dict[tuple[str, str], str] = {}
    for label, report in found:
        for c in report["conditions"]:
            if c["name"] not in conditions:
                conditions.append(c["name"])
            values[label, c["name"]] = f"{c['ua_mean']:.3f} ± {c['ua_std']:.3f}"
    return [
        {"condition": name, **{label: values.get((label, name), "—") for label, _ in found}}
        for name in conditions
    ]


def robustness_deltas(folders: list[Path]) -> list[dict]:
    """Paired UA differences per condition of every later run with a ``robustness.json`` from the first
    such run before it with folds in common (:func:`first_shared`): a column per paired run.

    Fold runs are paired by their folder name and test speakers (the same folds of the same
    features); a cell is ``mean ± standard error`` of the per-fold differences with the number
    of folds that improved, e.g. ``+0.016 ± 0.011 (6/10)``, or "—" where the base lacks the
    condition. A run of other folds (another corpus) starts a group of its own and gets no column.
    Runs whose corruption differs from the base's (seed, babble talkers, noise recordings: other
    noisy audio) are not paired; their cells say which setting differs. Empty without a pair.
    """
    pairs = first_shared(robustness_reports(folders), _robustness_folds)
    conditions = list(dict.fromkeys(c["name"] for *_, base in pairs for c in base["conditions"]))
    rows = [{"condition": condition} for condition in conditions]
    for label, report, _, base in pairs:
        base_folds = {(f["run"], tuple(f["test"])): f["conditions"] for f in base["folds"]}
        entries = {c["name"]: c for c in base["conditions"]}
        for row in rows:
            condition = row["condition"]
            if condition not in entries:
                row[label] = "—"
                continue
            differs = _other_corruption(base, report, entries[condition])
            if differs:
                row[label] = f"not paired: other {differs}"
                continue
            differences = [
                f["conditions"][condition]["ua"] - base_folds[key][condition]["ua"]
                for f in report["folds"]
                if (key := (f["run"], tuple(f["test"]))) in base_folds and condition in f["conditions"]
            ]
            row[label] = _paired(differences)
    return rows if pairs else []


def _robustness_folds(report: dict) -> set[tuple]:
    return {(f["run"], tuple(f["test"])) for f in report["folds"]}


def _other_corruption(base: dict, report: dict, condition: dict) -> str:
    """The settings that make ``condition``'s audio differ between two robustness reports ("" when
    none does): the seed for every corrupted condition, the talker count for babble, the
    recordings for recorded noise."""
    if condition.get("kind", "clean") == "clean":
        return ""
    keys = ["seed"]
    keys += ["babble_talkers"] if condition.get("noise") == "babble" else []
    keys += ["noise_files"] if condition.get("noise") == "recorded" else []
    plans = base.get("plan", {}), report.get("plan", {})
    return ", ".join(key.replace("_", " ") for key in keys if plans[0].get(key) != plans[1].get(key))


def _paired(differences: list[float]) -> str:
    if not differences:
        return "—"
    return paired_change(paired_difference(np.array(differences)))
