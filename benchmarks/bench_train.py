"""Training throughput: emovision's loop against a plain fp32 DataLoader loop, side by side.

Both train the same model on the same segments with the same batch size and optimiser for the
same number of epochs, alternating runs so both see the same machine conditions:

* baseline — the original code's style: a ``DataLoader`` over CPU tensors, each batch copied to
  the device, fp32, default memory format;
* emovision — :class:`emovision.training.train.Trainer`: the training set resident on the device, batches
  gathered there, bf16 autocast and channels-last on a GPU.

Prints segments per second of each, the ratio, and the test-speaker UA of each after training.

    .venv/bin/python benchmarks/bench_train.py FEATURES.h5 --model alexnet_gap --epochs 3 [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from emovision.training.dataset import open_source
from emovision.training.folds import make_fold
from emovision.training.options import TrainConfig
from emovision.training.train import Trainer


def baseline_epoch(trainer: Trainer, loader: DataLoader) -> float:
    """One fp32 epoch fed by ``loader``; returns segments per second."""
    model, device = trainer.model, trainer.device
    model.train()
    seen, start = 0, time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x), y)
        trainer.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        trainer.optimizer.step()
        seen += x.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return seen / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("features")
    parser.add_argument("--model", default="alexnet_gap")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--val", default=None, help="validation speaker (default: the first)")
    parser.add_argument("--test", default=None, help="test speaker (default: the second)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    source = open_source(args.features)
    fold = make_fold(source, [args.val or source.speakers[0]], [args.test or source.speakers[1]])
    config = TrainConfig(model=args.model, epochs=args.epochs, batch_size=args.batch_size, device=args.device)
    runs = {}
    for name in ("baseline", "emovision"):
        trainer = Trainer(source, fold, config, None, None)
        trainer.prepare()
        runs[name] = trainer
    loader = DataLoader(
        TensorDataset(runs["baseline"].train_split.segments, runs["baseline"].train_split.segment_labels),
        batch_size=args.batch_size,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    speeds: dict[str, list[float]] = {"baseline": [], "emovision": []}
    for _ in range(args.epochs):
        speeds["baseline"].append(baseline_epoch(runs["baseline"], loader))
        speeds["emovision"].append(runs["emovision"].train_epoch()[1])
    result = {"device": str(runs["emovision"].device), "model": args.model, "batch_size": args.batch_size}
    for name, trainer in runs.items():
        metrics, _ = trainer.evaluate(trainer.test_split)
        result[name] = {
            "segments_per_s": statistics.median(speeds[name]),
            "test_ua": metrics["ua"],
            "test_wa": metrics["wa"],
        }
    result["ratio"] = result["emovision"]["segments_per_s"] / result["baseline"]["segments_per_s"]
    print(json.dumps(result, indent=2))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


if __name__ == "__main__":
    main()
