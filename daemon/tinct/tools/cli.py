"""The `tinct` command: colorize photos and whole archive folders; train and evaluate models.

    tinct colorize PHOTO|FOLDER ... [--hints HINTS.png] [--engine optimization|learned] [-o OUT]
    tinct train ...      (tinct.training.train)
    tinct eval ...       (tinct.training.evaluate)
"""
from __future__ import annotations

import argparse
import importlib
import sys
import time
from pathlib import Path

PHOTO_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff"}
HINTS_TAG, RESULT_TAG = ".hints", ".colorized"
# Subcommands living in their own modules, each with configure(parser) and run(args) -> int.
MODULES = {"train": "tinct.training.train", "eval": "tinct.training.evaluate", "doctor": "tinct.tools.doctor"}


def photos_in(paths: list[Path]) -> list[Path]:
    """The photos named or found (not recursively) in the named folders, skipping hints and results."""
    found = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES
                            and not p.stem.endswith((HINTS_TAG, RESULT_TAG)))
        elif path.exists():
            found.append(path)
        else:
            raise ValueError(f"{path} does not exist")
    return found


def hints_beside(photo: Path) -> Path | None:
    hints = photo.with_name(photo.stem + HINTS_TAG + ".png")
    return hints if hints.exists() else None


def output_for(photo: Path, out: Path | None, many: bool) -> Path:
    if out is None:
        return photo.with_name(photo.stem + RESULT_TAG + photo.suffix)
    return out / photo.name if many else out


class Progress:
    """A one-line progress bar on stderr, for folders of scans that take minutes."""

    def __init__(self, total: int, stream=None, width: int = 30):
        self.total, self.width, self.start = total, width, time.perf_counter()
        self.stream = stream or sys.stderr

    def update(self, done: int, label: str) -> None:
        filled = self.width * done // max(self.total, 1)
        elapsed = time.perf_counter() - self.start
        eta = elapsed / done * (self.total - done) if done else 0.0
        self.stream.write(f"\r[{'#' * filled}{'.' * (self.width - filled)}] {done}/{self.total} "
                          f"{elapsed:5.1f}s eta {eta:5.1f}s {label[:40]:<40}")
        if done == self.total:
            self.stream.write("\n")
        self.stream.flush()


def colorize_files(args) -> int:
    from tinct import api
    from tinct.color import imagefile

    photos = photos_in([Path(p) for p in args.photos])
    if not photos:
        print("tinct: no photos found (PNG, JPEG or TIFF)", file=sys.stderr)
        return 1
    many = len(photos) > 1 or any(Path(p).is_dir() for p in args.photos)
    if args.hints and many:
        print("tinct: --hints names one hints layer, for one photo; for several, put NAME.hints.png "
              "beside each photo", file=sys.stderr)
        return 2
    out = Path(args.output) if args.output else None
    if out and many:
        out.mkdir(parents=True, exist_ok=True)
    options = {k: v for k, v in (("quality", args.quality), ("vibrancy", args.vibrancy)) if v is not None}
    progress = Progress(len(photos)) if many else None
    failures = 0
    for done, photo in enumerate(photos, 1):
        target = output_for(photo, out, many)
        try:
            if target.resolve() == photo.resolve():
                raise ValueError("the output would overwrite the photo itself; choose another -o")
            hints_path = Path(args.hints) if args.hints else hints_beside(photo)
            image = imagefile.read(photo)
            hints = imagefile.read(hints_path) if hints_path else None
            result = api.colorize(image, hints, engine=args.engine, device=args.device, **options)
            imagefile.write(target, result)
        except ValueError as exc:
            failures += 1
            print(f"\ntinct: {photo}: {exc}" if progress else f"tinct: {photo}: {exc}", file=sys.stderr)
        if progress:
            progress.update(done, photo.name)
        elif not failures:
            print(target)
    return 1 if failures else 0


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
    col.add_argument("--quality", choices=["final", "preview"], help="optimization engine only")
    col.add_argument("--vibrancy", type=float,
                     help="learned engine only: 0 (muted) .. 1 (bold); default 0.65 without hints")
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
