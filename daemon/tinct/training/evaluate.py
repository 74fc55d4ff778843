"""Evaluate the engines: PSNR against the number of hints, colourfulness without hints, grey kept grey.

    tinct eval [--engines learned optimization] [--hints 0 1 2 5 10 20 50 100] [--out eval-out]
    tinct eval --photos val --set prior_weight=1e-4 ...   (tune on held-out training photos)

The protocol of shared/bench (tinct.training.measure): the eval photos resized to 256x256, grey
input = the photo's Lab lightness, N hints = 6x6 patches of the photo's mean ab at
Gaussian-distributed centres with a fixed seed per photo, PSNR on 8-bit RGB.  Writes a
CSV of every (engine, hints, photo) and a PNG plot of the mean curves beside the grey
baseline.  Engine settings are chosen with `--photos val` (the training shards' held-out
slice) so that the eval set only ever measures.
"""
from __future__ import annotations

import argparse
import csv
import zlib
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

from tinct import api

from . import data, measure

if TYPE_CHECKING:
    import torch

HINT_COUNTS = (0, 1, 2, 5, 10, 20, 50, 100)
Row = tuple[str, int, str, float, float, float]  # engine, hints, photo, psnr, colourfulness, original's
COLOURS = {"learned": (200, 60, 40), "optimization": (40, 90, 200), "grey": (120, 120, 120)}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--engines", nargs="+", default=["learned", "optimization"])
    parser.add_argument("--hints", type=int, nargs="+", default=list(HINT_COUNTS))
    parser.add_argument("--eval-dir", default=None, help="default: shared/data/eval beside the checkout")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--limit", type=int, default=None, help="only the first N photos")
    parser.add_argument("--out", default="eval-out", help="folder for eval.csv and eval.png")
    parser.add_argument("--device", default=None)
    parser.add_argument("--photos", choices=["eval", "val", "objects"], default="eval",
                        help="eval: the evaluation photos; val: the shards' last photos and the held-out object "
                        "set's validation half (160x160), for tuning; objects: its test half (160x160), never tuned on")
    parser.add_argument("--cache", default="runs/train160.npy", help="decoded shards (made by tinct train)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="options",
                        help="a learned-engine option, e.g. prior_weight=1e-4 or vibrancy=0.5 (repeatable)")


def engine_options(pairs: list[str]) -> dict:
    """["vibrancy=0.5", "quality=preview"] -> {"vibrancy": 0.5, "quality": "preview"}."""
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--set takes KEY=VALUE, not {pair!r}")
        try:
            options[key] = float(value)
        except ValueError:
            options[key] = value
    return options


def validation_photos(cache: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, rgb) for the photos engine settings are chosen on, which training never sees: the
    shards' last photos (scenes), then the held-out object set's validation half."""
    photos = data.load_shards(data.default_data_dir(), Path(cache))
    for i, rgb in enumerate(photos[len(photos) - data.VAL_PHOTOS:]):
        yield f"val/{i:03d}", np.array(rgb)
    yield from _objects(photos, "validation")


def held_out_objects(cache: str | Path) -> Iterator[tuple[str, np.ndarray]]:
    """(name, rgb) for the held-out object set's test half (tinct.training.data.object_photos):
    objects, pets, clothing and people that training never sees and no setting is chosen on."""
    yield from _objects(data.load_shards(data.default_data_dir(), Path(cache)), "test")


def _objects(photos: np.ndarray, part: str) -> Iterator[tuple[str, np.ndarray]]:
    names = data.shard_names(data.default_data_dir())
    for i in data.object_photos(data.default_data_dir(), names, part):
        yield f"objects/{Path(names[i]).stem}", np.array(photos[i])


def sweep(engines: Sequence[str], counts: Sequence[int], photos: Iterable[tuple[str, np.ndarray]],
          device: torch.device | str | None = None, options: dict[str, Any] | None = None) -> list[Row]:
    """Rows of (engine, hints, photo, psnr, colourfulness of output, colourfulness of original)."""
    rows: list[Row] = []
    for name, rgb in photos:
        grey = measure.gray_of(rgb)
        seed = zlib.crc32(name.encode())
        rows.append(("grey", 0, name, measure.psnr(grey, rgb), measure.colorfulness(grey), measure.colorfulness(rgb)))
        for n in counts:
            layer = measure.hints_of(rgb, n, np.random.default_rng(seed)) if n else None
            for engine in engines:
                if engine == "optimization" and n == 0:
                    continue  # needs strokes: it would return the grey input
                opts = (options or {}) if engine == "learned" else {}
                out = api.colorize(grey, layer, engine=engine, device=device, **opts)
                rows.append((engine, n, name, measure.psnr(out, rgb), measure.colorfulness(out),
                             measure.colorfulness(rgb)))
    return rows


def grey_originals(photos: Iterable[tuple[str, np.ndarray]], strokes: int = 10,
                   device: torch.device | str | None = None, options: dict[str, Any] | None = None) -> list[float]:
    """PSNR of the learned engine on each photo made black-and-white, given `strokes` neutral hints
    (the bench's patches, taken from the grey original): a neutral stroke means "no colour here", so
    the answer should be the grey original itself (issue 17 asks for 45 dB or more)."""
    scores = []
    for name, rgb in photos:
        grey = measure.gray_of(rgb)
        layer = measure.hints_of(grey, strokes, np.random.default_rng(zlib.crc32(name.encode())))
        out = api.colorize(grey, layer, engine="learned", device=device, **(options or {}))
        scores.append(measure.psnr(out, grey))
    return scores


def summary(rows: Sequence[Row]) -> tuple[dict[str, dict[int, float]], float | None]:
    """{engine: {hints: mean psnr}} and the mean colourfulness ratio of hint-free outputs."""
    table: dict[str, dict[int, list[float]]] = {}
    for engine, n, *_ in rows:
        table.setdefault(engine, {}).setdefault(n, [])
    for engine, n, _, psnr, *_ in rows:
        table[engine][n].append(psnr)
    means = {e: {n: float(np.mean(v)) for n, v in sorted(d.items())} for e, d in table.items()}
    auto = [(c, o) for e, n, _, _, c, o in rows if e == "learned" and n == 0]
    ratio = float(np.mean([c for c, _ in auto]) / np.mean([o for _, o in auto])) if auto else None
    return means, ratio


def plot(means: dict[str, dict[int, float]], counts: Sequence[int], path: Path,
         size: tuple[int, int] = (640, 400)) -> None:
    """PSNR against hints (log-ish x axis), one polyline per engine, grey baseline dashed."""
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    left, right, top, bottom = 60, size[0] - 130, 20, size[1] - 50
    values = [v for m in means.values() for v in m.values()]
    lo, hi = np.floor(min(values)) - 1, np.ceil(max(values)) + 1
    xs = {n: left + (right - left) * np.log1p(n) / np.log1p(max(max(counts), 1)) for n in counts}

    def y(v):
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    d.rectangle([left, top, right, bottom], outline="black")
    for v in np.arange(lo, hi + 0.1, 2):
        d.line([left - 4, y(v), left, y(v)], fill="black")
        d.text((left - 40, y(v) - 6), f"{v:.0f} dB", fill="black")
    for n, x in xs.items():
        d.line([x, bottom, x, bottom + 4], fill="black")
        d.text((x - 6, bottom + 8), str(n), fill="black")
    d.text(((left + right) / 2 - 40, bottom + 26), "number of hints", fill="black")
    for i, (engine, m) in enumerate(means.items()):
        colour = COLOURS.get(engine, (0, 0, 0))
        if engine == "grey":
            d.line([left, y(m[0]), right, y(m[0])], fill=colour, width=1)
        else:
            pts = [(xs[n], y(v)) for n, v in m.items() if n in xs]
            d.line(pts, fill=colour, width=2)
            for px, py in pts:
                d.ellipse([px - 3, py - 3, px + 3, py + 3], fill=colour)
        d.text((right + 10, top + 16 * i), engine, fill=colour)
    img.save(path)


def run(args: argparse.Namespace) -> int:
    options = engine_options(args.options)
    if args.photos == "val":
        photos = list(validation_photos(args.cache))[:args.limit]
    elif args.photos == "objects":
        photos = list(held_out_objects(args.cache))[:args.limit]
    else:
        photos = list(measure.eval_images(args.eval_dir, size=args.size))[:args.limit]
    rows = sweep(args.engines, args.hints, photos, args.device, options)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "eval.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["engine", "hints", "photo", "psnr_db", "colorfulness", "original_colorfulness"])
        w.writerows(rows)
    means, ratio = summary(rows)
    plot(means, args.hints, out / "eval.png")
    grey = means["grey"][0]
    side = photos[0][1].shape[0]
    print(f"{len(photos)} {args.photos} photos at {side}x{side}{' with ' + str(options) if options else ''}; "
          f"grey baseline {grey:.2f} dB")
    print("hints  " + "  ".join(f"{n:>6}" for n in args.hints))
    for engine, m in means.items():
        if engine != "grey":
            print(f"{engine:<13}" + "  ".join(f"{m[n]:6.2f}" if n in m else f"{'-':>6}" for n in args.hints))
    if ratio is not None:
        auto = means["learned"][0] - grey
        print(f"automatic: {auto:+.2f} dB against grey, colourfulness {100 * ratio:.0f} % of the originals'")
    if "learned" in args.engines:
        scores = grey_originals(photos, device=args.device, options=options)
        print(f"black-and-white originals with 10 neutral strokes: {np.mean(scores):.2f} dB mean, "
              f"{min(scores):.2f} dB worst (learned)")
    print(f"wrote {out / 'eval.csv'} and {out / 'eval.png'}")
    return 0
