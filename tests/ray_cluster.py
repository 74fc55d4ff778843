"""A real two-node Ray cluster on this machine, every packet and process kept in a private namespace.

The head and a second worker node are separate `ray start` processes inside a network and PID
namespace made here (`unshare`, so root; CI runs as root): only `lo` exists there, so nothing
leaves the machine; `ray stop` there sees only this cluster; and killing the namespace's first
process ends everything in it, so the cluster is gone afterwards whatever happened (also when the
process that started it is killed). The recipe: ../shared/cluster/README.md. Used by
tests/test_cluster.py and benchmarks/cluster.py.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
PORT = 6399
ADDRESS = f"127.0.0.1:{PORT}"


def unavailable() -> str | None:
    """Why no such cluster can run here, or None."""
    if not RAY.exists():
        return "Ray is not installed: pip install -e '.[cluster]'"
    if os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("nsenter"):
        return "needs root and util-linux (unshare, nsenter) for a private network namespace"
    return None


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
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: our starter gone -> namespace gone


class Cluster:
    """The namespace (`enter` runs a command inside it), its worker node and both nodes' Ray ids."""

    def __init__(self, holder: subprocess.Popen, log: Path):
        self.holder, self.log = holder, log
        deadline = time.monotonic() + 10
        while not (children := Path(f"/proc/{holder.pid}/task/{holder.pid}/children").read_text().split()):
            assert time.monotonic() < deadline, "unshare did not start its namespace"
            time.sleep(0.01)
        self.enter = ["nsenter", "-t", children[0], "-n", "-p", "-m", "--"]
        self.worker: subprocess.Popen | None = None
        self.nodes: dict[str, str] = {}
        self.temp: Path | None = None

    def client_server_logs(self, lines: int = 40) -> str:
        """The last lines of every Ray Client server's logs (the proxier starts one per ray:// client):
        what a failed ray:// run's own message ("Starting Ray client server failed") points at."""
        found = sorted(Path(self.temp).glob("session_*/logs/ray_client_server*")) if self.temp else []
        return "\n".join(f"== {p.name}\n" + "\n".join(p.read_text(errors="replace").splitlines()[-lines:])
                         for p in found)

    def run(self, *command, **kw) -> subprocess.CompletedProcess:
        with open(self.log, "a") as log:
            return subprocess.run(self.enter + [str(c) for c in command], stdout=log, stderr=subprocess.STDOUT,
                                  check=True, timeout=kw.pop("timeout", 120), **kw)

    def popen(self, *command, **kw) -> subprocess.Popen:
        return subprocess.Popen(self.enter + [str(c) for c in command], start_new_session=True, **kw)

    def start(self, temp: Path, cpus_per_node: int) -> None:
        self.temp = temp
        self.run("ip", "link", "set", "lo", "up")
        common = ["--node-ip-address", "127.0.0.1", "--num-cpus", cpus_per_node, "--disable-usage-stats"]
        # a dead node is noticed in ~2 s rather than the default ~30 s
        health = {"health_check_period_ms": 500, "health_check_failure_threshold": 3,
                  "health_check_initial_delay_ms": 1000}
        # Ray Client's proxier gives each client's own server 30 s to come up: a loaded 2-core CI machine
        # has missed that (a fresh Python importing Ray), so the head's proxier waits up to 120 s
        slow = dict(os.environ, RAY_CLIENT_SERVER_CHECK_CHANNEL_TIMEOUT_S="120")
        self.run(RAY, "start", "--head", "--port", PORT, "--include-dashboard", "false", "--temp-dir", temp,
                 "--system-config", json.dumps(health), *common, env=slow)
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


@contextmanager
def private_cluster(log: Path, cpus_per_node: int = 1) -> Iterator[Cluster]:
    """A started head + worker node (each `cpus_per_node` CPUs); stopped and gone on leaving."""
    temp = Path(tempfile.mkdtemp(prefix="tr", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    holder = subprocess.Popen(["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc",
                               sys.executable, "-c", REAPER], preexec_fn=_die_with_parent)
    cluster = Cluster(holder, log)
    try:
        cluster.start(temp, cpus_per_node)
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            shutil.rmtree(temp, ignore_errors=True)
    if holder.returncode is None:  # nothing of the cluster outlives it
        raise RuntimeError(f"the cluster's namespace is still there; see {log}")
