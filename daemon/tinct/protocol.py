"""The wire protocol between the editor plugins and tinctd (docs/protocol.md), in one place.

msgpack maps over ZeroMQ, never pickle: a message is data, not code.  Every field is
checked here before a single pixel is touched, so a malformed or lying request becomes
a `ProtocolError` with a sentence the user can act on, never a crash.  The plugins'
`tinct_client` carries copies of the few constants it needs (it must not import numpy
or torch); tests/test_protocol.py checks they agree.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

import msgpack
import numpy as np

VERSION = 1
DEFAULT_ENDPOINT = "tcp://127.0.0.1:5571"
DEFAULT_MAX_PIXELS = 100_000_000
LAYOUTS = {"GRAY": 1, "GRAYA": 2, "RGB": 3, "RGBA": 4, "BGRA": 4}
HINT_LAYOUTS = ("RGBA", "BGRA")
SAMPLES = {"u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16), "f32": np.dtype(np.float32)}
ERRORS = ("bad_request", "too_large", "unsupported", "busy", "cancelled", "internal")
REQUESTS = ("hello", "colorize", "suggest", "cancel", "status")
BLOBS = ("pixels", "hints", "selection")  # binary fields, each sent as a frame of its own
BINARY = (bytes, bytearray, memoryview)
OPTIONS = {"quality": str, "vibrancy": (int, float), "edge_sensitivity": (int, float)}


class ProtocolError(Exception):
    """A request tinctd refuses: `code` is one of ERRORS, `message` a sentence for the user."""

    def __init__(self, code: str, message: str):
        assert code in ERRORS, code
        super().__init__(message)
        self.code, self.message = code, message


def max_message_bytes(max_pixels: int) -> int:
    """Largest request worth reading: an RGBA f32 layer, an RGBA u16 hints layer, a selection."""
    return max_pixels * (16 + 8 + 1) + (1 << 20)


def pack(message: dict) -> bytes:
    return msgpack.packb(message, use_bin_type=True)


def frames_of(message: dict) -> list:
    """A message as ZeroMQ frames: a msgpack header naming the binary fields, then each of them.

    Pixels never pass through msgpack, so a 50 MP layer is not copied into and out of a
    packed buffer: ZeroMQ sends the frames straight from the caller's memory.
    """
    blobs = [k for k in BLOBS if message.get(k) is not None]
    header = {k: v for k, v in message.items() if k not in BLOBS}
    header["blobs"] = blobs
    return [pack(header)] + [message[k] for k in blobs]


def unpack(frames: list, max_bytes: int) -> dict:
    """Decode one request from its frames; anything not of the documented shape is `bad_request`."""
    if not frames:
        raise ProtocolError("bad_request", "the request is empty")
    size = sum(len(f) for f in frames)
    if size > max_bytes:
        raise ProtocolError("too_large", f"the request is {size} bytes, more than this tinctd accepts")
    try:
        message = msgpack.unpackb(frames[0], raw=False, strict_map_key=True, max_bin_len=1 << 16,
                                  max_str_len=1 << 16, max_array_len=1 << 10, max_map_len=64, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types for garbage
        raise ProtocolError("bad_request", f"the request is not a valid msgpack message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise ProtocolError("bad_request", "the request must be a msgpack map")
    names = message.pop("blobs", [])
    if (not isinstance(names, list) or len(names) != len(frames) - 1 or len(set(map(str, names))) != len(names)
            or any(n not in BLOBS for n in names)):
        raise ProtocolError("bad_request", f"the request's 'blobs' must name its {len(frames) - 1} binary frames, "
                                           f"each one of {', '.join(BLOBS)}")
    if any(k in message for k in BLOBS):
        raise ProtocolError("bad_request", "binary fields travel as frames of their own, not in the header")
    message.update(zip(names, frames[1:]))
    return message


def field(message: dict, name: str, kinds, required: bool = True, default=None):
    """message[name] if it has type `kinds` (never bool, which msgpack also has); else bad_request."""
    value = message.get(name)
    if value is None:
        if required:
            raise ProtocolError("bad_request", f"the request has no '{name}' field")
        return default
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ProtocolError("bad_request", f"the '{name}' field has the wrong type ({type(value).__name__})")
    return value


@dataclass
class Layer:
    """A raw editor layer as sent: dimensions, channel layout, sample type and bytes."""
    width: int
    height: int
    layout: str
    sample: str
    data: bytes | memoryview

    @property
    def channels(self) -> int:
        return LAYOUTS[self.layout]

    def array(self) -> np.ndarray:
        """(H, W, C) in RGB(A) channel order (BGRA swapped), the sample type's dtype."""
        a = np.frombuffer(self.data, dtype=SAMPLES[self.sample]).reshape(self.height, self.width, self.channels)
        if self.layout == "BGRA":
            a = a[..., [2, 1, 0, 3]]
        if self.sample == "f32" and not np.isfinite(a).all():
            raise ProtocolError("bad_request", "the layer contains NaN or infinite values")
        return np.clip(a, 0.0, 1.0) if self.sample == "f32" else a


def layer(message: dict, prefix: str, width: int, height: int, layouts) -> Layer | None:
    data = field(message, prefix, BINARY, required=prefix == "pixels")
    if data is None:
        return None
    key = "" if prefix == "pixels" else prefix + "_"
    layout = field(message, key + "layout", str, required=prefix == "pixels", default="RGBA")
    sample = field(message, key + "sample", str, required=prefix == "pixels", default="u8")
    if layout not in layouts:
        raise ProtocolError("unsupported", f"pixel layout {layout!r} is not supported; use one of {', '.join(layouts)}")
    if sample not in SAMPLES:
        raise ProtocolError("unsupported", f"sample type {sample!r} is not supported; use one of {', '.join(SAMPLES)}")
    expected = width * height * LAYOUTS[layout] * SAMPLES[sample].itemsize
    if len(data) != expected:
        raise ProtocolError("bad_request", f"the {prefix} are {len(data)} bytes but a {width}x{height} {layout} "
                                           f"{sample} layer needs {expected}")
    return Layer(width, height, layout, sample, data)


@dataclass
class Colorize:
    """A validated colorize (or suggest) request."""
    id: str
    client: str
    document: str | None
    image: Layer
    hints: Layer | None
    selection: np.ndarray | None
    engine: str
    options: dict
    type: str = "colorize"
    x: int = 0
    y: int = 0
    k: int = 8

    @property
    def key(self):
        """Requests with the same key supersede each other while queued (live painting)."""
        return (self.client, self.document) if self.document is not None else None


def parse_job(message: dict, max_pixels: int, engines) -> Colorize:
    """Validate a colorize or suggest request field by field, cheapest checks first."""
    width = field(message, "width", int)
    height = field(message, "height", int)
    if width <= 0 or height <= 0:
        raise ProtocolError("bad_request", f"the layer size {width}x{height} is empty")
    if width * height > max_pixels:
        raise ProtocolError("too_large", f"the layer is {width * height / 1e6:.1f} megapixels; this tinctd accepts "
                                         f"at most {max_pixels / 1e6:.0f} (tinctd --max-megapixels)")
    engine = field(message, "engine", str, required=False, default="optimization")
    if engine not in engines:
        raise ProtocolError("unsupported", f"unknown engine {engine!r}; this tinctd has: {', '.join(engines)}")
    options = field(message, "options", dict, required=False, default={})
    for name, value in options.items():
        if name not in OPTIONS:
            raise ProtocolError("bad_request", f"unknown option {name!r}; known: {', '.join(OPTIONS)}")
        if not isinstance(value, OPTIONS[name]) or isinstance(value, bool):
            raise ProtocolError("bad_request", f"option {name!r} has the wrong type ({type(value).__name__})")
    image = layer(message, "pixels", width, height, tuple(LAYOUTS))
    hints = layer(message, "hints", width, height, HINT_LAYOUTS)
    selection = field(message, "selection", BINARY, required=False)
    if selection is not None:
        if len(selection) != width * height:
            raise ProtocolError("bad_request", f"the selection is {len(selection)} bytes but needs {width * height} "
                                               "(one u8 per pixel)")
        selection = np.frombuffer(selection, np.uint8).reshape(height, width)
    job = Colorize(id=field(message, "id", str), client=field(message, "client", str, required=False, default=""),
                   document=field(message, "document", str, required=False), image=image, hints=hints,
                   selection=selection, engine=engine, options=dict(options), type=message.get("type", "colorize"))
    if job.type == "suggest":
        job.x, job.y, job.k = field(message, "x", int), field(message, "y", int), field(message, "k", int, False, 8)
        if not (0 <= job.x < width and 0 <= job.y < height) or not 1 <= job.k <= 64:
            raise ProtocolError("bad_request", f"the point ({job.x}, {job.y}) or k={job.k} is outside the layer")
    return job


def result_bytes(image: Layer, result: np.ndarray) -> tuple[str, memoryview]:
    """Encode a colorize result (RGB or RGBA, the request's dtype) in the request's layout, without copying.

    GRAY and GRAYA become RGB and RGBA (colour needs three channels); BGRA stays BGRA.
    """
    layout = {"GRAY": "RGB", "GRAYA": "RGBA"}.get(image.layout, image.layout)
    if layout == "BGRA":
        result = result[..., [2, 1, 0, 3]]
    return layout, memoryview(np.ascontiguousarray(result, dtype=SAMPLES[image.sample])).cast("B")


def blend(result: np.ndarray, original: np.ndarray, selection: np.ndarray) -> np.ndarray:
    """result inside the selection, the original outside, feathered edges mixed; exact where 0 or 255."""
    if original.shape[-1] < result.shape[-1]:  # grey original: compare as RGB(A)
        grey = original[..., :1]
        original = np.concatenate([grey, grey, grey, original[..., 1:]], -1)
    s = selection[..., None].astype(np.float32) / 255.0
    mixed = result.astype(np.float32) * s + original.astype(np.float32) * (1 - s)
    if np.issubdtype(result.dtype, np.integer):
        mixed = np.floor(mixed + 0.5)
    out = mixed.astype(result.dtype)
    out[selection == 0] = original[selection == 0]
    out[selection == 255] = result[selection == 255]
    return out


def error(request_id, code: str, message: str) -> dict:
    return {"v": VERSION, "id": request_id, "ok": False, "error": {"code": code, "message": message}}


def is_loopback(endpoint: str) -> bool:
    """Whether a tcp:// endpoint binds only this machine (ipc:// and inproc:// always do)."""
    parts = urlsplit(endpoint)
    if parts.scheme != "tcp":
        return parts.scheme in ("ipc", "inproc")
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
