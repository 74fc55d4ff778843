"""Colour from a reference photo (issue 18): speed at full size, and quality on the held-out photos.

    python benchmarks/reference.py speed [--megapixels 12] [--reference-megapixels 1] [--threads 2] [--repeats 3]
    python benchmarks/reference.py quality [--size 256] [--limit N]
    python benchmarks/reference.py palette [--size 256] [--limit N] [--colours 8]

speed: a photo of --megapixels (an eval photo, resized) colorized with another eval photo of
--reference-megapixels as the reference, both engines, against the same call without a
reference (a baseline measured in the same run); the steps are timed apart: decoding and Lab
(tinct.api.prepare), the transfer (matching), the solve with guided upsampling, and the way back
to RGB.  The issue's budget is <= 3 s for 12 MP with a 1 MP reference on the 2-core CPU.

quality: the protocol of shared/bench (eval photos at 256x256, grey = Lab L with a=b=0, PSNR on
8-bit RGB), each photo colorized (a) automatically by the learned engine, (b) with the issue's
"another view of the same scene" as reference: the original mirrored with 20 % of its width cut
off, (c) with an unrelated reference: the eval photo 21 places further in the list (the other
set, mostly).  For (c) it also reports whether the reference's dominant hue (the 30-degree hue
sector holding most of its chroma) is among the result's three strongest sectors, and the share
of the result's chroma in the reference's top-3 sectors.

palette: the learned engine's automatic result against the same with a palette of the photo's own
--colours dominant colours (the mean colour of the most populated 10x10 ab cells): Zhang et al.
2017's global-hint experiment, with our reweighting instead of a trained global-hint input.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from PIL import Image

from tinct import api
from tinct.color import lab, pixels
from tinct.engines import reference as transfer
from tinct.training import measure


def resized(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    h, w = rgb.shape[:2]
    scale = (megapixels * 1e6 / (h * w)) ** 0.5
    return np.asarray(Image.fromarray(rgb).resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS))


def mirrored(rgb: np.ndarray) -> np.ndarray:
    """Another view of the same scene: mirrored, 20 % of its width cut off one side."""
    m = rgb[:, ::-1]
    return np.ascontiguousarray(m[:, int(0.2 * m.shape[1]):])


def hue_sectors(rgb: np.ndarray, sectors: int = 12) -> np.ndarray:
    """Chroma-weighted histogram of Lab hue in `sectors` equal sectors, summing to 1."""
    ab = lab.srgb_to_lab(torch.tensor(rgb / 255.0).permute(2, 0, 1))[1:].reshape(2, -1).numpy()
    chroma = np.hypot(ab[0], ab[1])
    sector = ((np.degrees(np.arctan2(ab[1], ab[0])) % 360) // (360 / sectors)).astype(int)
    hist = np.bincount(sector, weights=chroma, minlength=sectors)
    return hist / max(hist.sum(), 1e-9)


def speed(args) -> None:
    photos = dict(measure.eval_images(size=None))
    names = sorted(photos)
    photo = measure.gray_of(resized(photos[names[0]], args.megapixels))
    ref = resized(photos[names[1]], args.reference_megapixels)
    device = api.default_device(args.device)
    print(f"photo {names[0]} {photo.shape[1]}x{photo.shape[0]} grey, reference {names[1]} "
          f"{ref.shape[1]}x{ref.shape[0]}, device {device}, {args.threads} threads, median of {args.repeats}")
    print(f"{'engine':<14}{'what':<34}{'seconds':>9}")
    torch.set_num_threads(args.threads)
    for engine in ("optimization", "learned"):
        eng = api.get_engine(engine)

        def whole(with_reference: bool, engine=engine):
            return api.colorize(photo, engine=engine, device=device, reference=ref if with_reference else None)

        def steps(engine=engine, eng=eng):
            times = {}
            start = time.perf_counter()
            decoded, L, hint_ab, hint_weight = api.prepare(photo, None, device)
            times["prepare (decode, Lab)"] = time.perf_counter() - start
            with torch.no_grad():
                start = time.perf_counter()
                reference = transfer.load_reference(ref, L.device)
                ab, conf = transfer.guide(L, reference)
                times["transfer (load, match)"] = time.perf_counter() - start
                start = time.perf_counter()
                weight = transfer.data_term(conf)
                if engine == "learned":
                    steer = transfer.histogram_of(reference, torch.Generator().manual_seed(0))
                    net, _ = eng.network_prior(L, hint_ab, hint_weight, palette=steer)
                    times["network (palette-steered)"] = time.perf_counter() - start
                    start = time.perf_counter()
                    net = torch.nn.functional.interpolate(net[None], size=ab.shape[-2:], mode="bilinear")[0]
                    ab = (weight * ab + transfer.NET_WEIGHT * net) / (weight + transfer.NET_WEIGHT)
                    weight = weight + transfer.NET_WEIGHT
                out = transfer.solve(L, hint_ab, hint_weight, ab, weight)
                times["solve + guided upsampling"] = time.perf_counter() - start
                start = time.perf_counter()
                pixels.encode_lab(L, out, decoded)
                times["back to RGB (L kept, encode)"] = time.perf_counter() - start
            return times

        whole(True)  # warm-up: kernels, weights
        runs = [steps() for _ in range(args.repeats)]
        for what in runs[0]:
            print(f"{engine:<14}{what:<34}{statistics.median(r[what] for r in runs):9.2f}")
        for with_reference, label in ((True, "whole colorize, with reference"),
                                      (False, "whole colorize, no reference")):
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                whole(with_reference)
                times.append(time.perf_counter() - start)
            print(f"{engine:<14}{label:<34}{statistics.median(times):9.2f}")


def quality(args) -> None:
    photos = list(measure.eval_images(size=args.size))[:args.limit]
    rows = {k: [] for k in ("grey", "auto", "opt_view", "learned_view", "opt_other", "learned_other")}
    hue_hits = {"auto": [], "opt_other": [], "learned_other": []}
    hue_share = {"auto": [], "opt_other": [], "learned_other": []}
    for i, (name, rgb) in enumerate(photos):
        grey = measure.gray_of(rgb)
        other = photos[(i + 21) % len(photos)][1]
        ref_hist = hue_sectors(other)
        top3 = np.argsort(ref_hist)[::-1][:3]
        results = {
            "grey": grey,
            "auto": api.colorize(grey, engine="learned"),
            "opt_view": api.colorize(grey, reference=mirrored(rgb)),
            "learned_view": api.colorize(grey, engine="learned", reference=mirrored(rgb)),
            "opt_other": api.colorize(grey, reference=other),
            "learned_other": api.colorize(grey, engine="learned", reference=other),
        }
        for key, out in results.items():
            rows[key].append(measure.psnr(out, rgb))
            if key in hue_hits:
                hist = hue_sectors(out)
                hue_hits[key].append(int(np.argmax(ref_hist) in np.argsort(hist)[::-1][:3]))
                hue_share[key].append(float(hist[top3].sum()))
        print(f"{name:<22}" + " ".join(f"{k}={rows[k][-1]:.2f}" for k in rows), flush=True)
    n = len(photos)
    auto = float(np.mean(rows["auto"]))
    print(f"\n{n} photos at {args.size}x{args.size}; PSNR dB (mean), difference to the learned automatic result")
    print(f"{'what':<48}{'PSNR':>7}{'vs auto':>9}{'dominant hue':>14}{'top-3 share':>13}")
    labels = {"grey": "grey (L only)", "auto": "learned, automatic",
              "opt_view": "optimization, reference = another view",
              "learned_view": "learned, reference = another view",
              "opt_other": "optimization, unrelated reference",
              "learned_other": "learned, unrelated reference"}
    for key, label in labels.items():
        mean = float(np.mean(rows[key]))
        hue = f"{100 * np.mean(hue_hits[key]):13.0f}%" if key in hue_hits else " " * 14
        share = f"{100 * np.mean(hue_share[key]):12.0f}%" if key in hue_share else ""
        print(f"{label:<48}{mean:7.2f}{mean - auto:+9.2f}{hue}{share}")


def dominant_colours(rgb: np.ndarray, count: int) -> np.ndarray:
    """The mean sRGB colour of each of the `count` most populated 10x10 Lab ab cells of `rgb`."""
    ab = lab.srgb_to_lab(torch.tensor(rgb / 255.0).permute(2, 0, 1))[1:].reshape(2, -1).numpy()
    cells = np.floor(ab / 10).astype(int)
    keys = cells[0] * 1000 + cells[1]
    values, counts = np.unique(keys, return_counts=True)
    pixels_rgb = rgb.reshape(-1, 3).astype(np.float64)
    return np.array([pixels_rgb[keys == k].mean(0) for k in values[np.argsort(counts)[::-1][:count]]])


def palette(args) -> None:
    photos = list(measure.eval_images(size=args.size))[:args.limit]
    auto, steered = [], []
    for name, rgb in photos:
        grey = measure.gray_of(rgb)
        auto.append(measure.psnr(api.colorize(grey, engine="learned"), rgb))
        steered.append(measure.psnr(api.colorize(grey, engine="learned",
                                                 palette=dominant_colours(rgb, args.colours)), rgb))
        print(f"{name:<22}auto={auto[-1]:.2f} palette={steered[-1]:.2f}", flush=True)
    print(f"\n{len(photos)} photos at {args.size}x{args.size}; learned engine, PSNR dB (mean)")
    print(f"automatic {np.mean(auto):.2f}, palette of the photo's {args.colours} dominant colours "
          f"{np.mean(steered):.2f} ({np.mean(steered) - np.mean(auto):+.2f})")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("speed")
    sp.add_argument("--megapixels", type=float, default=12.0)
    sp.add_argument("--reference-megapixels", type=float, default=1.0)
    sp.add_argument("--threads", type=int, default=2)
    sp.add_argument("--repeats", type=int, default=3)
    sp.add_argument("--device", default="cpu")
    q = sub.add_parser("quality")
    q.add_argument("--size", type=int, default=256)
    q.add_argument("--limit", type=int, default=None, help="only the first N eval photos")
    pq = sub.add_parser("palette")
    pq.add_argument("--size", type=int, default=256)
    pq.add_argument("--limit", type=int, default=None, help="only the first N eval photos")
    pq.add_argument("--colours", type=int, default=8)
    args = parser.parse_args(argv)
    {"speed": speed, "quality": quality, "palette": palette}[args.what](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
