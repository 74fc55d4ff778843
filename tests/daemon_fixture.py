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
    """`tinctd --endpoint ... --state-dir ...` as a subprocess; its output goes to state_dir/output.log."""

    def __init__(self, state_dir: Path, *args: str, endpoint: str | None = None):
        self.endpoint = endpoint or f"tcp://127.0.0.1:{free_port()}"
        self.state_dir = Path(state_dir)
        self.output = self.state_dir / "output.log"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        self.command = [sys.executable, "-m", "tinct.server", "--endpoint", self.endpoint,
                        "--state-dir", str(self.state_dir), *args]
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # its log says when it listens (a hello would need its keys)
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinctd exited: {self.output.read_text()}")
            if " listening on " in self.output.read_text():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tinctd did not answer within 60 s: {self.output.read_text()}")

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
