"""Training speed of a model in the default (NCHW) and channels-last memory formats on this machine.

    .venv/bin/python benchmarks/bench_memory_format.py --model efficientnet_lite0 --pretrained
    .venv/bin/python benchmarks/bench_memory_format.py --model alexnet_gap

One AdamW step on a batch of random ``(32, 1, 64, 100)`` segments, timed over 4 steps after 2 warm-up
steps, in both formats; prints segments per second and the ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from emovision.training.models import build_ser_model


def segments_per_second(name: str, pretrained: bool, channels_last: bool, shape: tuple[int, int]) -> float:
    torch.manual_seed(0)
    model = build_ser_model(name, 7, 1, shape[0], pretrained=pretrained)
    optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
    x, y = torch.randn(32, 1, *shape), torch.randint(0, 7, (32,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    model.train()
    for step in range(6):
        if step == 2:
            start = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return 32 * 4 / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="efficientnet_lite0")
    parser.add_argument("--pretrained", action="store_true")
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--frames", type=int, default=100)
    args = parser.parse_args()
    shape = (args.height, args.frames)
    default = segments_per_second(args.model, args.pretrained, False, shape)
    last = segments_per_second(args.model, args.pretrained, True, shape)
    print(
        f"{args.model} {shape[0]}×{shape[1]}, {torch.get_num_threads()} threads: NCHW {default:.1f} seg/s, "
        f"channels-last {last:.1f} seg/s, ratio {last / default:.2f}"
    )


if __name__ == "__main__":
    main()
