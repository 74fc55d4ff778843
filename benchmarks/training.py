"""Training speed of the hint network on this CPU: which precision, layout and network shape to train with.

    python benchmarks/training.py [--threads 1 2] [--steps 8] [--batch 16] [--crop 96] [--compile]

Issue 17 asks for steps per minute in fp32 against bf16 autocast (this CPU has AVX-512 BF16),
channels_last against the default layout, and `torch.compile`, at 1 and 2 threads, and for a
network shape built for CPU throughput.  Each row times --steps whole optimizer steps (forward,
loss, backward, AdamW) of `tinct.training.train.losses` on real shard crops with simulated hints,
after two warm-up steps (and after compiling, whose time is printed apart); the batches are made
beforehand, so the data pipeline (timed on its own row) is not in the step times.

The "separable" shape (`tinct train --shape separable`) swaps every 3x3 convolution past the
4 input channels for a depthwise 3x3 and a pointwise 1x1 (MobileNet style), the usual
CPU-throughput design; it replaces the shipped U-Net only if it reaches its validation PSNR.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from tinct.engines.learned import net
from tinct.training import data, train


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per row")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--compile", action="store_true", help="add torch.compile rows (minutes of compiling)")
    parser.add_argument("--cache", default="runs/train160.npy", help="decoded shards (made on first use)")
    args = parser.parse_args(argv)
    photos = data.load_shards(data.default_data_dir(), Path(args.cache))
    bins = net.ab_bins()
    weights = torch.ones(len(bins))
    gen = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    batches = []
    for _ in range(args.steps + 2):
        labs = data.batch(photos, torch.randint(0, len(photos) - 128, (args.batch,), generator=gen).numpy(),
                          args.crop, gen)
        batches.append((labs, *data.simulate_hints(labs[:, 1:], gen)))
    prep = (time.perf_counter() - started) / len(batches)
    rows = [("fp32", "contiguous", "u-net", False), ("fp32", "channels_last", "u-net", False),
            ("bf16 autocast", "contiguous", "u-net", False), ("bf16 autocast", "channels_last", "u-net", False),
            ("fp32", "channels_last", "separable", False), ("bf16 autocast", "channels_last", "separable", False)]
    if args.compile:
        rows += [("fp32", "channels_last", "u-net", True), ("bf16 autocast", "channels_last", "u-net", True)]
    print(f"batch {args.batch} x {args.crop}^2, {args.steps} timed steps; making a batch (crops, Lab, hints): "
          f"{prep:.2f} s")
    print(f"{'threads':>7} {'precision':<14} {'layout':<14} {'network':<10} {'compiled':<9} {'params M':>8} "
          f"{'s/step':>7} {'steps/min':>9} {'compile s':>9}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for precision, layout, shape, compiled in rows:
            torch.manual_seed(0)
            model = net.HintNet(len(bins), shape=shape)
            fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
            model = model.to(memory_format=fmt)  # pyright: ignore[reportCallIssue]  # stubs lack memory_format
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
            forward = torch.compile(model) if compiled else model
            bf16 = precision.startswith("bf16")

            def step(labs, hint_ab, hint_w):
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    loss, _, _ = train.losses(forward, labs, hint_ab, hint_w, bins, weights)  # pyright: ignore[reportArgumentType]
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            t0 = time.perf_counter()
            step(*batches[0])
            compile_s = time.perf_counter() - t0 if compiled else float("nan")
            step(*batches[1])
            t0 = time.perf_counter()
            for b in batches[2:]:
                step(*b)
            per = (time.perf_counter() - t0) / args.steps
            params = sum(p.numel() for p in model.parameters()) / 1e6
            print(f"{threads:>7} {precision:<14} {layout:<14} {shape:<10} {'yes' if compiled else 'no':<9} "
                  f"{params:>8.2f} {per:>7.3f} {60 / per:>9.1f} {compile_s:>9.0f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
