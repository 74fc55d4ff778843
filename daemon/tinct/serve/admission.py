"""Admission control for tinctd: refuse a colorize job that cannot fit in memory before the OOM killer does.

A colorize job's peak memory grows with its pixels (the solver keeps stencils, a multigrid
hierarchy and Krylov vectors the size of the photo), so a layer the protocol's pixel limit
accepts can need tens of gigabytes.  When the kernel runs out it kills the biggest process,
which is tinctd (and every queued job with it), or the editor holding the photographer's
unsaved work.  So tinctd asks here first: `admit` compares what the job will need
(`job_bytes`, from measured bytes per pixel) with what this machine, its cgroup and the
process's address-space limit can give (`total_bytes`: ever; `available_bytes`: now) and
answers `too_large` for a layer that could never fit and `busy` for one that does not fit yet.

Standard library only, and no numpy or torch: tinctd's socket thread calls this for every
request and must stay light.  Every reader takes `root` (default "/") so tests can point it at
fake /proc and /sys/fs/cgroup trees.
"""
from __future__ import annotations

import os
from pathlib import Path

try:
    import resource
except ImportError:  # Windows
    resource = None

GB = 1e9
UNLIMITED = 1 << 62  # cgroup v1 writes "no limit" as LONG_MAX rounded to a page; anything this big is none

# Peak bytes per pixel one colorize call adds to a warm tinctd, and its fixed part, per
# (engine, quality), measured on 2026-12-04 (Linux x86_64, glibc, CPU, one torch thread, each job
# in a fresh process) by
#     python benchmarks/memory.py --sizes 0.25 1 4 --photos kodim01 kodim14
#     python benchmarks/memory.py --engines optimization --qualities final --tol 0 --photos kodim14
#     python benchmarks/memory.py --engines learned --qualities final --tol 0 --photos kodim14
# (and at 12 MP for optimization: `final` 569 MB/MP forced, 422 typical, `preview` 273, all below
# their 4 MP figures, so MB/MP does not grow with size).
# `final` is the worst case, not the typical one: its GCR keeps two (2, H, W) float32 vectors per
# iteration until its restart window of 20 fills (16 bytes a pixel each time), and a hard photo or
# a learned job with few strokes does run past 20 iterations (kodim14 with 3 strokes: 33), so the
# `--tol 0` runs (every iteration, the window full) set it: 650 (optimization) and 684 (learned)
# bytes a pixel against 400-450 for a typical 100-stroke photo (the security review's 370-400).
# Rule: the least-squares slope of the worst case over the sizes x 1.25, rounded up to 8 bytes;
# the fixed part is what every measured job x 1.25 needs beyond that, at least 64 MiB.  The
# margin is 25 %, not 15 %: the same job repeated in one long-lived process peaks up to 17 %
# higher than in a fresh one (glibc's heap fragments; 4 MP `final`, window full: 2.70 GB on the
# first job, 3.01 GB on the fourth), and tinctd is such a process.  The learned engine's figures
# cover its automatic case and the one with strokes; its fixed part is mostly the network, which
# runs at up to 512 pixels a side whatever the photo's size.  The result array is included; the
# request's own pixels are not (they are in memory when this is asked).
# Re-measured for issue 15 (the solve keeps only its system, GCR's window 8 instead of 20, no
# padded copy of the operator, Galerkin probes three at a time; `live` new), same rule, by
#     python benchmarks/memory.py --sizes 12 --engines optimization --qualities live final --photos kodim14 --tol 0
#     python benchmarks/memory.py --sizes 4 --engines learned --qualities final live --photos kodim14 --tol 0
# optimization `final` 281 MB/MP and `live` 150 at 12 MP, learned `final` 342 (automatic) / 334 (strokes)
# and `live` 162 / 158 at 4 MP, `final` with the window full.  About 140 of those MB/MP are tinct.colorize's own Lab
# conversions in and out (a `live` job is little else).
# Re-measured after the native Lab conversions (one pass in, one out, no float copies of the photo)
# and GCR's window of 4, same rule, by
#     python benchmarks/memory.py --sizes 12 --engines optimization --qualities live final --photos kodim14 --tol 0
#     python benchmarks/memory.py --sizes 4 --engines learned --qualities final live --photos kodim14 --tol 0
#     python benchmarks/memory.py --sizes 4 --engines optimization learned --qualities preview --photos kodim14
# optimization `final` 197, `live` 37 MB/MP at 12 MP; learned `final` 260 (strokes) / 65 (automatic,
# now solved on the proxy), `live` 75 / 70 at 4 MP; `preview` 239 (optimization), 281 / 76 (learned)
# at 4 MP: its PCG on the symmetric system with a plain V-cycle keeps more than `final` now does.
BYTES_PER_PIXEL: dict[tuple[str, str], int] = {
    ("optimization", "final"): 248,
    ("optimization", "preview"): 304,
    ("optimization", "live"): 48,
    ("learned", "final"): 328,
    ("learned", "preview"): 352,
    ("learned", "live"): 96,
}
FIXED_BYTES: dict[tuple[str, str], int] = {
    ("optimization", "final"): 64 << 20,
    ("optimization", "preview"): 64 << 20,
    ("optimization", "live"): 64 << 20,
    ("learned", "final"): 128 << 20,
    ("learned", "preview"): 240 << 20,
    ("learned", "live"): 240 << 20,
}
# What a warm tinctd itself keeps resident (Python, PyTorch, both engines, the network's weights):
# no job can have that part of the machine.  The benchmark's children rest at 285-330 MB before
# their job; rounded up for the daemon's sockets and buffers.
TINCTD_BYTES = 512 << 20
DEFAULT_QUALITY = "final"  # both engines' default when a request names none
# A layer with a side this short or shorter is a strip, which the solver runs in float64
# (tinct.engines.optimization.levin.STRIP, not imported here: levin imports torch).  Measured 2026-12-04 on 62500x16
# strips (1 MP; the solve then runs all 40 iterations): 1.70-1.89 kB a pixel for `final`, 1.0 kB for
# `preview`, both engines: 2.3 and 2.6 times the table then.  Strips get 10 times the (smaller, issue 15)
# table's bytes per pixel: 2.5 kB for optimization `final`, the 1.9 kB measured with the 1.25 margin.
STRIP_SIDE = 16
STRIP_FACTOR_HALVES = 20  # 10 (kept integral)


def _per_pixel(engine: str, quality: str | None, shortest_side: int | None) -> int:
    """Bytes per pixel for this engine and quality (the table's largest where it has no entry)."""
    per_pixel = BYTES_PER_PIXEL.get((engine, quality or DEFAULT_QUALITY), max(BYTES_PER_PIXEL.values()))
    if shortest_side is not None and shortest_side <= STRIP_SIDE:
        per_pixel = -(-per_pixel * STRIP_FACTOR_HALVES // 2)
    return per_pixel


def job_bytes(engine: str, quality: str | None, pixels: int, shortest_side: int | None = None) -> int:
    """Peak bytes a colorize job of `pixels` adds to tinctd: fixed part + bytes per pixel x pixels.

    `quality` None is the engine's default.  An engine or quality not in the table gets the largest
    figure in it: admission must err towards refusing, never towards the OOM killer.  Give
    `shortest_side` (the layer's shorter side) so that a strip is costed as the float64 solve it is.
    """
    if pixels < 0:
        raise ValueError(f"pixels must be >= 0, not {pixels}")
    fixed = FIXED_BYTES.get((engine, quality or DEFAULT_QUALITY), max(FIXED_BYTES.values()))
    return fixed + _per_pixel(engine, quality, shortest_side) * pixels


def largest_pixels(engine: str, quality: str | None, total: int, shortest_side: int | None = None) -> int:
    """The largest layer (pixels) that `admit` would ever accept on a machine with `total` bytes.

    tinctd's own resident part (TINCTD_BYTES) is never the job's, so it comes off first.
    """
    room = total - TINCTD_BYTES - job_bytes(engine, quality, 0)
    return max(0, room // _per_pixel(engine, quality, shortest_side))


# -- what the machine can give ---------------------------------------------------------------

def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _number(path: Path) -> int | None:
    """An integer file; None for a missing file, "max" or anything too large to be a limit."""
    text = _read(path)
    if text is None:
        return None
    text = text.strip()
    if text == "max":
        return None
    try:
        value = int(text)
    except ValueError:
        return None
    return value if value < UNLIMITED else None


def _fields(text: str | None, scale: int = 1) -> dict[str, int]:
    """"key value [kB]" lines (meminfo, status, memory.stat) as a dict of ints x scale."""
    out: dict[str, int] = {}
    for line in (text or "").splitlines():
        parts = line.replace(":", " ").split()
        if len(parts) >= 2:
            try:
                out[parts[0]] = int(parts[1]) * scale
            except ValueError:
                pass
    return out


def meminfo(root: str | os.PathLike = "/") -> dict[str, int]:
    """/proc/meminfo in bytes ({} where there is none)."""
    return _fields(_read(Path(root, "proc/meminfo")), 1024)


def _cgroup_dirs(root: Path) -> dict[str, tuple[Path, Path]]:
    """This process's memory cgroups: {"v2": (its directory, the mount's top)} and/or the same for "v1".

    /proc/self/cgroup names the cgroup ("0::/path" for v2, "N:memory[,...]:/path" for v1);
    /proc/self/mountinfo says where each hierarchy is mounted and which cgroup its mount shows as
    its top (a container sees its own cgroup as "/"), so the path is taken relative to that.
    """
    own: dict[str, str] = {}
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hid, controllers, path = parts
        if hid == "0" and controllers == "":
            own["v2"] = path
        elif "memory" in controllers.split(","):
            own["v1"] = path
    mounts: dict[str, tuple[str, str]] = {}  # version -> (mount point, cgroup at its top)
    for line in (_read(root / "proc/self/mountinfo") or "").splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        if tail[0] == "cgroup2":
            mounts.setdefault("v2", (fields[4], fields[3]))
        elif tail[0] == "cgroup" and "memory" in tail[2].split(","):
            mounts.setdefault("v1", (fields[4], fields[3]))
    if not mounts:  # no mountinfo: the usual places
        mounts = {"v2": ("/sys/fs/cgroup", "/"), "v1": ("/sys/fs/cgroup/memory", "/")}
    dirs = {}
    for version, path in own.items():
        if version not in mounts:
            continue
        point, top = mounts[version]
        base = root / point.lstrip("/")
        rel = path[len(top):] if top != "/" and (path == top or path.startswith(top + "/")) else path
        here = base / rel.lstrip("/")
        dirs[version] = (here if here.is_dir() else base, base)
    return dirs


def _cgroup_limits(directory: Path, top: Path, version: str) -> tuple[int | None, int | None]:
    """(limit, room) of a cgroup and its ancestors up to the mount's top: the smallest limit and the
    smallest limit minus usage.  Usage leaves out inactive page cache, which the kernel reclaims
    before it kills anything.  (None, None) where no level has a limit."""
    limit_file, usage_file, cache_keys = (
        ("memory.max", "memory.current", ("inactive_file",)) if version == "v2" else
        ("memory.limit_in_bytes", "memory.usage_in_bytes", ("total_inactive_file", "inactive_file")))
    limit = room = None
    here = directory
    while True:
        cap = _number(here / limit_file)
        if cap is not None:
            usage = _number(here / usage_file)
            stat = _fields(_read(here / "memory.stat"))
            cache = next((stat[k] for k in cache_keys if k in stat), 0)
            left = cap - max(0, (usage or 0) - cache)
            limit = cap if limit is None else min(limit, cap)
            room = left if room is None else min(room, left)
        if here == top or top not in here.parents:
            break
        here = here.parent
    return limit, room


def cgroup_memory(root: str | os.PathLike = "/") -> tuple[int | None, int | None]:
    """(limit, room) in bytes from this process's memory cgroups, v2 and v1 alike (None: no limit)."""
    limit = room = None
    for version, (directory, top) in _cgroup_dirs(Path(root)).items():
        cap, left = _cgroup_limits(directory, top, version)
        if cap is not None:
            assert left is not None  # _cgroup_limits finds both or neither
            limit = cap if limit is None else min(limit, cap)
            room = left if room is None else min(room, left)
    return limit, room


def _rlimit_as() -> int | None:
    """The address-space limit (RLIMIT_AS soft limit) in bytes, None where unlimited or unknown."""
    if resource is None:
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    return None if soft == resource.RLIM_INFINITY or soft < 0 else soft


def _address_space(root: Path) -> int | None:
    """This process's address space now (VmSize), which RLIMIT_AS caps."""
    return _fields(_read(root / "proc/self/status"), 1024).get("VmSize")


def total_bytes(root: str | os.PathLike = "/") -> int | None:
    """The most memory this process could ever get: min(MemTotal, cgroup limit, RLIMIT_AS).

    None where none of them can be read (no /proc, no limits: not Linux).
    """
    root = Path(root)
    known = [meminfo(root).get("MemTotal"), cgroup_memory(root)[0], _rlimit_as()]
    known = [v for v in known if v is not None]
    return min(known) if known else None


def available_bytes(root: str | os.PathLike = "/") -> int | None:
    """The memory this process can still take now without the kernel killing something.

    The minimum of MemAvailable (free memory plus cache the kernel can drop), the room left under
    every memory cgroup limit above this process (limit minus usage, inactive cache not counted
    as used), and RLIMIT_AS minus the address space already mapped.  None where none of them can be
    read.  Never negative.
    """
    root = Path(root)
    info = meminfo(root)
    known = [info.get("MemAvailable", info.get("MemFree")), cgroup_memory(root)[1]]
    cap = _rlimit_as()
    if cap is not None:
        used = _address_space(root)
        known.append(cap - used if used is not None else None)
    known = [v for v in known if v is not None]
    return max(0, min(known)) if known else None


# -- the decision ----------------------------------------------------------------------------

def _mp(pixels: float) -> str:
    return f"{pixels / 1e6:.3g}"


def _gb(size: float) -> str:
    return f"{size / GB:.1f}" if size < 100 * GB else f"{size / GB:.0f}"


def admit(engine: str, quality: str | None, pixels: int, reserved: int = 0, shortest_side: int | None = None,
          root: str | os.PathLike = "/") -> tuple[str, str] | None:
    """None if the job fits in memory now; else (error code, sentence for the photographer).

    ("too_large", ...) when it could never fit on this machine (so retrying is pointless: the
    sentence gives the largest layer it can take); ("busy", ...) when it fits in total but not in
    what is available minus `reserved`, the bytes that work already accepted will still take
    (tinctd runs one job at a time, so that is the largest of the running and queued jobs'
    job_bytes, not their sum).  `shortest_side`: the layer's shorter side, so that a strip is
    costed as one (see STRIP_SIDE).  Where memory cannot be read at all, every job is admitted.
    """
    need = job_bytes(engine, quality, pixels, shortest_side)
    quality = quality or DEFAULT_QUALITY
    total = total_bytes(root)
    most = largest_pixels(engine, quality, total, shortest_side) if total is not None else None
    if most is not None and pixels > most:
        return ("too_large", (
            f"This {_mp(pixels)}-megapixel layer needs about {_gb(need)} GB of memory with the {engine} "
            f"engine at {quality} quality; this computer can take at most {_mp(most)} megapixels. "
            "Colorize a smaller layer or a selection."))
    available = available_bytes(root)
    if available is not None and need > available - reserved:
        free = max(0, available - reserved)
        return ("busy", (
            f"This {_mp(pixels)}-megapixel layer needs about {_gb(need)} GB of free memory and only "
            f"{_gb(free)} GB is free right now. Wait for the jobs ahead of it or close other programs, "
            "then try again."))
    return None


def main() -> None:
    """`python -m tinct.serve.admission`: this machine's figures and the largest layer per engine and quality."""
    total, available = total_bytes(), available_bytes()
    print(f"total {_gb(total) if total is not None else '?'} GB, available now "
          f"{_gb(available) if available is not None else '?'} GB, tinctd itself {_gb(TINCTD_BYTES)} GB")
    for (engine, quality), per_pixel in BYTES_PER_PIXEL.items():
        most = largest_pixels(engine, quality, total) if total is not None else None
        print(f"{engine:<13} {quality:<8} {per_pixel:5d} B/pixel + "
              f"{FIXED_BYTES[engine, quality] / 1e6:4.0f} MB: largest layer "
              f"{_mp(most) + ' MP' if most is not None else 'unknown'}")


if __name__ == "__main__":
    main()
