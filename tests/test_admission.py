"""tinct.serve.admission: job sizes, the machine's memory as /proc and the cgroups tell it, and the decision."""
import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from tinct.serve import admission

GIB = 1 << 30
REPO = Path(__file__).resolve().parents[1]
KEYS = list(admission.BYTES_PER_PIXEL)


# -- fake /proc and /sys/fs/cgroup trees ---------------------------------------------------------

def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def fake_root(tmp_path: Path, total: int, available: int, vmsize: int = 1 * GIB) -> Path:
    """A root with /proc/meminfo and /proc/self/status only: no cgroup limits."""
    write(tmp_path / "proc/meminfo", f"MemTotal:       {total // 1024} kB\nMemFree:        {available // 2048} kB\n"
                                     f"MemAvailable:   {available // 1024} kB\nBuffers:          1024 kB\n")
    write(tmp_path / "proc/self/status", f"Name:\tpython\nVmPeak:\t{vmsize // 1024} kB\nVmSize:\t{vmsize // 1024} kB\n")
    return tmp_path


def cgroup_v2(root: Path, path: str, levels: dict[str, tuple[str, int, int]], mount_top: str = "/") -> None:
    """cgroup2 mounted at /sys/fs/cgroup; levels: relative dir -> (memory.max, memory.current, inactive_file)."""
    write(root / "proc/self/cgroup", f"0::{path}\n")
    write(root / "proc/self/mountinfo",
          "22 1 0:20 / / rw,relatime - ext4 /dev/root rw\n"
          f"30 22 0:26 {mount_top} /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime - cgroup2 cgroup2 rw,nsdelegate\n")
    for rel, (limit, current, inactive) in levels.items():
        d = root / "sys/fs/cgroup" / rel
        write(d / "memory.max", limit + "\n")
        write(d / "memory.current", f"{current}\n")
        write(d / "memory.stat", f"anon {current - inactive}\nfile {inactive}\ninactive_file {inactive}\n")


def cgroup_v1(root: Path, path: str, rel: str, limit: int, usage: int, inactive: int, mount_top: str = "/") -> None:
    """The v1 memory controller mounted at /sys/fs/cgroup/memory, this process in `path`."""
    write(root / "proc/self/cgroup", f"5:devices:{path}\n4:memory:{path}\n0::/\n")
    write(root / "proc/self/mountinfo",
          "22 1 0:20 / / rw,relatime - ext4 /dev/root rw\n"
          "31 22 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
          f"35 31 0:32 {mount_top} /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")
    d = root / "sys/fs/cgroup/memory" / rel
    write(d / "memory.limit_in_bytes", f"{limit}\n")
    write(d / "memory.usage_in_bytes", f"{usage}\n")
    write(d / "memory.stat", f"cache {inactive}\ninactive_file 0\ntotal_inactive_file {inactive}\n")
    (root / "sys/fs/cgroup/unified").mkdir(parents=True, exist_ok=True)  # v2 without the memory controller


@pytest.fixture(autouse=True)
def no_rlimit(monkeypatch):
    """The fake trees describe the machine; the real process's RLIMIT_AS must not leak in."""
    monkeypatch.setattr(admission, "_rlimit_as", lambda: None)


# -- job sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("engine,quality", KEYS)
def test_job_bytes_is_fixed_plus_linear_in_pixels(engine, quality):
    base = admission.job_bytes(engine, quality, 0)
    one = admission.job_bytes(engine, quality, 1_000_000)
    assert base == admission.FIXED_BYTES[engine, quality] >= 0
    assert one - base == 1_000_000 * admission.BYTES_PER_PIXEL[engine, quality]
    assert admission.job_bytes(engine, quality, 7_000_000) - base == 7 * (one - base)


def test_job_bytes_are_at_least_what_was_measured():
    # MB per megapixel by benchmarks/memory.py (admission.py says how), `final` with GCR's window
    # full, the worse of with and without strokes; the table must not promise less.
    measured = {("optimization", "final"): 197, ("optimization", "preview"): 239, ("optimization", "live"): 37,
                ("learned", "final"): 260, ("learned", "preview"): 281, ("learned", "live"): 75}
    assert set(measured) == set(KEYS)
    for (engine, quality), mb in measured.items():
        assert admission.job_bytes(engine, quality, 100_000_000) > 100 * mb * 1e6 * 1.2, (engine, quality)


def test_job_bytes_defaults_and_unknowns_err_towards_more():
    assert admission.job_bytes("optimization", None, 10**6) == admission.job_bytes("optimization", "final", 10**6)
    most = max(admission.job_bytes(e, q, 10**6) for e, q in KEYS)
    assert admission.job_bytes("some-plugin-engine", "final", 10**6) >= most
    assert admission.job_bytes("optimization", "draft", 10**6) >= most
    with pytest.raises(ValueError):
        admission.job_bytes("optimization", "final", -1)


def test_strips_cost_their_float64_solve():
    # 62500x16 measured 1.9 kB a pixel for optimization/final (float64), 2.3x the table's figure
    normal = admission.job_bytes("optimization", "final", 10**6, shortest_side=17)
    strip = admission.job_bytes("optimization", "final", 10**6, shortest_side=16)
    assert normal == admission.job_bytes("optimization", "final", 10**6)
    assert strip - admission.FIXED_BYTES["optimization", "final"] >= 1.25 * 1.9e9
    most = admission.largest_pixels("optimization", "final", 24 * GIB, shortest_side=16)
    assert admission.job_bytes("optimization", "final", most + 1, 16) + admission.TINCTD_BYTES > 24 * GIB
    assert most < admission.largest_pixels("optimization", "final", 24 * GIB) / 3


@pytest.mark.parametrize("engine,quality", KEYS)
def test_largest_pixels_is_the_boundary(engine, quality):
    total = 24 * GIB
    most = admission.largest_pixels(engine, quality, total)
    assert most > 0
    assert admission.job_bytes(engine, quality, most) + admission.TINCTD_BYTES <= total
    assert admission.job_bytes(engine, quality, most + 1) + admission.TINCTD_BYTES > total
    assert admission.largest_pixels(engine, quality, admission.TINCTD_BYTES) == 0
    assert admission.largest_pixels(engine, quality, 2 * total) > 2 * most - 1


# -- the decision on crafted machines --------------------------------------------------------

def test_admit_accepts_a_job_that_fits(tmp_path):
    root = fake_root(tmp_path, total=24 * GIB, available=20 * GIB)
    assert admission.admit("optimization", "final", 4_000_000, root=root) is None
    assert admission.admit("learned", None, 4_000_000, root=root) is None


def test_admit_too_large_names_the_largest_layer(tmp_path):
    # an otherwise idle machine: all but tinctd's own part available
    root = fake_root(tmp_path, total=24 * GIB, available=24 * GIB - admission.TINCTD_BYTES)
    most = admission.largest_pixels("optimization", "final", 24 * GIB)
    assert admission.admit("optimization", "final", most, root=root) is None
    code, why = admission.admit("optimization", "final", most + 1, root=root)
    assert code == "too_large"
    assert f"at most {most / 1e6:.3g} megapixels" in why
    assert "smaller layer or a selection" in why
    # 100 MP, the protocol's default limit, could never fit in 24 GiB for the learned engine's preview
    assert admission.admit("learned", "preview", 100_000_000, root=root)[0] == "too_large"
    # nor a strip of the largest layer's pixels
    assert admission.admit("optimization", "final", most, shortest_side=16, root=root)[0] == "too_large"


def test_admit_busy_when_it_fits_in_total_but_not_now(tmp_path):
    need = admission.job_bytes("optimization", "preview", 10_000_000)
    root = fake_root(tmp_path, total=24 * GIB, available=need - 1)
    code, why = admission.admit("optimization", "preview", 10_000_000, root=root)
    assert code == "busy"
    assert "try again" in why
    root = fake_root(tmp_path, total=24 * GIB, available=need + 1)
    assert admission.admit("optimization", "preview", 10_000_000, root=root) is None
    # ... until work already accepted takes its share
    assert admission.admit("optimization", "preview", 10_000_000, reserved=2, root=root)[0] == "busy"


def test_admit_admits_everything_where_memory_cannot_be_read(tmp_path):
    assert admission.total_bytes(tmp_path) is None
    assert admission.available_bytes(tmp_path) is None
    assert admission.admit("learned", "final", 10**9, root=tmp_path) is None


def test_rlimit_as_caps_total_and_available(tmp_path, monkeypatch):
    root = fake_root(tmp_path, total=24 * GIB, available=20 * GIB, vmsize=1 * GIB)
    monkeypatch.setattr(admission, "_rlimit_as", lambda: 3 * GIB)
    assert admission.total_bytes(root) == 3 * GIB
    assert admission.available_bytes(root) == 2 * GIB
    assert admission.admit("optimization", "final", 50_000_000, root=root)[0] == "too_large"


# -- cgroups ---------------------------------------------------------------------------------

def test_cgroup_v2_limit_and_room(tmp_path):
    root = fake_root(tmp_path, total=64 * GIB, available=60 * GIB)
    cgroup_v2(root, "/user.slice/tinct.scope", {
        "user.slice/tinct.scope": (str(8 * GIB), 3 * GIB, 1 * GIB),
    })
    assert admission.cgroup_memory(root) == (8 * GIB, 6 * GIB)  # inactive cache counts as room
    assert admission.total_bytes(root) == 8 * GIB
    assert admission.available_bytes(root) == 6 * GIB


def test_cgroup_v2_max_means_unlimited_and_a_parent_can_limit(tmp_path):
    root = fake_root(tmp_path, total=64 * GIB, available=60 * GIB)
    cgroup_v2(root, "/user.slice/tinct.scope", {"user.slice/tinct.scope": ("max", 3 * GIB, 0)})
    assert admission.cgroup_memory(root) == (None, None)
    assert admission.total_bytes(root) == 64 * GIB
    cgroup_v2(root, "/user.slice/tinct.scope", {
        "user.slice/tinct.scope": ("max", 3 * GIB, 0),
        "user.slice": (str(4 * GIB), int(3.5 * GIB), 0),
    })
    assert admission.cgroup_memory(root) == (4 * GIB, GIB // 2)
    assert admission.available_bytes(root) == GIB // 2


def test_cgroup_v2_in_a_container_namespace(tmp_path):
    # The container's cgroup is the mount's top: /proc/self/cgroup says "/" and the files are at the mount.
    root = fake_root(tmp_path, total=64 * GIB, available=60 * GIB)
    cgroup_v2(root, "/", {".": (str(2 * GIB), GIB, 0)})
    assert admission.cgroup_memory(root) == (2 * GIB, GIB)


def test_cgroup_v1_limit_room_and_unlimited(tmp_path):
    root = fake_root(tmp_path, total=64 * GIB, available=60 * GIB)
    cgroup_v1(root, "/process_api/abc", "process_api/abc", 2 * GIB, int(1.5 * GIB), GIB // 4)
    assert admission.cgroup_memory(root) == (2 * GIB, GIB * 3 // 4)
    assert admission.total_bytes(root) == 2 * GIB
    assert admission.available_bytes(root) == GIB * 3 // 4
    cgroup_v1(root, "/process_api/abc", "process_api/abc", 9223372036854771712, GIB, 0)  # v1's "no limit"
    assert admission.cgroup_memory(root) == (None, None)
    assert admission.total_bytes(root) == 64 * GIB


def test_cgroup_v1_path_relative_to_the_mount(tmp_path):
    # Docker without a cgroup namespace: /proc/self/cgroup names the host path, which is the mount's top.
    root = fake_root(tmp_path, total=64 * GIB, available=60 * GIB)
    cgroup_v1(root, "/docker/abc", "", 3 * GIB, GIB, 0, mount_top="/docker/abc")
    assert admission.cgroup_memory(root) == (3 * GIB, 2 * GIB)


# -- this machine ----------------------------------------------------------------------------

@pytest.mark.skipif(not Path("/proc/meminfo").exists(), reason="reads Linux's /proc")
def test_this_machine_reports_its_memory(monkeypatch):
    monkeypatch.undo()  # the real RLIMIT_AS too
    total, available = admission.total_bytes(), admission.available_bytes()
    assert total is not None and available is not None
    assert 0 < available <= total
    assert total <= admission.meminfo()["MemTotal"]


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads Linux's /proc")
def test_a_real_address_space_limit_is_seen():
    code = ("import resource, sys; sys.path.insert(0, sys.argv[1]); "
            "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, resource.RLIM_INFINITY)); "
            "import importlib.util as u; s = u.spec_from_file_location('a', sys.argv[2]); a = u.module_from_spec(s); "
            "s.loader.exec_module(a); print(a.total_bytes(), a.available_bytes())")
    out = subprocess.run([sys.executable, "-c", code, str(REPO / "daemon"),
                          str(REPO / "daemon/tinct/serve/admission.py")],
                         capture_output=True, text=True, timeout=30, check=True).stdout.split()
    total, available = int(out[0]), int(out[1])
    assert total == 3 << 30
    assert 0 < available < total


def test_admission_imports_only_the_standard_library():
    tree = ast.parse((REPO / "daemon/tinct/serve/admission.py").read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    assert names <= set(sys.stdlib_module_names), names - set(sys.stdlib_module_names)


# -- the table against a real job ------------------------------------------------------------

def test_a_real_quarter_megapixel_job_stays_under_the_table(tmp_path, monkeypatch):
    """One real colorize (optimization, final, 0.25 MP) in a fresh process: measured below job_bytes."""
    spec = importlib.util.spec_from_file_location("memory_benchmark", REPO / "benchmarks/memory.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    photo = "kodim14"
    if not sorted(bench.EVAL.glob(f"*/{photo}.png")):  # no eval set here: a synthetic photo with edges
        import numpy as np
        from PIL import Image

        y, x = np.mgrid[0:512, 0:768]
        rgb = np.stack([(x * 255 // 767), (y * 255 // 511), ((x // 64 + y // 64) % 2) * 200 + 20], -1)
        (tmp_path / "eval/set").mkdir(parents=True)
        Image.fromarray(rgb.astype(np.uint8)).save(tmp_path / "eval/set/synthetic.png")
        monkeypatch.setenv("TINCT_EVAL_DIR", str(tmp_path / "eval"))  # read by the child
        photo = "synthetic"
    record = bench.measure("optimization", "final", True, 0.25, photo, 100, timeout=60)
    measured = max(record["increment"], record["hwm_increment"] or 0)
    table = admission.job_bytes("optimization", "final", record["pixels"])
    assert measured < table
    # ... and not absurdly above it (a typical job here is ~90 MB against ~255): if this fails the engine
    # got much leaner, so re-measure with benchmarks/memory.py and let tinctd take larger layers
    assert measured > table / 4, (measured, table)
