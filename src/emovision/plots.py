"""PNG figures: training curves, confusion matrices, emotion timelines, explanations, robustness curves.

Every function writes one PNG atomically (temporary file, then rename) and returns its path.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from emovision.files import atomic_write


def save_figure(figure, path: str | Path) -> Path:
    """``figure`` as a PNG at ``path``, written atomically; the figure is closed."""
    try:
        return atomic_write(path, lambda temp: figure.savefig(temp, dpi=120, bbox_inches="tight"), ".png")
    finally:
        plt.close(figure)


def training_curves(history: list[dict], path: str | Path, title: str = "") -> Path:
    """Training loss and validation WA/UA per epoch (the loss alone for a run without validation)."""
    epochs = [row["epoch"] for row in history]
    if "val_wa" not in history[0]:
        figure, loss_axis = plt.subplots(figsize=(5, 3.8))
        loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training loss")
        loss_axis.set(xlabel="epoch", ylabel="loss", title=title or "loss")
        return save_figure(figure, path)
    figure, (loss_axis, acc_axis) = plt.subplots(1, 2, figsize=(10, 3.8))
    loss_axis.plot(epochs, [row["train_loss"] for row in history], label="training loss")
    if "val_loss" in history[0]:
        loss_axis.plot(epochs, [row["val_loss"] for row in history], label="validation loss")
    loss_axis.set(xlabel="epoch", ylabel="loss", title="loss")
    loss_axis.legend()
    acc_axis.plot(epochs, [row["val_wa"] for row in history], label="validation WA")
    acc_axis.plot(epochs, [row["val_ua"] for row in history], label="validation UA")
    acc_axis.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1), title="validation accuracy")
    acc_axis.legend()
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def confusion(matrix: np.ndarray | list, classes: list[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix (true class per row) with the counts in each cell."""
    counts = np.asarray(matrix, dtype=np.float64)
    rows = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(4.0, 0.8 * len(classes) + 2)
    figure, axis = plt.subplots(figsize=(size, size * 0.85))
    image = axis.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(classes)):
        for j in range(len(classes)):
            colour = "white" if rows[i, j] > 0.5 else "black"
            axis.text(
                j,
                i,
                f"{rows[i, j]:.2f}\n({int(counts[i, j])})",
                ha="center",
                va="center",
                color=colour,
                fontsize=8,
            )
    axis.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    axis.set_yticks(range(len(classes)), classes)
    axis.set(xlabel="predicted", ylabel="true", title=title or "confusion matrix (row-normalised)")
    figure.colorbar(image, ax=axis, fraction=0.046)
    return save_figure(figure, path)


def timeline(
    times: np.ndarray, probabilities: np.ndarray, classes: list[str], path: str | Path, title: str = ""
) -> Path:
    """Class probabilities over time: ``times`` ``(N, 2)`` segment start/end in s, ``probabilities`` ``(N, K)``."""
    centres = times.mean(axis=1)
    figure, (area_axis, label_axis) = plt.subplots(
        2, 1, figsize=(10, 4.5), sharex=True, gridspec_kw={"height_ratios": [4, 1]}
    )
    area_axis.stackplot(centres, probabilities.T, labels=classes, alpha=0.85)
    area_axis.set(ylabel="probability", ylim=(0, 1), title=title or "emotion over time")
    area_axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    winners = probabilities.argmax(axis=1)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (start, end), k in zip(times, winners, strict=True):
        label_axis.axvspan(start, end, color=colours[k % len(colours)], alpha=0.85)
    label_axis.set(yticks=[], xlabel="time (s)")
    return save_figure(figure, path)


def explanation(
    spectrogram: np.ndarray,
    saliency: np.ndarray,
    times: np.ndarray,
    frequencies: np.ndarray,
    segment_times: np.ndarray,
    probabilities: np.ndarray,
    classes: list[str],
    path: str | Path,
    title: str = "",
) -> Path:
    """A saliency map over its spectrogram, the per-frame weight, and the emotion over time beneath.

    ``spectrogram`` and ``saliency`` ``(F, T)``; ``times`` ``(T,)`` frame starts (s); ``frequencies``
    ``(F,)`` bin centres (Hz); ``segment_times`` ``(N, 2)`` and ``probabilities`` ``(N, K)`` per segment.
    """
    hop = float(times[1] - times[0]) if times.size > 1 else 0.01
    extent = (0.0, float(times[-1]) + hop, -0.5, spectrogram.shape[0] - 0.5)
    figure, (map_axis, weight_axis, emotion_axis) = plt.subplots(
        3, 1, figsize=(10, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1, 1.6]}
    )
    map_axis.imshow(spectrogram, origin="lower", aspect="auto", cmap="gray_r", extent=extent)
    map_axis.imshow(
        saliency, origin="lower", aspect="auto", cmap="inferno", alpha=0.55, extent=extent, vmin=0, vmax=1
    )
    ticks = np.linspace(0, spectrogram.shape[0] - 1, 5).round().astype(int)
    map_axis.set_yticks(ticks, [f"{frequencies[t]:.0f}" for t in ticks])
    map_axis.set(ylabel="frequency (Hz)", title=title or "where the decision came from (bright: salient)")
    weights = saliency.sum(axis=0)
    weight_axis.fill_between(times + hop / 2, weights / max(float(weights.sum()), 1e-12), step="mid")
    weight_axis.set(ylabel="frame weight")
    if len(segment_times) > 1 and np.any(segment_times[1:, 0] < segment_times[:-1, 1] - 1e-9):
        x, y = segment_times.mean(axis=1), probabilities
    else:  # segments side by side: each one's probabilities held over its span
        x, y = segment_times.reshape(-1), np.repeat(probabilities, 2, axis=0)
    emotion_axis.stackplot(x, y.T, labels=classes, alpha=0.85)
    emotion_axis.set(ylabel="probability", ylim=(0, 1), xlabel="time (s)")
    emotion_axis.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7)
    return save_figure(figure, path)


def robustness_curves(
    snrs: list[float],
    noise_ua: dict[str, list[float]],
    rt60s: list[float],
    reverb_ua: list[float],
    clean_ua: float,
    path: str | Path,
    title: str = "",
    chance: float | None = None,
) -> Path:
    """UA against SNR (dB, one line per noise type) and against RT60 (s), the clean UA as a dashed line.

    ``noise_ua[name]`` holds one UA per entry of ``snrs``, ``reverb_ua`` one per entry of ``rt60s``;
    a panel without values is left out. ``chance`` (1 / classes) is drawn dotted when given.
    """
    panels = [name for name, present in (("noise", noise_ua and snrs), ("reverb", rt60s)) if present]
    figure, axes = plt.subplots(1, max(1, len(panels)), figsize=(5.5 * max(1, len(panels)), 4), squeeze=False)
    for axis, panel in zip(axes[0], panels, strict=False):
        if panel == "noise":
            order = np.argsort(snrs)[::-1]
            for name, values in noise_ua.items():
                axis.plot(np.asarray(snrs)[order], np.asarray(values)[order], marker="o", label=name)
            axis.set(xlabel="SNR (dB)", title="additive noise")
            axis.invert_xaxis()
        else:
            order = np.argsort(rt60s)
            axis.plot(
                np.asarray(rt60s)[order], np.asarray(reverb_ua)[order], marker="o", label="reverberation"
            )
            axis.set(xlabel="RT60 (s)", title="reverberation")
        axis.axhline(clean_ua, color="grey", linestyle="--", label="clean")
        if chance is not None:
            axis.axhline(chance, color="grey", linestyle=":", label="chance")
        axis.set(ylabel="UA", ylim=(0, 1))
        axis.grid(alpha=0.3)
        axis.legend()
    if not panels:
        axes[0][0].axhline(clean_ua, color="grey", linestyle="--", label="clean")
        axes[0][0].set(ylabel="UA", ylim=(0, 1), title="clean only")
        axes[0][0].legend()
    if title:
        figure.suptitle(title)
    return save_figure(figure, path)


def reliability_diagram(before: list[dict], after: list[dict], path: str | Path, title: str = "") -> Path:
    """Accuracy against mean confidence per confidence bin, before and after temperature scaling
    (bins from :func:`emovision.training.calibration.reliability`); the diagonal is perfect calibration."""
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="#999999", linestyle="--", linewidth=1, label="perfect")
    for bins, label, colour in (
        (before, "uncalibrated", "#d62728"),
        (after, "temperature-scaled", "#1f77b4"),
    ):
        used = [b for b in bins if b["count"]]
        axis.plot(
            [b["confidence"] for b in used],
            [b["accuracy"] for b in used],
            marker="o",
            color=colour,
            label=label,
        )
    axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy", title=title)
    axis.legend(loc="upper left")
    axis.grid(alpha=0.3)
    return save_figure(figure, path)
