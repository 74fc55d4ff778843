"""tinct.protocol without sockets: validation, pixel formats, the selection blend, client constants."""
import msgpack
import numpy as np
import pytest

from tinct import protocol as P

from daemon_fixture import tinct_client


def message(**over):
    m = {"v": 1, "type": "colorize", "id": "r1", "width": 4, "height": 3, "layout": "RGBA", "sample": "u8",
         "pixels": bytes(4 * 3 * 4)}
    m.update(over)
    return m


def test_client_constants_agree_with_the_protocol():
    assert tinct_client.BLOBS == P.BLOBS
    assert tinct_client.PROTOCOL_VERSION == P.VERSION
    assert tinct_client.DEFAULT_ENDPOINT == P.DEFAULT_ENDPOINT
    assert tinct_client.LAYOUTS == P.LAYOUTS
    assert tinct_client.SAMPLE_BYTES == {k: v.itemsize for k, v in P.SAMPLES.items()}


def test_a_valid_request_parses():
    job = P.parse_job(message(document="doc", options={"quality": "preview"}), 100, ["optimization"])
    assert job.image.array().shape == (3, 4, 4) and job.key == ("", "doc")


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
    ({"options": {"vibrancy": "high"}}, "bad_request", "wrong type"),
    ({"hints": bytes(5)}, "bad_request", "hints"),
    ({"hints": bytes(48), "hints_layout": "RGB"}, "unsupported", "layout"),
    ({"selection": bytes(3)}, "bad_request", "selection"),
    ({"id": 7}, "bad_request", "'id'"),
])
def test_bad_fields_are_refused_with_a_code_and_a_sentence(over, code, words):
    with pytest.raises(P.ProtocolError) as err:
        P.parse_job(message(**over), 5000, ["optimization"])
    assert err.value.code == code and words in err.value.message


def test_garbage_is_bad_request_and_pickle_is_never_loaded():
    for data in (b"\xc1", b"\x92\x01", msgpack.packb([1, 2]), b"\x80\x04\x95cos\nsystem\n"):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack([data], 1000)
        assert err.value.code == "bad_request"
    with pytest.raises(P.ProtocolError, match="bytes"):
        P.unpack([bytes(2000)], 1000)


def test_binary_fields_travel_as_frames():
    frames = P.frames_of(message(hints=bytes(48)))
    assert len(frames) == 3 and frames[1] == bytes(48)
    back = P.unpack(frames, 10_000)
    assert back["pixels"] == message()["pixels"] and back["hints"] == bytes(48)
    for bad in ([frames[0]], frames + [b"x"], [msgpack.packb(dict(message(), blobs=[]))],
                [msgpack.packb({"v": 1, "blobs": ["pixels", "pixels"]}), b"a", b"b"]):
        with pytest.raises(P.ProtocolError) as err:
            P.unpack(bad, 10_000)
        assert err.value.code == "bad_request"


def test_bgra_and_float_layers_decode_and_encode_back_exactly():
    bgra = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    layer = P.Layer(3, 2, "BGRA", "u8", bgra.tobytes())
    rgba = layer.array()
    np.testing.assert_array_equal(rgba[..., 0], bgra[..., 2])
    layout, data = P.result_bytes(layer, rgba)
    assert layout == "BGRA" and data == bgra.tobytes()
    grey = P.Layer(3, 2, "GRAY", "f32", np.full(6, np.nan, np.float32).tobytes())
    with pytest.raises(P.ProtocolError, match="NaN"):
        grey.array()


def test_selection_blend_is_exact_outside_and_inside():
    rng = np.random.default_rng(0)
    result, original = (rng.integers(0, 65535, (5, 6, 4), dtype=np.uint16) for _ in range(2))
    sel = np.zeros((5, 6), np.uint8)
    sel[1:3, 1:4] = 255
    sel[4, 0] = 128
    out = P.blend(result, original, sel)
    np.testing.assert_array_equal(out[sel == 0], original[sel == 0])
    np.testing.assert_array_equal(out[sel == 255], result[sel == 255])
    assert np.all(np.abs(out[4, 0].astype(int) - (result[4, 0].astype(int) + original[4, 0]) / 2) <= 256)


def test_loopback_rule():
    assert P.is_loopback("tcp://127.0.0.1:5571") and P.is_loopback("tcp://localhost:1")
    assert P.is_loopback("ipc:///tmp/tinct.sock") and P.is_loopback("tcp://[::1]:5")
    assert not P.is_loopback("tcp://0.0.0.0:5571") and not P.is_loopback("tcp://192.168.1.2:5571")
