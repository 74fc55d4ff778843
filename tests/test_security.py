"""tinctd under attack: each finding of the security review (issue 13) against a real tinctd process,
with a real second Unix user where the attack needs one (made here, removed after)."""
import os
import pwd
import signal
import socket
import stat
import subprocess
import sys
import textwrap
import threading
import time
import uuid

import msgpack
import numpy as np
import pytest
import zmq
import zmq.auth

from daemon_fixture import ROOT, dealer, free_port, reply_of, tinct_client
from tinct.serve import protocol as P
from tinct.serve.daemon import PENDING_BYTES, SEND_HWM, Daemon

W, H = 24, 16
INTRUDER = "tinct-intruder"
SYSTEM_PYTHON = "/usr/bin/python3"  # one another user may run (the venv's lies under root's private home)
SITE = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)  # its pyzmq, for the intruder
as_root = pytest.mark.skipif(os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK),
                             reason="needs root (to make a second user) and /usr/bin/python3")


@pytest.fixture(scope="module")
def intruder():
    """A second local user, made for these tests and removed after."""
    if os.geteuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK):
        pytest.skip("needs root (to make a second user) and /usr/bin/python3")
    subprocess.run(["userdel", "-r", INTRUDER], capture_output=True)
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", INTRUDER], check=True)
    try:
        yield pwd.getpwnam(INTRUDER).pw_uid
    finally:
        subprocess.run(["userdel", INTRUDER], check=True)


def as_intruder(uid, code, **kw):
    """Run Python `code` as the second user (with the venv's pyzmq on its path)."""
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SITE), "HOME": "/"}
    return subprocess.Popen([SYSTEM_PYTHON, "-c", textwrap.dedent(code)], user=uid, group=uid, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def ask(endpoint, header, frames=(), wait_ms=30_000):
    ctx, sock = dealer(endpoint)
    try:
        sock.send_multipart([b"", msgpack.packb(header, use_bin_type=True), *frames])
        return reply_of(sock, wait_ms)
    finally:
        sock.close()
        ctx.term()


def still_serving(d):
    assert d.alive()
    with d.client() as c:
        assert c.hello()["version"] == P.VERSION


def grey(w=W, h=H):
    return np.tile(np.linspace(30, 220, w).astype(np.uint8), (h, 1))


def nested(levels):
    value = []
    for _ in range(levels):
        value = [value]
    return value


# -- 2. no message can kill the loop ---------------------------------------------------------
@pytest.mark.parametrize("where", ["blobs", "shm.blobs", "option", "option name", "id", "target"])
def test_deeply_nested_fields_are_refused_and_tinctd_lives(daemon, where):
    deep = nested(1000)
    header = {"v": P.VERSION, "type": "hello", "id": "deep"}
    if where == "blobs":
        header["blobs"] = deep
    elif where == "shm.blobs":
        header.update(type="colorize", width=W, height=H, layout="GRAY", sample="u8",
                      shm={"file": "1-" + "0" * 32 + ".in", "reply": "1-" + "0" * 32 + ".out",
                           "blobs": deep, "lengths": [1]})
    elif where == "option":
        header.update(type="colorize", options={"quality": deep})
    elif where == "option name":
        header.update(type="colorize", options={"vibrancy": {"x": deep}})
    elif where == "id":
        header["id"] = deep
    else:
        header.update(type="status", target=deep)
    reply = ask(daemon.endpoint, header)
    assert reply["ok"] is False and reply["error"]["code"] == "bad_request"
    assert len(reply["error"]["message"]) < 300  # a bounded sentence, not a repr of the nesting
    still_serving(daemon)


def test_error_sentences_summarise_what_was_sent():
    assert P.describe(nested(900)) == "a list of 1"
    assert P.describe("x" * 5000) == "a text of 5000 characters" and P.describe("a\nb") == "a text of 3 characters"
    assert P.describe(10 ** 30) == "a huge number" and P.describe({"a": 1}) == "a map of 1"
    with pytest.raises(P.ProtocolError, match="a list of 1"):
        P.check_options({"quality": nested(900)})


def test_an_unexpected_failure_is_an_internal_answer_not_the_end_of_the_loop():
    """Whatever goes wrong inside (here a RecursionError, as the review's nested message raised),
    `handle` answers `internal` and the loop goes on."""
    class Stand:
        request_id = "r1"

        def dispatch(self, identity, frames):
            raise RecursionError("maximum recursion depth exceeded")

    reply = Daemon.handle(Stand(), b"x", [])
    assert reply["ok"] is False and reply["error"]["code"] == "internal" and reply["id"] == "r1"


def test_too_many_frames_are_refused_before_any_is_kept(daemon):
    reply = ask(daemon.endpoint, {"v": P.VERSION, "type": "hello", "id": "f", "blobs": ["pixels"]},
                [b"x" * 1000] * 40)
    assert reply["error"]["code"] == "bad_request" and "41 frames" in reply["error"]["message"]
    still_serving(daemon)


# -- 1. private by construction ---------------------------------------------------------------
def test_the_default_endpoint_is_a_socket_in_the_users_private_runtime_folder(tmp_path, monkeypatch):
    from tinct.serve import endpoint, keys

    assert str(keys.config_dir()) == os.path.dirname(tinct_client.config_path())  # one key folder for both sides
    monkeypatch.setenv("TINCT_KEY_DIR", str(tmp_path / "k"))
    assert str(keys.key_dir()) == tinct_client.key_dir()

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert endpoint.default_endpoint() == f"ipc://{tmp_path}/tinct/tinctd.sock"
    assert tinct_client.default_endpoint() == endpoint.default_endpoint()
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert tinct_client.default_endpoint() == endpoint.default_endpoint()
    assert endpoint.default_endpoint().endswith(f"tinct-{os.geteuid()}/tinctd.sock")


def test_tinctd_on_the_default_endpoint_makes_its_folder_private(tinctd, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(runtime))
    env.pop("TINCT_ENDPOINT", None)
    (tmp_path / "state").mkdir(mode=0o700)
    d = tinctd(tmp_path / "state", endpoint=f"ipc://{runtime}/tinct/tinctd.sock", env=env)
    try:
        folder = runtime / "tinct"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700 and (folder / "tinctd.sock").is_socket()
        with d.client() as c:
            assert c.hello()["authenticated"] == "private socket"
    finally:
        assert d.stop() == 0


@as_root
def test_another_user_can_neither_connect_to_the_socket_nor_put_one_in_its_place(daemon, intruder):
    path = daemon.endpoint[len("ipc://"):]
    probe = as_intruder(intruder, f"""
        import socket, sys
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect({path!r})
        except PermissionError:
            print("refused")
        try:
            open({path + ".fake"!r}, "w")
        except PermissionError:
            print("cannot write")
    """)
    out, err = probe.communicate(timeout=30)
    assert out.splitlines() == ["refused", "cannot write"], err
    still_serving(daemon)


@as_root
def test_a_folder_of_another_user_is_never_used(tmp_path, intruder):
    trap = tmp_path / "trap"
    trap.mkdir(mode=0o700)
    os.chown(trap, intruder, intruder)
    done = subprocess.run([sys.executable, "-m", "tinct.serve", "--endpoint", f"ipc://{trap}/tinctd.sock",
                           "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "belongs to another user" in done.stderr and "Traceback" not in done.stderr
    with tinct_client.Client(f"ipc://{trap}/tinctd.sock", timeout=2, retries=0, start_command=[]) as c:
        with pytest.raises(tinct_client.TinctError, match="belongs to another user") as err:
            c.hello()
    assert err.value.code == "unavailable"


def test_a_second_tinctd_refuses_to_take_a_socket_in_use(daemon, tmp_path):
    done = subprocess.run([sys.executable, "-m", "tinct.serve", "--endpoint", daemon.endpoint,
                           "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "another tinctd is listening there" in done.stderr
    still_serving(daemon)


IMPOSTOR = """
    import sys, time, zmq
    ctx = zmq.Context()
    sock = ctx.socket(zmq.ROUTER)
    if sys.argv[1] == "curve":  # a server of its own: it cannot hold tinctd's secret key
        public, secret = zmq.curve_keypair()
        sock.curve_secretkey, sock.curve_publickey, sock.curve_server = secret, public, True
    sock.bind("tcp://127.0.0.1:" + sys.argv[2])
    print("bound", flush=True)
    received, end = 0, time.monotonic() + float(sys.argv[3])
    while time.monotonic() < end:
        if sock.poll(100):
            received += len(b"".join(sock.recv_multipart()))
    print(received, flush=True)
"""


@as_root
@pytest.mark.parametrize("impostor", ["plain", "curve"])
def test_an_impostor_on_the_tcp_port_gets_nothing_from_the_plugin(tinctd, tmp_path, intruder, impostor):
    """tinctd is down (crashed, logged out, upgrading); another user binds its loopback port. The
    plugin must send it no request, no layer and no shared-memory key."""
    port = free_port()
    d = tinctd(tmp_path, endpoint=f"tcp://127.0.0.1:{port}")
    try:
        with d.client() as c:
            assert c.hello()["authenticated"] == "curve"
    finally:
        assert d.stop() == 0
    fake = as_intruder(intruder, IMPOSTOR.replace("sys.argv[1]", repr(impostor)).replace(
        "sys.argv[2]", repr(str(port))).replace("float(sys.argv[3])", "8.0"))
    try:
        assert fake.stdout.readline().strip() == "bound", fake.stderr.read()
        client = tinct_client.Client(d.endpoint, timeout=2, retries=0, start_command=[], curve=d.curve())
        with client, pytest.raises(tinct_client.TinctError) as err:
            client.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=grey().tobytes())
        assert err.value.code in ("unavailable", "timeout")
        if impostor == "plain":
            assert "cannot prove it is your Tinct daemon" in str(err.value)
        out, _ = fake.communicate(timeout=30)
    finally:
        fake.kill()
    assert out.split() == ["0"]  # not one byte of a message reached it


def test_without_the_plugin_key_nobody_gets_in_over_tcp(tinctd, tmp_path):
    port = free_port()
    d = tinctd(tmp_path, endpoint=f"tcp://127.0.0.1:{port}")
    try:
        assert stat.S_IMODE(d.key_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE((d.key_dir / "tinctd.key_secret").stat().st_mode) == 0o600
        public, secret = zmq.curve_keypair()  # knows tinctd's public key, but is not the user's plugin
        stranger = dict(d.curve(), public=public, secret=secret)
        with tinct_client.Client(d.endpoint, timeout=3, retries=0, start_command=[], curve=stranger) as c:
            with pytest.raises(tinct_client.TinctError, match="refused this plugin's connection"):
                c.hello()
        ctx, sock = dealer(d.endpoint)  # no CURVE at all: the handshake fails, no reply
        sock.send_multipart([b"", P.pack({"v": P.VERSION, "type": "hello", "id": "x"})])
        assert not sock.poll(1500)
        sock.close()
        ctx.term()
        with d.client() as c:
            assert c.hello()["version"] == P.VERSION
    finally:
        assert d.stop() == 0


def test_the_client_without_keys_for_a_tcp_endpoint_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("TINCT_KEY_DIR", str(tmp_path / "none"))
    with tinct_client.Client(f"tcp://127.0.0.1:{free_port()}", timeout=2, retries=0, start_command=[]) as c:
        with pytest.raises(tinct_client.TinctError, match="not running"):
            c.hello()  # nothing there: that is what the user needs to hear
    port = free_port()
    with socket.socket() as listener:  # something there, but no keys to check it with: nothing is sent
        listener.bind(("127.0.0.1", port))
        listener.listen()
        with tinct_client.Client(f"tcp://127.0.0.1:{port}", timeout=2, retries=0, start_command=[]) as c:
            with pytest.raises(tinct_client.TinctError, match="keys are missing") as err:
                c.hello()
    assert err.value.code == "unavailable"


def test_the_shared_memory_key_is_fresh_at_every_start_and_clients_follow(tinctd, tmp_path):
    (tmp_path / "a").mkdir(mode=0o700)
    first = tinctd(tmp_path / "a")
    with first.client() as c:
        info = c.hello()
        old = open(os.path.join(info["shm_dir"], info["shm_key"])).read().strip()
        c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=np.stack([grey()] * 3, -1).tobytes())
        assert c.transport == ("memfd" if info.get("memfd") else "files")
        first.stop()
        second = tinctd(tmp_path / "a")  # same socket, a new start
        try:
            fresh = c.hello()
            new = open(os.path.join(fresh["shm_dir"], fresh["shm_key"])).read().strip()
            assert new != old and len(new) == 64
            c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=np.stack([grey()] * 3, -1).tobytes())
            assert c.transport == ("memfd" if info.get("memfd") else "files")  # re-read the key, no fallback
        finally:
            assert second.stop() == 0


# -- 3. bounded everything ---------------------------------------------------------------------
def test_replies_a_client_never_reads_are_dropped_not_hoarded(daemon):
    """30 colorize requests whose 4 MB replies are never read: tinctd keeps what libzmq holds
    (SEND_HWM replies) and PENDING_BYTES more, not all 120 MB."""
    ctx, sock = dealer(daemon.endpoint)
    sock.setsockopt(zmq.RCVHWM, 1)
    w = h = 512
    frames = P.frames_of({"v": P.VERSION, "type": "colorize", "width": w, "height": h, "layout": "RGBA",
                          "sample": "f32", "pixels": np.full((h, w, 4), 0.5, np.float32).tobytes(),
                          "options": {"quality": "preview"}})
    try:
        for i in range(30):
            header = msgpack.unpackb(frames[0])
            header["id"] = f"unread-{i}"
            sock.send_multipart([b"", msgpack.packb(header), *frames[1:]])
        with daemon.client() as c:  # wait until tinctd has answered all of them
            done = c.status()["done"]
            deadline = time.monotonic() + 180
            while c.status()["done"] < done + 30 and time.monotonic() < deadline:
                time.sleep(0.5)
        time.sleep(1)
        received = 0
        while sock.poll(1000):
            sock.recv_multipart()
            received += 1
    finally:
        sock.close()
        ctx.term()
    reply = w * h * 16
    assert 0 < received * reply <= PENDING_BYTES + (SEND_HWM + 4) * reply, received
    still_serving(daemon)


def test_a_client_that_reads_slowly_loses_no_reply(daemon):
    """500 small requests sent at once: every answer arrives, in order, however slowly they are read."""
    ctx, sock = dealer(daemon.endpoint)
    hello = {"v": P.VERSION, "type": "status"}
    try:
        for i in range(500):
            sock.send_multipart([b"", P.pack(dict(hello, id=str(i)))])
        time.sleep(1)
        ids = [reply_of(sock, 10_000)["id"] for _ in range(500)]
    finally:
        sock.close()
        ctx.term()
    assert ids == [str(i) for i in range(500)]


def test_a_hello_flood_delays_neither_finished_work_nor_sigterm(tinctd, tmp_path):
    d = tinctd(tmp_path)
    stop = threading.Event()

    def flood():
        ctx, sock = dealer(d.endpoint)
        hello = msgpack.packb({"v": P.VERSION, "type": "hello", "id": "h"})
        try:
            while not stop.is_set():
                for _ in range(50):
                    sock.send_multipart([b"", hello], zmq.NOBLOCK)
                while sock.poll(0):
                    sock.recv_multipart()
        except zmq.ZMQError:
            pass
        finally:
            sock.close()
            ctx.term()

    floods = [threading.Thread(target=flood) for _ in range(3)]
    for t in floods:
        t.start()
    try:
        with d.client(timeout=30) as c:
            t0 = time.monotonic()
            reply = c.colorize(width=256, height=256, layout="GRAY", sample="u8", pixels=grey(256, 256).tobytes())
            waited = time.monotonic() - t0 - reply["timings"]["total"]
        print(f"\n[flood] colorize answered {waited * 1000:.0f} ms after its engine work during a hello flood")
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        d.proc.wait(15)  # raises if the flood keeps it from stopping
        print(f"[flood] SIGTERM to exit: {time.monotonic() - t0:.2f} s")
    finally:
        stop.set()
        for t in floods:
            t.join()
        d.stop()
    assert d.proc.returncode == 0


def read_limits(pid):
    for line in open(f"/proc/{pid}/limits"):
        if line.startswith("Max open files"):
            return tuple(int(v) for v in line.split()[3:5])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_open_files_are_raised_and_connections_beyond_the_bound_refused(tinctd, tmp_path):
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
    try:
        d = tinctd(tmp_path, "--max-connections", "8")
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    held = []
    try:
        assert read_limits(d.proc.pid)[0] == read_limits(d.proc.pid)[1]  # raised to the hard limit
        path = d.endpoint[len("ipc://"):]
        for _ in range(30):  # connections that never say anything
            s = socket.socket(socket.AF_UNIX)
            s.connect(path)
            held.append(s)
        cpu0 = _cpu(d.proc.pid)
        time.sleep(2)
        assert _cpu(d.proc.pid) - cpu0 < 0.5  # no spinning
        with d.client(timeout=3, retries=0) as c:
            with pytest.raises(tinct_client.TinctError, match="too many connections"):
                c.hello()
        for s in held:
            s.close()
        held.clear()
        deadline = time.monotonic() + 10
        while True:  # the door counts the closed ones out, then lets the user in again
            try:
                with d.client(timeout=3, retries=0) as c:
                    assert c.hello()["version"] == P.VERSION
                break
            except tinct_client.TinctError:
                assert time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        for s in held:
            s.close()
        assert d.stop() == 0


def _cpu(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_shared_memory_fields_count_against_the_queue_budget(tinctd, tmp_path):
    """The queue holds at most twice the largest message, shared-memory fields included."""
    d = tinctd(tmp_path, "--max-megapixels", "0.3")
    try:
        with d.client(shared_memory="files", timeout=60) as c:
            info = c.hello()
        folder, budget = info["shm_dir"], 2 * info["limits"]["max_bytes"]
        w = h = 540  # 0.29 MP RGBA f32: 4.7 MB, each well within one message's max_bytes
        count = budget // (w * h * 16) + 2  # more than the queue's budget holds, the running one aside
        names = []
        for _ in range(count):
            base = f"{os.getpid()}-{uuid.uuid4().hex}"
            with open(os.path.join(folder, base + ".in"), "wb") as f:
                f.write(np.full((h, w, 4), 0.5, np.float32).tobytes())
            open(os.path.join(folder, base + ".out"), "wb").close()
            names.append(base)
        ctx, sock = dealer(d.endpoint)
        for i, base in enumerate(names):
            header = {"v": P.VERSION, "type": "colorize", "id": f"s{i}", "width": w, "height": h, "layout": "RGBA",
                      "sample": "f32", "blobs": [], "shm": {"file": base + ".in", "reply": base + ".out",
                                                            "blobs": ["pixels"], "lengths": [w * h * 16]}}
            sock.send_multipart([b"", msgpack.packb(header)])
        codes = [reply_of(sock, 120_000) for _ in names]
        sock.close()
        ctx.term()
        busy = [r for r in codes if not r["ok"] and r["error"]["code"] == "busy"]
        assert busy, f"{count} requests of 4.7 MB in shared memory all queued against a {budget / 1e6:.1f} MB budget"
        for base in names:
            for end in (".in", ".out"):
                os.unlink(os.path.join(folder, base + end))
    finally:
        assert d.stop() == 0


def test_a_layer_that_would_meet_the_oom_killer_is_refused_first(daemon):
    """90 MP (under the 100 MP message limit) with the learned engine's preview needs more memory than
    this machine has: refused by measured bytes per megapixel before a byte of it is solved."""
    from tinct.serve import admission

    w, h = 10000, 9000
    total = admission.total_bytes()
    if total is None or admission.job_bytes("learned", "preview", w * h) < total:
        pytest.skip("this machine has the memory for a 90 MP learned preview")
    ctx, sock = dealer(daemon.endpoint)
    try:
        sock.send_multipart([b"", P.pack({"v": P.VERSION, "type": "colorize", "id": "huge", "width": w, "height": h,
                                          "layout": "GRAY", "sample": "u8", "blobs": ["pixels"], "engine": "learned",
                                          "options": {"quality": "preview"}}), bytes(w * h)])
        reply = reply_of(sock)
    finally:
        sock.close()
        ctx.term()
    assert reply["error"]["code"] == "too_large" and "megapixels" in reply["error"]["message"]
    still_serving(daemon)


# -- 4. same-user faults ------------------------------------------------------------------------
def test_a_fifo_named_like_a_shared_file_does_not_hang_tinctd(daemon):
    with daemon.client() as c:
        folder = c.hello()["shm_dir"]
    base = f"{os.getpid()}-{uuid.uuid4().hex}"
    os.mkfifo(os.path.join(folder, base + ".in"))
    open(os.path.join(folder, base + ".out"), "wb").close()
    try:
        reply = ask(daemon.endpoint, {"v": P.VERSION, "type": "colorize", "id": "fifo", "width": W, "height": H,
                                      "layout": "GRAY", "sample": "u8", "blobs": [],
                                      "shm": {"file": base + ".in", "reply": base + ".out", "blobs": ["pixels"],
                                              "lengths": [W * H]}}, wait_ms=10_000)
    finally:
        for end in (".in", ".out"):
            os.unlink(os.path.join(folder, base + end))
    assert reply["ok"] is False and reply["error"]["transport"] is True
    still_serving(daemon)


def test_a_removed_shared_memory_folder_is_made_again(tinctd, tmp_path):
    runtime = tmp_path / "run"
    runtime.mkdir(mode=0o700)
    (tmp_path / "state").mkdir(mode=0o700)
    d = tinctd(tmp_path / "state", env=dict(os.environ, XDG_RUNTIME_DIR=str(runtime)))
    try:
        with d.client() as c:
            folder = c.hello()["shm_dir"]
            assert folder == str(runtime / "tinct")
        subprocess.run(["rm", "-rf", folder], check=True)  # what a logout does to $XDG_RUNTIME_DIR
        with d.client() as c:
            info = c.hello()
            assert info["shm_dir"] == folder and os.path.isfile(os.path.join(folder, info["shm_key"]))
            c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=np.stack([grey()] * 3, -1).tobytes())
            assert c.transport == ("memfd" if info["memfd"] else "files")
    finally:
        assert d.stop() == 0


def test_sighup_is_a_clean_shutdown_that_answers_and_logs(tinctd, tmp_path):
    d = tinctd(tmp_path)
    d.proc.send_signal(signal.SIGHUP)
    assert d.proc.wait(20) == 0
    log = (tmp_path / "tinctd.log").read_text()
    assert f"signal {int(signal.SIGHUP)}: shutting down" in log and "tinctd stopped" in log


# -- 5. state and config ------------------------------------------------------------------------
def test_lock_log_and_state_folder_are_private(daemon):
    assert stat.S_IMODE(daemon.state_dir.stat().st_mode) == 0o700
    for name in ("tinctd.lock", "tinctd.log"):
        assert stat.S_IMODE((daemon.state_dir / name).stat().st_mode) == 0o600, name


def tinctd(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tinct.serve", *args], capture_output=True, text=True,
                          timeout=120, env=env)


@pytest.mark.parametrize("args, words", [
    (["--endpoint", "tcp://127.0.0.1:1;0.0.0.0:5599"], "not an endpoint tinctd can use"),
    (["--endpoint", "tcp://127.0.0.1:5599,tcp://0.0.0.0:5600"], "not an endpoint tinctd can use"),
    (["--endpoint", "tcp://example.org:5599"], "not an endpoint tinctd can use"),
    (["--endpoint", "ipc://relative/sock"], "absolute path"),
    (["--max-megapixels", "nan"], "--max-megapixels must be"),
    (["--max-megapixels", "inf"], "--max-megapixels must be"),
    (["--max-connections", "0"], "--max-connections must be"),
])
def test_bad_arguments_get_one_sentence_not_a_traceback(tmp_path, args, words):
    done = tinctd(*args, "--state-dir", str(tmp_path))
    assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr


def test_a_public_key_given_as_the_secret_is_one_sentence(tmp_path):
    public, _ = zmq.auth.create_certificates(tmp_path, "server")
    done = tinctd("--endpoint", f"tcp://127.0.0.1:{free_port()}", "--curve-secret", public,
                  "--state-dir", str(tmp_path / "state"))
    assert done.returncode == 2 and "holds only a public key" in done.stderr and "Traceback" not in done.stderr


def test_a_state_folder_others_can_write_or_a_linked_log_is_refused(tmp_path):
    open_state = tmp_path / "open"
    open_state.mkdir()
    open_state.chmod(0o777)
    done = tinctd("--state-dir", str(open_state), "--endpoint", f"ipc://{tmp_path}/a.sock")
    assert done.returncode == 2 and "can be entered by other users" in done.stderr
    linked = tmp_path / "linked"
    linked.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("someone's file")
    (linked / "tinctd.log").symlink_to(victim)
    done = tinctd("--state-dir", str(linked), "--endpoint", f"ipc://{tmp_path}/b.sock")
    assert done.returncode != 0 and "link" in done.stderr and "Traceback" not in done.stderr
    assert victim.read_text() == "someone's file"


def test_an_empty_xdg_state_home_is_ignored(tmp_path):
    from tinct.serve.state import state_dir

    env = dict(os.environ, XDG_STATE_HOME="", HOME=str(tmp_path))
    env.pop("TINCT_STATE_DIR", None)
    done = subprocess.run([sys.executable, "-c", "from tinct.serve.state import state_dir; print(state_dir())"],
                          env=env, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.stdout.strip() == str(tmp_path / ".local/state/tinct") and state_dir


def test_request_ids_cannot_forge_log_lines(daemon):
    forged = "x\n2026-01-01 00:00:00 tinctd INFO tinctd stopped"
    ask(daemon.endpoint, {"v": P.VERSION, "type": "colorize", "id": forged, "width": W, "height": H,
                          "layout": "GRAY", "sample": "u8", "blobs": ["pixels"]}, [grey().tobytes()])
    time.sleep(0.5)
    log = (daemon.state_dir / "tinctd.log").read_text()
    lines = [line for line in log.splitlines() if "2026-01-01 00:00:00" in line]
    assert lines and all("\\x0a" in line for line in lines)


# -- 6. jobs belong to their client --------------------------------------------------------------
def test_a_job_belongs_to_the_connection_that_sent_it(daemon):
    """Another client that knows the request id cannot see, cancel or join it; status without a
    target shows only the caller's own jobs."""
    job = {"v": P.VERSION, "type": "colorize", "id": "mine", "width": 700, "height": 700, "layout": "GRAY",
           "sample": "u8", "document": "doc", "blobs": ["pixels"]}
    pixels = np.tile(np.linspace(0, 255, 700).astype(np.uint8), (700, 1)).tobytes()
    owner = b"t" + os.urandom(15)
    ctx, sock = dealer(daemon.endpoint, owner + b"0000")
    octx, other = dealer(daemon.endpoint, b"t" + os.urandom(15) + b"0000")
    try:
        sock.send_multipart([b"", P.pack(job), pixels])
        own = {"v": P.VERSION, "type": "status", "id": "s", "target": "mine"}
        pctx, probe = dealer(daemon.endpoint, owner + b"0001")  # the same plugin's second socket
        deadline = time.monotonic() + 30
        while True:
            probe.send_multipart([b"", P.pack(own)])
            if reply_of(probe)["job"] in ("queued", "running"):
                break
            assert time.monotonic() < deadline
        other.send_multipart([b"", P.pack(own)])
        seen = reply_of(other)
        assert seen["job"] == "unknown" and seen["running"] is None
        other.send_multipart([b"", P.pack({"v": P.VERSION, "type": "cancel", "id": "c", "target": "mine"})])
        assert reply_of(other)["found"] is False
        other.send_multipart([b"", P.pack(job), pixels])  # same id and document: a job of its own
        theirs, mine = reply_of(other, 60_000), reply_of(sock, 60_000)
        assert mine["ok"] and theirs["ok"]  # neither superseded nor joined the other
        probe.close()
        pctx.term()
    finally:
        for c, s in ((ctx, sock), (octx, other)):
            s.close()
            c.term()
    still_serving(daemon)


# -- 7. doctor --------------------------------------------------------------------------------
def test_doctor_says_how_it_reaches_tinctd_and_whether_tinctd_is_authenticated(tinctd, daemon, tmp_path, monkeypatch):
    from tinct.tools import doctor

    monkeypatch.setenv("TINCT_ENDPOINT", daemon.endpoint)
    row = doctor.check_daemon(doctor.load_client([ROOT / "plugins" / "common"]), start=False)
    assert row.status == "ok" and "private socket: only your user can reach it" in row.detail
    assert "pixels via memfd" in row.detail or "pixels via files" in row.detail
    tcp = tinctd(tmp_path, endpoint=f"tcp://127.0.0.1:{free_port()}")
    try:
        monkeypatch.setenv("TINCT_ENDPOINT", tcp.endpoint)
        monkeypatch.setenv("TINCT_KEY_DIR", str(tcp.key_dir))
        row = doctor.check_daemon(doctor.load_client([ROOT / "plugins" / "common"]), start=False)
    finally:
        assert tcp.stop() == 0
    assert row.status == "ok" and "CURVE: tinctd proved it holds its key" in row.detail
