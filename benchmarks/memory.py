"""Peak memory of one colorize job per engine, quality and size: the figures tinct.serve.admission uses.

    python benchmarks/memory.py [--sizes 0.25 1 4] [--engines optimization learned]
                                [--qualities final preview live] [--photos kodim01 kodim14] [--strokes 100]
                                [--tol 0] [--json FILE] [--replay FILE]

Every job runs in a fresh Python process (one torch thread, OMP_NUM_THREADS=1), so no job
inherits another's heap.  The child imports tinct, warms the engine on a 32x32 photo (the
network's weights, PyTorch's lazy set-up), builds its inputs (a Kodak photo upscaled with
Lanczos to the size, 3:2 as the originals, turned grey; --strokes short coloured strokes
whose colours are the original's own, on an RGBA hints layer), and only then reads its peak
RSS (getrusage ru_maxrss).  peak+ is the peak after `tinct.colorize` minus that peak: memory
the job itself added, its result array included, its inputs not (in tinctd they arrived with
the request).  hwm+ is the kernel's high-water mark (VmHWM, reset through /proc/self/clear_refs
just before the call) minus the resting RSS then; it is the larger one wherever building the
inputs left a transient peak above the resting RSS (at 4 MP and more), so a job's figure is
the larger of the two.  --tol 0 makes the solver run every iteration, the worst case of `final`.

The table gives MB per megapixel per job and a least-squares `fixed MB + MB/MP` over the sizes
for each engine / quality / hints case.  The learned engine runs with and without strokes
(without, it is the automatic case); the optimization engine always has strokes (without any
it answers grey at once).  --sizes 12 works too (about 5 GB a job for `final`) but is not run
by default.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

EVAL = Path(os.environ.get("TINCT_EVAL_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "eval"))
MB = 1e6


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_hwm() -> bool:
    """Reset the kernel's peak RSS of this process to its current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def photo_path(name: str) -> Path:
    hits = sorted(EVAL.glob(f"*/{name}.png"))
    if not hits:
        raise SystemExit(f"no photo {name}.png under {EVAL}/*/ (set TINCT_EVAL_DIR)")
    return hits[0]


def inputs(path: Path, megapixels: float, strokes: int, seed: int = 0):
    """(grey (H, W) uint8, hints (H, W, 4) uint8): the photo upscaled to `megapixels`, aspect kept."""
    import numpy as np
    from PIL import Image, ImageDraw

    original = Image.open(path).convert("RGB")
    aspect = original.width / original.height
    height = max(8, round(math.sqrt(megapixels * 1e6 / aspect)))
    width = max(8, round(height * aspect))
    colour = original.resize((width, height), Image.Resampling.LANCZOS)
    grey = np.asarray(colour.convert("L")).copy()
    rgb = np.asarray(colour)
    rng = np.random.default_rng(seed)
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    short = min(width, height)
    thickness, length = max(2, short // 250), max(4, short // 40)
    for _ in range(strokes):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        angle = rng.uniform(0, math.pi)
        dx, dy = length / 2 * math.cos(angle), length / 2 * math.sin(angle)
        r, g, b = (int(v) for v in rgb[y, x])
        draw.line([(x - dx, y - dy), (x + dx, y + dy)], fill=(r, g, b, 255), width=thickness)
    hints = np.asarray(layer).copy()
    return grey, hints


def child(args) -> None:
    """One job in this process; prints one JSON line."""
    import gc

    import numpy as np
    import torch

    torch.set_num_threads(1)
    import tinct

    warm_grey, warm_hints = inputs(photo_path(args.photo), 32 * 32 / 1e6, 3)
    tinct.colorize(warm_grey, warm_hints, engine=args.engine, quality=args.quality)
    if args.engine == "learned":
        tinct.colorize(warm_grey, None, engine=args.engine, quality=args.quality)
    grey, hints = inputs(photo_path(args.photo), args.mp, args.strokes)
    hints = hints if args.hints else None
    if args.tol is not None:  # both engines' solve reads it (the learned engine has no `tol` option)
        from tinct.engines.optimization import levin
        levin.TOL[args.quality] = args.tol
    gc.collect()
    before_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    before_rss = status_kb("VmRSS")
    hwm_reset = reset_hwm()
    iterations = []
    start = time.perf_counter()
    out = tinct.colorize(grey, hints, engine=args.engine, quality=args.quality,
                         callback=lambda it, res: iterations.append(it))
    seconds = time.perf_counter() - start
    after_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    after_hwm = status_kb("VmHWM")
    assert out.shape == grey.shape + (3,) and out.dtype == np.uint8
    print(json.dumps({
        "engine": args.engine, "quality": args.quality, "hints": bool(args.hints), "mp": args.mp,
        "pixels": int(grey.size), "photo": args.photo, "seconds": seconds,
        "iterations": max(iterations, default=0),
        "input_bytes": int(grey.nbytes + (hints.nbytes if hints is not None else 0)),
        "output_bytes": int(out.nbytes),
        "baseline_peak": before_peak * 1024, "baseline_rss": before_rss * 1024,
        "increment": (after_peak - before_peak) * 1024,
        "hwm_increment": (after_hwm - before_rss) * 1024 if hwm_reset else None,
    }))


def measure(engine: str, quality: str, hints: bool, mp: float, photo: str, strokes: int,
            tol: float | None = None, timeout: float | None = None) -> dict:
    """Run one job in a fresh interpreter (one thread) and return its record."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--engine", engine, "--quality", quality,
           "--mp", repr(mp), "--photo", photo, "--strokes", str(strokes)] + ([] if hints else ["--no-hints"])
    cmd += ["--tol", repr(tol)] if tol is not None else []
    done = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{engine}/{quality} at {mp} MP failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fit(points: list[tuple[float, float]]) -> tuple[float, float]:
    """Least-squares (fixed, per-unit) through (x, y) points; per-unit only when there is one x."""
    if len({x for x, _ in points}) < 2:
        x, y = points[0]
        return 0.0, y / x
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return my - slope * mx, slope


def cases(engines, qualities):
    for engine in engines:
        for quality in qualities:
            for hints in ((True, False) if engine == "learned" else (True,)):
                yield engine, quality, hints


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4], help="megapixels (12 allowed)")
    ap.add_argument("--engines", nargs="+", default=["optimization", "learned"])
    ap.add_argument("--qualities", nargs="+", default=["final", "preview", "live"])
    ap.add_argument("--photos", nargs="+", default=["kodim01", "kodim14"],
                    help="Kodak photos (names) from the eval set")
    ap.add_argument("--strokes", type=int, default=100)
    ap.add_argument("--tol", type=float,
                    help="the solver's relative residual goal (tinct.engines.optimization.levin.TOL, set in the "
                    "child after warming up); 0 runs every iteration (MAX_ITER), so `final`'s GCR fills its "
                    "whole restart window: the worst case")
    ap.add_argument("--json", type=Path, help="also write every record here")
    ap.add_argument("--replay", type=Path, help="print the table of a --json file instead of measuring")
    # the child's own arguments
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    ap.add_argument("--quality", help=argparse.SUPPRESS)
    ap.add_argument("--mp", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--photo", help=argparse.SUPPRESS)
    ap.add_argument("--no-hints", dest="hints", action="store_false", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return

    if args.replay:
        records = json.loads(args.replay.read_text())
        print(f"replayed from {args.replay}")
        table(records, (r for r in records), args)
        return
    print(f"{time.strftime('%Y-%m-%d')}, python {sys.version.split()[0]}, one torch thread per job, "
          f"fresh process per job, photos {', '.join(args.photos)}, {args.strokes} strokes, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
          + (f", solver tol {args.tol:g}" if args.tol is not None else ""), flush=True)
    records: list[dict] = []

    def run():
        for engine, quality, hints in cases(args.engines, args.qualities):
            for mp in args.sizes:
                for photo in args.photos:
                    records.append(measure(engine, quality, hints, mp, photo, args.strokes, args.tol))
                    if args.json:
                        args.json.write_text(json.dumps(records, indent=1))
                    yield records[-1]

    table(records, run(), args)


def table(records: list[dict], jobs, args) -> None:
    """Print each job as it comes from `jobs`, then the fit per case over `records`."""
    head = (f"{'engine':<13}{'quality':<8}{'hints':<6}{'MP':>6} {'photo':<8}{'it':>3}{'s':>6} {'input MB':>9} "
            f"{'base MB':>8} {'peak+ MB':>9} {'hwm+ MB':>8} {'MB/MP':>6}")
    print(head)
    print("-" * len(head), flush=True)
    for r in jobs:
        r["job"] = max(r["increment"], r["hwm_increment"] or 0)
        mpx = r["pixels"] / 1e6
        hwm = f"{r['hwm_increment'] / MB:8.0f}" if r["hwm_increment"] is not None else f"{'-':>8}"
        print(f"{r['engine']:<13}{r['quality']:<8}{'yes' if r['hints'] else 'no':<6}{mpx:6.2f} {r['photo']:<8}"
              f"{r['iterations']:3d}{r['seconds']:6.1f} {r['input_bytes'] / MB:9.1f} {r['baseline_peak'] / MB:8.0f} "
              f"{r['increment'] / MB:9.0f} {hwm} {r['job'] / MB / mpx:6.0f}", flush=True)
    print()
    print("MB/MP: the job's figure, the larger of peak+ and hwm+, over its megapixels.  Fit: job = fixed + "
          "per-MP x MP, least squares over the sizes, each size's worst photo.")
    head = f"{'engine':<13}{'quality':<8}{'hints':<6}{'fixed MB':>9} {'MB/MP':>7}  MB/MP at each size (worst photo)"
    print(head)
    print("-" * len(head))
    seen = []
    for r in records:
        case = (r["engine"], r["quality"], r["hints"])
        if case in seen:
            continue
        seen.append(case)
        sel = [r for r in records if (r["engine"], r["quality"], r["hints"]) == case]
        pts = []
        for mp in sorted({r["mp"] for r in sel}):
            worst = max((r for r in sel if r["mp"] == mp), key=lambda r: r["job"])
            pts.append((worst["pixels"] / 1e6, worst["job"] / MB))
        fixed, slope = fit(pts)
        print(f"{case[0]:<13}{case[1]:<8}{'yes' if case[2] else 'no':<6}{fixed:9.0f} {slope:7.0f} "
              "  " + " ".join(f"{y / x:5.0f}" for x, y in pts))


if __name__ == "__main__":
    main()
