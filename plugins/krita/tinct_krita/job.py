"""What the Krita plugin asks tinctd for, decided without Krita.

Which layers take part (the photo, its hints, the result to replace), what is sent (hints
only when painted, the selection only when partial, the engine's options) and the sentences
a failure shows.  Layers are known by name, the only mark Krita's Python API lets a layer
carry across sessions: the plugin makes "Colorize hints" above the photo and "Colorized"
directly above the photo, and looks for them in the run of such layers above it, so either
one can be the active layer when Colorize runs again.
"""

import sys
from dataclasses import dataclass

from . import formats

RESULT_NAME = "Colorized"
HINTS_NAME = "Colorize hints"
TINCT_NAMES = (RESULT_NAME, HINTS_NAME)
ENGINES = ("optimization", "learned")
# Vibrancy slider, 0..100 %, sent as tinctd's `vibrancy` option, the learned engine's boldness
# 0..1 (the engine turns it into its annealing temperature).  The default, 65 %, is tinctd's
# own default (0.65, the temperature 0.38 that Zhang et al. found most natural).
DEFAULT_VIBRANCY = 65
LIVE_DEBOUNCE = 0.3   # seconds without new strokes before Live mode colorizes
SUGGESTIONS = 8


class ColorizeError(Exception):
    """A failure the plugin detects itself; the text is the sentence Krita shows."""


@dataclass
class Settings:
    """The docker's choices, shared with Filter → Colorize (Tinct)…."""

    engine: str = "optimization"
    vibrancy: int = DEFAULT_VIBRANCY
    live: bool = False


def saved_settings(engine, vibrancy):
    """Settings from their kritarc text; anything unreadable (an old or hand-edited kritarc) is the default."""
    try:
        vibrancy = min(max(int(vibrancy), 0), 100)
    except (TypeError, ValueError):
        vibrancy = DEFAULT_VIBRANCY
    return Settings(engine=engine if engine in ENGINES else ENGINES[0], vibrancy=vibrancy)


def engine_options(settings, live=False):
    """Live runs use the fast preview solve; vibrancy only means something to the learned engine."""
    options = {"quality": "preview" if live else "final"}
    if settings.engine == "learned":
        options["vibrancy"] = settings.vibrancy / 100
    return options


@dataclass(frozen=True)
class Stack:
    """Indices into the sibling list: the photo, and the Tinct layers above it (None: not there)."""

    source: int
    hints: object = None
    result: object = None

    @property
    def top(self):
        """The highest layer of the photo's stack: a new hints layer goes above it."""
        return max(i for i in (self.source, self.hints, self.result) if i is not None)


def find_stack(layers, active):
    """The photo and its Tinct layers among `layers`, [(name, type)] bottom to top as Krita lists
    a node's children; `active` is the active layer's index.  A Tinct layer being active means
    the photo below it."""
    source = active
    while source >= 0 and layers[source][0] in TINCT_NAMES:
        source -= 1
    if source < 0:
        raise ColorizeError("Select the photo layer to colorize in the Layers docker.")
    name, kind = layers[source]
    if kind != "paintlayer":
        raise ColorizeError(f'"{name}" is a {kind.replace("layer", " layer")}; Colorize works on a paint '
                            "layer. Select the photo layer, or convert this one (Layer → Convert → to "
                            "Paint Layer).")
    found = {}
    for i in range(source + 1, len(layers)):
        if layers[i][0] not in TINCT_NAMES:
            break
        found.setdefault(layers[i][0], i)
    return Stack(source, found.get(HINTS_NAME), found.get(RESULT_NAME))


def check_hints_layer(layers, stack):
    name, kind = layers[stack.hints]
    if kind != "paintlayer":
        raise ColorizeError(f'The hints layer "{name}" is a {kind.replace("layer", " layer")}; paint your '
                            "strokes on a paint layer (Filter → Add Colorize Hints Layer).")


def hints_to_send(engine, hints, fmt):
    """The hints bytes to send, or None; refuses an optimization run without strokes.

    The learned engine colorizes a photo on its own, so no strokes is a valid request; the
    optimization engine only spreads colours it is given, so it would return grey."""
    if hints is not None and formats.has_paint(hints, fmt):
        return hints
    if engine == "learned":
        return None
    where = f'on the "{HINTS_NAME}" layer' if hints is not None else \
        "on a hints layer (Filter → Add Colorize Hints Layer)"
    raise ColorizeError(f"The Optimization engine spreads the colours you paint: paint a few strokes {where} "
                        "and run Colorize again, or choose the Learned engine, which colorizes without strokes.")


def selection_to_send(mask):
    """The u8 selection mask over the layer to send; None when everything is selected.

    tinctd blends by it, so pixels outside come back unchanged.  A selection that misses the
    layer entirely would change nothing, which is refused with a sentence instead."""
    if mask is None:
        return None
    mask = bytes(mask)
    if not mask.strip(b"\xff"):
        return None
    if not mask.strip(b"\0"):
        raise ColorizeError("The selection does not touch this layer; select part of the photo or "
                            "remove the selection (Select → Deselect) and run Colorize again.")
    return mask


def layer_rect(bounds, canvas):
    """The part of a layer Colorize works on: its pixels (x, y, w, h) that lie on the canvas."""
    x0, y0 = max(bounds[0], canvas[0]), max(bounds[1], canvas[1])
    x1 = min(bounds[0] + bounds[2], canvas[0] + canvas[2])
    y1 = min(bounds[1] + bounds[3], canvas[1] + canvas[3])
    if x1 <= x0 or y1 <= y0:
        raise ColorizeError("The photo layer has no pixels on the canvas; select the layer that holds the photo.")
    return (x0, y0, x1 - x0, y1 - y0)


def contains(outer, inner):
    """Whether rectangle `inner` (x, y, w, h) lies within `outer`; an empty one lies anywhere."""
    if inner[2] <= 0 or inner[3] <= 0:
        return True
    return outer[0] <= inner[0] and outer[1] <= inner[1] and \
        inner[0] + inner[2] <= outer[0] + outer[2] and inner[1] + inner[3] <= outer[1] + outer[3]


def _first_difference(a, b):
    """Index of the first differing byte of two equal-length, different byte strings (bisection on slices)."""
    lo, hi = 0, len(a)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[lo:mid] != b[lo:mid]:
            hi = mid
        else:
            lo = mid
    return lo


def changed_point(old, new, width, bytes_per_pixel):
    """A pixel (x, y) on the latest change between two snapshots of a layer, or None if none.

    This is where the user last painted, the pixel the suggested colours are for: the middle
    of the changed span on the middle changed row, which lies on the stroke whatever its shape."""
    if old is None or len(old) != len(new) or old == new:
        return None
    row = width * bytes_per_pixel
    rows = [y for y in range(len(new) // row) if old[y * row:(y + 1) * row] != new[y * row:(y + 1) * row]]
    y = rows[len(rows) // 2]
    a, b = old[y * row:(y + 1) * row], new[y * row:(y + 1) * row]
    left = _first_difference(a, b) // bytes_per_pixel
    right = (row - 1 - _first_difference(a[::-1], b[::-1])) // bytes_per_pixel
    return ((left + right) // 2, y)


def expected(exc):
    """Whether a failure is one the plugin or tinctd put into words (the rest are bugs: traceback logged)."""
    return isinstance(exc, (ColorizeError, formats.FormatError)) or hasattr(exc, "code") and hasattr(exc, "message")


def error_sentence(exc):
    """The message Krita shows for a failure: the client's and our own sentences as they are."""
    if expected(exc):
        return str(exc)
    if isinstance(exc, ImportError) and exc.name in ("zmq", "msgpack"):
        version = "%d.%d" % sys.version_info[:2]
        return (f"Tinct needs pyzmq and msgpack in Krita's Python {version}, and {exc.name} is missing: "
                "install them (Debian, Ubuntu: apt install python3-zmq python3-msgpack) or run "
                "installers/install-krita-plugin.sh from a Tinct checkout, which fetches them for Krita.")
    return (f"Colorize failed unexpectedly ({type(exc).__name__}: {exc}); no layer was changed. "
            "Please report this.")
