"""memfd buffers against a real tinctd: clients that lie, die or are someone else get an error, the
daemon stays healthy and keeps none of their memory, and the real client falls back to the next way."""
import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import msgpack
import numpy as np
import pytest
import zmq

from daemon_fixture import ROOT
from tinct.serve import protocol as P

W, H = 32, 24
LAYER = np.tile(np.linspace(0, 255, W, dtype=np.uint8), (H, 1))  # GRAY u8: the reply is RGB, three times as long


@pytest.fixture(scope="module", autouse=True)
def memfd_offered(daemon):
    with daemon.client() as c:
        if not c.hello().get("memfd"):
            pytest.skip("this tinctd offers no memfd buffers here (not Linux, no /proc or no shared-memory folder)")


def key(daemon):
    with daemon.client() as c:
        info = c.hello()
        with open(os.path.join(info["shm_dir"], info["shm_key"])) as f:
            return f.read().strip()


def memfd(size, seals=fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_SEAL, data=b""):
    fd = os.memfd_create("test-buffer", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, size)
    os.pwrite(fd, data, 0)
    if seals:
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, seals)
    return fd


def ident(fd):
    return [fd, os.fstat(fd).st_ino]


def send(daemon, shm, pixels_len=W * H):
    """A hand-made colorize naming `shm` (pixels only), its reply."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    header = {"v": P.VERSION, "type": "colorize", "id": uuid.uuid4().hex, "width": W, "height": H,
              "layout": "GRAY", "sample": "u8", "blobs": [],
              "shm": dict(shm, blobs=["pixels"], lengths=[pixels_len])}
    try:
        sock.send_multipart([b"", msgpack.packb(header, use_bin_type=True)])
        assert sock.poll(30_000), "no reply"
        return msgpack.unpackb(sock.recv_multipart()[1], raw=False)
    finally:
        sock.close()
        ctx.term()


def memfd_maps(pid):
    """The memfds process `pid` has mapped, by name."""
    with open(f"/proc/{pid}/maps") as f:
        return [line.split()[-2] if line.endswith("(deleted)\n") else line.split()[-1]
                for line in f if "/memfd:" in line]


def clients_memory(pid):
    return [name for name in memfd_maps(pid) if name.startswith(("/memfd:tinct-", "/memfd:foreign"))]


def wait_for(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.05)


def still_serving(daemon):
    with daemon.client() as c:
        r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "memfd" and len(r["pixels"]) == W * H * 3


def test_buffers_are_mapped_once_read_in_place_and_given_back(daemon):
    with daemon.client(shared_memory=False) as c:
        framed = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
    with daemon.client() as c:
        results = [c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
                   for _ in range(3)]
        assert c.transport == "memfd"
        assert all(r["pixels"] == framed["pixels"] for r in results)  # the same answer as through the socket
        maps = memfd_maps(daemon.proc.pid)
        assert maps.count("/memfd:tinct-request") == 1 and maps.count("/memfd:tinct-reply") == 1  # cached
        bigger = np.tile(LAYER, (2, 2))  # the client grows its buffers in place; tinctd maps them again
        r = c.colorize(width=2 * W, height=2 * H, layout="GRAY", sample="u8", pixels=bigger.tobytes())
        assert np.frombuffer(r["pixels"], np.uint8).reshape(2 * H, 2 * W, 3)[:H, :W].tobytes() == framed["pixels"]
        assert memfd_maps(daemon.proc.pid).count("/memfd:tinct-request") == 1
    wait_for(lambda: not clients_memory(daemon.proc.pid))  # closed: tinctd let go


def test_a_result_as_long_as_its_layer_replaces_it_in_one_buffer(daemon):
    rgba = np.dstack([LAYER] * 3 + [np.arange(W * H, dtype=np.uint8).reshape(H, W)])
    with daemon.client(shared_memory=False) as c:
        framed = c.colorize(width=W, height=H, layout="BGRA", sample="u8", pixels=rgba.tobytes())
    with daemon.client() as c:
        for _ in range(2):  # the second time the request buffer holds the first result: placed again
            r = c.colorize(width=W, height=H, layout="BGRA", sample="u8", pixels=rgba.tobytes())
            assert c.transport == "memfd" and r["pixels"] == framed["pixels"]
        assert c.shared.fds[1] == -1  # no reply buffer made
        maps = memfd_maps(daemon.proc.pid)
        assert maps.count("/memfd:tinct-request") == 1 and "/memfd:tinct-reply" not in maps
    assert np.frombuffer(r["pixels"], np.uint8).reshape(H, W, 4)[..., 3].tobytes() == rgba[..., 3].tobytes()


def refusal(reply, words):
    assert reply["ok"] is False, reply
    assert reply["error"]["code"] == "bad_request" and reply["error"]["transport"] is True, reply
    assert words in reply["error"]["message"], reply["error"]["message"]


@pytest.mark.parametrize("case, words", [
    ("unsealed", "not a memfd sealed against shrinking"),
    ("grow seal only", "not a memfd sealed against shrinking"),
    ("shorter than it says", "this request needs"),
    ("reply too small", "this request needs"),
    ("in place but longer", "this request needs"),
    ("wrong inode", "not the one the plugin named"),
    ("not open", "cannot reach"),
    ("file on disk", "not a memfd sealed"),
    ("tmpfs file", "not a memfd sealed"),
    ("pipe", "not a memfd of tinctd's user"),
    ("wrong key", "key is not this tinctd's"),
    ("dead process", "cannot reach"),
])
def test_lying_buffers_are_refused_and_tinctd_stays_healthy(daemon, tmp_path, case, words):
    good_in, good_out = memfd(W * H, data=LAYER.tobytes()), memfd(W * H * 3)
    spec = {"pid": os.getpid(), "in": ident(good_in), "out": ident(good_out), "key": key(daemon)}
    extra = []
    if case == "unsealed":
        extra.append(memfd(W * H, seals=0))
        spec["in"] = ident(extra[-1])
    elif case == "grow seal only":
        extra.append(memfd(W * H, seals=fcntl.F_SEAL_GROW))
        spec["in"] = ident(extra[-1])
    elif case == "shorter than it says":
        extra.append(memfd(W * H - 1))
        spec["in"] = ident(extra[-1])
    elif case == "reply too small":
        extra.append(memfd(W * H))  # a GRAY layer comes back RGB
        spec["out"] = ident(extra[-1])
    elif case == "in place but longer":  # one buffer for a GRAY layer, whose RGB result is three times longer
        spec["out"] = spec["in"]
    elif case == "wrong inode":
        spec["in"] = [good_in, os.fstat(good_out).st_ino]
    elif case == "not open":
        spec["in"] = [999_999, os.fstat(good_in).st_ino]
    elif case == "file on disk":
        (tmp_path / "layer").write_bytes(LAYER.tobytes())
        extra.append(os.open(tmp_path / "layer", os.O_RDWR))
        spec["in"] = ident(extra[-1])
    elif case == "tmpfs file":
        fd, path = tempfile.mkstemp(dir="/dev/shm")
        os.unlink(path)
        os.ftruncate(fd, W * H)
        extra.append(fd)
        spec["in"] = ident(fd)
    elif case == "pipe":  # opening a pipe with no writer would block a careless daemon for ever
        r, w = os.pipe()
        os.close(w)
        extra.append(r)
        spec["in"] = ident(r)
    elif case == "wrong key":
        spec["key"] = "0" * 64
    elif case == "dead process":
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        spec["pid"] = child.pid
    try:
        refusal(send(daemon, spec), words)
    finally:
        for fd in [good_in, good_out] + extra:
            os.close(fd)
    assert daemon.alive()
    still_serving(daemon)


def test_a_cached_mapping_is_not_used_for_a_buffer_replaced_under_the_same_number(daemon):
    source, out = memfd(W * H, data=LAYER.tobytes()), memfd(W * H * 3)
    spec = {"pid": os.getpid(), "in": ident(source), "out": ident(out), "key": key(daemon)}
    try:
        assert send(daemon, spec)["ok"]  # mapped and cached
        unsealed = memfd(W * H, seals=0)
        os.dup2(unsealed, source)  # the same fd number, now an unsealed memfd
        os.close(unsealed)
        refusal(send(daemon, dict(spec, **{"in": ident(source)})), "not a memfd sealed against shrinking")
        refusal(send(daemon, spec), "not the one the plugin named")  # the old inode is not there any more
    finally:
        os.close(source)
        os.close(out)
    still_serving(daemon)


def test_the_real_buffers_cannot_shrink_and_a_wrong_key_falls_back_to_files(daemon):
    with daemon.client() as c:
        c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "memfd"
        for fd in c.shared.fds:  # what would SIGBUS tinctd's mapping is impossible, and seals cannot be undone
            with pytest.raises(PermissionError):
                os.ftruncate(fd, 0)
            with pytest.raises(PermissionError):
                fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_WRITE)  # F_SEAL_SEAL: nothing more to add
            assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) & fcntl.F_SEAL_SHRINK
        right, c.shared.key = c.shared.key, "f" * 64  # stale (a tinctd restarted): refused, read again, resent
        r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "memfd" and c.shared.key == right and len(r["pixels"]) == W * H * 3
        c.shared.key = "f" * 64
        c.shared._read_key = lambda: "f" * 64  # wrong and not mendable: the same request goes as files
        r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "files" and len(r["pixels"]) == W * H * 3
        r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "files"  # and keeps to that way
        os.unlink(c.shared.paths[0])  # its request file gone behind its back: the socket is the last way
        r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=LAYER.tobytes())
        assert c.transport == "frames" and len(r["pixels"]) == W * H * 3
    still_serving(daemon)


CLIENT = textwrap.dedent("""
    import sys
    sys.path.insert(0, sys.argv[2])
    import tinct_client
    side = 700
    with tinct_client.Client(sys.argv[1], timeout=60, start_command=[], client_id=sys.argv[3]) as c:
        hints = bytearray(side * side * 4)
        hints[:16] = bytes([200, 40, 40, 255]) * 4
        print("sending", flush=True)
        c.colorize(width=side, height=side, layout="GRAY", sample="u8", pixels=bytes(side * side), hints=bytes(hints))
""")


def test_a_client_killed_mid_request_leaves_no_memory_behind(daemon):
    plugin = uuid.uuid4().hex  # the killed client's id: the watcher sees that plugin's jobs
    proc = subprocess.Popen([sys.executable, "-c", CLIENT, daemon.endpoint, str(ROOT / "plugins" / "common"), plugin],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "sending"
        with daemon.client(client_id=plugin) as c:
            wait_for(lambda: c.status()["running"] is not None, 60)
            assert "/memfd:tinct-request" in memfd_maps(daemon.proc.pid)  # its layer, read in place
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with daemon.client(client_id=plugin) as c:
            wait_for(lambda: c.status()["running"] is None, 300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    wait_for(lambda: not clients_memory(daemon.proc.pid))
    still_serving(daemon)


NOBODY = 65534
OTHER_PYTHON = "/usr/bin/python3"  # one another user may run (the venv may be private)


@pytest.mark.skipif(os.geteuid() != 0 or not os.access(OTHER_PYTHON, os.X_OK),
                    reason="needs root (to act as another user) and /usr/bin/python3")
def test_another_user_can_neither_read_the_key_nor_lend_buffers(daemon):
    with daemon.client() as c:
        info = c.hello()
    probe = subprocess.run([OTHER_PYTHON, "-c", f"open({os.path.join(info['shm_dir'], info['shm_key'])!r}).read()"],
                           user=NOBODY, capture_output=True, text=True)
    assert probe.returncode != 0 and "PermissionError" in probe.stderr
    # a sealed memfd of another user, named with the right key: tinctd must not map it
    holder = subprocess.Popen([OTHER_PYTHON, "-c", textwrap.dedent("""
        import fcntl, os, sys, time
        fd = os.memfd_create("foreign", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, 1 << 16)
        fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
        print(fd, os.fstat(fd).st_ino, flush=True)
        time.sleep(60)
    """)], user=NOBODY, stdout=subprocess.PIPE, text=True)
    try:
        fd, ino = map(int, holder.stdout.readline().split())
        out = memfd(W * H * 3)
        try:
            reply = send(daemon, {"pid": holder.pid, "in": [fd, ino], "out": ident(out), "key": key(daemon)})
        finally:
            os.close(out)
        assert reply["ok"] is False and reply["error"]["transport"] is True
        assert "tinctd's user" in reply["error"]["message"]
    finally:
        holder.kill()
        holder.wait()
    assert not clients_memory(daemon.proc.pid)
    still_serving(daemon)


def test_the_folder_key_is_private_and_new_for_every_tinctd(tinctd, daemon, tmp_path):
    with daemon.client() as c:
        info = c.hello()
        path = os.path.join(info["shm_dir"], info["shm_key"])
    first = key(daemon)
    assert len(first) == 64 and os.stat(path).st_mode & 0o777 == 0o600
    other = tinctd(tmp_path)  # a restarted tinctd (here a second one) makes a new one
    try:
        assert key(other) != first
    finally:
        assert other.stop() == 0
