"""Speed and quality of the optimization engine against a SciPy sparse-direct solve of the same system.

    python benchmarks/levin.py [--sizes 0.25 1 4] [--images 3] [--reference-up-to 1] [--device cpu]
                               [--threads N]

For each size (megapixels; eval photos resized square with Lanczos, as the protocol in
shared/bench does at 256²) and each photo: 100 simulated hints (6x6 patches of the photo's
mean ab, Gaussian centres), then our `preview` and `final` solves and, up to
--reference-up-to MP, the authors' system (getColorExact.m's weights, float64, no weight
floor) solved by scipy.sparse.linalg.splu.  Prints seconds, iterations, PSNR against the
original photo, final's PSNR minus SciPy's, and the speed ratio; the header gives the device,
torch threads and the machine's load average (timings on a loaded machine are only
comparable within one run).  SciPy is a benchmark extra (`pip install scipy`), never a
runtime dependency of Tinct.
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch
from PIL import Image

from tinct import api
from tinct.color import lab
from tinct.engines.optimization import levin
from tinct.training import measure


def authors_solution(y: np.ndarray, hint_ab: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """getColorExact.m's system, vectorised, in float64, solved sparse-direct."""
    import scipy.sparse as sp
    import scipy.sparse.linalg as spl

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
    a = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(h * w, h * w))
    lu = spl.splu(a)
    return np.stack([lu.solve(np.where(fixed, hint_ab[c], 0).ravel()).reshape(h, w) for c in range(2)])


def to_rgb(L: torch.Tensor, ab) -> np.ndarray:
    ab = torch.as_tensor(np.asarray(ab, np.float32), device=L.device) if not torch.is_tensor(ab) else ab
    rgb = lab.lab_to_srgb_keep_l(L, ab.float())
    return (rgb.clamp(0, 1) * 255 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4], help="megapixels")
    ap.add_argument("--images", type=int, default=3, help="eval photos per size")
    ap.add_argument("--hints", type=int, default=100)
    ap.add_argument("--reference-up-to", type=float, default=1.0,
                    help="largest size (MP) solved by SciPy too (~2-4 min per photo at 1 MP on 2 cores)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's own choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = api.default_device(args.device)
    photos = list(measure.eval_images(size=None))
    step = max(1, len(photos) // args.images)
    photos = photos[::step][:args.images]
    print(f"device {device}, torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} CPUs, {args.hints} hints, "
          f"photos: {', '.join(n for n, _ in photos)}")
    head = (f"{'MP':>5} {'photo':<18} {'prev s':>7} {'it':>4} {'prev dB':>8} {'final s':>8} {'it':>4} "
            f"{'final dB':>8} {'scipy s':>8} {'scipy dB':>8} {'final-sp':>8} {'speed-up':>8} {'grey dB':>8}")
    print(head)
    print("-" * len(head))
    rows = []
    for mp in args.sizes:
        side = int(round(math.sqrt(mp * 1e6)))
        for name, full in photos:
            rgb = np.asarray(Image.fromarray(full).resize((side, side), Image.LANCZOS))
            grey = measure.gray_of(rgb)
            layer = measure.hints_of(rgb, args.hints, np.random.default_rng(0))
            decoded, L, hint_ab, hint_w = api.prepare(grey, layer, device)
            row = {"mp": mp, "name": name, "grey": measure.psnr(grey, rgb)}
            for quality in ("preview", "final"):
                levin.solve_ab(L[:, :64, :64], hint_ab[:, :64, :64], hint_w[:, :64, :64])  # warm-up
                if device.type == "cuda":
                    torch.cuda.synchronize()
                ab, info = levin.solve_ab(L, hint_ab, hint_w, quality=quality)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                row[quality] = (info["seconds"], info["iterations"], measure.psnr(to_rgb(L, ab), rgb))
            if mp <= args.reference_up_to:
                start = time.perf_counter()
                ref = authors_solution(L[0].double().cpu().numpy() / 100, hint_ab.double().cpu().numpy(),
                                       hint_w[0].cpu().numpy() > 0)
                row["scipy"] = (time.perf_counter() - start, measure.psnr(to_rgb(L, ref), rgb))
            rows.append(row)
            sp_s, sp_db = row.get("scipy", (math.nan, math.nan))
            print(f"{mp:5.2f} {name:<18} {row['preview'][0]:7.2f} {row['preview'][1]:4d} {row['preview'][2]:8.2f} "
                  f"{row['final'][0]:8.2f} {row['final'][1]:4d} {row['final'][2]:8.2f} {sp_s:8.1f} {sp_db:8.2f} "
                  f"{row['final'][2] - sp_db:8.2f} {sp_s / row['final'][0]:8.1f} {row['grey']:8.2f}", flush=True)
    print("-" * len(head))
    for mp in args.sizes:
        sel = [r for r in rows if r["mp"] == mp]
        mean = lambda f: float(np.mean([f(r) for r in sel]))  # noqa: E731
        ref = [r for r in sel if "scipy" in r]
        line = (f"{mp:5.2f} {'mean':<18} {mean(lambda r: r['preview'][0]):7.2f} {mean(lambda r: r['preview'][1]):4.0f} "
                f"{mean(lambda r: r['preview'][2]):8.2f} {mean(lambda r: r['final'][0]):8.2f} "
                f"{mean(lambda r: r['final'][1]):4.0f} {mean(lambda r: r['final'][2]):8.2f}")
        if ref:
            line += (f" {np.mean([r['scipy'][0] for r in ref]):8.1f} {np.mean([r['scipy'][1] for r in ref]):8.2f} "
                     f"{np.mean([r['final'][2] - r['scipy'][1] for r in ref]):8.2f} "
                     f"{np.mean([r['scipy'][0] / r['final'][0] for r in ref]):8.1f}")
        else:
            line += f" {'-':>8} {'-':>8} {'-':>8} {'-':>8}"
        print(line + f" {mean(lambda r: r['grey']):8.2f}")


if __name__ == "__main__":
    main()
