"""What the Krita plugin asks tinctd for, decided without Krita.

Which layers take part (the photo, its hints, the result to replace, a reference layer of
any open document), what is sent (hints only when painted, the selection only when partial,
the engine's options, a palette: the foreground and background colours or one of Krita's) and the
sentences a failure shows.  Layers are known by name, the only mark Krita's Python API lets a layer
carry across sessions: the plugin makes "Colorize hints" above the photo and "Colorized"
directly above the photo, and looks for them in the run of such layers above it, so either
one can be the active layer when Colorize runs again.  What GIMP's plug-in decides alike comes
from tinct_plugin (plugins/common, vendored into this package by the installer).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import formats, tinct_plugin
from .tinct_plugin import ENGINES, HINTS_NAME, RESULT_NAME, ColorizeError

if TYPE_CHECKING:
    from typing_extensions import Buffer

TINCT_NAMES = (RESULT_NAME, HINTS_NAME)
ADD_HINTS = "Filter → Add Colorize Hints Layer"
DESELECT = "Select → Deselect"
# Vibrancy slider, 0..100 %, sent as tinctd's `vibrancy` option, the learned engine's boldness
# 0..1 (the engine turns it into its annealing temperature).
DEFAULT_VIBRANCY = round(tinct_plugin.DEFAULT_VIBRANCY * 100)
LIVE_DEBOUNCE = 0.3   # seconds without new strokes before Live mode colorizes
SUGGESTIONS = 8
FOREGROUND_BACKGROUND = "foreground and background"   # Settings.palette: those two colours


@dataclass
class Settings:
    """The docker's choices, shared with Filter → Colorize (Tinct)…."""

    engine: str = "optimization"
    vibrancy: int = DEFAULT_VIBRANCY
    live: bool = False
    vibrancy_chosen: bool = False  # False: the default, which follows what tinctd advertises
    # the reference layer, (document key, layer key) as document.key gives them, or None; not saved,
    # since documents come and go
    reference: tuple[str, str] | None = None
    # steer the learned engine towards a palette: "" none, FOREGROUND_BACKGROUND, or a Krita palette's name
    palette: str = ""


@dataclass(frozen=True)
class Variations:
    """Variations that came back, waiting for a click: the photo's document (its key), the
    document.Target the layers are for and tinctd's replies, one layer each."""

    doc_key: str
    target: Any
    replies: list[dict]

    def thumbnails(self, size: int) -> list[tuple[int, int, bytes]]:
        """Each layer scaled to fit `size` x `size`, RGBA u8 (tinct_plugin.thumbnail), for the docker's row."""
        return [tinct_plugin.thumbnail(reply, size) for reply in self.replies]


def advertised(settings: Settings, hello: dict | None) -> bool:
    """Take tinctd's own default vibrancy (its hello's `defaults`) unless the user chose one; True if it changed."""
    if settings.vibrancy_chosen or not hello:
        return False
    vibrancy = round(tinct_plugin.default_vibrancy(hello) * 100)
    changed, settings.vibrancy = vibrancy != settings.vibrancy, vibrancy
    return changed


def saved_settings(engine: str | None, vibrancy: str | int | None, palette: str | None = None) -> Settings:
    """Settings from their kritarc text; anything unreadable (an old or hand-edited kritarc) is the default."""
    try:
        vibrancy, chosen = min(max(int(vibrancy), 0), 100), True
    except (TypeError, ValueError):
        vibrancy, chosen = DEFAULT_VIBRANCY, False
    return Settings(engine=engine if engine in ENGINES else ENGINES[0], vibrancy=vibrancy, vibrancy_chosen=chosen,
                    palette=palette if isinstance(palette, str) else "")


def engine_options(settings: Settings, live: bool = False) -> dict:
    """tinct_plugin.engine_options for the docker's settings: Live runs use the fast preview solve."""
    return tinct_plugin.engine_options(settings.engine, settings.vibrancy / 100, "preview" if live else "final")


@dataclass(frozen=True)
class Stack:
    """Indices into the sibling list: the photo, and the Tinct layers above it (None: not there)."""

    source: int
    hints: int | None = None
    result: int | None = None

    @property
    def top(self) -> int:
        """The highest layer of the photo's stack: a new hints layer goes above it."""
        return max(i for i in (self.source, self.hints, self.result) if i is not None)


def find_stack(layers: Sequence[tuple[str, str]], active: int) -> Stack:
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


def check_hints_layer(layers: Sequence[tuple[str, str]], stack: Stack) -> None:
    name, kind = layers[stack.hints]
    if kind != "paintlayer":
        raise ColorizeError(f'The hints layer "{name}" is a {kind.replace("layer", " layer")}; paint your '
                            "strokes on a paint layer (Filter → Add Colorize Hints Layer).")


def hints_to_send(engine: str, hints: bytes | None, fmt: formats.WireFormat, referenced: bool = False) -> bytes | None:
    """The hints to send, or None (tinct_plugin.hints_to_send, with Krita's hints layer and menu path)."""
    painted = hints is not None and formats.has_paint(hints, fmt)
    return tinct_plugin.hints_to_send(engine, hints, painted, HINTS_NAME if hints is not None else None, ADD_HINTS,
                                      referenced)


def palette_name(settings: Settings) -> str:
    """How the palette chosen is named in sentences."""
    if settings.palette == FOREGROUND_BACKGROUND:
        return "palette of the foreground and background colours"
    return f'palette "{settings.palette}"'


def palette_to_send(settings: Settings, colours: Sequence[Sequence[int]] | None) -> list | None:
    """The palette to send (tinct_plugin.palette_to_send), the chosen one's `colours`, for the learned engine."""
    return tinct_plugin.palette_to_send(settings.engine, colours if settings.palette else None,
                                        palette_name(settings))


def selection_to_send(mask: Buffer | None) -> bytes | None:
    """The selection to send, or None (tinct_plugin.selection_to_send, with Krita's menu path)."""
    return tinct_plugin.selection_to_send(mask, DESELECT)


def layer_rect(bounds: tuple[int, int, int, int], canvas: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
    """The part of a layer Colorize works on: its pixels (x, y, w, h) that lie on the canvas."""
    x0, y0 = max(bounds[0], canvas[0]), max(bounds[1], canvas[1])
    x1 = min(bounds[0] + bounds[2], canvas[0] + canvas[2])
    y1 = min(bounds[1] + bounds[3], canvas[1] + canvas[3])
    if x1 <= x0 or y1 <= y0:
        raise ColorizeError("The photo layer has no pixels on the canvas; select the layer that holds the photo.")
    return (x0, y0, x1 - x0, y1 - y0)


def contains(outer: tuple[int, int, int, int], inner: tuple[int, int, int, int]) -> bool:
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


def changed_point(old: bytes | None, new: bytes, width: int, bytes_per_pixel: int) -> tuple[int, int] | None:
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


def error_sentence(exc: BaseException) -> str:
    """The message Krita shows for a failure (tinct_plugin.error_sentence, with Krita's remedy)."""
    return tinct_plugin.error_sentence(exc, "Krita", "install them (Debian, Ubuntu: apt install python3-zmq "
                                       "python3-msgpack) or run installers/install-krita-plugin.sh from a "
                                       "Tinct checkout, which fetches them for Krita")
