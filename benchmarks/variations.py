"""Variations (issue 17 item 5): how different they are and whether one of them is closer to the photo.

    python benchmarks/variations.py [--count 4] [--seed 0] [--hints 0] [--limit N] [--photos eval|val] [--threads 1]

The shared/bench protocol (tinct.training.measure): the eval photos at 256x256 (or the shards'
held-out validation photos at 160x160, made by `tinct train`'s cache), grey input, no hints (or
--hints N of the bench's simulated strokes, seeded per photo as `tinct eval` seeds them).  For each
photo, `tinct.colorize(..., variations=count)`: diversity is the mean ab distance (CIELAB units)
between every pair of the variations, averaged over pixels; best-of-N is the highest PSNR among them,
set beside the single automatic answer's PSNR (the first variation, the same image) and the grey
baseline; colourfulness (Hasler & Suesstrunk) of the others as a share of the originals'.
"""
from __future__ import annotations

import argparse
import itertools
import time
import zlib

import numpy as np
import torch

from tinct import api
from tinct.color import lab
from tinct.training import evaluate, measure


def ab_of(rgb_u8: np.ndarray) -> torch.Tensor:
    return lab.srgb_to_lab(torch.from_numpy(rgb_u8.astype(np.float64) / 255).permute(2, 0, 1))[1:]


def diversity(images: list[np.ndarray]) -> float:
    """Mean over pairs of the per-pixel ab distance between two variations."""
    abs_ = [ab_of(v) for v in images]
    return float(np.mean([(a - b).norm(dim=0).mean().item() for a, b in itertools.combinations(abs_, 2)]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=4, help="variations per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hints", type=int, default=0, help="simulated strokes per photo")
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--photos", choices=["eval", "val"], default="eval")
    parser.add_argument("--cache", default="runs/train160.npy", help="decoded shards, for --photos val")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    photos = measure.eval_images(size=256) if args.photos == "eval" else evaluate.validation_photos(args.cache)
    rows = []
    start = time.perf_counter()
    print(f"{'photo':<22}{'grey':>7}{'auto':>7}{f'best{args.count}':>7}{'others':>8}{'div':>7}{'colour':>8}")
    for name, rgb in itertools.islice(photos, args.limit):
        grey = measure.gray_of(rgb)
        layer = (measure.hints_of(rgb, args.hints, np.random.default_rng(zlib.crc32(name.encode())))
                 if args.hints else None)
        out = api.colorize(grey, layer, engine="learned", device=args.device, variations=args.count, seed=args.seed)
        scores = [measure.psnr(v, rgb) for v in out]
        colour = np.mean([measure.colorfulness(v) for v in out[1:]]) / max(measure.colorfulness(rgb), 1e-9)
        row = (measure.psnr(grey, rgb), scores[0], max(scores), float(np.mean(scores[1:])), diversity(out), colour)
        rows.append(row)
        print(f"{name:<22}" + "".join(f"{v:>7.2f}" for v in row[:5]) + f"{row[5] * 100:>7.0f}%", flush=True)
    mean = np.mean(rows, axis=0)
    print(f"{'mean of ' + str(len(rows)):<22}" + "".join(f"{v:>7.2f}" for v in mean[:5]) + f"{mean[5] * 100:>7.0f}%")
    print(f"best of {args.count} {mean[2] - mean[1]:+.2f} dB over the automatic answer ({mean[1] - mean[0]:+.2f} dB "
          f"against grey); the others {mean[3] - mean[1]:+.2f} dB on average; mean pairwise ab distance "
          f"{mean[4]:.1f}; {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
