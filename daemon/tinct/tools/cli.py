"""The `tinct` command: colorize photos and whole archive folders; train and evaluate models.

    tinct colorize PHOTO|FOLDER ... [--hints HINTS.png] [--engine optimization|learned] [-o OUT]
                   [--reference REF] [--palette RRGGBB ...]   (tinct.engines.reference)
                   [--variations N [--seed S]]   (NAME.v1.EXT ... NAME.vN.EXT; tinct.engines.learned.variations)
                   [--cluster auto|HOST:PORT|ray://HOST:PORT]   (tinct.tools.batch, tinct.tools.cluster)
    tinct train ...      (tinct.training.train)
    tinct eval ...       (tinct.training.evaluate)
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

# Subcommands living in their own modules, each with configure(parser) and run(args) -> int.
MODULES = {"train": "tinct.training.train", "eval": "tinct.training.evaluate", "doctor": "tinct.tools.doctor"}


def colorize_files(args: argparse.Namespace) -> int:
    """`tinct colorize`: one photo, or a batch (resumable when -o names a folder), here or on a Ray cluster."""
    from . import batch

    photos = batch.photos_in([Path(p) for p in args.photos])
    if not photos:
        print("tinct: no photos found (PNG, JPEG or TIFF)", file=sys.stderr)
        return 1
    many = len(photos) > 1 or any(Path(p).is_dir() for p in args.photos)
    out = Path(args.output) if args.output else None
    if args.variations is not None:
        from tinct.engines.learned import variations

        variations.check_count(args.variations)
        if args.engine != "learned":
            raise ValueError("--variations come from the learned engine: add --engine learned")
    if args.seed is not None and args.variations is None:
        raise ValueError("--seed chooses which variations are drawn; give --variations too")
    jobs = batch.plan(photos, out, many, Path(args.hints) if args.hints else None,
                      Path(args.reference) if args.reference else None, args.variations)
    options = {k: v for k, v in (("quality", args.quality), ("vibrancy", args.vibrancy),
                                 ("palette", args.palette), ("seed", args.seed)) if v is not None}
    if args.threads is not None and args.threads < 1:
        raise ValueError(f"--threads {args.threads}: give 1 or more")
    manifest = None
    if out and many:
        out.mkdir(parents=True, exist_ok=True)
        settings = {"engine": args.engine, **options}
        if args.variations is not None:
            settings["variations"] = args.variations
        manifest = batch.Manifest(out / batch.MANIFEST, settings)  # locks OUT
        batch.remove_parts(out)
    try:
        if args.cluster:
            from . import cluster

            runner = cluster.results(args.cluster, args.engine, args.device, options, args.threads)
        else:
            runner = batch.local_results(args.engine, args.device, options, args.threads)
        return batch.run(jobs, runner, manifest, bar=many)
    finally:
        if manifest:
            manifest.close()


def hex_colour(text: str) -> list[int]:
    """'#1e90ff' or '1e90ff' -> [30, 144, 255]."""
    digits = text.removeprefix("#")
    if len(digits) != 6 or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise argparse.ArgumentTypeError(f"{text!r} is not a colour as RRGGBB hex digits, e.g. 1e90ff")
    return [int(digits[i:i + 2], 16) for i in (0, 2, 4)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tinct", description="Photo colorization from a few colour strokes.")
    sub = parser.add_subparsers(dest="command", required=True)
    col = sub.add_parser("colorize", help="colorize photos or folders of photos")
    col.add_argument("photos", nargs="+", help="photos (PNG, JPEG, TIFF; 8 or 16 bits) or folders of them")
    col.add_argument("--hints", help="RGBA hints layer for a single photo (default: NAME.hints.png beside it)")
    col.add_argument("--engine", default="optimization", choices=["optimization", "learned"])
    col.add_argument("-o", "--output", help="output file (one photo) or folder (several); "
                     "default NAME.colorized.EXT beside each photo")
    col.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    col.add_argument("--quality", choices=["final", "preview", "live"], help="optimization engine only")
    col.add_argument("--vibrancy", type=float,
                     help="learned engine only: 0 (muted) .. 1 (bold); default 0.65 without hints")
    col.add_argument("--reference", metavar="REF",
                     help="a colour photo whose colours to take, for every photo (default: NAME.ref.* beside each)")
    col.add_argument("--palette", nargs="+", type=hex_colour, metavar="RRGGBB",
                     help="learned engine only: colours to steer towards, e.g. 1e90ff f4a460")
    col.add_argument("--variations", type=int, metavar="N",
                     help="learned engine only: N (1..8) different colorizations of each photo, written as "
                     "OUTPUT.v1.EXT ... OUTPUT.vN.EXT; the first is the ordinary answer")
    col.add_argument("--seed", type=int, metavar="S",
                     help="with --variations: which ones are drawn (default 0); the same seed gives the same files")
    col.add_argument("--cluster", metavar="ADDRESS",
                     help="colorize on a Ray cluster: auto, HOST:PORT or ray://HOST:PORT "
                     "(needs pip install 'tinct[cluster]'; see docs/cluster.md)")
    col.add_argument("--threads", type=int, metavar="N",
                     help="PyTorch threads per photo (default: all cores here; 1 per photo on a cluster, "
                     "one photo per CPU); outputs are the same byte for byte for the same N")
    col.set_defaults(run=colorize_files)
    for name, module in MODULES.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue  # that part of Tinct is not in this copy
        sp = sub.add_parser(name, help=(mod.__doc__ or "").strip().splitlines()[0] if mod.__doc__ else None)
        mod.configure(sp)
        sp.set_defaults(run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except ValueError as exc:
        print(f"tinct: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
