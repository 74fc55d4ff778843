"""Partial answers with a real tinctd (docs/protocol.md, Partial answers): a `progressive` colorize is
answered with its `live` result first and the asked-for quality after it, on the same connection;
cancel between the two, a client gone after the first, and tinct_client's `partial` callback."""
import time

import msgpack
import numpy as np

from daemon_fixture import dealer, reply_of
from tinct.serve import protocol as P


def job(size: int, request_id: str, quality: str = "final", progressive: bool = True) -> list:
    """[delimiter, header, pixels, hints] of a raw colorize: a ramp with a red and a blue stroke."""
    grey = np.tile(np.linspace(80, 180, size).astype(np.uint8), (size, 1))
    hints = np.zeros((size, size, 4), np.uint8)
    hints[4:12, 4:12] = (200, 40, 40, 255)
    hints[-12:-4, -12:-4] = (40, 40, 200, 255)
    header = {"v": P.VERSION, "type": "colorize", "id": request_id, "width": size, "height": size, "layout": "GRAY",
              "sample": "u8", "blobs": ["pixels", "hints"], "options": {"quality": quality},
              "progressive": progressive}
    return [b"", msgpack.packb(header, use_bin_type=True), grey.tobytes(), hints.tobytes()]


def rgb(reply: dict, size: int) -> np.ndarray:
    return np.frombuffer(reply["pixels"], np.uint8).reshape(size, size, 3).astype(int)


def test_hello_names_the_feature_and_live_is_a_quality(daemon):
    with daemon.client() as c:
        info = c.hello()
    assert "partial" in info["features"] and "live" in info["defaults"]["qualities"]


def test_the_live_answer_comes_first_then_the_final_one(daemon):
    ctx, sock = dealer(daemon.endpoint)
    try:
        sock.send_multipart(job(256, "p1"))
        first, second = reply_of(sock), reply_of(sock)
    finally:
        sock.close()
        ctx.term()
    assert first["ok"] and first["type"] == "partial" and first["quality"] == "live" and first["id"] == "p1"
    assert second["ok"] and second["type"] == "colorize" and second["id"] == "p1"
    quick, full = rgb(first, 256), rgb(second, 256)
    for result in (quick, full):  # both show the strokes where they were painted
        assert result[8, 8, 0] > result[8, 8, 2] + 40 and result[-8, -8, 2] > result[-8, -8, 0] + 40
    assert np.abs(quick - full).mean() < 12  # the quick look is the same picture, roughly


def test_without_progressive_or_at_live_quality_there_is_one_answer(daemon):
    ctx, sock = dealer(daemon.endpoint)
    try:
        sock.send_multipart(job(64, "one", progressive=False))
        sock.send_multipart(job(64, "live", quality="live"))
        replies = [reply_of(sock), reply_of(sock)]
        assert not sock.poll(500)  # nothing more comes
    finally:
        sock.close()
        ctx.term()
    assert [(r["id"], r["type"]) for r in replies] == [("one", "colorize"), ("live", "colorize")]


def test_a_bad_progressive_field_is_refused(daemon):
    ctx, sock = dealer(daemon.endpoint)
    try:
        frames = job(16, "bad")
        header = msgpack.unpackb(frames[1])
        header["progressive"] = "yes"
        sock.send_multipart([b"", msgpack.packb(header), *frames[2:]])
        reply = reply_of(sock)
    finally:
        sock.close()
        ctx.term()
    assert reply["error"]["code"] == "bad_request" and "progressive" in reply["error"]["message"]


def test_cancel_between_the_partial_and_the_final_answer_ends_it_cancelled(daemon):
    ctx, sock = dealer(daemon.endpoint, b"t" + bytes(15) + b"\x01\x02\x03\x04")
    try:
        sock.send_multipart(job(1200, "slow"))
        first = reply_of(sock, 120_000)
        assert first["type"] == "partial"
        cancel = {"v": P.VERSION, "type": "cancel", "id": "c1", "target": "slow"}
        other_ctx, other = dealer(daemon.endpoint, b"t" + bytes(15) + b"\x09\x09\x09\x09")  # same owner
        try:
            other.send_multipart([b"", msgpack.packb(cancel)])
            assert reply_of(other)["found"] is True
        finally:
            other.close()
            other_ctx.term()
        final = reply_of(sock, 120_000)
    finally:
        sock.close()
        ctx.term()
    assert final["id"] == "slow" and final["ok"] is False and final["error"]["code"] == "cancelled"


def test_a_client_gone_after_the_partial_answer_costs_tinctd_nothing(daemon):
    ctx, sock = dealer(daemon.endpoint)
    sock.send_multipart(job(600, "left"))
    assert reply_of(sock, 120_000)["type"] == "partial"
    sock.close()
    ctx.term()
    with daemon.client() as c:  # tinctd finishes the job for nobody, then serves the next
        deadline = time.monotonic() + 120
        while c.status()["running"] is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        reply = c.colorize(**dict(zip(("width", "height"), (32, 32))), layout="GRAY", sample="u8",
                           pixels=bytes(32 * 32))
    assert reply["ok"] and daemon.alive()


def test_the_client_calls_back_with_the_partial_answer_before_returning_the_final_one(daemon):
    size = 200
    grey = np.tile(np.linspace(80, 180, size).astype(np.uint8), (size, 1))
    hints = np.zeros((size, size, 4), np.uint8)
    hints[4:12, 4:12] = (200, 40, 40, 255)
    seen = []
    with daemon.client() as c:  # the default transport: shared memory where tinctd offers it
        final = c.colorize(width=size, height=size, layout="GRAY", sample="u8", pixels=grey.tobytes(),
                           hints=hints.tobytes(), options={"quality": "final"}, partial=seen.append)
        transport = c.transport
    assert len(seen) == 1 and seen[0]["type"] == "partial" and seen[0]["quality"] == "live"
    assert len(seen[0]["pixels"]) == len(final["pixels"]) == size * size * 3
    assert final["type"] == "colorize" and transport in ("memfd", "files", "frames")
    assert rgb(seen[0], size)[8, 8, 0] > rgb(seen[0], size)[8, 8, 2] + 40
