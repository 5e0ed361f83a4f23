"""The original command line, kept working: ``python train_ser.py FEATURES --ser_model alexnet ...``.

``--gpu 1`` trains on the GPU, ``--gpu 0`` on the CPU; ``--save_label LABEL`` writes
``LABEL.pth``; the run folder is ``runs/LABEL`` (``runs/<model>`` without a label). Every
other option of ``emovision train`` is accepted too.
"""

from __future__ import annotations

import argparse
import sys

from emovision.cli import main as emovision_main


def translate(argv: list[str]) -> list[str]:
    """The original options → ``emovision train`` options."""
    parser = argparse.ArgumentParser(prog="train_ser.py", description=__doc__)
    parser.add_argument("features_file")
    parser.add_argument("--ser_model", default="alexnet", help="alexnet, alexnet_gap or any emovision model")
    parser.add_argument("--val_id", required=True)
    parser.add_argument("--test_id", required=True)
    parser.add_argument("--num_epochs", type=int, default=100)
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=111)
    parser.add_argument("--gpu", type=int, choices=[0, 1], default=1, help="1: GPU, 0: CPU")
    parser.add_argument("--save_label", default=None)
    for flag in ("--pretrained", "--mixup", "--oversampling", "--stability"):
        parser.add_argument(flag, action="store_true")
    known, rest = parser.parse_known_args(argv)
    label = known.save_label or known.ser_model
    args = [
        "train", known.features_file,
        "--model", known.ser_model,
        "--val-speaker", known.val_id,
        "--test-speaker", known.test_id,
        "--epochs", str(known.num_epochs),
        "--batch-size", str(known.batch_size),
        "--lr", str(known.lr),
        "--seed", str(known.seed),
        "--device", "cuda" if known.gpu else "cpu",
    ]  # fmt: skip
    if "--out" not in rest:
        args += ["--out", f"runs/{label}"]
    if known.save_label:
        args += ["--save-label", known.save_label]
    args += [
        flag
        for flag in ("--pretrained", "--mixup", "--oversampling", "--stability")
        if getattr(known, flag[2:])
    ]
    return args + rest


if __name__ == "__main__":
    sys.exit(emovision_main(translate(sys.argv[1:])))
