"""How a Krita layer's pixels travel to tinctd and back.

tinctd reads sRGB-encoded RGB(A) in u8, u16 or f32.  Krita's 8- and 16-bit RGBA layers
are stored in B, G, R, A order and its float ones in R, G, B, A, so U8, U16 and F32 layers
in an sRGB profile go as they are (the first two as BGRA).  Anything else - F16, a linear
or wide-gamut profile, grey, CMYK, Lab - is first converted by Krita itself (on a copy,
losslessly where it matters: F16 -> F32) into the nearest of those formats; the answer is
converted back into the space the "Colorized" layer lives in.  Pure Python (no Krita, no
numpy): these decisions are unit-tested on any Python.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .tinct_plugin import ColorizeError

# Profiles whose values are sRGB-encoded, which is what tinctd's Lab conversion assumes.
SRGB_PROFILE = "sRGB-elle-V2-srgbtrc.icc"
SRGB_ENCODED = {SRGB_PROFILE, "sRGB built-in", "sRGB IEC61966-2.1"}
# Krita depth -> the depth it travels in: half floats become f32, the nearest tinctd reads.
WIRE_DEPTH = {"U8": "U8", "U16": "U16", "F16": "F32", "F32": "F32"}
# RGBA depth -> (layout, sample) of Krita's own byte order for that depth.
WIRE = {"U8": ("BGRA", "u8"), "U16": ("BGRA", "u16"), "F32": ("RGBA", "f32")}
SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}


class FormatError(ColorizeError):
    """A layer Tinct cannot read, or an answer that does not fit the request; the text is for the user."""


@dataclass(frozen=True)
class Space:
    """A Krita colour space, as Node.colorModel(), colorDepth() and colorProfile() name it."""

    model: str
    depth: str
    profile: str


@dataclass(frozen=True)
class WireFormat:
    """The space pixels are in while they travel, and how tinctd is told about them."""

    space: Space
    layout: str
    sample: str

    @property
    def bytes_per_pixel(self) -> int:
        return 4 * SAMPLE_BYTES[self.sample]

    def size(self, width: int, height: int) -> int:
        return width * height * self.bytes_per_pixel


def _depth(space):
    if space.depth not in WIRE_DEPTH:
        raise FormatError(f"Tinct cannot read {space.model} {space.depth} layers; convert the image to "
                          "8 or 16 bits or to 16 or 32-bit float (Image → Convert Image Color Space).")
    return WIRE_DEPTH[space.depth]


def wire_format(space: Space) -> WireFormat:
    """The format a layer in `space` is sent in; when its `space` differs, Krita converts a copy first."""
    depth = _depth(space)
    direct = space.model == "RGBA" and space.depth == depth and space.profile in SRGB_ENCODED
    layout, sample = WIRE[depth]
    return WireFormat(space if direct else Space("RGBA", depth, SRGB_PROFILE), layout, sample)


def result_space(source: Space) -> Space:
    """Where the Colorized layer lives: the photo's own space when that is RGB (so nothing about
    the image changes but the colour), else RGB at the photo's depth in sRGB."""
    if source.model == "RGBA":
        return source
    _depth(source)
    return Space("RGBA", source.depth, SRGB_PROFILE)


def check_reply(reply: dict[str, Any], fmt: WireFormat, width: int, height: int) -> bytes:
    """Refuse an answer that does not match the request, before anything is written."""
    same = (reply.get("layout"), reply.get("sample")) == (fmt.layout, fmt.sample)
    if not same or (reply.get("width"), reply.get("height")) != (width, height) \
            or len(reply.get("pixels") or b"") != fmt.size(width, height):
        raise FormatError("The Tinct daemon answered with pixels that do not fit the layer; "
                          "update the daemon and the plugin together.")
    return reply["pixels"]


def alpha_bytes(data: bytes, fmt: WireFormat) -> bytes:
    """The bytes of the alpha channel (the fourth sample of every pixel), for cheap 'anything painted?' tests."""
    step, size = fmt.bytes_per_pixel, SAMPLE_BYTES[fmt.sample]
    data = bytes(data)
    return b"".join(data[3 * size + i::step] for i in range(size))


def has_paint(data: bytes, fmt: WireFormat) -> bool:
    """Whether any pixel is not fully transparent (a float alpha of -0.0 counts as paint: harmless)."""
    return bool(alpha_bytes(data, fmt).strip(b"\0"))
