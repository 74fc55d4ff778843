"""The decisions of the GIMP plug-in that need no GIMP.

Kept out of tinct-colorize.py so they are unit-tested on any Python (tests/test_gimp_logic.py);
that file only moves pixels and layers.  Pure standard library: GIMP's Python has nothing else
but pyzmq and msgpack, and this module must import even when those are missing, so it can
explain that they are.
"""

import sys
from dataclasses import dataclass

RESULT_NAME = "Colorized"
HINTS_NAME = "Colorize hints"
DEFAULT_VIBRANCY = 0.65  # the learned engine's own default boldness (tinct.learned), 0 muted .. 1 bold
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


class ColorizeError(Exception):
    """A failure the plug-in detects itself; the message is the sentence GIMP shows."""


class GimpRefused(Exception):
    """GIMP refused a call while the plug-in changed the image; the message is GIMP's reason."""


@dataclass(frozen=True)
class PixelFormat:
    """How a layer's pixels are read from GIMP and described to the daemon."""

    layout: str   # RGB, RGBA, GRAY, GRAYA
    sample: str   # u8, u16, f32

    @property
    def babl(self):
        return f"{_BABL_MODEL[self.layout]} {_BABL_TYPE[self.sample]}"

    @property
    def bytes_per_pixel(self):
        return _CHANNELS[self.layout] * _SAMPLE_BYTES[self.sample]

    @property
    def has_alpha(self):
        return self.layout.endswith("A")


def layer_format(precision_nick, is_gray, has_alpha):
    """The format a layer is read in, at its own precision ("u16-non-linear" -> u16)."""
    component = precision_nick.split("-")[0]
    if component not in _SAMPLES:
        raise ColorizeError(f"Colorize does not know GIMP's {precision_nick} precision.")
    layout = ("GRAY" if is_gray else "RGB") + ("A" if has_alpha else "")
    return PixelFormat(layout, _SAMPLES[component][1])


def result_format(request, reply):
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


def check_reply_size(reply, width, height, fmt):
    """Refuse an answer whose size does not match the layer, so no garbage is written."""
    expected = width * height * fmt.bytes_per_pixel
    if (reply.get("width"), reply.get("height")) != (width, height) or len(reply["pixels"]) != expected:
        raise ColorizeError("The Tinct daemon answered with a picture of the wrong size; "
                            "update the daemon and the plug-in together.")


def has_strokes(hints):
    """Whether an RGBA u8 hints buffer has any painted (non-transparent) pixel."""
    alpha = hints[3::4]
    return alpha.count(0) != len(alpha)


def hints_to_send(engine, hints, hints_layer_name):
    """The hints bytes to send, or None; refuses an optimization run without strokes.

    The learned engine colorizes a photo on its own, so no strokes is a valid request; the
    optimization engine only spreads colours it is given, so it would return grey.
    """
    if hints is not None and has_strokes(hints):
        return hints
    if engine == "learned":
        return None
    where = (f'on the "{hints_layer_name}" layer' if hints_layer_name
             else "on a hints layer (Filters → Colorize → Add Hints Layer)")
    raise ColorizeError(
        f"The Optimization engine spreads the colours you paint: paint a few strokes {where} "
        f"over the photo and run Colorize again, or choose the Learned engine, which "
        f"colorizes without strokes.")


def selection_to_send(mask):
    """The u8 selection mask over the layer to send, None when everything is selected.

    A selection that misses the layer entirely would change nothing, which is refused with
    a sentence rather than sending the whole layer for no result.
    """
    if mask is None or mask.count(255) == len(mask):
        return None
    if mask.count(0) == len(mask):
        raise ColorizeError("The selection does not touch this layer; select part of the "
                            "photo or remove the selection (Select → None) and run Colorize again.")
    return mask


def engine_options(engine, vibrancy):
    """Options for the daemon: vibrancy only means something to the learned engine."""
    return {"vibrancy": float(vibrancy)} if engine == "learned" else {}


def source_tattoo(selected_tattoo, *marks):
    """The photo layer to colorize: the selected layer, or the source a Tinct layer (result
    or hints, whose marks are given) was made for, so either can be selected when re-running."""
    return next((mark for mark in marks if mark is not None), selected_tattoo)


def check_hints_layer(name, is_source, has_alpha):
    """Refuse hints that cannot be strokes: the photo itself, or a layer without transparency
    (every pixel of it would count as a painted hint)."""
    if is_source:
        raise ColorizeError(f'The selected layer is the hints layer "{name}"; select the photo '
                            f"layer and run Colorize again.")
    if not has_alpha:
        raise ColorizeError(f'The hints layer "{name}" has no transparency, so every pixel would '
                            f"count as a stroke; add an alpha channel (Layer → Transparency → Add "
                            f"Alpha Channel), clear it and paint strokes only where you want colour.")


def encode_tattoo(tattoo):
    return str(int(tattoo)).encode("ascii")


def decode_tattoo(data):
    """A parasite payload back to a tattoo; None for anything not written by encode_tattoo."""
    try:
        return int(bytes(data).decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None


def change_failed(what, exc, restored):
    """The sentence for a step of the image change failing, after the plug-in put back what it
    could; when that was not everything, GIMP's undo still can (the change is one undo group)."""
    reason = str(exc) if isinstance(exc, GimpRefused) else f"{type(exc).__name__}: {exc}"
    if restored:
        return f"GIMP could not {what} ({reason}). The image was not changed."
    return (f"GIMP could not {what} ({reason}), and Colorize could not put everything back; "
            f"choose Edit → Undo to get the image back as it was.")


def error_sentence(exc):
    """The message GIMP shows for a failure: our own and the client's sentences as they are,
    tinctd's refusals ("the layer is 30 megapixels; ...") made into one that says what happened."""
    if isinstance(exc, ColorizeError):
        return str(exc)
    if hasattr(exc, "code") and hasattr(exc, "message"):  # tinct_client.TinctError
        if exc.code not in DAEMON_CODES:
            return exc.message
        text = exc.message.strip().rstrip(".")
        if text[1:2].islower():  # "The layer ..." but not "GPU ..."
            text = text[0].lower() + text[1:]
        return f"Tinct could not colorize this layer: {text}. The image was not changed."
    if isinstance(exc, ImportError) and exc.name in ("zmq", "msgpack"):
        version = "%d.%d" % sys.version_info[:2]
        return (f"Colorize needs pyzmq and msgpack in GIMP's Python {version}, and {exc.name} "
                f"is missing; run installers/install-gimp-plugin.sh again.")
    return (f"Colorize failed unexpectedly ({type(exc).__name__}: {exc}); the image was not "
            f"changed. Please report this.")
