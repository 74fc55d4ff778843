"""A real tinctd process on a free port, driven through real ZeroMQ sockets."""
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

from tinct import lab
from tinct import protocol as P

from daemon_fixture import RunningDaemon, tinct_client

W, H = 24, 16
DTYPES = {"u8": np.uint8, "u16": np.uint16, "f32": np.float32}
CHANNELS = {"GRAY": 1, "GRAYA": 2, "RGB": 3, "RGBA": 4, "BGRA": 4}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    d = RunningDaemon(tmp_path_factory.mktemp("tinctd"))
    yield d
    assert d.alive(), "tinctd died during the tests"
    assert d.stop() == 0  # SIGTERM shuts down cleanly


def photo(layout, sample):
    grey = np.tile(np.linspace(0.2, 0.8, W), (H, 1))
    alpha = np.linspace(0, 1, W * H).reshape(H, W)
    planes = {"GRAY": [grey], "GRAYA": [grey, alpha], "RGB": [grey] * 3, "RGBA": [grey] * 3 + [alpha],
              "BGRA": [grey] * 3 + [alpha]}[layout]
    a = np.stack(planes, -1)
    if sample != "f32":
        a = np.round(a * np.iinfo(DTYPES[sample]).max)
    return a.astype(DTYPES[sample])


def hints():
    h = np.zeros((H, W, 4), np.uint8)
    h[2:6, 2:6] = (220, 30, 30, 255)
    return h


@pytest.mark.parametrize("layout", list(CHANNELS))
@pytest.mark.parametrize("sample", list(DTYPES))
def test_round_trip_of_every_pixel_format(daemon, layout, sample):
    img = photo(layout, sample)
    with daemon.client() as c:
        r = c.colorize(width=W, height=H, layout=layout, sample=sample, pixels=img.tobytes(), hints=hints().tobytes())
    out_layout = {"GRAY": "RGB", "GRAYA": "RGBA"}.get(layout, layout)
    assert (r["layout"], r["sample"], r["width"], r["height"]) == (out_layout, sample, W, H)
    out = np.frombuffer(r["pixels"], DTYPES[sample]).reshape(H, W, CHANNELS[out_layout])
    if CHANNELS[layout] in (2, 4):
        np.testing.assert_array_equal(out[..., 3], img[..., -1])  # alpha untouched, bit for bit
    rgb = out[..., [2, 1, 0]] if layout == "BGRA" else out[..., :3]
    scale = 1.0 if sample == "f32" else float(np.iinfo(DTYPES[sample]).max)
    light = lab.srgb_to_lab(torch.tensor(rgb / scale).permute(2, 0, 1))[0]
    src = lab.srgb_to_lab(torch.tensor(np.repeat(photo("GRAY", "f32"), 3, -1)).permute(2, 0, 1))[0]
    assert float((light - src).abs().max()) <= 0.6
    assert rgb[4, 4, 0] > rgb[4, 4, 2]  # the red stroke is there


def test_fuzzed_messages_all_get_errors_and_the_daemon_still_works(daemon):
    rng = random.Random(0)
    valid = {"v": 1, "type": "colorize", "id": "x", "width": W, "height": H, "layout": "RGBA", "sample": "u8",
             "pixels": bytes(W * H * 4)}
    junk = [None, True, -1, 2 ** 40, 3.5, "", "RGBA", b"\x00" * 7, [], {}, {"a": 1}]

    def mutate():
        kind = rng.randrange(7)
        if kind == 0:
            return [bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))]
        m = dict(valid)
        if kind == 1:
            del m[rng.choice(sorted(m))]
        elif kind == 2:
            m[rng.choice(sorted(m))] = rng.choice(junk)
        elif kind == 3:  # lying sizes
            m["width"], m["height"] = rng.choice([(W + 1, H), (W, H - 1), (10 ** 6, 10 ** 6), (0, H), (-W, -H)])
        elif kind == 4:
            m["pixels"] = bytes(rng.randrange(0, W * H * 4 - 1))
        elif kind == 5:
            m["type"] = rng.choice(["colourise", "", "HELLO", "shutdown"])
        frames = P.frames_of(m) if isinstance(m.get("pixels", b""), bytes) else [P.pack(m)]
        if kind == 6:  # frames that do not match the header
            frames = rng.choice([frames[:1], frames + [b"extra"], [frames[0], b""]])
        if rng.random() < 0.2:  # flip bytes inside a well-formed header
            b = bytearray(frames[0])
            for _ in range(3):
                b[rng.randrange(len(b))] = rng.getrandbits(8)
            frames = [bytes(b)] + frames[1:]
        return frames

    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    n, answered, errors = 10_000, 0, 0
    for start in range(0, n, 500):
        for _ in range(500):
            sock.send_multipart([b""] + mutate())
        while answered < start + 500 and sock.poll(10_000):
            reply = msgpack.unpackb(sock.recv_multipart()[1], raw=False)
            answered += 1
            errors += reply.get("ok") is False and reply["error"]["code"] in (
                "bad_request", "too_large", "unsupported", "cancelled", "internal")
    sock.close()
    ctx.term()
    # A flipped byte may by chance leave a valid job: such a message gets a result instead of an error.
    assert answered == n and errors >= n - 50, (answered, errors)
    test_round_trip_of_every_pixel_format(daemon, "RGBA", "u8")


def test_load_eight_clients_fifty_requests_each(daemon):
    img = photo("RGBA", "u8").tobytes()
    latencies, failures = [], []

    def client():
        with daemon.client(timeout=30) as c:
            for _ in range(50):
                t = time.perf_counter()
                try:
                    r = c.colorize(width=W, height=H, layout="RGBA", sample="u8", pixels=img,
                                   hints=hints().tobytes(), options={"quality": "preview"})
                    assert len(r["pixels"]) == len(img)
                    latencies.append(time.perf_counter() - t)
                except Exception as exc:  # collected, asserted below
                    failures.append(exc)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures and len(latencies) == 400
    p50, p99 = np.percentile(latencies, [50, 99])
    print(f"\n8 clients x 50 requests: p50 {p50 * 1e3:.1f} ms, p99 {p99 * 1e3:.1f} ms")


def big_job(size=900):
    img = np.tile(np.linspace(0, 255, size, dtype=np.uint8), (size, 1))
    h = np.zeros((size, size, 4), np.uint8)
    h[10:20, 10:20] = (200, 40, 40, 255)
    h[-20:-10, -20:-10] = (40, 40, 200, 255)
    return dict(width=size, height=size, layout="GRAY", sample="u8", pixels=img.tobytes(), hints=h.tobytes())


def test_cancel_and_superseding(daemon):
    with daemon.client(timeout=30) as c:
        errors = {}

        def run(rid, doc):
            try:
                c2 = daemon.client(timeout=30)
                c2.client_id = c.client_id  # same client, as one plugin instance
                c2.colorize(**big_job(), document=doc, request_id=rid)
            except tinct_client.TinctError as exc:
                errors[rid] = exc
            finally:
                c2.close()

        first = threading.Thread(target=run, args=("running", "other"))
        first.start()
        time.sleep(1.0)
        queued = [threading.Thread(target=run, args=(f"q{i}", "doc")) for i in range(3)]
        for t in queued:
            t.start()
            time.sleep(0.3)
        c.cancel("running")
        for t in [first] + queued:
            t.join()
    assert errors["running"].code == "cancelled"
    assert errors["q0"].code == "cancelled" and "superseded" in errors["q0"].message
    assert errors["q1"].code == "cancelled"
    assert "q2" not in errors  # the newest one ran


def test_a_client_vanishing_mid_request_leaves_the_daemon_healthy(daemon):
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(daemon.endpoint)
    job = dict(big_job(600), v=1, type="colorize", id=uuid.uuid4().hex)
    sock.send_multipart([b""] + P.frames_of(job))
    time.sleep(0.3)
    sock.close()
    ctx.term()
    with daemon.client() as c:
        assert c.hello()["version"] == 1
    test_round_trip_of_every_pixel_format(daemon, "RGB", "u16")


def test_killing_the_daemon_mid_request_gives_a_clear_error(tmp_path):
    d = RunningDaemon(tmp_path)
    errors = []

    def run():
        with d.client(timeout=3) as c:
            try:
                c.colorize(**big_job(1400))
            except tinct_client.TinctError as exc:
                errors.append(exc)

    t = threading.Thread(target=run)
    t.start()
    time.sleep(1.5)
    d.proc.send_signal(signal.SIGKILL)
    t.join(30)
    assert not t.is_alive() and errors and errors[0].code == "unavailable"
    assert "stopped" in str(errors[0]) or "not answering" in str(errors[0])


def test_nothing_listening_is_a_readable_error(tmp_path):
    from daemon_fixture import free_port
    with tinct_client.Client(f"tcp://127.0.0.1:{free_port()}", timeout=0.5, retries=1, start_command=[]) as c:
        with pytest.raises(tinct_client.TinctError, match="not answering") as err:
            c.hello()
    assert err.value.code == "unavailable"


def test_the_client_starts_tinctd_when_told_how(tmp_path):
    from daemon_fixture import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    cmd = [sys.executable, "-m", "tinct.server", "--endpoint", endpoint, "--state-dir", str(tmp_path)]
    with tinct_client.Client(endpoint, timeout=1, retries=1, start_command=cmd) as c:
        assert c.hello()["version"] == 1
        c.colorize(width=W, height=H, layout="RGB", sample="u8", pixels=photo("RGB", "u8").tobytes())
    lock = (tmp_path / "tinctd.lock").read_text()
    subprocess.run(["kill", str(__import__("json").loads(lock)["pid"])], check=True)


def test_a_second_instance_says_where_the_first_is(daemon):
    res = subprocess.run([sys.executable, "-m", "tinct.server", "--endpoint", "tcp://127.0.0.1:1",
                          "--state-dir", str(daemon.state_dir)], capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "already running" in res.stderr and daemon.endpoint in res.stderr


def test_remote_endpoints_need_explicit_consent():
    res = subprocess.run([sys.executable, "-m", "tinct.server", "--endpoint", "tcp://0.0.0.0:5571"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode != 0 and "--allow-remote" in res.stderr


def test_check_reports_and_exits_zero():
    res = subprocess.run([sys.executable, "-m", "tinct.server", "--check"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "engine optimization: ready" in res.stdout and "colorize: ok" in res.stdout


def test_curve_keys_let_only_known_clients_in(tmp_path):
    import zmq.auth
    (tmp_path / "server").mkdir()
    (tmp_path / "clients").mkdir()
    (tmp_path / "stranger").mkdir()
    _, server_secret = zmq.auth.create_certificates(tmp_path / "server", "server")
    client_public, client_secret = zmq.auth.create_certificates(tmp_path / "clients", "client")
    _, stranger_secret = zmq.auth.create_certificates(tmp_path / "stranger", "stranger")
    server_pub, _ = zmq.auth.load_certificate(server_secret)
    keys = {"server_key": server_pub}
    pub, sec = zmq.auth.load_certificate(client_secret)
    spub, ssec = zmq.auth.load_certificate(stranger_secret)
    from daemon_fixture import free_port
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    proc = subprocess.Popen([sys.executable, "-m", "tinct.server", "--endpoint", endpoint, "--state-dir",
                             str(tmp_path), "--curve-secret", str(server_secret), "--curve-clients",
                             str(tmp_path / "clients")])
    try:
        with tinct_client.Client(endpoint, timeout=20, retries=0, start_command=[],
                                 curve=dict(keys, public=pub, secret=sec)) as c:
            assert c.hello()["version"] == 1
        with tinct_client.Client(endpoint, timeout=1, retries=0, start_command=[],
                                 curve=dict(keys, public=spub, secret=ssec)) as c:
            with pytest.raises(tinct_client.TinctError):
                c.hello()
    finally:
        proc.terminate()
        proc.wait(15)
