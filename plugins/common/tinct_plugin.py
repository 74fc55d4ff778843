"""tinct_plugin: the decisions the GIMP and Krita plugins share, written once.

What a colorize request carries (hints only when painted, the selection only when partial,
the engine's options), the names of the layers the plugins make, the default vibrancy and the
sentences a failure shows.  Each plugin passes in only what differs between editors: its menu
paths, its name, how to reinstall it.  Pure standard library, vendored beside tinct_client into
both plugins: it must import even when pyzmq or msgpack are missing, so it can explain that.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import Buffer

RESULT_NAME = "Colorized"
HINTS_NAME = "Colorize hints"
ENGINES = ("optimization", "learned")
# The learned engine's boldness, 0 muted .. 1 bold, when tinctd's hello does not say: tinctd's
# own default (the annealing temperature 0.38 that Zhang et al. found most natural).
DEFAULT_VIBRANCY = 0.65


class ColorizeError(Exception):
    """A failure a plugin detects itself; the message is the sentence the editor shows."""


def default_vibrancy(hello: dict | None = None) -> float:
    """The vibrancy to start from: the one tinctd advertises in hello, else DEFAULT_VIBRANCY."""
    value = ((hello or {}).get("defaults") or {}).get("vibrancy")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return DEFAULT_VIBRANCY


def hints_to_send(engine: str, hints: bytes | None, painted: bool, layer_name: str | None,
                  add_hints: str) -> bytes | None:
    """The hints to send, or None; refuses an optimization run without strokes.

    The learned engine colorizes a photo on its own, so no strokes is a valid request; the
    optimization engine only spreads colours it is given, so it would return grey.  `painted`
    says whether `hints` (None: no hints layer) has a stroke, `layer_name` names the hints layer
    read (None: there is none) and `add_hints` is the editor's menu path that makes one.
    """
    if painted:
        return hints
    if engine == "learned":
        return None
    where = f'on the "{layer_name}" layer' if layer_name else f"on a hints layer ({add_hints})"
    raise ColorizeError(f"The Optimization engine spreads the colours you paint: paint a few strokes {where} "
                        "over the photo and run Colorize again, or choose the Learned engine, which colorizes "
                        "without strokes.")


def selection_to_send(mask: Buffer | None, deselect: str) -> bytes | None:
    """The u8 selection mask over the layer to send; None when everything is selected.

    tinctd blends by it, so pixels outside come back unchanged.  A selection that misses the
    layer entirely would change nothing, which is refused with a sentence naming the editor's
    `deselect` menu path instead.
    """
    if mask is None:
        return None
    mask = bytes(mask)
    if not mask.strip(b"\xff"):
        return None
    if not mask.strip(b"\0"):
        raise ColorizeError("The selection does not touch this layer; select part of the photo or "
                            f"remove the selection ({deselect}) and run Colorize again.")
    return mask


def engine_options(engine: str, vibrancy: float, quality: str | None = None) -> dict:
    """Options for tinctd: vibrancy (0..1) only means something to the learned engine; `quality`
    ("preview" or "final") when the plugin chooses one."""
    options: dict[str, str | float] = {} if quality is None else {"quality": quality}
    if engine == "learned":
        options["vibrancy"] = float(vibrancy)
    return options


def is_tinct_error(exc: BaseException) -> bool:
    """Whether `exc` is tinct_client's TinctError, known by its shape: this module must not import
    the client, which needs pyzmq."""
    return hasattr(exc, "code") and hasattr(exc, "message")


def expected(exc: BaseException) -> bool:
    """Whether a failure is one a plugin or tinctd put into words (the rest are bugs)."""
    return isinstance(exc, ColorizeError) or is_tinct_error(exc)


def error_sentence(exc: BaseException, editor: str, reinstall: str) -> str:
    """The message the editor shows for a failure: the plugin's and the client's sentences as they
    are, a missing pyzmq or msgpack with what to do (`reinstall`), anything else as a bug."""
    if expected(exc):
        return str(exc)
    if isinstance(exc, ImportError) and exc.name in ("zmq", "msgpack"):
        version = "%d.%d" % sys.version_info[:2]
        return (f"Colorize needs pyzmq and msgpack in {editor}'s Python {version}, and {exc.name} is missing: "
                f"{reinstall}.")
    return (f"Colorize failed unexpectedly ({type(exc).__name__}: {exc}); the image was not changed. "
            "Please report this.")
