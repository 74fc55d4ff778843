"""Start a real tinctd process for a test (its own ipc socket in the test's private folder, or a
loopback TCP port with its own CURVE keys), and stop it afterwards."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import zmq
import zmq.auth

import tinct_client  # plugins/common, on the path by pyproject's pytest settings

ROOT = Path(__file__).resolve().parents[1]


def dealer(endpoint: str, routing_id: bytes | None = None):
    """(context, DEALER socket) connected to `endpoint`, as a raw client that frames its own requests."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if routing_id:
        sock.setsockopt(zmq.ROUTING_ID, routing_id)
    sock.connect(endpoint)
    return ctx, sock


def reply_of(sock, wait_ms: int = 30_000) -> dict:
    """The next reply on a DEALER socket, its binary frames put back under their names."""
    assert sock.poll(wait_ms), "no reply"
    frames = sock.recv_multipart()
    reply = msgpack.unpackb(frames[1], raw=False)
    reply.update(zip(reply.pop("blobs", []), frames[2:]))
    return reply


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningDaemon:
    """`tinctd --endpoint ... --state-dir ...` as a subprocess; its output goes to state_dir/output.log.

    The endpoint is an ipc socket in `state_dir` unless given; a tcp endpoint gets the key folder
    `key_dir` (default state_dir/keys), which tinctd fills and `client()` reads (TINCT_KEY_DIR)."""

    def __init__(self, state_dir: Path, *args: str, endpoint: str | None = None, key_dir: Path | None = None,
                 env: dict | None = None):
        self.state_dir = Path(state_dir)
        self.endpoint = endpoint or f"ipc://{self.state_dir / 'tinctd.sock'}"
        self.key_dir = Path(key_dir or self.state_dir / "keys")
        self.output = self.state_dir / "output.log"
        env = dict(env or os.environ, OMP_NUM_THREADS="1", TINCT_KEY_DIR=str(self.key_dir))
        self.command = [sys.executable, "-m", "tinct.serve", "--endpoint", self.endpoint,
                        "--state-dir", str(self.state_dir), *args]
        start = self.output.stat().st_size if self.output.exists() else 0  # a restart appends to the same log
        with open(self.output, "ab") as out:
            self.proc = subprocess.Popen(self.command, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # its log says when it listens (a hello would need its keys)
            if self.proc.poll() is not None:
                raise RuntimeError(f"tinctd exited: {self.output.read_text()}")
            if " listening on " in self.output.read_text()[start:]:
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"tinctd did not answer within 60 s: {self.output.read_text()}")

    def client(self, **kw) -> tinct_client.Client:
        kw.setdefault("timeout", 5)
        if self.endpoint.startswith("tcp://") and "curve" not in kw:
            kw["curve"] = self.curve()
        return tinct_client.Client(self.endpoint, start_command=[], **kw)

    def curve(self) -> dict:
        """The plugin's CURVE keys for this tinctd, as tinct_client reads them from the key folder."""
        server_key, _ = zmq.auth.load_certificate(str(self.key_dir / "tinctd.key"))
        public, secret = zmq.auth.load_certificate(str(self.key_dir / "plugin.key_secret"))
        return {"server_key": server_key, "public": public, "secret": secret}

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
