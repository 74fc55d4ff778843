"""Speed, memory and quality of the optimization engine against off-the-shelf solvers of the same system.

    python benchmarks/levin.py [--sizes 1 4 12 50] [--images 2] [--pyamg-up-to 4] [--reference-up-to 1]
                               [--threads N] [--device cpu] [--scaled-hints] [--grain SIGMA]

Each size (megapixels; eval photos resized square with Lanczos, as the protocol in shared/bench does
at 256²) runs in a fresh Python process. For each photo: 100 simulated hints (6x6 patches of the
photo's mean ab, Gaussian centres; with --scaled-hints 6 px at 1 MP and wider with the photo, 21 px
at 12 MP, as the same strokes on a larger photo of the scene would be; with --grain, luminance grain of
SIGMA 8-bit levels on the resized photo, as a camera's or a scan's own), then our `live`, `preview`
and `final` solves, each with its seconds, iterations, PSNR against the original photo and peak
memory (the kernel's high-water mark, reset before the solve, minus the resting RSS: what the solve
itself adds), and the whole job as a caller sees it (`job`: `tinct.colorize` from the 8-bit grey
photo and hints layer to 8-bit colour, Lab conversions included, with its own peak),
then (up to --converged-up-to MP) `converged`, a tight solve of the authors' system (GCR to
relative residual 1e-6), so
`final - conv` is how far `final` stops from the authors' answer in dB.  Up to --pyamg-up-to MP
PyAMG solves the same authors' system (getColorExact.m's weights, float64, no weight floor):
`air_solver` and `smoothed_aggregation_solver(symmetry="nonsymmetric")` as preconditioners of
GMRES(20), to the relative residual `final` reached (its worse channel), set-up and solve
timed apart; up to --reference-up-to MP SciPy's splu solves it exactly too.  The header gives the
device, torch threads and the load average (timings on a loaded machine are only comparable
within one run).  SciPy and PyAMG are benchmark extras (`pip install scipy pyamg`), never runtime
dependencies of Tinct.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tinct import api
from tinct.color import lab
from tinct.engines.optimization import levin
from tinct.training import measure

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import reset_hwm, status_kb  # noqa: E402  (the same high-water-mark reading as benchmarks/memory.py)

QUALITIES = ("live", "preview", "final")
LIBC = ctypes.CDLL("libc.so.6")  # glibc: malloc_trim


def authors_matrix(y: np.ndarray, fixed: np.ndarray):
    """getColorExact.m's sparse matrix, vectorised, in float64 (CSR)."""
    import scipy.sparse as sp

    h, w = y.shape
    idx = np.arange(h * w).reshape(h, w)
    yp = np.pad(y, 1, constant_values=np.nan)
    offsets = [(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)]
    nb = np.stack([yp[1 + dy:1 + dy + h, 1 + dx:1 + dx + w] for dy, dx in offsets])
    ok = ~np.isnan(nb)
    nb = np.where(ok, nb, 0)
    count = ok.sum(0) + 1
    mean = (y + nb.sum(0)) / count
    var = ((y - mean) ** 2 + np.where(ok, (nb - mean) ** 2, 0).sum(0)) / count
    d2 = np.where(ok, (nb - y) ** 2, np.inf)
    sigma = np.maximum(np.maximum(0.6 * var, d2.min(0) / math.log(100)), 2e-6)
    wts = np.where(ok, np.exp(-d2 / sigma), 0)
    wts /= wts.sum(0)
    rows, cols, vals = [idx.ravel()], [idx.ravel()], [np.ones(h * w)]
    for k, (dy, dx) in enumerate(offsets):
        win = (slice(max(0, -dy), h - max(0, dy)), slice(max(0, -dx), w - max(0, dx)))
        free = ~fixed[win]
        rows.append(idx[win][free])
        cols.append(idx[win][free] + dy * w + dx)
        vals.append(-wts[k][win][free])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))


def authors_solution(y: np.ndarray, hint_ab: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """The authors' system solved sparse-direct (splu)."""
    import scipy.sparse.linalg as spl

    lu = spl.splu(authors_matrix(y, fixed).tocsc())
    return np.stack([lu.solve(np.where(fixed, hint_ab[c], 0).ravel()).reshape(y.shape) for c in range(2)])


class OutOfTime(Exception):
    """A PyAMG solve ran past --pyamg-budget."""


def pyamg_solutions(y: np.ndarray, hint_ab: np.ndarray, fixed: np.ndarray, tol: float, budget: float) -> dict:
    """PyAMG's two non-symmetric solvers as GMRES preconditioners: name -> {setup, solve, it (the worse
    channel's), mb (resident memory the set-up added), ab, or stopped with the residual's reduction
    when a solve runs past `budget` seconds}."""
    import pyamg
    from scipy.sparse.linalg import LinearOperator

    a = authors_matrix(y, fixed)
    out = {}
    for name, build in (("air", lambda: pyamg.air_solver(a)),
                        ("sa-ns", lambda: pyamg.smoothed_aggregation_solver(a, symmetry="nonsymmetric"))):
        rest = status_kb("VmRSS")
        start = time.perf_counter()
        ml = build()
        setup = time.perf_counter() - start
        row = {"setup": setup, "mb": (status_kb("VmRSS") - rest) / 1e3}
        start = time.perf_counter()
        deadline = start + budget

        def gmres20(A, b, M, **kwargs):
            # GMRES restarted every 20 steps: unrestarted, 500 steps would keep a 45 GB basis at 12 MP
            def timed(v):
                if time.perf_counter() > deadline:
                    raise OutOfTime
                return M.matvec(v)
            return pyamg.krylov.gmres(A, b, M=LinearOperator(M.shape, timed, dtype=M.dtype), restart=20, **kwargs)

        chans, its = [], 0
        for c in range(2):
            b = np.where(fixed, hint_ab[c], 0).ravel()
            residuals: list[float] = []
            try:
                x = ml.solve(b, tol=tol, accel=gmres20, maxiter=25, residuals=residuals)
            except OutOfTime:
                row.update(stopped=True, channel=c, it=len(residuals) - 1, reduced=residuals[-1] / residuals[0])
                break
            chans.append(x.reshape(y.shape))
            its = max(its, len(residuals) - 1)
        row["solve"] = time.perf_counter() - start
        row["s"] = setup + row["solve"]
        if not row.get("stopped"):
            row.update(it=its, ab=np.stack(chans))
        out[name] = row
        del ml
    return out


def to_rgb(L: torch.Tensor, ab) -> np.ndarray:
    ab = torch.as_tensor(np.asarray(ab, np.float32), device=L.device) if not torch.is_tensor(ab) else ab
    rgb = lab.lab_to_srgb_keep_l(L, ab.float())
    return (rgb.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def patch_px(side: int, scaled: bool) -> int:
    """A hint patch's side: the bench protocol's 6 px, or (scaled) 6 px at 1 MP grown with the photo."""
    return max(6, round(6 * side / 1000)) if scaled else 6


def with_grain(rgb: np.ndarray, sigma: float) -> np.ndarray:
    """The photo with luminance grain of `sigma` 8-bit levels (the same on R, G and B, seeded), as a
    camera's or a film scan's own noise: a small photo upscaled to 50 MP has none."""
    if not sigma:
        return rgb
    noise = np.random.default_rng(1).normal(0.0, sigma, rgb.shape[:2] + (1,)).astype(np.float32)
    return np.clip(rgb + noise, 0, 255).round().astype(np.uint8)


def run_size(args) -> None:
    """One size in this (fresh) process: one JSON line per photo."""
    if args.threads:
        torch.set_num_threads(args.threads)
    device = api.default_device(args.device)
    photos = list(measure.eval_images(size=None))
    photos = photos[::max(1, len(photos) // args.images)][:args.images]
    side = int(round(math.sqrt(args.mp * 1e6)))
    warm = torch.rand(1, 64, 64, device=device) * 100, torch.zeros(2, 64, 64, device=device)
    for quality in args.qualities:
        levin.solve_ab(*warm, (torch.rand(1, 64, 64, device=device) > 0.9).float(), quality=quality)
    for name, full in photos:
        rgb = with_grain(np.asarray(Image.fromarray(full).resize((side, side), Image.Resampling.LANCZOS)), args.grain)
        grey = measure.gray_of(rgb)
        layer = measure.hints_of(rgb, args.hints, np.random.default_rng(0), patch=patch_px(side, args.scaled_hints))
        _, L, hint_ab, hint_w = api.prepare(grey, layer, device)
        del full
        row = {"mp": args.mp, "name": name, "grey": measure.psnr(measure.gray_of(rgb), rgb)}
        for quality in (*args.qualities, "converged") if args.mp <= args.converged_up_to else args.qualities:
            options = {"quality": "final", "tol": 1e-6, "max_iter": 100} if quality == "converged" else {
                "quality": quality}
            gc.collect()
            LIBC.malloc_trim(0)  # freed heap back to the system, so the high-water mark shows this solve's own
            rest = status_kb("VmRSS")
            reset_hwm()
            ab, info = levin.solve_ab(L, hint_ab, hint_w, **options)
            if device.type == "cuda":
                torch.cuda.synchronize()
            row[quality] = {"s": info["seconds"], "it": info["iterations"],
                            "db": measure.psnr(to_rgb(L, ab), rgb), "mb": (status_kb("VmHWM") - rest) / 1e3,
                            "residual": info["residual"]}
            del ab
            if quality != "converged":  # the whole job as a caller sees it: 8-bit pixels in, 8-bit pixels out
                gc.collect()
                LIBC.malloc_trim(0)
                rest = status_kb("VmRSS")
                reset_hwm()
                start = time.perf_counter()
                api.colorize(grey, layer, quality=quality, device=device)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row[quality]["job"] = time.perf_counter() - start
                row[quality]["job_mb"] = (status_kb("VmHWM") - rest) / 1e3
        y = L[0].double().cpu().numpy() / 100
        fixed = hint_w[0].cpu().numpy() >= levin.FIXED
        hints = hint_ab.double().cpu().numpy()
        if args.mp <= args.pyamg_up_to:
            for solver, q in pyamg_solutions(y, hints, fixed, row["final"]["residual"], args.pyamg_budget).items():
                ab = q.pop("ab", None)
                row[solver] = {**q, "db": measure.psnr(to_rgb(L, ab), rgb) if ab is not None else math.nan}
        if args.mp <= args.reference_up_to:
            start = time.perf_counter()
            ref = authors_solution(y, hints, fixed)
            row["scipy"] = {"s": time.perf_counter() - start, "db": measure.psnr(to_rgb(L, ref), rgb)}
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1, 4], help="megapixels (12 and 50 too)")
    ap.add_argument("--images", type=int, default=2, help="eval photos per size")
    ap.add_argument("--hints", type=int, default=100)
    ap.add_argument("--scaled-hints", action="store_true",
                    help="hint patches 6 px at 1 MP and as much wider as the photo is (the same strokes on a "
                         "larger photo of the scene), not 6 px at every size")
    ap.add_argument("--grain", type=float, default=0.0,
                    help="luminance grain of this many 8-bit levels (sigma) added to each resized photo, as a camera "
                         "or a film scan has: without it, a photo upscaled to 50 MP is smooth gradients in 8-bit "
                         "terraces, whose one-level steps wall in thin regions that slow the solve")
    ap.add_argument("--pyamg-up-to", type=float, default=4.0,
                    help="largest size (MP) PyAMG solves too (AIR + GMRES: about a minute at 4 MP on 2 cores)")
    ap.add_argument("--pyamg-budget", type=float, default=900.0,
                    help="seconds a PyAMG solve may run before it is stopped and its residual reported")
    ap.add_argument("--reference-up-to", type=float, default=0.0,
                    help="largest size (MP) SciPy's splu solves too (~2-4 min per photo at 1 MP on 2 cores)")
    ap.add_argument("--converged-up-to", type=float, default=12.0,
                    help="largest size (MP) also solved tightly (relative residual 1e-6, at most 100 iterations)")
    ap.add_argument("--qualities", nargs="+", default=list(QUALITIES), choices=QUALITIES,
                    help="which of ours to run (PyAMG and converged runs need final)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    ap.add_argument("--mp", type=float, help=argparse.SUPPRESS)  # a child: run this one size
    args = ap.parse_args()
    if args.mp is not None:
        run_size(args)
        return
    print(f"device {api.default_device(args.device)}, torch threads {args.threads or torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs, {args.hints} hints "
          f"({'6 px at 1 MP, scaled with the photo' if args.scaled_hints else '6x6 px at every size'}), "
          f"grain {args.grain:g} levels, "
          f"{args.images} photos per size, a fresh process per size", flush=True)
    cols = ["live", "preview", "final", "converged"]
    head = (f"{'MP':>5} {'photo':<16}" + "".join(f" {c[:4] + ' s':>7} {'it':>3} {'dB':>6} {'MB':>6}"
                                                  + (f" {'job s':>6} {'job MB':>6}" if c != "converged" else "")
                                                  for c in cols)
            + f" {'fin-conv':>8} {'air s':>7} {'(setup)':>7} {'it':>3} {'dB':>6} {'sa-ns s':>7} {'(setup)':>7}"
            f" {'it':>3} {'dB':>6} {'air/fin':>7} {'scipy s':>7} {'grey dB':>7}")
    print(head)
    print("-" * len(head), flush=True)
    for mp in args.sizes:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--mp", repr(mp), "--images", str(args.images),
               "--hints", str(args.hints), "--pyamg-up-to", repr(args.pyamg_up_to),
               *(["--scaled-hints"] if args.scaled_hints else []), "--grain", repr(args.grain),
               "--pyamg-budget", repr(args.pyamg_budget),
               "--reference-up-to", repr(args.reference_up_to), "--converged-up-to", repr(args.converged_up_to),
               "--qualities", *args.qualities]
        cmd += (["--threads", str(args.threads)] if args.threads else []) + (
            ["--device", args.device] if args.device else [])
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert child.stdout is not None
        for line in child.stdout:
            r = json.loads(line)
            out = f"{r['mp']:5.2f} {r['name'][-16:]:<16}"
            for c in cols:
                q = r.get(c)
                out += (f" {q['s']:7.2f} {q['it']:3d} {q['db']:6.2f} {q['mb']:6.0f}" if q
                        else f" {'-':>7} {'-':>3} {'-':>6} {'-':>6}")
                if c != "converged":
                    out += f" {q['job']:6.2f} {q['job_mb']:6.0f}" if q else f" {'-':>6} {'-':>6}"
            out += f" {r['final']['db'] - r['converged']['db']:8.2f}" if "converged" in r else f" {'-':>8}"
            for solver in ("air", "sa-ns"):
                q = r.get(solver)
                out += (f" {q['s']:7.1f} {q['setup']:7.1f} {q['it']:3d} {q['db']:6.2f}" if q
                        else f" {'-':>7} {'-':>7} {'-':>3} {'-':>6}")
            ratio = "-" if "air" not in r else (
                f"{'>' if r['air'].get('stopped') else ''}{r['air']['s'] / r['final']['s']:.1f}")
            out += f" {ratio:>7}"
            out += f" {r['scipy']['s']:7.1f}" if "scipy" in r else f" {'-':>7}"
            print(out + f" {r['grey']:7.2f}", flush=True)
            for solver in ("air", "sa-ns"):
                q = r.get(solver)
                if q:
                    print(f"      {solver}: set-up {q['setup']:.1f} s adding {q['mb']:.0f} MB resident"
                          + (f"; stopped after {q['solve']:.0f} s of solving (--pyamg-budget) in channel "
                             f"{q['channel']}, its residual down {1 / q['reduced']:.3g}x in {q['it']} GMRES steps"
                             if q.get("stopped") else ""), flush=True)
        if child.wait() != 0:
            raise SystemExit(f"the {mp} MP run failed")


if __name__ == "__main__":
    main()
