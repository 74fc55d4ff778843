"""tinct_plugin: the decisions the GIMP and Krita plugins share, written once.

What a colorize request carries (hints only when painted, the selection only when partial,
the engine's options, the colour guidance: a reference layer and a palette), the names of
the layers the plugins make, the default vibrancy and the sentences a failure shows.  Each
plugin passes in only what differs between editors: its menu paths, its name, how to
reinstall it.  Pure standard library, vendored beside tinct_client into
both plugins: it must import even when pyzmq or msgpack are missing, so it can explain that.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, overload

if TYPE_CHECKING:
    from typing_extensions import Buffer

RESULT_NAME = "Colorized"
HINTS_NAME = "Colorize hints"
ENGINES = ("optimization", "learned")
# The learned engine's boldness, 0 muted .. 1 bold, when tinctd's hello does not say: tinctd's
# own default (the annealing temperature 0.38 that Zhang et al. found most natural).
DEFAULT_VIBRANCY = 0.65
GUIDANCE_FEATURE = "reference"   # hello's `features` lists it when tinctd takes a reference and a palette
MAX_PALETTE = 256                # colours in a palette (docs/protocol.md, Colour guidance)
VARIATIONS_FEATURE = "variations"  # hello's `features` lists it when tinctd answers several colorizations
VARIATIONS = 4                   # how many an editor asks for at a time: a row of thumbnails to choose from


class ColorizeError(Exception):
    """A failure a plugin detects itself; the message is the sentence the editor shows."""


def default_vibrancy(hello: dict | None = None) -> float:
    """The vibrancy to start from: the one tinctd advertises in hello, else DEFAULT_VIBRANCY."""
    value = ((hello or {}).get("defaults") or {}).get("vibrancy")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1:
        return float(value)
    return DEFAULT_VIBRANCY


def hints_to_send(engine: str, hints: bytes | None, painted: bool, layer_name: str | None,
                  add_hints: str, referenced: bool = False) -> bytes | None:
    """The hints to send, or None; refuses an optimization run without strokes or a reference.

    The learned engine colorizes a photo on its own, so no strokes is a valid request; the
    optimization engine only spreads colours it is given (by strokes or a `referenced` photo),
    so without either it would return grey.  `painted` says whether `hints` (None: no hints
    layer) has a stroke, `layer_name` names the hints layer read (None: there is none) and
    `add_hints` is the editor's menu path that makes one.
    """
    if painted:
        return hints
    if engine == "learned" or referenced:
        return None
    where = f'on the "{layer_name}" layer' if layer_name else f"on a hints layer ({add_hints})"
    raise ColorizeError(f"The Optimization engine spreads the colours you paint: paint a few strokes {where} "
                        "over the photo and run Colorize again, choose a colour photo as the reference, or "
                        "choose the Learned engine, which colorizes without strokes.")


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


def reference_fields(name: str, width: int, height: int, layout: str, sample: str,
                     read: Callable[[], Buffer]) -> dict[str, Any]:
    """The colorize request's fields for the reference layer `name`, read by `read` as `layout`
    and `sample` only once it is known to be worth sending: a grey layer has no colour to give
    and an empty one nothing at all (tinctd would refuse both, in fewer words)."""
    if layout.startswith("GRAY"):
        raise ColorizeError(f'The reference layer "{name}" is grey, so it has no colours to give; choose a '
                            "colour photo as the reference, or none.")
    if width <= 0 or height <= 0:
        raise ColorizeError(f'The reference layer "{name}" is empty; choose a colour photo as the reference, '
                            "or none.")
    return {"reference": read(), "reference_width": int(width), "reference_height": int(height),
            "reference_layout": layout, "reference_sample": sample}


def palette_to_send(engine: str, colours: Iterable[Sequence[int]] | None, name: str = "palette") -> list | None:
    """The palette to send, [[r, g, b]] 0..255 without repeats, or None: no colours asked for, or
    the optimization engine, which spreads strokes and takes no palette (like vibrancy, the
    choice then waits unused).  `name` says where the colours came from, for the refusals."""
    if colours is None or engine != "learned":
        return None
    palette: list[list[int]] = []
    for colour in colours:
        rgb = [min(max(int(round(c)), 0), 255) for c in colour][:3]
        if rgb not in palette:
            palette.append(rgb)
    if not palette:
        raise ColorizeError(f"The {name} has no colours; add some, or colorize without a palette.")
    if len(palette) > MAX_PALETTE:
        raise ColorizeError(f"The {name} has {len(palette)} colours; Tinct takes at most {MAX_PALETTE}. Choose "
                            "a smaller palette.")
    return palette


def swatches_to_send(selection: Sequence[int] | None, reference_size: Sequence[int],
                     photo_size: Sequence[int]) -> list | None:
    """A selection on the reference's own image as the request's one swatch (Welsh et al. 2002,
    §3.2): the whole photo takes colour only from that part of the reference; None without one.

    `selection` is its bounding box (x, y, width, height) in the reference layer's pixels, which
    is clipped to the layer; one that misses the layer is refused, not silently dropped."""
    if selection is None:
        return None
    x, y, width, height = selection
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + width, reference_size[0]), min(y + height, reference_size[1])
    if x1 <= x0 or y1 <= y0:
        raise ColorizeError("The selection on the reference's image does not touch the reference layer; select "
                            "the part of the reference to take colours from, or remove that selection.")
    return [[int(x0), int(y0), int(x1), int(y1), 0, 0, int(photo_size[0]), int(photo_size[1])]]


def guidance_fields(reference: dict[str, Any] | None, palette: list | None,
                    swatches: list | None = None) -> dict[str, Any] | None:
    """The guidance fields of a request (tinct_client's `guidance`), or None when there are none."""
    fields = dict(reference or {})
    if palette is not None:
        fields["palette"] = palette
    if swatches:
        fields["swatches"] = swatches
    return fields or None


def check_guidance(hello: dict, fields: dict[str, Any]) -> None:
    """Refuse guidance this tinctd cannot take: an older one, which would ignore it (so the result
    would silently lack the reference's colours), or a reference larger than its limit."""
    if GUIDANCE_FEATURE not in (hello.get("features") or ()):
        raise ColorizeError("This Tinct daemon is older than colour from a reference photo or a palette; update "
                            "Tinct, or colorize without a reference and palette.")
    limit = (hello.get("limits") or {}).get("max_pixels")
    size = fields.get("reference_width", 0) * fields.get("reference_height", 0)
    if limit and size > limit:
        raise ColorizeError(f"The reference is {size / 1e6:.3g} megapixels; this Tinct daemon accepts at most "
                            f"{limit / 1e6:.3g}. Scale a copy of it down (it only lends its colours) and choose "
                            "that, or start tinctd with a larger --max-megapixels.")


def variations_unavailable(hello: dict | None, engine: str, referenced: bool = False) -> str | None:
    """Why variations cannot be asked for (the sentence a disabled button's tooltip shows), or None.

    They come from the learned engine without a reference photo (docs/protocol.md, Variations) and
    from a tinctd whose `hello` lists the feature; without a hello yet (None) they are allowed, and
    `colorize` asks tinctd before sending."""
    if engine != "learned":
        return "Variations come from the Learned engine; choose it to ask for some."
    if referenced:
        return "Variations take no reference photo; choose none as the reference to ask for some."
    if hello is not None and VARIATIONS_FEATURE not in (hello.get("features") or ()):
        return "This Tinct daemon is older than variations; update Tinct to ask for some."
    return None


@overload
def colorize(client: Any, guidance: dict[str, Any] | None = None, *, variations: None = None,
             **request: Any) -> dict: ...
@overload
def colorize(client: Any, guidance: dict[str, Any] | None = None, *, variations: int,
             **request: Any) -> list[dict]: ...
def colorize(client: Any, guidance: dict[str, Any] | None = None, *, variations: int | None = None,
             **request: Any) -> dict | list[dict]:
    """`client.colorize(**request)` (a tinct_client.Client) with the colour `guidance`, once tinctd's
    hello (the client's last, else a new one) says it takes it, and `variations` (then a list of N
    replies), once it says it makes them for this request."""
    hello = (client.info or client.hello()) if guidance or variations else {}
    if guidance:
        check_guidance(hello, guidance)
    if variations is None:
        return client.colorize(guidance=guidance, **request)
    referenced = bool(guidance) and ("reference" in guidance or "swatches" in guidance)
    reason = variations_unavailable(hello, request.get("engine", "optimization"), referenced)
    if reason:
        raise ColorizeError(reason)
    return client.colorize(guidance=guidance, variations=variations, **request)


# sample -> (memoryview format, the value of full intensity: None for floats in 0..1)
_SAMPLES = {"u8": ("B", 255), "u16": ("H", 65535), "f32": ("f", None)}


def thumbnail(reply: dict[str, Any], size: int) -> tuple[int, int, bytes]:
    """A reply's layer scaled down to fit `size` x `size` (the nearest pixel, as small pictures to
    choose from need no more) as (width, height, RGBA u8 bytes): any layout and sample tinctd answers."""
    width, height, layout = int(reply["width"]), int(reply["height"]), reply["layout"]
    code, full = _SAMPLES[reply["sample"]]
    samples = memoryview(reply["pixels"]).cast("B").cast(code)
    names = "GA" if layout == "GRAYA" else ("G" if layout == "GRAY" else layout)
    order = [names.index(c) if c in names else names.index("G") for c in "RGB"]
    alpha = names.index("A") if "A" in names else None
    scale = min(1.0, size / max(width, height, 1))
    w, h = max(1, round(width * scale)), max(1, round(height * scale))
    out = bytearray()
    for y in range(h):
        row = min(height - 1, int((y + 0.5) * height / h)) * width
        for x in range(w):
            at = (row + min(width - 1, int((x + 0.5) * width / w))) * len(names)
            values = [samples[at + i] for i in order] + [samples[at + alpha] if alpha is not None else full or 1.0]
            out += bytes(min(255, max(0, round(v * 255 / (full or 1)))) for v in values)
    return w, h, bytes(out)


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
