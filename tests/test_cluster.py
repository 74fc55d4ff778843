"""`tinct colorize --cluster` on a real two-node Ray cluster, a worker node killed mid-batch.

The head and a second worker node are separate `ray start` processes inside a private network and
PID namespace that the test makes (`unshare`; CI runs as root): every packet stays on `lo`, `ray
stop` there sees only this cluster, and killing the namespace's first process ends everything in
it, so the cluster is gone after the test whatever happened (also if pytest itself is killed).
See ../shared/cluster/README.md for the recipe.
"""
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from tinct.color import imagefile
from tinct.tools import batch, cli

RAY = Path(sys.executable).with_name("ray")
PORT = 6399
ADDRESS = f"127.0.0.1:{PORT}"
pytestmark = [
    pytest.mark.skipif(not RAY.exists(), reason="Ray is not installed: pip install -e '.[cluster]'"),
    pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"),
                       reason="needs root and util-linux (unshare, nsenter) for a private network namespace"),
]


# the namespace's first process: it adopts every orphan there and, unlike `sleep`, reaps them
REAPER = """
import os, time
while True:
    try:
        os.wait()
    except ChildProcessError:
        time.sleep(0.1)
"""


def _die_with_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: pytest gone -> namespace gone


class Cluster:
    def __init__(self, holder: subprocess.Popen, log: Path):
        self.holder, self.log = holder, log
        deadline = time.monotonic() + 10
        while not (children := Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()):
            assert time.monotonic() < deadline, "unshare did not start its namespace"
            time.sleep(0.01)
        self.enter = ["nsenter", "-t", children[0], "-n", "-p", "-m", "--"]
        self.worker: subprocess.Popen | None = None
        self.nodes: dict[str, str] = {}

    def run(self, *command, **kw) -> subprocess.CompletedProcess:
        with open(self.log, "a") as log:
            return subprocess.run(self.enter + [str(c) for c in command], stdout=log, stderr=subprocess.STDOUT,
                                  check=True, timeout=kw.pop("timeout", 120), **kw)

    def popen(self, *command, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.enter + [str(c) for c in command], start_new_session=True, **kw)

    def start(self, temp: Path) -> None:
        self.run("ip", "link", "set", "lo", "up")
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", 1, "--disable-usage-stats"]
        # a dead node is noticed in ~2 s rather than the default ~30 s
        health = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                  "health_check_initial_delay_ms": 1000}
        self.run(RAY, "start", "--head", "--port", PORT, "--include-dashboard", "false", "--temp-dir", temp,
                 "--system-config", json.dumps(health), *common)
        with open(self.log, "a") as log:
            self.worker = self.popen(RAY, "start", "--address", ADDRESS, "--block", *common,
                                     stdout=log, stderr=subprocess.STDOUT)
        # wait for both nodes; the head is the one with Ray's head resource
        probe = ("import json, time, ray\n"
                 f"ray.init(address={ADDRESS!r}, log_to_driver=False)\n"
                 "while len(nodes := [n for n in ray.nodes() if n['Alive']]) < 2: time.sleep(0.2)\n"
                 "print(json.dumps({('head' if 'node:__internal_head__' in n['Resources'] else 'worker'): n['NodeID']"
                 " for n in nodes}))\n")
        found = subprocess.run(self.enter + [sys.executable, "-c", probe], capture_output=True, text=True,
                               timeout=120)
        assert found.returncode == 0, found.stderr
        self.nodes = json.loads(found.stdout.strip().splitlines()[-1])
        assert set(self.nodes) == {"head", "worker"}

    def worker_node(self) -> dict[int, bytes]:
        """The worker node's processes (pid -> command line): its session (Ray's workers have their own
        process groups, but not their own sessions)."""
        assert self.worker is not None
        found = {}
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and os.getsid(int(proc.name)) == self.worker.pid:
                    found[int(proc.name)] = (proc / "cmdline").read_bytes()
            except OSError:
                continue
        return found

    def worker_busy(self) -> bool:
        """Whether the worker node is colorizing a photo right now (a task's process titles itself so)."""
        return any(cmd.startswith(b"ray::colorize_remote") for cmd in self.worker_node().values())

    def kill_worker(self) -> None:
        """The whole worker node at once, as a machine dies: ray start, its raylet, its workers."""
        assert self.worker is not None
        for pid in self.worker_node():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.worker.wait()
        deadline = time.monotonic() + 10
        while self.worker_node():
            assert time.monotonic() < deadline, f"the worker node outlived SIGKILL: {self.worker_node()}"
            time.sleep(0.05)

    def stop(self) -> None:
        try:
            if self.worker and self.worker.poll() is None:
                self.kill_worker()
            if self.holder.poll() is None:
                self.run(RAY, "stop", "--force", timeout=60)  # sees only this namespace's processes
        finally:
            self.holder.kill()  # the namespace's first process: whatever is left in it dies with it
            self.holder.wait()
            if self.worker:
                self.worker.wait()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for this file's tests (starting one takes ~15 s); the last test kills its worker node."""
    temp = Path(tempfile.mkdtemp(prefix="tr", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    holder = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                               sys.executable, "-c", REAPER], preexec_fn=_die_with_parent)
    node = Cluster(holder, tmp_path_factory.mktemp("cluster") / "ray.log")
    try:
        node.start(temp)
        yield node
    finally:
        try:
            node.stop()
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    with open(node.log) as log:  # nothing of the cluster outlives the test
        assert holder.returncode is not None, log.read()


def archive(folder: Path, count: int = 20) -> list[str]:
    """`count` small scans of three kinds (8-bit PNG, 16-bit TIFF, JPEG), most with a hints layer."""
    folder.mkdir()
    rng = np.random.default_rng(19)
    names = []
    for i in range(count):
        y, x = np.mgrid[0:120, 0:160]
        grey = (60 + 120 * (x > 40 + 3 * i) + rng.normal(0, 6, (120, 160))).clip(0, 255)
        suffix = (".png", ".tif", ".jpg")[i % 3]
        image = (grey * 257).astype(np.uint16) if suffix == ".tif" else grey.astype(np.uint8)
        imagefile.write(folder / f"scan{i:02d}{suffix}", image)
        if i % 4:
            hints = np.zeros((120, 160, 4), np.uint8)
            hints[10:20, 10:20] = (40 + 9 * i, 160, 60, 255)
            hints[90:100, 120:130] = (200, 40, 10 * i, 255)
            imagefile.write(folder / f"scan{i:02d}.hints.png", hints)
        names.append(f"scan{i:02d}{suffix}")
    return names


def test_failures_are_recorded_listed_and_retried_on_the_cluster(cluster, tmp_path):
    names = archive(tmp_path / "scans", count=3)
    (tmp_path / "scans" / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    command = [sys.executable, "-m", "tinct.tools.cli", "colorize", tmp_path / "scans", "-o", out, "--cluster", "auto"]
    first = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert first.returncode == 1
    assert first.stderr.rstrip().splitlines()[-1].startswith(f"  {tmp_path / 'scans' / 'broken.png'}: cannot read "
                                                             f"{tmp_path / 'scans' / 'broken.png'}")
    imagefile.write(tmp_path / "scans" / "broken.png", np.full((16, 16), 99, np.uint8))
    second = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert "3 of 4 photos already done" in second.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(names + ["broken.png", batch.MANIFEST])


def test_a_batch_survives_a_dead_worker_node_and_equals_local_mode(cluster, tmp_path):
    names = archive(tmp_path / "scans")
    local, remote = tmp_path / "local", tmp_path / "remote"
    assert cli.main(["colorize", str(tmp_path / "scans"), "-o", str(local), "--device", "cpu"]) == 0

    command = [sys.executable, "-m", "tinct.tools.cli", "colorize", tmp_path / "scans", "-o", remote,
               "--device", "cpu", "--cluster", ADDRESS]
    run = cluster.popen(*command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        # kill the worker node while it runs a photo, once it has finished at least one
        while True:
            assert run.poll() is None and time.monotonic() < deadline, "the batch ended before the kill"
            records = [json.loads(line) for line in (remote / batch.MANIFEST).read_text().splitlines()] \
                if (remote / batch.MANIFEST).exists() else []
            if any(r["node"] == cluster.nodes["worker"] for r in records) and cluster.worker_busy():
                break
            time.sleep(0.02)
        cluster.kill_worker()
        before = len(records)
        out, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert before < len(names) - 2, "the kill came too late to matter"
    records = [json.loads(line) for line in (remote / batch.MANIFEST).read_text().splitlines()]
    assert sorted(r["output"] for r in records) == sorted(names) and {r["status"] for r in records} == {"done"}
    # the photo the dead node was running was done again on the head, as was all that came after
    # (at most one result from the worker may have been on its way to the driver when it died)
    after = [r["node"] for r in records[before:]]
    assert after.count(cluster.nodes["worker"]) <= 1 and after[-1] == cluster.nodes["head"]
    assert "20/20" in err and "failed=0" in err
    for name in names:
        assert (remote / name).read_bytes() == (local / name).read_bytes(), name
    assert sorted(p.name for p in remote.iterdir()) == sorted(names + [batch.MANIFEST])  # no parts left

    again = subprocess.run(cluster.enter + [str(c) for c in command], capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "20 of 20 photos already done" in again.stderr
    assert len((remote / batch.MANIFEST).read_text().splitlines()) == len(names)
