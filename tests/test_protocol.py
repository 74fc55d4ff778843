"""tinct.serve.protocol and tinct.serve.shm without sockets: validation, pixel formats, the selection blend,
shared-memory files, client constants."""
import os
import re
import stat

import msgpack
import numpy as np
import pytest

import tinct_shm  # noqa: E402  (plugins/common, put on the path by daemon_fixture)
from daemon_fixture import tinct_client
from tinct.serve import daemon, endpoint, shm
from tinct.serve import protocol as P


def message(**over):
    m = {"v": P.VERSION, "type": "colorize", "id": "r1", "width": 4, "height": 3, "layout": "RGBA", "sample": "u8",
         "pixels": bytes(4 * 3 * 4)}
    m.update(over)
    return m


def job(layout="RGBA", sample="u8", w=4, h=3, data=None, **over):
    dtype = P.SAMPLES[sample]
    if data is None:
        data = np.arange(w * h * P.LAYOUTS[layout]).astype(dtype).tobytes()
    return P.parse_job(message(width=w, height=h, layout=layout, sample=sample, pixels=data, **over), 10_000,
                       ["optimization", "learned"])


def test_client_constants_agree_with_the_protocol(tmp_path):
    assert tinct_client.PROTOCOL_VERSION == P.VERSION
    assert tinct_client.DEFAULT_PORT == endpoint.DEFAULT_PORT
    assert tinct_client.TCP_ENDPOINT == endpoint.TCP_ENDPOINT and tinct_client.SOCKET_NAME == endpoint.SOCKET_NAME
    assert tinct_client.default_endpoint() == endpoint.default_endpoint()
    assert tinct_client.OWNER_BYTES == daemon.OWNER_BYTES
    assert tinct_client.LAYOUTS == P.LAYOUTS
    assert tinct_client.SAMPLE_BYTES == {k: v.itemsize for k, v in P.SAMPLES.items()}
    assert tinct_client.BLOBS == P.BLOBS
    assert all(P.output_layout(k) == tinct_client.RESULT_LAYOUTS.get(k, k) for k in P.LAYOUTS)
    assert tinct_client._Memfd.possible() == shm.memfd_possible()
    files = tinct_client._SharedFiles(str(tmp_path), {})  # the names the client makes are the ones tinctd takes
    try:
        assert all(shm.NAME.fullmatch(name) for name in files.names)
        assert all(stat.S_IMODE(os.stat(p).st_mode) == 0o600 for p in files.paths)
    finally:
        files.close()
    assert not any(tmp_path.iterdir())


def test_a_valid_request_parses():
    j = P.parse_job(message(document="doc", client="ignored", options={"quality": "preview"}), 100, ["optimization"])
    j.client = b"owner"  # tinctd files it under the connection's routing id, never a field the client writes
    assert j.image.raw().shape == (3, 4, 4) and j.key == (b"owner", "r1") and j.document_key == (b"owner", "doc")
    assert j.signature == P.parse_job(message(document="doc", client="c", options={"quality": "preview"},
                                              pixels=bytes(range(48))), 100, ["optimization"]).signature
    assert j.signature != P.parse_job(message(document="doc", client="c"), 100, ["optimization"]).signature


@pytest.mark.parametrize("over, code, words", [
    ({"width": "4"}, "bad_request", "wrong type"),
    ({"width": True}, "bad_request", "wrong type"),
    ({"height": 0}, "bad_request", "empty"),
    ({"width": 100, "height": 100}, "too_large", "megapixels"),
    ({"pixels": b"12"}, "bad_request", "bytes"),
    ({"layout": "CMYK"}, "unsupported", "layout"),
    ({"sample": "f16"}, "unsupported", "sample"),
    ({"engine": "magic"}, "unsupported", "engine"),
    ({"options": {"speed": 1}}, "bad_request", "unknown option"),
    ({"options": {"vibrancy": "high"}}, "bad_request", "vibrancy"),
    ({"options": {"vibrancy": float("nan")}}, "bad_request", "vibrancy"),
    ({"options": {"edge_sensitivity": 0}}, "bad_request", "edge_sensitivity"),
    ({"options": {"quality": "best"}}, "bad_request", "quality"),
    ({"hints": bytes(5)}, "bad_request", "hints"),
    ({"hints": bytes(48), "hints_layout": "RGB"}, "unsupported", "layout"),
    ({"selection": bytes(3)}, "bad_request", "selection"),
    ({"id": 7}, "bad_request", "'id'"),
    ({"type": "suggest", "x": 9, "y": 0}, "bad_request", "point"),
])
def test_bad_fields_are_refused_with_a_code_and_a_sentence(over, code, words):
    with pytest.raises(P.ProtocolError) as err:
        P.parse_job(message(**over), 5000, ["optimization", "learned"])
    assert err.value.code == code and words in err.value.message


def test_garbage_is_bad_request_and_pickle_is_never_loaded():
    for data in (b"\xc1", b"\x92\x01", msgpack.packb([1, 2]), b"\x80\x04\x95cos\nsystem\n"):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack([data], 1000)
        assert err.value.code == "bad_request"
    with pytest.raises(P.ProtocolError) as err:
        P.unpack([P.pack({"v": P.VERSION}), bytes(2000)], 1000)
    assert err.value.code == "bad_request"  # 'blobs' does not name the frame
    with pytest.raises(P.ProtocolError) as err:
        P.unpack(P.frames_of(message(pixels=bytes(2000))), 1000)
    assert err.value.code == "too_large"


def test_binary_fields_travel_as_frames():
    frames = P.frames_of(message(hints=bytes(48)))
    assert len(frames) == 3 and frames[1] == bytes(48)
    back = P.unpack(frames, 10_000)
    assert back["pixels"] == message()["pixels"] and back["hints"] == bytes(48)
    for bad in ([frames[0]], frames + [b"x"], [msgpack.packb(dict(message(), blobs=[]))],
                [msgpack.packb({"v": P.VERSION, "blobs": ["pixels", "pixels"]}), b"a", b"b"],
                [msgpack.packb({"v": P.VERSION, "blobs": "pixels"}), b"a"]):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack(bad, 10_000)
        assert err.value.code == "bad_request"


def test_shared_memory_fields_become_placeholders_and_lying_specs_are_refused():
    spec = {"file": "1-" + "a" * 32 + ".in", "reply": "1-" + "a" * 32 + ".out", "blobs": ["pixels", "hints"],
            "lengths": [48, 48]}
    header = {k: v for k, v in message().items() if k != "pixels"}
    back = P.unpack([P.pack(dict(header, shm=spec))], 10_000)
    assert back["pixels"] == P.SharedBlob(0, 48) and back["hints"] == P.SharedBlob(48, 48)
    assert back["shm"] == P.Shared(96, file=spec["file"], reply=spec["reply"]) and not back["shm"].memfd
    j = P.parse_job(back, 100, ["optimization"])
    view = memoryview(bytes(range(96)))
    j.attach(view)
    assert bytes(j.image.data) == bytes(range(48)) and bytes(j.hints.data) == bytes(range(48, 96))
    for bad in ("nope", dict(spec, lengths=[48]), dict(spec, lengths=[48, -1]), dict(spec, lengths=[48, True]),
                dict(spec, blobs=["pixels", "pixels"]), dict(spec, file=None), dict(spec, blobs=["pixels", "x"])):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack([P.pack(dict(header, shm=bad))], 10_000)
        assert err.value.code == "bad_request", bad
    with pytest.raises(P.ProtocolError, match="both"):
        P.unpack([P.pack(dict(header, shm=spec, blobs=["pixels"])), bytes(48)], 10_000)
    with pytest.raises(P.ProtocolError) as err:
        P.unpack([P.pack(dict(header, shm=dict(spec, lengths=[48, 10 ** 12])))], 10_000)
    assert err.value.code == "too_large"


def test_memfd_specs_parse_and_lying_ones_are_refused():
    spec = {"pid": 1234, "in": [5, 77], "out": [6, 78], "key": "k" * 64, "blobs": ["pixels"], "lengths": [48]}
    header = {k: v for k, v in message().items() if k != "pixels"}
    back = P.unpack([P.pack(dict(header, shm=spec))], 10_000)
    assert back["shm"] == P.Shared(48, pid=1234, source=(5, 77), target=(6, 78), key="k" * 64)
    assert back["shm"].memfd and back["shm"].reply_spec(36) == {"out": [6, 78], "blobs": ["pixels"], "lengths": [36]}
    for bad in (dict(spec, file="1-" + "a" * 32 + ".in"), dict(spec, pid=0), dict(spec, pid=True),
                dict(spec, pid=2 ** 40), dict(spec, **{"in": [5]}), dict(spec, **{"in": [5, -1]}),
                dict(spec, out=[6, "78"]), dict(spec, out=[6, True]), dict(spec, out=None), dict(spec, key=5),
                {k: v for k, v in spec.items() if k != "key"}):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack([P.pack(dict(header, shm=bad))], 10_000)
        assert err.value.code == "bad_request", bad


def test_the_key_is_private_and_new_at_every_start(tmp_path):
    folder = tmp_path / "shm"
    folder.mkdir(mode=0o700)
    first = shm.new_key(folder)
    path = folder / shm.key_name()
    assert re.fullmatch("[0-9a-f]{64}", first) and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().strip() == first
    second = shm.new_key(folder)  # a restart: a key read before opens nothing now
    assert re.fullmatch("[0-9a-f]{64}", second) and second != first
    assert path.read_text().strip() == second
    assert sorted(p.name for p in folder.iterdir()) == [shm.key_name()]


@pytest.mark.skipif(not shm.memfd_possible(), reason="no memfd buffers on this system (not Linux, or no /proc)")
def test_memfd_mappings_are_cached_by_inode_regrown_and_pruned():
    import fcntl

    fd = os.memfd_create("unit", os.MFD_ALLOW_SEALING)
    os.ftruncate(fd, 4096)
    fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK)
    ino = os.fstat(fd).st_ino
    buffers = shm.Buffers("s" * 64)
    try:
        first = buffers.get(os.getpid(), fd, ino, 100, False)
        assert first is buffers.get(os.getpid(), fd, ino, 4096, False)  # cached
        writable = buffers.get(os.getpid(), fd, ino, 10, True)
        assert writable not in (None, first)  # asked to write now: mapped again
        os.ftruncate(fd, 8192)  # grown in place by its client
        bigger = buffers.get(os.getpid(), fd, ino, 8192, True)
        assert len(bigger) == 8192
        bigger[:3] = b"abc"
        assert os.pread(fd, 3, 0) == b"abc"  # the client's own pages
        shared = P.Shared(3, pid=os.getpid(), source=(fd, ino), target=(fd, ino), key="x" * 64)
        with pytest.raises(P.ProtocolError) as err:
            buffers.attach(shared, 3)
        assert err.value.transport and "key" in err.value.message
        buffers.prune()
        assert list(buffers.maps) == [(os.getpid(), fd)]  # still open: kept
    finally:
        os.close(fd)
    buffers.prune()
    assert not buffers.maps  # closed by its client: forgotten
    assert bytes(bigger[:3]) == b"abc"  # and a job still holding the mapping keeps it valid


def test_shared_memory_files_are_checked_before_a_byte_is_read(tmp_path):
    folder = tmp_path / "shm"
    folder.mkdir(mode=0o700)
    name = f"{os.getpid()}-{'b' * 32}.in"
    (folder / name).write_bytes(bytes(range(100)))
    out = bytearray(60)
    shm.read(folder, name, memoryview(out))
    assert out == bytes(range(60))
    shm.write(folder, name, memoryview(b"xyz"))
    assert (folder / name).read_bytes() == b"xyz"  # replaced, not overwritten in part
    (tmp_path / "secret").write_bytes(b"s" * 100)
    os.symlink(tmp_path / "secret", folder / f"1-{'c' * 32}.in")
    for bad, need in [("../secret", 1), (f"1-{'c' * 32}.in", 1), (f"2-{'d' * 32}.in", 1), (name, 4)]:
        with pytest.raises(P.ProtocolError) as err:
            shm.check(folder, bad, need)
        assert err.value.code == "bad_request"
    with pytest.raises(P.ProtocolError, match="at least"):
        shm.read(folder, name, memoryview(bytearray(10)))


def test_sweep_removes_only_files_of_processes_that_are_gone(tmp_path):
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    mine, gone = f"{os.getpid()}-{'e' * 32}.in", f"{dead}-{'f' * 32}.out"
    for name in (mine, gone, "unrelated.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert shm.sweep(tmp_path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine, "unrelated.txt"])


def test_the_shared_memory_folder_is_private():
    folder = shm.directory()
    if folder is None:
        pytest.skip("no tmpfs for shared memory on this system")
    info = folder.stat()
    assert info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) == 0o700


def test_bgra_and_grey_layers_reach_the_engine_as_rgb_and_come_back_in_their_layout():
    bgra = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)
    j = job("BGRA", data=bgra.tobytes())
    raw = j.image.raw()
    np.testing.assert_array_equal(j.image.engine_input(raw), bgra[..., [2, 1, 0]])
    layout, data = P.encode_result(j, bgra[..., [2, 1, 0]] + 1, raw)
    out = np.frombuffer(data, np.uint8).reshape(3, 4, 4)
    assert layout == "BGRA"
    np.testing.assert_array_equal(out[..., :3], bgra[..., :3] + 1)
    np.testing.assert_array_equal(out[..., 3], bgra[..., 3])  # alpha is the input's
    grey = job("GRAYA", "u16")
    raw = grey.image.raw()
    assert grey.image.engine_input(raw).shape == (3, 4)
    layout, data = P.encode_result(grey, np.zeros((3, 4, 3), np.uint16), raw)
    assert layout == "RGBA" and np.array_equal(np.frombuffer(data, np.uint16).reshape(3, 4, 4)[..., 3], raw[..., 1])


@pytest.mark.parametrize("layout", ["RGBA", "BGRA", "RGB"])
def test_a_result_encoded_over_its_own_layer_is_the_same(layout, monkeypatch):
    w, h = 300, 7
    monkeypatch.setattr(P, "BLOCK_BYTES", 5000)  # two rows a block: the last block is short
    rng = np.random.default_rng(1)
    layer = rng.integers(0, 65535, (h, w, P.LAYOUTS[layout]), dtype=np.uint16)
    result = rng.integers(0, 65535, (h, w, 3), dtype=np.uint16)
    sel = rng.choice([0, 255, 77], (h, w)).astype(np.uint8)
    separate = job(layout, "u16", w, h, layer.tobytes(), selection=sel.tobytes())
    _, expected = P.encode_result(separate, result, separate.image.raw())
    buffer = bytearray(layer.tobytes())  # the client's request buffer, the result written over the layer
    j = job(layout, "u16", w, h, memoryview(buffer), selection=sel.tobytes())
    _, data = P.encode_result(j, result, j.image.raw(), memoryview(buffer))
    assert bytes(data) == bytes(expected) and bytes(buffer) == bytes(expected)


def test_float_layers_are_checked_and_their_alpha_comes_back_bit_for_bit():
    rgba = np.full((3, 4, 4), 0.5, np.float32)
    rgba[..., 3] = np.linspace(-0.5, 1.5, 12).reshape(3, 4)  # editors may hold alpha outside 0..1
    rgba[0, 0, 0] = 2.0
    j = job("RGBA", "f32", data=rgba.tobytes())
    raw = j.image.raw()
    assert j.image.engine_input(raw).max() == 1.0  # colour clipped for the engine
    _, data = P.encode_result(j, np.zeros((3, 4, 3), np.float32), raw)
    assert np.frombuffer(data, np.float32).reshape(3, 4, 4)[..., 3].tobytes() == rgba[..., 3].tobytes()
    rgba[1, 1, 1] = np.nan
    with pytest.raises(P.ProtocolError, match="NaN"):
        j = job("RGBA", "f32", data=rgba.tobytes())
        j.image.engine_input(j.image.raw())


def test_selection_blend_is_exact_outside_and_inside():
    rng = np.random.default_rng(0)
    result, original = (rng.integers(0, 65535, (5, 6, 3), dtype=np.uint16) for _ in range(2))
    sel = np.zeros((5, 6), np.uint8)
    sel[1:3, 1:4] = 255
    sel[4, 0] = 128
    out = P.blend(result, original, sel)
    np.testing.assert_array_equal(out[sel == 0], original[sel == 0])
    np.testing.assert_array_equal(out[sel == 255], result[sel == 255])
    s = 128 / 255
    np.testing.assert_array_equal(out[4, 0], np.floor(result[4, 0] * s + original[4, 0] * (1 - s) + 0.5))


def test_a_selection_over_a_grey_layer_keeps_the_grey_outside():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
    sel = np.zeros((3, 4), np.uint8)
    sel[0] = 255
    j = job("GRAY", data=grey.tobytes(), selection=sel.tobytes())
    _, data = P.encode_result(j, np.full((3, 4, 3), 200, np.uint8), j.image.raw())
    out = np.frombuffer(data, np.uint8).reshape(3, 4, 3)
    assert (out[0] == 200).all()
    np.testing.assert_array_equal(out[1:], np.repeat(grey[1:], 3, -1))


def test_loopback_rule():
    assert endpoint.is_loopback("tcp://127.0.0.1:5571") and endpoint.is_loopback("tcp://localhost:1")
    assert endpoint.is_loopback("ipc:///tmp/tinct.sock") and endpoint.is_loopback("tcp://[::1]:5")
    assert not endpoint.is_loopback("tcp://0.0.0.0:5571") and not endpoint.is_loopback("tcp://192.168.1.2:5571")
    assert not endpoint.is_loopback("tcp://127.0.0.1:1;0.0.0.0:5571")  # libzmq's source;address form


def test_big_shared_memory_files_give_their_pages_back(tmp_path, monkeypatch):
    files = tinct_client._SharedFiles(str(tmp_path), {})
    try:
        files.place([bytes(1000)])
        files.trim()
        assert os.path.getsize(files.paths[0]) == 1000  # small: kept for the next request
        monkeypatch.setattr(tinct_shm, "KEEP_SHARED", 500)
        files.trim()
        assert os.path.getsize(files.paths[0]) == 0
    finally:
        files.close()


def test_the_client_refuses_what_it_cannot_send_before_touching_the_network():
    with tinct_client.Client("tcp://127.0.0.1:9", start_command=[]) as c:
        for over, code in [({"pixels": [0] * 48}, "bad_request"), ({"pixels": bytes(47)}, "bad_request"),
                           ({"hints": 5}, "bad_request"), ({"layout": "CMYK"}, "unsupported")]:
            kw = {**dict(width=4, height=3, layout="RGBA", sample="u8", pixels=bytes(48)), **over}
            with pytest.raises(tinct_client.TinctError) as err:
                c.colorize(**kw)
            assert err.value.code == code and str(err.value).endswith(".")
