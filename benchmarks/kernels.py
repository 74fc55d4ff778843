"""Build proof for the Triton kernels without a GPU: compile each ahead of time for NVIDIA targets.

    python benchmarks/kernels.py --compile sm_80 sm_90 [--jobs 2]

For every kernel of tinct.engines.optimization.triton_kernels (KERNELS) and every target, Triton
compiles it to PTX (sm_80: Ampere, A100; sm_90: Hopper, H100/H200) and Triton's own ptxas (the one
for PTX ISA 9.x, ptxas-blackwell) assembles that and reports registers and spills.  One row per
kernel and target: registers per thread, spill bytes (stores + loads), shared memory, warps, and
the kernel's DRAM bytes per fine pixel for the a and b channels (C = 2).  Exit status 1 when any
kernel fails to compile or spills.  No GPU or driver is touched.
"""
from __future__ import annotations

import argparse
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

    from tinct.engines.optimization.triton_kernels import KERNELS

    spec = KERNELS[name]
    capability = int(arch.removeprefix("sm_"))
    row = {"kernel": name, "arch": arch, "bytes": spec.fixed + CHANNELS * spec.per_channel}
    start = time.perf_counter()
    try:
        signature = {**spec.signature, **{key: "constexpr" for key in spec.constexprs}}
        source = ASTSource(fn=spec.fn, signature=signature, constexprs=spec.constexprs)
        compiled = triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": spec.warps})
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


def main(argv: list[str] | None = None) -> int:
    assert __doc__ is not None  # this module's docstring
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compile", nargs="+", required=True, metavar="sm_XX", help="targets, e.g. sm_80 sm_90")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="kernels compiled at once")
    args = parser.parse_args(argv)
    bad = [arch for arch in args.compile if not re.fullmatch(r"sm_\d+", arch)]
    if bad:
        parser.error(f"targets are sm_XX (sm_80, sm_90), not {' '.join(bad)}")
    from tinct.engines.optimization.triton_kernels import KERNELS

    jobs = [(name, arch) for arch in args.compile for name in KERNELS]
    start = time.perf_counter()
    with ProcessPoolExecutor(args.jobs) as pool:
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


if __name__ == "__main__":
    sys.exit(main())
