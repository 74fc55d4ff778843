"""The decisions of the GIMP plug-in that need no GIMP.

Kept out of tinct-colorize.py so they are unit-tested on any Python (tests/test_gimp_logic.py);
that file only moves pixels and layers.  What Krita's plugin decides alike comes from
tinct_plugin (plugins/common, copied in beside this file by the installer); this module adds
GIMP's side: its pixel formats, parasites and menu paths.  Pure standard library: GIMP's Python
has nothing else but pyzmq and msgpack, and this module must import even when those are
missing, so it can explain that they are.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import tinct_plugin
from tinct_plugin import ColorizeError

ADD_HINTS = "Filters → Colorize → Add Hints Layer"
DESELECT = "Select → None"
# The codes of tinctd's own refusals (docs/protocol.md), worded as fragments about the request;
# the client's codes (unavailable, timeout) come as whole sentences written for people.
DAEMON_CODES = ("bad_request", "too_large", "unsupported", "busy", "cancelled", "internal")
# Parasites mark the layers this plug-in made; the payload is the source layer's tattoo, so
# running Colorize with the result or the hints layer selected still finds the photo.
RESULT_PARASITE = "tinct-colorized"
HINTS_PARASITE = "tinct-hints"

# GIMP component type (first word of a Gimp.Precision nick) -> (Babl type, wire sample).
# 32-bit integer, half and double travel as f32: the nearest the daemon accepts without
# losing precision that matters for colour.
_SAMPLES = {
    "u8": ("u8", "u8"),
    "u16": ("u16", "u16"),
    "u32": ("float", "f32"),
    "half": ("float", "f32"),
    "float": ("float", "f32"),
    "double": ("float", "f32"),
}
_BABL_TYPE = {"u8": "u8", "u16": "u16", "f32": "float"}
_SAMPLE_BYTES = {"u8": 1, "u16": 2, "f32": 4}
# The ' in R'G'B' / Y' selects sRGB-encoded values, the ones a PNG holds and the daemon
# expects; "RGBA u8" would hand over linear light.
_BABL_MODEL = {"RGB": "R'G'B'", "RGBA": "R'G'B'A", "GRAY": "Y'", "GRAYA": "Y'A"}
_CHANNELS = {"RGB": 3, "RGBA": 4, "GRAY": 1, "GRAYA": 2}


class GimpRefused(Exception):
    """GIMP refused a call while the plug-in changed the image; the message is GIMP's reason."""


@dataclass(frozen=True)
class PixelFormat:
    """How a layer's pixels are read from GIMP and described to the daemon."""

    layout: str   # RGB, RGBA, GRAY, GRAYA
    sample: str   # u8, u16, f32

    @property
    def babl(self) -> str:
        return f"{_BABL_MODEL[self.layout]} {_BABL_TYPE[self.sample]}"

    @property
    def bytes_per_pixel(self) -> int:
        return _CHANNELS[self.layout] * _SAMPLE_BYTES[self.sample]

    @property
    def has_alpha(self) -> bool:
        return self.layout.endswith("A")


def layer_format(precision_nick: str, is_gray: bool, has_alpha: bool) -> PixelFormat:
    """The format a layer is read in, at its own precision ("u16-non-linear" -> u16)."""
    component = precision_nick.split("-")[0]
    if component not in _SAMPLES:
        raise ColorizeError(f"Colorize does not know GIMP's {precision_nick} precision.")
    layout = ("GRAY" if is_gray else "RGB") + ("A" if has_alpha else "")
    return PixelFormat(layout, _SAMPLES[component][1])


def result_format(request: PixelFormat, reply: dict[str, Any]) -> PixelFormat:
    """The format of the daemon's answer, checked against what was asked.

    The daemon answers grey with RGB (colour needs three channels) and otherwise keeps the
    layout and sample; anything else, or a wrong length, is refused before the image is touched.
    """
    expected = request.layout.replace("GRAY", "RGB")
    fmt = PixelFormat(reply.get("layout"), reply.get("sample"))
    if fmt.layout != expected or fmt.sample != request.sample:
        raise ColorizeError(
            f"The Tinct daemon answered {fmt.layout} {fmt.sample} for {request.layout} "
            f"{request.sample}; update the daemon and the plug-in together.")
    return fmt


def check_reply_size(reply: dict[str, Any], width: int, height: int, fmt: PixelFormat) -> None:
    """Refuse an answer whose size does not match the layer, so no garbage is written."""
    expected = width * height * fmt.bytes_per_pixel
    if (reply.get("width"), reply.get("height")) != (width, height) or len(reply["pixels"]) != expected:
        raise ColorizeError("The Tinct daemon answered with a picture of the wrong size; "
                            "update the daemon and the plug-in together.")


def has_strokes(hints: bytes) -> bool:
    """Whether an RGBA u8 hints buffer has any painted (non-transparent) pixel."""
    alpha = hints[3::4]
    return alpha.count(0) != len(alpha)


def hints_to_send(engine: str, hints: bytes | None, hints_layer_name: str | None,
                  referenced: bool = False) -> bytes | None:
    """The RGBA u8 hints to send, or None (tinct_plugin.hints_to_send, with GIMP's menu path)."""
    painted = hints is not None and has_strokes(hints)
    return tinct_plugin.hints_to_send(engine, hints, painted, hints_layer_name, ADD_HINTS, referenced)


def srgb_u8(linear: Iterable[float]) -> tuple[int, ...]:
    """sRGB-encoded 0..255 of linear-light RGB 0..1, which is how a Gegl.Color gives its colour
    (get_rgba); a palette is sent in sRGB, as the colours look."""
    def encode(c):
        c = min(max(float(c), 0.0), 1.0)
        return 12.92 * c if c <= 0.0031308 else 1.055 * c ** (1 / 2.4) - 0.055
    return tuple(int(round(255 * encode(c))) for c in linear)


def selection_to_send(mask: bytes | None) -> bytes | None:
    """The selection to send, or None (tinct_plugin.selection_to_send, with GIMP's menu path)."""
    return tinct_plugin.selection_to_send(mask, DESELECT)


def source_tattoo(selected_tattoo: int, *marks: int | None) -> int:
    """The photo layer to colorize: the selected layer, or the source a Tinct layer (result
    or hints, whose marks are given) was made for, so either can be selected when re-running."""
    return next((mark for mark in marks if mark is not None), selected_tattoo)


def check_hints_layer(name: str, is_source: bool, has_alpha: bool) -> None:
    """Refuse hints that cannot be strokes: the photo itself, or a layer without transparency
    (every pixel of it would count as a painted hint)."""
    if is_source:
        raise ColorizeError(f'The selected layer is the hints layer "{name}"; select the photo '
                            f"layer and run Colorize again.")
    if not has_alpha:
        raise ColorizeError(f'The hints layer "{name}" has no transparency, so every pixel would '
                            f"count as a stroke; add an alpha channel (Layer → Transparency → Add "
                            f"Alpha Channel), clear it and paint strokes only where you want colour.")


def encode_tattoo(tattoo: int) -> bytes:
    return str(int(tattoo)).encode("ascii")


def decode_tattoo(data: bytes | Iterable[int]) -> int | None:
    """A parasite payload back to a tattoo; None for anything not written by encode_tattoo."""
    try:
        return int(bytes(data).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def change_failed(what: str, exc: BaseException, restored: bool) -> str:
    """The sentence for a step of the image change failing, after the plug-in put back what it
    could; when that was not everything, GIMP's undo still can (the change is one undo group)."""
    reason = str(exc) if isinstance(exc, GimpRefused) else f"{type(exc).__name__}: {exc}"
    if restored:
        return f"GIMP could not {what} ({reason}). The image was not changed."
    return (f"GIMP could not {what} ({reason}), and Colorize could not put everything back; "
            f"choose Edit → Undo to get the image back as it was.")


def error_sentence(exc: BaseException) -> str:
    """The message GIMP shows for a failure (tinct_plugin.error_sentence), except that tinctd's
    refusals ("the layer is 30 megapixels; ...") are made into one that says what happened."""
    if tinct_plugin.is_tinct_error(exc) and exc.code in DAEMON_CODES:
        text = exc.message.strip().rstrip(".")
        if text[1:2].islower():  # "The layer ..." but not "GPU ..."
            text = text[0].lower() + text[1:]
        return f"Tinct could not colorize this layer: {text}. The image was not changed."
    return tinct_plugin.error_sentence(exc, "GIMP", "run installers/install-gimp-plugin.sh again")
