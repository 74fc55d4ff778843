"""The solver's Triton kernels: built for NVIDIA targets without a GPU, and timed on one.

    python benchmarks/kernels.py --compile sm_80 sm_90 [--jobs 2]
    python benchmarks/kernels.py --bandwidth 12            (a CUDA GPU)
    python benchmarks/kernels.py --solve 1 4 12 50 [--repeats 3] [--json FILE]   (a CUDA GPU)
    python benchmarks/kernels.py --count 1 4 [--quality final]                    (the CPU will do)
    python benchmarks/kernels.py --profile 1                                      (a CUDA GPU)
    python benchmarks/kernels.py --kcycle 1 4 12 50 [--repeats 3]                 (a CUDA GPU)

--compile: for every kernel of tinct.native.triton_kernels (KERNELS) and every target,
Triton compiles it to PTX (sm_80: Ampere, A100; sm_90: Hopper, H100/H200) and Triton's own ptxas (the
one for PTX ISA 9.x, ptxas-blackwell) assembles that and reports registers and spills.  One row per
kernel and target: registers per thread, spill bytes (stores + loads), shared memory, warps, and the
kernel's DRAM bytes per fine pixel for the a and b channels (C = 2); for the pixel kernels at the two
ends of a job (lightness, encode: one build per depth), per pixel of an RGB photo.  Exit status 1 when any kernel
fails to compile or spills.  No GPU or driver is touched.

--bandwidth MP: each kernel once warmed up, then timed with CUDA events (median of 20) on an MP
megapixel grid: milliseconds and the GB/s its bytes-per-pixel model implies, against a plain
device-to-device copy's in the same run.

--solve MP...: on the GPU, a real photo (the first panel of docs/images/parrots.jpg, resized with
Lanczos to a square of MP megapixels, grey, 100 simulated strokes of its own colours): the
optimization solve at `final`, `preview` and `live`, then whole `tinct.colorize` calls from the
8-bit arrays to the 8-bit answer (optimization `final` and `live`; the learned engine automatic and
with the strokes).  One warm-up run each, then --repeats timed runs between
torch.cuda.synchronize() calls: median seconds, iterations, and peak GPU memory above what was
allocated before (torch.cuda.max_memory_allocated).

--profile MP: one warmed-up solve per quality under torch.profiler: the operations taking the most
GPU time and the most CPU time (a solve whose GPU is idle is launch- or sync-bound).

--kcycle MP...: `final` with the K-cycle on levels of at least 0, 16 k, 65 k, 262 k and 1 M points
(multigrid.KCYCLE_MIN_CUDA), one warm-up and --repeats timed solves each: the median seconds, GCR
steps, levels, and the largest ab difference from the K-cycle-on-every-level answer.

--count MP...: the roofline's numerator without a GPU: the bytes a CUDA solve of that photo moves,
counted during the same solve on the CPU.  Each native kernel call counts its Triton twin's
bytes-per-pixel model (the fused residual restriction as one pass, as on CUDA), every other
PyTorch operation its operands' and results' sizes (views and allocations count nothing), and the
K-cycle takes both steps every time, as it does on CUDA.  Printed per megapixel: the set-up before
the Krylov method, each iteration, and the whole solve.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # the default, said out loud (Triton 3.9 warns otherwise)
os.environ.pop("TRITON_INTERPRET", None)  # compile, not interpret
CHANNELS = 2


def ptxas() -> Path:
    import triton

    folder = Path(triton.__file__).parent / "backends" / "nvidia" / "bin"
    for name in ("ptxas-blackwell", "ptxas"):  # the first takes Triton 3.9's PTX ISA 9.x
        if (folder / name).is_file():
            return folder / name
    raise SystemExit(f"no ptxas in {folder}")


def build(name: str, arch: str) -> dict:
    """Compile one kernel for sm_XX; its ptxas figures, or the error."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from tinct.native.triton_kernels import KERNELS

    spec = KERNELS[name]
    capability = int(arch.removeprefix("sm_"))
    row = {"kernel": name, "arch": arch, "bytes": spec.fixed + CHANNELS * spec.per_channel}
    start = time.perf_counter()
    try:
        signature = {**spec.signature, **{key: "constexpr" for key in spec.constexprs}}
        source = ASTSource(fn=spec.fn, signature=signature, constexprs=spec.constexprs)
        options = {"num_warps": spec.warps, "enable_fp_fusion": spec.fp_fusion}
        compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32), options=options)
        with tempfile.TemporaryDirectory() as tmp:
            ptx = Path(tmp) / "k.ptx"
            ptx.write_text(compiled.asm["ptx"])
            gpu = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
            done = subprocess.run([str(ptxas()), "-v", "--gpu-name", gpu, str(ptx), "-o", os.devnull],
                                  capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(done.stderr.strip() or done.stdout.strip())
        report = done.stderr + done.stdout
        registers = re.search(r"Used (\d+) registers", report)
        spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", report)
        row.update(registers=int(registers.group(1)) if registers else -1,
                   spills=sum(map(int, spills.groups())) if spills else 0,
                   shared=compiled.metadata.shared, warps=compiled.metadata.num_warps)
    except Exception as exc:  # noqa: BLE001 - every failure is a row of the report
        row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    row["seconds"] = time.perf_counter() - start
    return row


def compile_all(targets: list[str], workers: int) -> int:
    from tinct.native.triton_kernels import KERNELS

    jobs = [(name, arch) for arch in targets for name in KERNELS]
    start = time.perf_counter()
    with ProcessPoolExecutor(workers) as pool:
        rows = list(pool.map(build, *zip(*jobs)))
    width = max(len(name) for name in KERNELS)
    print(f"{'kernel':<{width}}  arch   regs  spill B  shared B  warps  DRAM B/px (C={CHANNELS})  compile s")
    failed = []
    for row in rows:
        if "error" in row:
            failed.append(row)
            print(f"{row['kernel']:<{width}}  {row['arch']:<5}  FAILED: {row['error']}")
            continue
        if row["spills"]:
            failed.append(row)
        print(f"{row['kernel']:<{width}}  {row['arch']:<5}  {row['registers']:>4}  {row['spills']:>7}  "
              f"{row['shared']:>8}  {row['warps']:>5}  {row['bytes']:>17g}  {row['seconds']:>9.1f}")
    print(f"{len(rows)} builds in {time.perf_counter() - start:.1f} s; "
          + (f"{len(failed)} failed or spilled" if failed else "all compiled, none spills"))
    return 1 if failed else 0


def _median_ms(fn, repeats: int = 20) -> float:
    import torch

    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def bandwidth(mp: float) -> int:
    """Each kernel's time and implied GB/s on an mp-megapixel grid (odd sides, C = 2)."""
    import numpy as np
    import torch

    from tinct.color import lab
    from tinct.native import kernels
    from tinct.native.triton_kernels import KERNELS

    assert kernels.triton_kernels() is not None, kernels.triton_error()  # imported on first use, as a solve does
    side = int(math.sqrt(mp * 1e6)) | 1
    dev = torch.device("cuda")
    g = torch.Generator(dev).manual_seed(0)
    d = torch.rand(side, side, device=dev, generator=g) + 8
    c = torch.rand(8, side, side, device=dev, generator=g)
    x, b = torch.randn(2, side, side, device=dev, generator=g), torch.randn(2, side, side, device=dev, generator=g)
    half = (side + 1) // 2
    wt, xc = torch.rand(8, half, half, device=dev, generator=g), torch.randn(2, half, half, device=dev, generator=g)
    rc, out, y = torch.empty_like(xc), torch.empty_like(x), torch.rand(side, side, device=dev, generator=g)
    vs = [torch.randn_like(x) for _ in range(8)]
    coef = torch.zeros(8, 2, 1, 1, device=dev)
    dots = torch.empty(8, 2, 1, 1, dtype=torch.float64, device=dev)
    params = torch.tensor([0.6, 2e-6, 1e-6])
    runs = {
        "residual": lambda: kernels.residual(out, x, d, c, b),
        "apply": lambda: kernels.residual(out, x, d, c),
        "gauss_seidel (sweep: 4 launches)": lambda: kernels.gauss_seidel(x, b, d, c),
        "prolong": lambda: kernels.prolong(out, xc, wt),
        "prolong_add": lambda: kernels.prolong(out, xc, wt, accumulate=True),
        "restrict": lambda: kernels.restrict(rc, x, wt),
        "restrict_residual": lambda: kernels.restrict_residual(rc, x, b, d, c, wt),
        "dot (dots, 1 vector)": lambda: kernels.dot(dots[0], x, b),
        "dots (8 vectors)": lambda: kernels.dots(dots, x, vs),
        "combine (8 vectors)": lambda: kernels.combine(out, vs, coef),
        "affinities": lambda: kernels.affinities(torch.empty(8, side, side, device=dev), y, params),
    }
    y_row, code_points = (t.to(dev) for t in lab.native_constants())
    L = torch.rand(side, side, device=dev, generator=g) * 100
    ab = torch.randn(2, side, side, device=dev, generator=g) * 40  # some colours out of the gamut
    for name, dtype in (("uint8", np.uint8), ("uint16", np.uint16), ("float32", np.float32)):
        rgb = kernels.to_device(photo_pixels(side, dtype), dev)
        table = None if dtype == np.float32 else lab.linear_table(np.iinfo(dtype).max + 1).to(dev)
        runs[f"lightness ({name} RGB)"] = lambda rgb=rgb, table=table: kernels.lightness(y, rgb, table, y_row)
        runs[f"encode ({name} RGB)"] = lambda rgb=rgb: kernels.encode(torch.empty_like(rgb), L, ab, code_points, None)
    pixels = side * side
    copy_ms = _median_ms(lambda: out.copy_(x))
    print(f"{torch.cuda.get_device_name()}, {side}x{side} ({pixels / 1e6:.1f} MP), C = {CHANNELS}; "
          f"a copy of x moves {2 * x.numel() * 4 / copy_ms / 1e6:.0f} GB/s")
    width = max(len(name) for name in KERNELS)
    print(f"{'kernel':<{width}}  {'ms':>7}  {'B/px':>5}  {'GB/s':>6}")
    for name, spec in KERNELS.items():
        ms = _median_ms(runs[name])
        moved = (spec.fixed + CHANNELS * spec.per_channel) * pixels
        print(f"{name:<{width}}  {ms:7.3f}  {spec.fixed + CHANNELS * spec.per_channel:5g}  {moved / ms / 1e6:6.0f}")
    return 0


def photo_pixels(side: int, dtype):
    """A side x side RGB photo's pixels in dtype (uint8, uint16, float32), noise over the full range."""
    import numpy as np

    rng = np.random.default_rng(0)
    if dtype == np.float32:
        return rng.random((side, side, 3), dtype=np.float32)
    return rng.integers(0, np.iinfo(dtype).max, (side, side, 3), endpoint=True, dtype=dtype)


def photo(mp: float):
    """The benchmark's input at mp megapixels: (rgb, grey, strokes layer) as uint8 arrays."""
    import numpy as np
    from PIL import Image

    from tinct.training import measure

    full = Image.open(Path(__file__).resolve().parents[1] / "docs" / "images" / "parrots.jpg").convert("RGB")
    panel = full.crop((0, 0, full.height, full.height))  # the first of the figure's square panels
    side = int(round(math.sqrt(mp * 1e6)))
    rgb = np.asarray(panel.resize((side, side), Image.Resampling.LANCZOS))
    return rgb, measure.gray_of(rgb), measure.hints_of(rgb, 100, np.random.default_rng(0))


def solves(sizes: list[float], repeats: int, json_path: Path | None) -> int:
    """The 1/4/12/50 MP table on the GPU: the optimization solve at each quality, then whole
    `tinct.colorize` calls (decode, solve or network + solve, encode to 8-bit RGB) for both engines."""
    import json
    import statistics

    import torch

    from tinct import api
    from tinct.engines.optimization import levin

    dev = torch.device("cuda")
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {repeats} timed runs after a warm-up")
    print(f"{'MP':>5}  {'what':<22}  {'median s':>9}  {'min s':>7}  {'it':>3}  {'peak GB':>8}  {'converged':>9}")
    rows = []

    def timed(mp: float, what: str, run) -> None:
        run()  # warm-up: Triton builds what this size needs, the engine loads
        times, results, peaks = [], [], []
        for _ in range(repeats):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            start = time.perf_counter()
            results.append(run())
            torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
            peaks.append((torch.cuda.max_memory_allocated() - base) / 1e9)
        info = results[-1] if isinstance(results[-1], dict) else {}
        row = {"mp": mp, "what": what, "median_s": statistics.median(times), "min_s": min(times),
               "iterations": info.get("iterations"), "peak_gb": max(peaks), "converged": info.get("converged")}
        rows.append(row)
        print(f"{mp:5g}  {what:<22}  {row['median_s']:9.3f}  {row['min_s']:7.3f}  {row['iterations'] or '':>3}  "
              f"{row['peak_gb']:8.2f}  {'' if row['converged'] is None else str(row['converged']):>9}", flush=True)

    def solve_rows(mp: float, grey, layer) -> None:  # the inputs on the GPU go when it returns
        _, L, hint_ab, hint_w = api.prepare(grey, layer, dev)
        for quality in ("final", "preview", "live"):
            timed(mp, f"solve {quality}", lambda q=quality: levin.solve_ab(L, hint_ab, hint_w, quality=q)[1])

    for mp in sizes:
        _, grey, layer = photo(mp)
        solve_rows(mp, grey, layer)
        torch.cuda.empty_cache()
        timed(mp, "colorize final", lambda: api.colorize(grey, layer, device=dev) is None)
        timed(mp, "colorize live", lambda: api.colorize(grey, layer, device=dev, quality="live") is None)
        timed(mp, "learned automatic", lambda: api.colorize(grey, None, "learned", device=dev) is None)
        timed(mp, "learned 100 strokes", lambda: api.colorize(grey, layer, "learned", device=dev) is None)
        torch.cuda.empty_cache()
    if json_path:
        json_path.write_text(json.dumps(rows, indent=1))
    return 0


def kcycle(sizes: list[float], repeats: int) -> int:
    """multigrid.KCYCLE_MIN_CUDA tried in turn: `final` time, GCR steps, levels, and how far each
    answer lands from the K-cycle-on-every-level one (max |ab| difference)."""
    import statistics

    import torch

    from tinct import api
    from tinct.engines.optimization import levin, multigrid

    dev, chosen = torch.device("cuda"), multigrid.KCYCLE_MIN_CUDA
    print(f"{'MP':>4} {'K-min':>9} {'median s':>9} {'it':>3} {'lv':>3} {'max |dab| vs 0':>15}")
    try:
        for mp in sizes:
            _, grey, layer = photo(mp)
            _, L, hint_ab, hint_w = api.prepare(grey, layer, dev)
            base = None
            for kmin in (0, 16_384, 65_536, 262_144, 1_048_576):
                multigrid.KCYCLE_MIN_CUDA = kmin
                levin.solve_ab(L, hint_ab, hint_w, quality="final")
                times = []
                for _ in range(repeats):
                    torch.cuda.synchronize()
                    t0 = time.perf_counter()
                    ab, info = levin.solve_ab(L, hint_ab, hint_w, quality="final")
                    torch.cuda.synchronize()
                    times.append(time.perf_counter() - t0)
                base = ab if base is None else base
                print(f"{mp:>4g} {kmin:>9} {statistics.median(times):9.3f} {info['iterations']:>3} "
                      f"{info['levels']:>3} {float((ab - base).abs().max()):15.3f}", flush=True)
            del L, hint_ab, hint_w, base
            torch.cuda.empty_cache()
    finally:
        multigrid.KCYCLE_MIN_CUDA = chosen
    return 0


def profile(mp: float) -> int:
    """Where a solve's time goes on the GPU: one warmed-up solve per quality under torch.profiler,
    the operations that take the most GPU time and the most CPU time (launches, Python, syncs)."""
    import torch
    from torch.profiler import ProfilerActivity

    from tinct import api
    from tinct.engines.optimization import levin

    _, grey, layer = photo(mp)
    _, L, hint_ab, hint_w = api.prepare(grey, layer, torch.device("cuda"))
    for quality in ("final", "preview", "live"):
        levin.solve_ab(L, hint_ab, hint_w, quality=quality)
        torch.cuda.synchronize()
        with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            _, info = levin.solve_ab(L, hint_ab, hint_w, quality=quality)
            torch.cuda.synchronize()
        events = prof.key_averages()
        print(f"== {mp:g} MP {quality}: {info['iterations']} iterations; "
              f"GPU busy {sum(e.self_device_time_total for e in events) / 1e3:.1f} ms")
        for key in ("self_cuda_time_total", "self_cpu_time_total"):
            print(events.table(sort_by=key, row_limit=12, max_name_column_width=48), flush=True)
    return 0


def count(sizes: list[float], quality: str) -> int:
    """GB per megapixel that a CUDA solve moves, counted on the CPU (see --count)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_leaves

    from tinct import api
    from tinct.engines.optimization import krylov, levin, multigrid
    from tinct.native import kernels

    moved = [0.0]
    inside = [False]  # a kernel's own PyTorch calls (the CPU's two-pass restrict_residual) are its model's

    def pixels(t: torch.Tensor) -> int:
        return t.shape[-1] * t.shape[-2]

    def nc(t: torch.Tensor) -> int:
        return t.numel() // pixels(t)

    def chunks(vs: list, extra: int) -> int:  # vectors in launches of eight, each reading u (and writing it)
        return sum(len(vs[i:i + 8]) + extra for i in range(0, len(vs), 8))

    models = {
        "residual": lambda out, x, d, c, b=None: (36 + (12 if b is not None else 8) * nc(x)) * pixels(x),
        "gauss_seidel": lambda x, b, d, c, reverse=False: (72 + 32 * nc(x)) * pixels(x),
        "prolong": lambda out, xc, wt, accumulate=False: (8 + (9 if accumulate else 5) * nc(out)) * pixels(out),
        "restrict": lambda out, f, wt: (8 + 5 * nc(f)) * pixels(f),
        "restrict_residual": lambda out, x, b, d, c, wt: (44 + 9 * nc(x)) * pixels(x),
        "dot": lambda out, u, v: 8 * nc(u) * pixels(u),
        "dots": lambda out, u, vs: 4 * nc(u) * chunks(vs, 1) * pixels(u),
        "combine": lambda u, vs, coef: 4 * nc(u) * chunks(vs, 2) * pixels(u),
        "affinities": lambda out, y, params: 36 * pixels(y),
    }

    def counted(fn, model):
        def call(*args, **kwargs):
            if inside[0]:
                return fn(*args, **kwargs)
            moved[0] += model(*args, **kwargs)
            inside[0] = True
            try:
                return fn(*args, **kwargs)
            finally:
                inside[0] = False
        return call

    free = {"view", "_unsafe_view", "slice", "select", "expand", "unsqueeze", "squeeze", "permute", "transpose",
            "t", "as_strided", "alias", "detach", "empty", "empty_like", "new_empty", "empty_strided", "lift_fresh"}

    class Operands(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            if not inside[0] and func.__name__.split(".")[0] not in free:
                moved[0] += sum(t.numel() * t.element_size() for t in tree_leaves((args, kwargs, out))
                                if isinstance(t, torch.Tensor) and t.numel() > 64)
            return out

    marks: list[float] = []
    solvers = {"gcr": krylov.gcr, "pcg": krylov.pcg}

    def marked(solver):
        def run(*args, **kwargs):
            marks.append(moved[0])
            args = args[:6]  # pcg takes its callback as the seventh positional argument
            kwargs["callback"] = lambda it, res: marks.append(moved[0])
            return solver(*args, **kwargs)
        return run

    saved = {name: getattr(kernels, name) for name in models}
    try:
        for name, model in models.items():
            setattr(kernels, name, counted(saved[name], model))
        for name, solver in solvers.items():
            setattr(krylov, name, marked(solver))
        multigrid.K_ENOUGH = 0.0  # as on CUDA: the K-cycle's second step is always taken
        print(f"GB per megapixel a CUDA `{quality}` solve moves (counted on the CPU)")
        for mp in sizes:
            _, grey, layer = photo(mp)
            _, L, hint_ab, hint_w = api.prepare(grey, layer, torch.device("cpu"))
            moved[0], marks[:] = 0.0, []
            with Operands():
                _, info = levin.solve_ab(L, hint_ab, hint_w, quality=quality)
            per = L.numel() / 1e6 * 1e9
            steps = [(b - a) / per for a, b in zip(marks, marks[1:])]
            print(f"{mp:g} MP: {info['iterations']} iterations, {info['levels']} levels; set-up {marks[0] / per:.2f}, "
                  f"per iteration {min(steps):.2f}-{max(steps):.2f} (mean {sum(steps) / len(steps):.2f}), "
                  f"whole solve {moved[0] / per:.2f}", flush=True)
    finally:
        for name, fn in saved.items():
            setattr(kernels, name, fn)
        krylov.gcr, krylov.pcg = solvers["gcr"], solvers["pcg"]
    return 0


def main(argv: list[str] | None = None) -> int:
    assert __doc__ is not None  # this module's docstring
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--compile", nargs="+", metavar="sm_XX", help="targets, e.g. sm_80 sm_90")
    mode.add_argument("--bandwidth", type=float, metavar="MP", help="time each kernel on an MP grid (CUDA)")
    mode.add_argument("--solve", type=float, nargs="+", metavar="MP", help="time whole solves at these sizes (CUDA)")
    mode.add_argument("--count", type=float, nargs="+", metavar="MP", help="bytes a CUDA solve moves (on the CPU)")
    mode.add_argument("--profile", type=float, metavar="MP", help="where a solve's time goes (CUDA, torch.profiler)")
    mode.add_argument("--kcycle", type=float, nargs="+", metavar="MP", help="final against KCYCLE_MIN_CUDA (CUDA)")
    parser.add_argument("--quality", default="final", help="--count: final or preview")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="kernels compiled at once")
    parser.add_argument("--repeats", type=int, default=3, help="timed solves per size and quality")
    parser.add_argument("--json", type=Path, help="--solve: the table as JSON too")
    args = parser.parse_args(argv)
    if args.compile:
        bad = [arch for arch in args.compile if not re.fullmatch(r"sm_\d+", arch)]
        if bad:
            parser.error(f"targets are sm_XX (sm_80, sm_90), not {' '.join(bad)}")
        return compile_all(args.compile, args.jobs)
    if args.count:
        return count(args.count, args.quality)
    import torch

    if not torch.cuda.is_available():
        parser.error("--bandwidth, --solve, --profile and --kcycle time the kernels on a CUDA GPU, and torch sees none")
    if args.bandwidth:
        return bandwidth(args.bandwidth)
    if args.profile:
        return profile(args.profile)
    if args.kcycle:
        return kcycle(args.kcycle, args.repeats)
    return solves(args.solve, args.repeats, args.json)


if __name__ == "__main__":
    sys.exit(main())
