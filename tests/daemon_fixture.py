"""Start a real tinctd process on a free loopback port for a test, and stop it afterwards."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "plugins" / "common"))
import tinct_client  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningDaemon:
    def __init__(self, state_dir: Path, *args: str):
        self.endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.state_dir = state_dir
        env = dict(os.environ, TINCT_STATE_DIR=str(state_dir), OMP_NUM_THREADS="1")
        self.command = [sys.executable, "-m", "tinct.server", "--endpoint", self.endpoint, *args]
        self.proc = subprocess.Popen(self.command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinctd exited: {self.proc.stdout.read().decode()}")
            try:
                with self.client(timeout=1, retries=0) as c:
                    c.hello()
                return
            except tinct_client.TinctError:
                time.sleep(0.2)
        raise RuntimeError("tinctd did not answer within 60 s")

    def client(self, **kw) -> tinct_client.Client:
        kw.setdefault("timeout", 5)
        return tinct_client.Client(self.endpoint, start_command=[], **kw)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
