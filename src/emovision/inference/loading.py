"""What a Recognizer is loaded with besides its weights: a cv folder's late fusion, checked against the
fold models beside it, and the calibration temperature."""

from __future__ import annotations

from pathlib import Path

from emovision.data.features import FeatureConfig
from emovision.errors import CheckpointError, EmovisionError
from emovision.inference.fusion_model import FILE_NAME as FUSION_FILE
from emovision.inference.fusion_model import LinearFusion


def fusion_of(path: Path, mode: str) -> LinearFusion | None:
    """The fused model of the cv folder ``path`` under ``mode`` (see :meth:`Recognizer.load`)."""
    file = path / FUSION_FILE if path.is_dir() else None
    if mode == "off" or file is None or not file.is_file():
        if mode == "on" and path.exists():
            raise EmovisionError(
                f"{path} has no fused model ({FUSION_FILE}): run emovision fuse on a cv folder, or "
                "emovision ensemble … --functionals FILE for an ensemble folder; or use --fusion off"
            )
        return None
    from emovision.data.functionals import require_opensmile

    try:
        require_opensmile()
    except EmovisionError as exc:
        raise EmovisionError(f"{path} fuses openSMILE functionals: {exc} (or use --fusion off)") from None
    return LinearFusion.load(file)


def check_fusion(
    fused: LinearFusion, classes: list[str], config: FeatureConfig | None, path: Path, folders: list[Path]
) -> None:
    """Refuse a fused model that does not belong to the fold models beside it (in ``folders``)."""
    from emovision.inference.runs import fingerprint

    if fused.info.get("fingerprint") != fingerprint(folders):
        raise CheckpointError(
            f"{path / FUSION_FILE} was fitted to other fold models than the ones there now (retrained or "
            "replaced since): fuse again (emovision fuse, or ensemble … --functionals), or use --fusion off"
        )
    if fused.classes != classes:
        raise CheckpointError(
            f"{path / FUSION_FILE} has the classes {fused.classes}, the fold models {classes}: rerun emovision fuse"
        )
    if config is None or config.sample_rate != fused.sample_rate:
        raise CheckpointError(
            f"{path / FUSION_FILE} was fitted on functionals at another sample rate than the fold "
            "models' features: rerun emovision fuse"
        )


def temperature_for(stored: float | None, mode: str, path: Path) -> float | None:
    """The temperature to apply under ``mode`` (see :meth:`Recognizer.load`)."""
    if mode == "on" and stored is None:
        raise EmovisionError(
            f"{path} has no calibration (trained without a validation speaker, or before calibration "
            "existed): retrain it, or use --calibration off"
        )
    return None if mode == "off" else stored
