"""A real tinctd process on a free port, driven through real ZeroMQ sockets and the plugins' client."""
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid

import msgpack
import numpy as np
import pytest
import torch
import zmq

from daemon_fixture import dealer, free_port, reply_of, tinct_client
from tinct.color import lab
from tinct.serve import protocol as P

W, H = 24, 16
DTYPES = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}
CHANNELS = P.LAYOUTS


def photo(layout, sample, w=W, h=H):
    grey = np.tile(np.linspace(0.2, 0.8, w), (h, 1))
    alpha = np.linspace(0, 1, w * h).reshape(h, w)
    planes = {"GRAY": [grey], "GRAYA": [grey, alpha], "RGB": [grey] * 3, "RGBA": [grey] * 3 + [alpha],
              "BGRA": [grey] * 3 + [alpha]}[layout]
    a = np.stack(planes, -1)
    if sample != "f32":
        a = np.round(a * np.iinfo(DTYPES[sample]).max)
    return a.astype(DTYPES[sample])


def hints(w=W, h=H):
    layer = np.zeros((h, w, 4), np.uint8)
    layer[2:6, 2:6] = (220, 30, 30, 255)
    return layer


def lightness(rgb01):
    return lab.srgb_to_lab(torch.tensor(np.asarray(rgb01, np.float64)).permute(2, 0, 1))[0]


def wait_for(predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


WAYS = {"memfd": True, "files": "files", "frames": False}  # transport -> Client(shared_memory=...)


@pytest.mark.parametrize("transport", list(WAYS))
@pytest.mark.parametrize("layout", list(CHANNELS))
@pytest.mark.parametrize("sample", list(DTYPES))
def test_round_trip_of_every_pixel_format(daemon, layout, sample, transport):
    img = photo(layout, sample)
    with daemon.client(shared_memory=WAYS[transport]) as c:
        info = c.hello()
        if transport != "frames" and not info.get("shm_dir"):
            pytest.skip("tinctd has no shared-memory folder on this system (no /dev/shm or XDG_RUNTIME_DIR)")
        if transport == "memfd" and not info.get("memfd"):
            pytest.skip("no memfd buffers on this system (not Linux, or no /proc)")
        r = c.colorize(width=W, height=H, layout=layout, sample=sample, pixels=img.tobytes(), hints=hints().tobytes())
        assert c.transport == transport  # the pixels really went the way asked
    out_layout = P.output_layout(layout)
    assert (r["layout"], r["sample"], r["width"], r["height"], r["engine"]) == (out_layout, sample, W, H,
                                                                                 "optimization")
    assert isinstance(r["pixels"], bytes)
    out = np.frombuffer(r["pixels"], DTYPES[sample]).reshape(H, W, CHANNELS[out_layout])
    if CHANNELS[layout] in (2, 4):
        assert out[..., 3].tobytes() == img[..., -1].tobytes()  # alpha untouched, bit for bit
    rgb = out[..., [2, 1, 0]] if layout == "BGRA" else out[..., :3]
    scale = 1.0 if sample == "f32" else float(np.iinfo(DTYPES[sample]).max)
    src = photo("RGB", "f32")
    assert float((lightness(rgb / scale) - lightness(src)).abs().max()) <= 0.6
    assert rgb[4, 4, 0] > rgb[4, 4, 2]  # the red stroke is there


def test_a_selection_changes_only_the_selected_pixels(daemon):
    img = photo("RGBA", "u16")
    sel = np.zeros((H, W), np.uint8)
    sel[:, :10] = 255
    sel[:, 10] = 100  # feathered edge
    with daemon.client() as c:
        full = c.colorize(width=W, height=H, layout="RGBA", sample="u16", pixels=img.tobytes(),
                          hints=hints().tobytes())
        part = c.colorize(width=W, height=H, layout="RGBA", sample="u16", pixels=img.tobytes(),
                          hints=hints().tobytes(), selection=sel.tobytes())
    full, out = (np.frombuffer(r["pixels"], np.uint16).reshape(H, W, 4) for r in (full, part))
    np.testing.assert_array_equal(out[:, 11:], img[:, 11:])        # outside: bit-identical
    np.testing.assert_array_equal(out[:, :10], full[:, :10])       # inside: the colorized result
    edge = out[:, 10, :3].astype(int)
    lo, hi = np.minimum(full[:, 10, :3], img[:, 10, :3]), np.maximum(full[:, 10, :3], img[:, 10, :3])
    assert ((edge >= lo.astype(int) - 1) & (edge <= hi.astype(int) + 1)).all()


def test_suggest_and_the_learned_engine_over_the_wire(daemon):
    img = photo("RGB", "u8", 64, 48)
    with daemon.client() as c:
        info = c.hello()
        if info["engines"]["learned"] != "ready":
            with pytest.raises(tinct_client.TinctError) as err:
                c.suggest(width=64, height=48, layout="RGB", sample="u8", pixels=img.tobytes(), x=3, y=3)
            assert err.value.code == "unsupported"
            return
        colours = c.suggest(width=64, height=48, layout="RGB", sample="u8", pixels=img.tobytes(), x=30, y=20, k=5)
        r = c.colorize(width=64, height=48, layout="RGB", sample="u8", pixels=img.tobytes(), engine="learned",
                       options={"vibrancy": 0.5})
    assert "learned" in info["models"]
    assert len(colours) == 5 and len(set(colours)) == 5
    assert all(len(rgb) == 3 and all(0 <= v <= 255 for v in rgb) for rgb in colours)
    assert r["engine"] == "learned" and len(r["pixels"]) == 64 * 48 * 3


def test_fuzzed_messages_all_get_errors_and_the_daemon_still_works(daemon):
    rng = random.Random(0)
    valid = {"v": P.VERSION, "type": "colorize", "id": "x", "width": W, "height": H, "layout": "RGBA", "sample": "u8",
             "pixels": bytes(W * H * 4)}
    spec = {"file": f"1-{'0' * 32}.in", "reply": f"1-{'0' * 32}.out", "blobs": ["pixels"], "lengths": [W * H * 4]}
    memfd = {"pid": 1, "in": [0, 1], "out": [1, 2], "key": "0" * 64, "blobs": ["pixels"], "lengths": [W * H * 4]}
    junk = [None, True, -1, 2 ** 40, 2 ** 63, 3.5, float("nan"), "", "RGBA", "../../etc/passwd", b"\x00" * 7,
            [], [1, "a"], {}, {"a": 1}]

    def mutate():
        kind = rng.randrange(8)
        if kind == 0:  # random bytes
            return [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))]
        m = dict(valid)
        if kind == 1:  # a field missing
            del m[rng.choice(sorted(m))]
        elif kind == 2:  # a field of the wrong type or value
            m[rng.choice(sorted(m) + ["options", "hints", "selection", "engine", "document"])] = rng.choice(junk)
        elif kind == 3:  # lying or huge sizes
            m["width"], m["height"] = rng.choice([(W + 1, H), (W, H - 1), (10 ** 6, 10 ** 6), (0, H), (-W, -H),
                                                  (2 ** 31, 2), (1, 2 ** 40)])
        elif kind == 4:
            m["pixels"] = bytes(rng.randrange(0, W * H * 4 - 1))
        elif kind == 5:
            m["type"] = rng.choice(["colourise", "", "HELLO", "shutdown", "cancel", "suggest"])
        elif kind == 6:  # shared memory that is not there, not ours, or lies about its size
            header = {k: v for k, v in m.items() if k != "pixels"}
            s = dict(rng.choice([spec, memfd, dict(spec, **memfd)]))
            s[rng.choice(sorted(s))] = rng.choice(junk + [[10 ** 12], ["pixels", "hints"], f"1-{'9' * 32}.in",
                                                          os.getpid(), [3, 4], [2 ** 62, 0]])
            return [msgpack.packb(dict(header, shm=s), use_bin_type=True)]
        framable = all(isinstance(m.get(k, b""), bytes) for k in P.BLOBS)
        frames = P.frames_of(m) if framable else [P.pack(m)]  # a non-binary blob can only go in the header
        if kind == 7:  # frames that do not match the header
            frames = rng.choice([frames[:1], frames + [b"extra"], [frames[0], b""]])
        if rng.random() < 0.2:  # flip bytes inside a well-formed header
            b = bytearray(frames[0])
            for _ in range(3):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            frames = [bytes(b)] + frames[1:]
        return frames

    ctx, sock = dealer(daemon.endpoint)
    n, answered, errors = 10_000, 0, 0
    try:
        for start in range(0, n, 500):
            for _ in range(500):
                sock.send_multipart([b""] + mutate())
            while answered < start + 500 and sock.poll(10_000):
                reply = msgpack.unpackb(sock.recv_multipart()[1], raw=False)
                answered += 1
                errors += reply.get("ok") is False and reply["error"]["code"] in P.ERRORS
    finally:
        sock.close()
        ctx.term()
    # A flipped byte may by chance leave a valid request: that one gets a result instead of an error.
    assert answered == n and errors >= n - 100, (answered, errors)
    assert daemon.alive()
    test_round_trip_of_every_pixel_format(daemon, "RGBA", "u8", "memfd")


def test_load_eight_clients_fifty_requests_each(daemon):
    img = photo("RGBA", "u8").tobytes()
    latencies, failures = [], []

    def client(shared_memory):
        with daemon.client(timeout=30, shared_memory=shared_memory) as c:
            for _ in range(50):
                t = time.perf_counter()
                try:
                    r = c.colorize(width=W, height=H, layout="RGBA", sample="u8", pixels=img,
                                   hints=hints().tobytes(), options={"quality": "preview"})
                    assert len(r["pixels"]) == len(img)
                    latencies.append(time.perf_counter() - t)
                except Exception as exc:  # collected, asserted below
                    failures.append(exc)

    threads = [threading.Thread(target=client, args=(list(WAYS.values())[i % 3],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(latencies) == 400
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"\n8 clients x 50 requests ({W}x{H} RGBA u8, preview): p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")


def big_job(size=700):
    img = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    h = np.zeros((size, size, 4), np.uint8)
    h[10:20, 10:20] = (200, 40, 40, 255)
    h[-20:-10, -20:-10] = (40, 40, 200, 255)
    return dict(width=size, height=size, layout="GRAY", sample="u8", pixels=img.tobytes(), hints=h.tobytes())


def test_cancel_superseding_and_progress(daemon):
    client_id = uuid.uuid4().hex  # one plugin instance, several threads
    errors, progress = {}, {"running": [], "q2": []}

    def run(rid, document):
        with daemon.client(timeout=30, client_id=client_id) as c:
            try:
                c.colorize(**big_job(), document=document, request_id=rid, progress=progress.get(rid, []).append)
            except tinct_client.TinctError as exc:
                errors[rid] = exc

    with daemon.client(client_id=client_id) as watcher:  # the same plugin: status shows it its own jobs
        first = threading.Thread(target=run, args=("running", "other"))
        first.start()
        wait_for(lambda: watcher.status()["running"] == "running")
        queued = []
        for i in range(3):
            queued.append(threading.Thread(target=run, args=(f"q{i}", "doc")))
            queued[-1].start()
            wait_for(lambda: watcher.status()["queued"] == 1 and (i == 0 or f"q{i - 1}" in errors))
        wait_for(lambda: len(progress["running"]) >= 2)
        with daemon.client(client_id=client_id) as c:
            c.cancel("running")
        for t in [first] + queued:
            t.join()
    assert errors["running"].code == "cancelled" and "running" in str(errors["running"])
    assert errors["q0"].code == "cancelled" and "superseded" in errors["q0"].message
    assert errors["q1"].code == "cancelled" and "superseded" in errors["q1"].message
    assert "q2" not in errors  # the newest one ran
    for seen in progress.values():
        assert seen == sorted(seen) and all(0 <= p <= 1 for p in seen)
    assert progress["q2"][-1] > 0  # it reported real solver progress while running


def test_a_resent_request_joins_the_first_instead_of_running_twice(daemon):
    with daemon.client() as c:
        done = c.status()["done"]
    request = dict(big_job(600), v=P.VERSION, type="colorize", id=uuid.uuid4().hex)
    owner = b"t" + os.urandom(15)  # one plugin: its sockets share these leading bytes of their routing ids
    socks = [dealer(daemon.endpoint, owner + bytes([i]) * 4) for i in range(4)]

    def state():
        socks[3][1].send_multipart([b"", P.pack({"v": P.VERSION, "type": "status", "id": "s",
                                                 "target": request["id"]})])
        return reply_of(socks[3][1])["job"]

    try:
        socks[0][1].send_multipart([b""] + P.frames_of(request))
        wait_for(lambda: state() in ("queued", "running"))
        socks[1][1].send_multipart([b""] + P.frames_of(request))  # what a client does after a timeout
        socks[2][1].send_multipart([b""] + P.frames_of(dict(request, options={"quality": "preview"})))
        refused = reply_of(socks[2][1])
        first, second = reply_of(socks[0][1]), reply_of(socks[1][1])
        assert state() == "done"
    finally:
        for ctx, sock in socks:
            sock.close()
            ctx.term()
    assert refused["error"]["code"] == "bad_request" and "already in use" in refused["error"]["message"]
    assert first["ok"] and first["pixels"] == second["pixels"] and first["id"] == second["id"]
    with daemon.client() as c:
        assert c.status()["done"] == done + 1


def test_a_client_vanishing_mid_request_leaves_the_daemon_healthy(daemon):
    plugin = uuid.uuid4().hex  # one plugin whose sockets vanish; its status probe sees its own jobs
    with tinct_client.Client(daemon.endpoint, start_command=[], client_id=plugin) as probe:
        owner = probe.owner
    ctx, sock = dealer(daemon.endpoint, owner + b"0000")
    sock.send_multipart([b""] + P.frames_of(dict(big_job(500), v=P.VERSION, type="colorize", id=uuid.uuid4().hex)))
    time.sleep(0.2)
    sock.close()
    ctx.term()
    for way in ("memfd", "files"):  # clients that leave while their shared-memory request waits in the queue
        gone = daemon.client(shared_memory=WAYS[way], client_id=plugin)
        frames = gone._frames(dict(big_job(400), type="colorize", id=uuid.uuid4().hex), gone.hello())
        req = gone.ctx.socket(zmq.REQ)
        req.setsockopt(zmq.ROUTING_ID, owner + os.urandom(4))
        req.connect(daemon.endpoint)
        req.send_multipart(frames)
        req.close(0)
        gone.close()  # its files unlinked, its buffers closed, maybe before tinctd looked at them
    with daemon.client(client_id=plugin) as c:
        assert c.hello()["version"] == P.VERSION
        wait_for(lambda: c.status()["queued"] == 0 and c.status()["running"] is None)
    test_round_trip_of_every_pixel_format(daemon, "RGB", "u16", "files")


def test_killing_the_daemon_mid_request_gives_a_clear_error(tinctd, tmp_path):
    d = tinctd(tmp_path)
    errors = []

    clients = []

    plugin = uuid.uuid4().hex  # one plugin: its status probes see its own job

    def run():
        with d.client(timeout=5, client_id=plugin) as c:
            clients.append(c)
            try:
                c.colorize(**big_job(1000))
            except tinct_client.TinctError as exc:
                errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    with d.client(client_id=plugin) as c:
        wait_for(lambda: c.status()["running"] is not None)
    d.proc.send_signal(signal.SIGKILL)
    t.join(30)
    assert not t.is_alive() and errors and errors[0].code == "unavailable"
    assert "stopped while working" in str(errors[0]) and "nothing was changed" in str(errors[0])
    assert clients[0].shared is None  # its buffers let go: a tinctd still finishing must not write into the next


def test_a_daemon_gone_before_the_next_request_is_not_running_not_stopped_mid_work(tinctd, tmp_path):
    d = tinctd(tmp_path)
    with d.client(timeout=5, retries=1) as c:
        c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=photo("RGB", "u8").tobytes())
        assert d.stop() == 0  # between two requests of a client that knows it (its hello is kept)
        with pytest.raises(tinct_client.TinctError) as err:
            c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=photo("RGB", "u8").tobytes())
    assert err.value.code == "unavailable" and "not running" in str(err.value)


def test_sigterm_answers_everyone_waiting_then_exits_cleanly(tinctd, tmp_path):
    d = tinctd(tmp_path)
    errors = {}

    plugin = uuid.uuid4().hex  # one plugin, several threads: status shows it its own jobs

    def run(rid):
        with d.client(timeout=5, retries=0, client_id=plugin) as c:
            try:
                c.colorize(**big_job(1000), request_id=rid)
            except tinct_client.TinctError as exc:
                errors[rid] = exc

    threads = [threading.Thread(target=run, args=(rid,)) for rid in ("running", "queued")]
    with d.client(client_id=plugin) as c:
        threads[0].start()
        wait_for(lambda: c.status()["running"] == "running")
        threads[1].start()
        wait_for(lambda: c.status()["queued"] == 1)
    assert d.stop() == 0
    for t in threads:
        t.join(30)
    assert errors["running"].code == "cancelled" and "stopped" in str(errors["running"])
    assert errors["queued"].code == "busy" and "shutting down" in str(errors["queued"])
    assert "tinctd stopped" in (tmp_path / "tinctd.log").read_text()


def test_limits_and_an_ipc_endpoint(tinctd, tmp_path):
    d = tinctd(tmp_path, "--max-megapixels", "0.001", endpoint=f"ipc://{tmp_path}/tinctd.sock")
    try:
        with d.client() as c:
            info = c.hello()
            assert info["limits"]["max_pixels"] == 1000
            r = c.colorize(width=W, height=H, layout="GRAY", sample="u8", pixels=photo("GRAY", "u8").tobytes())
            assert c.transport == ("memfd" if info.get("memfd") else "frames") and r["layout"] == "RGB"
            with pytest.raises(tinct_client.TinctError) as err:  # refused before a byte is sent
                c.colorize(width=40, height=40, layout="GRAY", sample="u8", pixels=bytes(1600))
            assert err.value.code == "too_large" and "megapixels" in str(err.value)
        ctx, sock = dealer(d.endpoint)
        sock.send_multipart([b"", P.pack({"v": P.VERSION, "type": "colorize", "id": "big", "width": 40, "height": 40,
                                          "layout": "GRAY", "sample": "u8", "blobs": []})])
        assert reply_of(sock)["error"]["code"] == "too_large"
        sock.send_multipart([b"", P.pack({"v": P.VERSION, "type": "hello", "blobs": ["pixels"]}), bytes(1 << 20)])
        assert not sock.poll(1000)  # ZMQ_MAXMSGSIZE: dropped unread, the connection closed
        sock.close()
        ctx.term()
        with d.client() as c:
            assert c.hello()["version"] == P.VERSION
    finally:
        assert d.stop() == 0


def test_nothing_listening_is_a_readable_error():
    with tinct_client.Client(f"tcp://127.0.0.1:{free_port()}", timeout=5, retries=1, start_command=[]) as c:
        with pytest.raises(tinct_client.TinctError, match="not running") as err:
            c.hello()
    assert err.value.code == "unavailable" and "tinctd" in str(err.value)


def test_the_client_starts_tinctd_when_told_how(tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "tinct.serve", "--endpoint", endpoint, "--state-dir", str(tmp_path)]
    try:
        with tinct_client.Client(endpoint, timeout=5, retries=0, start_command=cmd) as c:
            r = c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=photo("RGB", "u8").tobytes())
        assert r["layout"] == "RGB"
    finally:
        pid = json.loads((tmp_path / "tinctd.lock").read_text())["pid"]
        subprocess.run(["kill", str(pid)], check=True)


def test_a_second_instance_says_where_the_first_is(daemon):
    res = subprocess.run([sys.executable, "-m", "tinct.serve", "--endpoint", f"tcp://127.0.0.1:{free_port()}",
                          "--state-dir", str(daemon.state_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "already running" in res.stderr and daemon.endpoint in res.stderr


def test_remote_endpoints_need_explicit_consent(tmp_path):
    res = subprocess.run([sys.executable, "-m", "tinct.serve", "--endpoint", "tcp://0.0.0.0:5571",
                          "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "--allow-remote" in res.stderr


def test_check_reports_and_exits_zero():
    res = subprocess.run([sys.executable, "-m", "tinct.serve", "--check"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "engine optimization: ready" in res.stdout and "colorize ok" in res.stdout
    assert "device: cpu" in res.stdout or "device: cuda" in res.stdout
    assert "shared memory: " in res.stdout and ("memfd buffers" in res.stdout) == sys.platform.startswith("linux")


def test_curve_keys_let_only_known_clients_in(tinctd, tmp_path):
    import zmq.auth
    for folder in ("server", "clients", "stranger"):
        (tmp_path / folder).mkdir()
    _, server_secret = zmq.auth.create_certificates(tmp_path / "server", "server")
    _, client_secret = zmq.auth.create_certificates(tmp_path / "clients", "client")
    _, stranger_secret = zmq.auth.create_certificates(tmp_path / "stranger", "stranger")
    keys = {"server_key": zmq.auth.load_certificate(server_secret)[0]}
    pub, sec = zmq.auth.load_certificate(client_secret)
    spub, ssec = zmq.auth.load_certificate(stranger_secret)
    d = tinctd(tmp_path, "--curve-secret", str(server_secret), "--curve-clients", str(tmp_path / "clients"),
                      endpoint=f"tcp://127.0.0.1:{free_port()}")
    try:
        with tinct_client.Client(d.endpoint, timeout=5, retries=0, start_command=[],
                                 curve=dict(keys, public=pub, secret=sec)) as c:
            assert c.hello()["version"] == P.VERSION
            c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=photo("RGB", "u8").tobytes())
        with tinct_client.Client(d.endpoint, timeout=1, retries=0, start_command=[],
                                 curve=dict(keys, public=spub, secret=ssec)) as c:
            with pytest.raises(tinct_client.TinctError) as err:
                c.hello()
            assert err.value.code == "unavailable" and "refused this plugin's connection" in str(err.value)
    finally:
        assert d.stop() == 0


def test_without_fcntl_tinctd_imports_and_locks_with_msvcrt(tmp_path):
    """Windows has no fcntl: tinctd's modules still import (no memfd offered) and the one-per-user
    lock goes through msvcrt, here a stand-in that refuses a second lock the way Windows does."""
    script = f"""
import sys, types, subprocess, torch, zmq, numpy   # what the rest of the stack needs, imported first
locked = set()
def locking(fd, mode, nbytes):
    if "held" in locked:
        raise OSError(13, "Permission denied")
    locked.add("held")
sys.modules["fcntl"] = None                         # 'import fcntl' now raises ImportError
sys.modules["msvcrt"] = types.SimpleNamespace(LK_NBLCK=2, locking=locking)
from pathlib import Path
from tinct.serve import main, shm, state  # main: every module tinctd runs on
assert state.fcntl is None and shm.fcntl is None and not shm.memfd_possible()
first = state.acquire_lock(Path({str(tmp_path)!r}), "tcp://127.0.0.1:1")
try:
    state.acquire_lock(Path({str(tmp_path)!r}), "tcp://127.0.0.1:2")
except SystemExit as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "already running" in done.stdout and "tcp://127.0.0.1:1" in done.stdout
