"""The wire protocol between the editor plugins and tinctd (docs/protocol.md), in one place.

msgpack maps over ZeroMQ, never pickle: a message is data, not code.  Every field is
checked here before a single pixel is touched, so a malformed or lying request becomes
a `ProtocolError` with a sentence the user can act on, never a crash.  The plugins'
`tinct_client` carries copies of the few constants it needs (it must not import numpy
or torch); tests/test_protocol.py checks they agree.
"""
from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast, overload

import msgpack
import numpy as np

from tinct.engines import QUALITIES

VERSION = 2
DEFAULT_MAX_PIXELS = 100_000_000
LAYOUTS = {"GRAY": 1, "GRAYA": 2, "RGB": 3, "RGBA": 4, "BGRA": 4}
HINT_LAYOUTS = ("RGBA", "BGRA")
SAMPLES = {"u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16), "f32": np.dtype(np.float32)}
ERRORS = ("bad_request", "too_large", "unsupported", "busy", "cancelled", "internal")
REQUESTS = ("hello", "colorize", "suggest", "cancel", "status")
BLOBS = ("pixels", "hints", "selection", "reference")  # binary fields: frames of their own, or in shared memory
# Optional parts of version 2 a tinctd understands, listed in its hello (an older one ignores unknown fields):
# "reference" = the colour reference photo with its swatches, and the palette; "partial" = a colorize
# with `progressive: true` is answered twice: its `live` result as a `partial` reply, then the answer;
# "variations" = a learned colorize with `variations: N` is answered with N layers back to back.
FEATURES = ("reference", "partial", "variations")
MAX_VARIATIONS = 8  # tinct.engines.learned.variations.MAX_VARIATIONS (a test keeps them equal)
REFERENCE_LAYOUTS = ("RGB", "RGBA", "BGRA")
MAX_SWATCHES = 64
MAX_PALETTE = 256
NUMBER_OPTIONS = {"vibrancy": (0.0, 1.0), "edge_sensitivity": (0.01, 100.0)}  # inclusive ranges
HEADER_BYTES = 1 << 16  # a header is a few hundred bytes; anything longer is not one of ours
MAX_DEPTH = 4           # maps and lists inside the header: ours nest two deep ("shm": {"in": [fd, ino]})
MAX_FRAMES = 1 + len(BLOBS)  # a header and at most one frame per binary field
BLOCK_BYTES = 1 << 19   # rows of a result encoded at a time (encode_result): a cache's worth


class ProtocolError(Exception):
    """A request tinctd refuses: `code` is one of ERRORS, `message` a sentence for the user.

    `transport`: the shared memory the request names is what failed, so the client may send
    the same request again another way (files instead of memfd buffers, frames instead of files)."""

    def __init__(self, code: str, message: str, transport: bool = False):
        assert code in ERRORS, code
        super().__init__(message)
        self.code, self.message, self.transport = code, message, transport


def bad(message: str) -> ProtocolError:
    return ProtocolError("bad_request", message)


def describe(value: Any) -> str:
    """A bounded summary of a value a client sent, for error sentences and the log: its type and
    size, or a short printable text, never a repr of whatever nesting it holds."""
    if isinstance(value, bool) or value is None or isinstance(value, int):
        return repr(value) if not isinstance(value, int) or abs(value) < 1 << 64 else "a huge number"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 and value.isprintable() else f"a text of {len(value)} characters"
    if isinstance(value, (list, tuple, dict)):
        return f"a {'map' if isinstance(value, dict) else 'list'} of {len(value)}"
    try:
        return f"{type(value).__name__} of {len(value)} bytes"
    except TypeError:
        return type(value).__name__


def depth(value: object, limit: int = MAX_DEPTH) -> int:
    """How deep maps and lists nest in `value`, counted without recursion and stopping past `limit`."""
    deepest, level, todo = 0, 0, [(value, 0)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, (list, dict)):
            level += 1
            deepest = max(deepest, level)
            if deepest > limit:
                break
            todo.extend((v, level) for v in (item.values() if isinstance(item, dict) else item))
            if isinstance(item, dict):
                todo.extend((k, level) for k in item)
    return deepest


def max_message_bytes(max_pixels: int) -> int:
    """Largest request worth reading: an RGBA f32 layer, an RGBA f32 hints layer, a selection, an RGBA f32
    reference."""
    return max_pixels * (16 + 16 + 1 + 16) + HEADER_BYTES


def pack(message: dict) -> bytes:
    return cast(bytes, msgpack.packb(message, use_bin_type=True))  # packb's inferred type has a None


def frames_of(message: dict) -> list:
    """A message as ZeroMQ frames: a msgpack header naming the binary fields, then each of them.

    Pixels never pass through msgpack, so a 50 MP layer is not copied into and out of a
    packed buffer: ZeroMQ sends the frames straight from the caller's memory.
    """
    blobs = [k for k in BLOBS if message.get(k) is not None]
    header = {k: v for k, v in message.items() if k not in BLOBS}
    header["blobs"] = blobs
    return [pack(header)] + [message[k] for k in blobs]


@dataclass
class SharedBlob:
    """A binary field a local client left in its shared-memory file (tinct.serve.shm), read when the job runs."""
    offset: int
    length: int

    def __len__(self) -> int:
        return self.length


@dataclass
class Shared:
    """A request's shared memory (tinct.serve.shm): where its binary fields are, where the result goes.

    Either two files in tinctd's folder (`file`, `reply`) or the client's two memfd buffers
    (`pid`, and [fd, inode] of each), with the folder's `key`; `size` bytes of fields from the start."""
    size: int
    file: str = ""
    reply: str = ""
    pid: int = 0
    source: tuple[int, int] | tuple[()] = ()
    target: tuple[int, int] | tuple[()] = ()
    key: str = ""
    maps: tuple = ()  # memfd: the two buffers as tinctd mapped them, once checked (tinct.serve.shm.Buffers)

    @property
    def memfd(self) -> bool:
        return self.pid > 0

    def reply_spec(self, length: int) -> dict:
        """The reply's `shm` map: the result, `length` bytes from the start of the reply buffer."""
        where = {"out": list(self.target)} if self.memfd else {"file": self.reply}
        return {**where, "blobs": ["pixels"], "lengths": [length]}


BINARY = (bytes, bytearray, memoryview, SharedBlob)


def _names(value, what: str) -> list:
    if (not isinstance(value, list) or any(not isinstance(n, str) or n not in BLOBS for n in value)
            or len(set(value)) != len(value)):
        raise bad(f"{what} must list distinct binary fields, each one of {', '.join(BLOBS)}")
    return value


def _buffer(spec: dict, name: str) -> tuple[int, int]:
    value = spec.get(name)
    if (not isinstance(value, list) or len(value) != 2
            or any(isinstance(n, bool) or not isinstance(n, int) or not 0 <= n < 1 << 63 for n in value)):
        raise bad(f"the 'shm' field's '{name}' must be [file descriptor, inode], two whole numbers")
    return value[0], value[1]


def _shared(message: dict, framed: list) -> tuple[Shared, dict]:
    """Validate the `shm` map: {file, reply | pid, in, out, key; blobs, lengths}; the fields it places,
    as SharedBlobs."""
    spec = message.pop("shm")
    if not isinstance(spec, dict) or ("pid" in spec) == ("file" in spec):
        raise bad("the 'shm' field must be a map with either file and reply, or pid, in, out and key; "
                  "and blobs and lengths")
    if "pid" in spec:
        pid = field(spec, "pid", int)
        if not 0 < pid < 1 << 31:
            raise bad("the 'shm' field's 'pid' must be a process id")
        where: dict[str, Any] = dict(pid=pid, source=_buffer(spec, "in"), target=_buffer(spec, "out"),
                                     key=field(spec, "key", str))
    else:
        where = dict(file=field(spec, "file", str), reply=field(spec, "reply", str))
    lengths = field(spec, "lengths", list)
    names = _names(spec.get("blobs"), "the 'shm' field's 'blobs'")
    if len(lengths) != len(names) or any(isinstance(n, bool) or not isinstance(n, int) or n < 0 for n in lengths):
        raise bad("the 'shm' field's 'lengths' must give one byte count for each of its blobs")
    if set(names) & set(framed):
        raise bad("a binary field is sent both as a frame and in shared memory")
    blobs, offset = {}, 0
    for name, length in zip(names, lengths):
        blobs[name] = SharedBlob(offset, length)
        offset += length
    return Shared(offset, **where), blobs


def unpack(frames: list, max_bytes: int) -> dict:
    """Decode one message from its frames; anything not of the documented shape is `bad_request`.

    Binary fields come back as the frames themselves (zero-copy) or as SharedBlob placeholders,
    with the request's `Shared` files under the key "shm".
    """
    if not frames:
        raise bad("the request is empty")
    if len(frames) > MAX_FRAMES:
        raise bad(f"the request has {len(frames)} frames; a header and at most {MAX_FRAMES - 1} binary fields")
    if len(frames[0]) > HEADER_BYTES:
        raise bad(f"the request's header is {len(frames[0])} bytes; pixels belong in frames of their own")
    try:
        message = msgpack.unpackb(frames[0], raw=False, strict_map_key=True, max_bin_len=HEADER_BYTES,
                                  max_str_len=HEADER_BYTES, max_array_len=1 << 10, max_map_len=64, max_ext_len=0)
    except Exception as exc:  # msgpack raises many types for garbage
        raise bad(f"the request is not a valid msgpack message ({type(exc).__name__})") from None
    if not isinstance(message, dict):
        raise bad("the request must be a msgpack map")
    if depth(message) > MAX_DEPTH:
        raise bad(f"the request nests maps and lists more than {MAX_DEPTH} deep")
    if any(k in message for k in BLOBS):
        raise bad("binary fields travel as frames of their own or in shared memory, not in the header")
    names = _names(message.pop("blobs", []), "the request's 'blobs'")
    if len(names) != len(frames) - 1:
        raise bad(f"the request's 'blobs' names {len(names)} binary frames but {len(frames) - 1} follow")
    message.update(zip(names, frames[1:]))
    if "shm" in message:
        message["shm"], placed = _shared(message, names)
        message.update(placed)
    size = sum(len(f) for f in frames) + (message["shm"].size if "shm" in message else 0)
    if size > max_bytes:
        raise ProtocolError("too_large", f"the request is {size} bytes, more than this tinctd accepts "
                                         f"({max_bytes}; tinctd --max-megapixels)")
    return message


_T = TypeVar("_T")


@overload
def field(message: dict, name: str, kinds: type[_T], required: Literal[True] = ..., default: object = ...) -> _T: ...
@overload
def field(message: dict, name: str, kinds: type[_T], required: bool, default: _T) -> _T: ...
@overload
def field(message: dict, name: str, kinds: type[_T], required: bool = ..., default: None = ...) -> _T | None: ...
@overload
def field(message: dict, name: str, kinds: tuple[type, ...], required: bool = ...,
          default: None = ...) -> bytes | bytearray | memoryview | SharedBlob | None: ...
def field(message: dict, name: str, kinds: type | tuple[type, ...], required: bool = True,
          default: object = None) -> Any:
    """message[name] if it has type `kinds` (never bool, which msgpack also has); else bad_request."""
    value = message.get(name)
    if value is None:
        if required:
            raise bad(f"the request has no '{name}' field")
        return default
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise bad(f"the '{name}' field has the wrong type ({type(value).__name__})")
    return value


@dataclass
class Layer:
    """A raw editor layer as sent: dimensions, channel layout, sample type and bytes."""
    width: int
    height: int
    layout: str
    sample: str
    data: bytes | bytearray | memoryview | SharedBlob

    @property
    def channels(self) -> int:
        return LAYOUTS[self.layout]

    def raw(self) -> np.ndarray:
        """(H, W, C) exactly as sent, channels in wire order, without a copy."""
        assert not isinstance(self.data, SharedBlob)  # Colorize.attach resolved it
        return np.frombuffer(self.data, dtype=SAMPLES[self.sample]).reshape(self.height, self.width, self.channels)

    def colour(self, raw: np.ndarray) -> np.ndarray:
        """The colour channels of `raw` in RGB order, (H, W, 1) grey or (H, W, 3), as a view."""
        return raw[..., 2::-1] if self.layout == "BGRA" else raw[..., :1 if self.channels < 3 else 3]

    def engine_input(self, raw: np.ndarray) -> np.ndarray:
        """What tinct.colorize takes: grey (H, W) or RGB (H, W, 3), floats checked and clipped to 0..1.

        Alpha stays out: the engines never look at it, and encode_result copies it from `raw`."""
        a = self.colour(raw)
        a = a[..., 0] if a.shape[-1] == 1 else a
        return _unit(a) if self.sample == "f32" else a

    def rgba(self) -> np.ndarray:
        """(H, W, 4) in RGBA order (BGRA swapped), floats checked and clipped: a hints layer."""
        a = self.raw()
        a = a[..., [2, 1, 0, 3]] if self.layout == "BGRA" else a
        return _unit(a) if self.sample == "f32" else a


def _unit(a: np.ndarray) -> np.ndarray:
    if not np.isfinite(a).all():
        raise bad("the layer contains NaN or infinite values")
    return np.clip(a, 0.0, 1.0)


def layer(message: dict, prefix: str, width: int, height: int, layouts: tuple[str, ...]) -> Layer | None:
    data = field(message, prefix, BINARY, required=prefix == "pixels")
    if data is None:
        return None
    key = "" if prefix == "pixels" else prefix + "_"
    layout = field(message, key + "layout", str, required=prefix == "pixels", default="RGBA")
    sample = field(message, key + "sample", str, required=prefix == "pixels", default="u8")
    if layout not in layouts:
        raise ProtocolError("unsupported", f"pixel layout {describe(layout)} is not supported; "
                                           f"use one of {', '.join(layouts)}")
    if sample not in SAMPLES:
        raise ProtocolError("unsupported", f"sample type {describe(sample)} is not supported; "
                                           f"use one of {', '.join(SAMPLES)}")
    expected = width * height * LAYOUTS[layout] * SAMPLES[sample].itemsize
    if len(data) != expected:
        raise bad(f"the {prefix} are {len(data)} bytes but a {width}x{height} {layout} {sample} layer needs {expected}")
    return Layer(width, height, layout, sample, data)


def check_options(options: dict) -> dict:
    for name, value in options.items():
        if name == "quality":
            if not isinstance(value, str) or value not in QUALITIES:
                raise bad(f"option 'quality' must be one of {', '.join(QUALITIES)}, not {describe(value)}")
        elif name in NUMBER_OPTIONS:
            low, high = NUMBER_OPTIONS[name]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
                raise bad(f"option {describe(name)} must be a number from {low:g} to {high:g}, not {describe(value)}")
        else:
            raise bad(f"unknown option {describe(name)}; known: quality, {', '.join(NUMBER_OPTIONS)}")
    return dict(options)


@dataclass
class Colorize:
    """A validated colorize (or suggest) request; `client` is its owner, the connection's (tinctd sets it)."""
    id: str
    client: bytes
    document: str | None
    image: Layer
    hints: Layer | None
    selection: bytes | bytearray | memoryview | SharedBlob | None
    engine: str
    options: dict
    shared: Shared | None = None
    type: str = "colorize"
    x: int = 0
    y: int = 0
    k: int = 8
    reference: Layer | None = None
    swatches: list | tuple = ()  # [[rx0, ry0, rx1, ry1, px0, py0, px1, py1], ...]
    palette: list | None = None                   # [[r, g, b], ...] 0..255
    progressive: bool = False                     # a `partial` reply (the live quality) before the answer
    variations: int | None = None                 # N layers in the answer instead of one (learned engine)
    seed: int = 0                                 # which variations are drawn

    @property
    def key(self) -> tuple[bytes, str]:
        """A request is known by its owner and id: the same pair again is a resend of the same request."""
        return self.client, self.id

    @property
    def document_key(self) -> tuple[bytes, str] | None:
        """Requests with the same document key supersede each other while queued (live painting)."""
        return (self.client, self.document) if self.document is not None else None

    @property
    def signature(self) -> tuple:
        """What a resend must repeat: everything but the bytes themselves (too costly to compare)."""
        hints = self.hints and (self.hints.layout, self.hints.sample)
        reference = self.reference and (self.reference.width, self.reference.height, self.reference.layout,
                                        self.reference.sample)
        return (self.type, self.image.width, self.image.height, self.image.layout, self.image.sample, hints,
                self.selection is not None, self.engine, sorted(self.options.items()), self.document,
                self.x, self.y, self.k, reference, self.swatches, self.palette, self.progressive, self.variations,
                self.seed)

    def attach(self, view: memoryview) -> None:
        """Point every SharedBlob at its bytes in `view`, the shared file's content."""
        def resolve(data):
            return view[data.offset:data.offset + data.length] if isinstance(data, SharedBlob) else data

        self.image.data = resolve(self.image.data)
        if self.hints is not None:
            self.hints.data = resolve(self.hints.data)
        if self.reference is not None:
            self.reference.data = resolve(self.reference.data)
        self.selection = resolve(self.selection)

    def guidance(self) -> dict:
        """tinct.colorize's reference, swatches and palette arguments, as far as the request gives them."""
        found: dict[str, Any] = {}
        if self.reference is not None:
            found["reference"] = self.reference.rgba()
            found["swatches"] = [(s[:4], s[4:]) for s in self.swatches]
        if self.palette is not None:
            found["palette"] = self.palette
        return found

    def selection_mask(self) -> np.ndarray | None:
        if self.selection is None:
            return None
        assert not isinstance(self.selection, SharedBlob)  # Colorize.attach resolved it
        return np.frombuffer(self.selection, np.uint8).reshape(self.image.height, self.image.width)


def parse_job(message: dict, max_pixels: int, engines: Collection[str]) -> Colorize:
    """Validate a colorize or suggest request field by field, cheapest checks first."""
    width = field(message, "width", int)
    height = field(message, "height", int)
    if width <= 0 or height <= 0:
        raise bad(f"the layer size {width}x{height} is empty")
    if width * height > max_pixels:
        raise ProtocolError("too_large", f"the layer is {width * height / 1e6:.3g} megapixels; this tinctd accepts "
                                         f"at most {max_pixels / 1e6:.3g} (tinctd --max-megapixels)")
    kind = field(message, "type", str)
    engine = field(message, "engine", str, required=False, default="learned" if kind == "suggest" else "optimization")
    if engine not in engines:
        raise ProtocolError("unsupported", f"unknown engine {describe(engine)}; this tinctd has: {', '.join(engines)}")
    options = check_options(field(message, "options", dict, required=False, default={}))
    image = layer(message, "pixels", width, height, tuple(LAYOUTS))
    hints = layer(message, "hints", width, height, HINT_LAYOUTS)
    assert image is not None  # the pixels are required: layer raised if they were missing
    selection = field(message, "selection", BINARY, required=False)
    if selection is not None and len(selection) != width * height:
        raise bad(f"the selection is {len(selection)} bytes but needs {width * height} (one u8 per pixel)")
    job = Colorize(id=field(message, "id", str), client=b"", document=field(message, "document", str, required=False),
                   image=image, hints=hints,
                   selection=selection, engine=engine, options=options, shared=message.get("shm"), type=kind)
    job.reference, job.swatches, job.palette = guidance(message, max_pixels)
    job.progressive = message.get("progressive", False)
    if not isinstance(job.progressive, bool):
        raise bad(f"the 'progressive' field must be true or false, not {describe(job.progressive)}")
    if kind == "colorize":
        job.variations, job.seed = variations(message, job, max_pixels)
    if kind == "suggest":
        job.x, job.y, job.k = field(message, "x", int), field(message, "y", int), field(message, "k", int, False, 8)
        if not (0 <= job.x < width and 0 <= job.y < height) or not 1 <= job.k <= 64:
            raise bad(f"the point ({job.x}, {job.y}) must lie in the {width}x{height} layer and k={job.k} be 1..64")
    return job


def whole_numbers(value: object, count: int, low: int, high: int) -> bool:
    return (isinstance(value, list) and len(value) == count
            and all(isinstance(n, int) and not isinstance(n, bool) and low <= n <= high for n in value))


def guidance(message: dict, max_pixels: int) -> tuple[Layer | None, list, list | None]:
    """The optional colour guidance of a colorize request: a reference photo (`reference` with
    `reference_width`, `reference_height`, `reference_layout`, `reference_sample`), its `swatches`
    and a `palette`.  Pixel values themselves (grey, transparent) are judged by tinct.colorize."""
    reference = None
    if message.get("reference") is not None:
        rw, rh = field(message, "reference_width", int), field(message, "reference_height", int)
        if rw <= 0 or rh <= 0:
            raise bad(f"the reference size {rw}x{rh} is empty")
        if rw * rh > max_pixels:
            raise ProtocolError("too_large", f"the reference is {rw * rh / 1e6:.3g} megapixels; this tinctd accepts "
                                             f"at most {max_pixels / 1e6:.3g} (tinctd --max-megapixels)")
        if field(message, "reference_layout", str, required=False, default="RGBA") in ("GRAY", "GRAYA"):
            raise bad("the reference is a grey layer: it has no colour to transfer; send a colour photo")
        reference = layer(message, "reference", rw, rh, REFERENCE_LAYOUTS)
    swatches = field(message, "swatches", list, required=False, default=[])
    if swatches and reference is None:
        raise bad("swatches pair rectangles of a reference with the layer's; send the reference too")
    if len(swatches) > MAX_SWATCHES or not all(whole_numbers(s, 8, 0, 1 << 31) for s in swatches):
        raise bad(f"'swatches' must be at most {MAX_SWATCHES} lists of 8 whole numbers: a rectangle "
                  "x0, y0, x1, y1 in the reference, then one in the layer")
    palette = field(message, "palette", list, required=False)
    if palette is not None and (not 1 <= len(palette) <= MAX_PALETTE
                                or not all(whole_numbers(c, 3, 0, 255) for c in palette)):
        raise bad(f"'palette' must be 1 to {MAX_PALETTE} colours, each [r, g, b] with whole numbers 0..255")
    return reference, swatches, palette


def variations(message: dict, job: Colorize, max_pixels: int) -> tuple[int | None, int]:
    """A colorize's `variations` (1..MAX_VARIATIONS layers in the answer) and `seed` (0..2**63-1; which
    ones): all of them must fit in one message of `max_bytes`, and in a reply buffer of their own."""
    count = field(message, "variations", int, required=False)
    seed = field(message, "seed", int, required=False, default=0)
    if count is None:
        return None, seed
    if not 1 <= count <= MAX_VARIATIONS or not 0 <= seed < 1 << 63:
        raise bad(f"'variations' must be 1 to {MAX_VARIATIONS} and 'seed' a whole number from 0 to 2**63 - 1, "
                  f"not {describe(count)} and {describe(seed)}")
    size = layer_bytes(job.image)
    if count * size > max_message_bytes(max_pixels):
        most = max(1, max_message_bytes(max_pixels) // size)
        raise ProtocolError("too_large", f"{count} variations of this {job.image.width}x{job.image.height} layer "
                                         f"are {count * size / 1e6:.4g} MB, more than one answer of this tinctd may "
                                         f"hold ({max_message_bytes(max_pixels) / 1e6:.4g} MB); ask for at most "
                                         f"{most}, or colorize a smaller layer")
    shared = job.shared
    if isinstance(shared, Shared) and shared.memfd and shared.source == shared.target:
        raise bad("the answer's variations need a reply buffer of their own: 'out' must not be 'in'")
    return count, seed


def output_layout(layout: str) -> str:
    """GRAY and GRAYA come back as RGB and RGBA (colour needs three channels); the rest as sent."""
    return {"GRAY": "RGB", "GRAYA": "RGBA"}.get(layout, layout)


def blend(result: np.ndarray, original: np.ndarray, selection: np.ndarray) -> np.ndarray:
    """result*s + original*(1-s) for s = selection/255, per pixel: exactly the original where s is 0
    and exactly the result where it is 255.  result (H, W, 3); original (H, W, 1|3) of the same dtype."""
    sel = selection[..., None]
    out = np.where(sel == 255, result, original).astype(result.dtype, copy=False)
    partial = (selection > 0) & (selection < 255)
    if partial.any():
        s = selection[partial][:, None].astype(np.float32) / 255.0
        mixed = (result[partial].astype(np.float32) * s
                 + np.broadcast_to(original, result.shape)[partial].astype(np.float32) * (1 - s))
        if np.issubdtype(result.dtype, np.integer):
            mixed = np.floor(mixed + 0.5)
        out[partial] = mixed.astype(result.dtype)
    return out


def layer_bytes(image: Layer) -> int:
    """How long one result layer for `image` is (grey comes back as RGB)."""
    return image.width * image.height * LAYOUTS[output_layout(image.layout)] * SAMPLES[image.sample].itemsize


def result_bytes(job: Colorize) -> int:
    """How long the reply's pixels are: one layer, or `variations` of them (nothing for `suggest`)."""
    return layer_bytes(job.image) * (job.variations or 1) if job.type == "colorize" else 0


def encode_result(job: Colorize, result: np.ndarray, raw: np.ndarray,
                  buffer: memoryview | None = None) -> tuple[str, memoryview]:
    """The engine's (H, W, 3) RGB result as the reply's bytes, written once into the request's layout
    and sample type (into `buffer` when given): the selection applied against the input `raw`, alpha
    copied from it exactly.

    Interleaving channels is byte-by-byte work, three times a plain copy here: it goes a block of
    rows at a time (BLOCK_BYTES), each block staying in the CPU cache while its channels are
    filled, and a 4-channel input's block is copied whole first, alpha with it, unless `buffer`
    is the input itself (a client's memfd buffer, the result replacing the layer): alpha is there."""
    layout = output_layout(job.image.layout)
    shape = (job.image.height, job.image.width, LAYOUTS[layout])
    dtype = SAMPLES[job.image.sample]
    out = np.empty(shape, dtype) if buffer is None else np.frombuffer(buffer, dtype).reshape(shape)
    rgb = np.asarray(result, dtype=out.dtype)
    mask = job.selection_mask()
    if mask is not None:
        rgb = blend(rgb, job.image.colour(raw), mask)
    order = (2, 1, 0) if layout == "BGRA" else (0, 1, 2)
    in_place = raw.shape == shape and raw.ctypes.data == out.ctypes.data
    rows = max(1, BLOCK_BYTES // out[0].nbytes)
    for y in range(0, shape[0], rows):
        block, colour, source = out[y:y + rows], rgb[y:y + rows], raw[y:y + rows]
        if shape[-1] == 4 and not in_place:
            if source.shape == block.shape:  # RGBA, BGRA: the input block, alpha included
                block[...] = source
            else:
                block[..., 3] = source[..., -1]
        for target, channel in enumerate(order):
            block[..., target] = colour[..., channel]
    return layout, memoryview(out).cast("B")  # pyright: ignore[reportArgumentType]  # numpy: __buffer__ is 3.12+


def error(request_id: str | None, code: str, message: str, transport: bool = False) -> dict:
    """An error reply; `transport` says the request may succeed sent another way (ProtocolError)."""
    err: dict[str, str | bool] = {"code": code, "message": message}
    if transport:
        err["transport"] = True
    return {"v": VERSION, "id": request_id, "ok": False, "error": err}
