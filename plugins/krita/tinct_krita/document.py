"""The plugin's hands on a Krita document: reading layers, writing the Colorized layer.

Only Krita's Python API for documents and nodes is used here (duck-typed, no import of
krita), so tests/test_krita_logic.py runs it against a small stand-in of those classes and
tests/test_krita.py against the real thing.  Every decision comes from job.py and
formats.py; everything that can fail (reading, the daemon, checking the answer, colour
conversion) happens before the document is touched, so a failure never changes a layer.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import formats, job, tinct_plugin
from .formats import Space

if TYPE_CHECKING:  # Krita's own classes, for the reader: this module never imports krita
    from krita import Document, Node
    from PyQt5.QtCore import QRect


@dataclass(frozen=True)
class Target:
    """What an answer is for: the photo layer (by uniqueId), the rectangle, and how to write it."""

    source: str
    rect: tuple[int, int, int, int]
    fmt: formats.WireFormat
    space: Space   # the Colorized layer's colour space


@dataclass(frozen=True)
class Hints:
    """A snapshot of the hints layer over the photo's rectangle, for Live mode and suggestions."""

    source: str
    rect: tuple[int, int, int, int]
    pixels: bytes
    fmt: formats.WireFormat


def key(node: Node) -> str:
    """A node's identity across Python wrappers (Krita makes a new wrapper on every call)."""
    return node.uniqueId().toString()


def space_of(node: Node) -> Space:
    return Space(node.colorModel(), node.colorDepth(), node.colorProfile())


def rect_of(qrect: QRect) -> tuple[int, int, int, int]:
    return (qrect.x(), qrect.y(), qrect.width(), qrect.height())


def active_layer(doc: Document | None) -> Node:
    """The active layer; for an active mask, the layer it belongs to."""
    node = doc.activeNode() if doc is not None else None
    if node is None:
        raise job.ColorizeError("Open a photo and select its layer in the Layers docker first.")
    if node.type().endswith("mask"):
        node = node.parentNode()
    return node


def siblings(node: Node) -> tuple[list[Node], int]:
    """The node's parent's children, bottom to top, and the node's index among them."""
    parent = node.parentNode()
    if parent is None:  # the image's root, or a layer removed meanwhile
        raise job.ColorizeError("Select the photo layer to colorize in the Layers docker.")
    layers = parent.childNodes()
    return layers, [key(n) for n in layers].index(key(node))


def stack_of(node: Node) -> tuple[list[Node], job.Stack]:
    layers, index = siblings(node)
    return layers, job.find_stack([(n.name(), n.type()) for n in layers], index)


def find_node(doc: Document, uid: str) -> Node | None:
    """The node with this uniqueId anywhere in the document, or None."""
    todo = [doc.rootNode()]
    while todo:
        node = todo.pop()
        if key(node) == uid:
            return node
        todo.extend(node.childNodes())
    return None


def read_pixels(node: Node, rect: tuple[int, int, int, int], fmt: formats.WireFormat) -> bytes:
    """The node's pixels over `rect` in fmt.space: as they are, or from a copy Krita converts."""
    if space_of(node) != fmt.space:
        copy = node.duplicate()
        if not copy.setColorSpace(fmt.space.model, fmt.space.depth, fmt.space.profile):
            raise formats.FormatError(f'Krita could not convert the layer "{node.name()}" to '
                                      f"{fmt.space.model} {fmt.space.depth} for Tinct.")
        node = copy
    data = bytes(node.pixelData(*rect))
    if len(data) != fmt.size(rect[2], rect[3]):
        raise formats.FormatError(f'The layer "{node.name()}" did not give the pixels expected of a '
                                  f"{fmt.space.model} {fmt.space.depth} layer.")
    return data


def hints_layer(doc: Document | None) -> Node | None:
    """The active photo's hints layer, or None where there is none or no photo is selected (for
    watching it, which should stay silent about that)."""
    if doc is None or doc.activeNode() is None:
        return None
    try:
        layers, stack = stack_of(active_layer(doc))
    except job.ColorizeError:
        return None
    return layers[stack.hints] if stack.hints is not None else None


def read_hints(doc: Document) -> Hints | None:
    """The active photo's hints layer over the photo, or None where it has none."""
    source = doc_source(doc)
    layers, stack = stack_of(source)
    if stack.hints is None:
        return None
    job.check_hints_layer([(n.name(), n.type()) for n in layers], stack)
    rect = job.layer_rect(rect_of(source.bounds()), (0, 0, doc.width(), doc.height()))
    node = layers[stack.hints]
    fmt = formats.wire_format(space_of(node))
    return Hints(key(source), rect, read_pixels(node, rect, fmt), fmt)


def reference_layers(documents: Sequence[Document]) -> list[tuple[tuple[str, str], str]]:
    """Every paint layer of every open document as ((document key, layer key), label), for the
    reference picker; the label names the document (its file, else its title) and the layer."""
    found = []
    for doc in documents:
        title = os.path.basename(doc.fileName() or "") or doc.name() or "Untitled"
        todo = list(reversed(doc.rootNode().childNodes()))   # top first, as the Layers docker lists them
        while todo:
            node = todo.pop(0)
            if node.type() == "paintlayer":
                found.append(((key(doc.rootNode()), key(node)), f"{title} › {node.name()}"))
            todo[:0] = reversed(node.childNodes())
    return found


def read_reference(documents: Sequence[Document], choice: tuple[str, str] | None, photo_doc: Document,
                   photo_size: tuple[int, int]) -> tuple[dict[str, Any] | None, list | None]:
    """The request's fields for the chosen reference layer (None: no reference), its pixels on its
    own document's canvas in the format they travel in, and its swatches: a selection in the
    reference's document, when that is another one (in the photo's own, the selection says which
    pixels may change), means the photo takes colour from the selected part only."""
    if choice is None:
        return None, None
    doc = next((d for d in documents if key(d.rootNode()) == choice[0]), None)
    node = find_node(doc, choice[1]) if doc is not None else None
    if node is None:
        raise job.ColorizeError("The reference layer is gone (its document was closed or the layer removed); "
                                "choose another reference in the Tinct docker, or none.")
    fmt = formats.wire_format(space_of(node))
    layout = "GRAY" if node.colorModel().startswith("GRAY") else fmt.layout
    bounds, canvas = rect_of(node.bounds()), (0, 0, doc.width(), doc.height())
    x0, y0 = max(bounds[0], 0), max(bounds[1], 0)
    rect = (x0, y0, min(bounds[0] + bounds[2], canvas[2]) - x0, min(bounds[1] + bounds[3], canvas[3]) - y0)
    fields = tinct_plugin.reference_fields(node.name(), rect[2], rect[3], layout, fmt.sample,
                                           lambda: read_pixels(node, rect, fmt))
    selection = doc.selection() if key(doc.rootNode()) != key(photo_doc.rootNode()) else None
    if selection is None:
        return fields, None
    box = (selection.x() - rect[0], selection.y() - rect[1], selection.width(), selection.height())
    return fields, tinct_plugin.swatches_to_send(box, rect[2:], photo_size)


def doc_source(doc: Document) -> Node:
    layers, stack = stack_of(active_layer(doc))
    return layers[stack.source]


def prepare(doc: Document, settings: job.Settings, live: bool = False, hints: Hints | None = None,
            documents: Sequence[Document] = (), colours: Sequence[Sequence[int]] | None = None,
            ) -> tuple[dict[str, Any], Target]:
    """(keyword arguments for tinct_plugin.colorize, Target) for the active photo; raises with a sentence.

    `hints`: a snapshot already read (Live mode reads it to see whether it changed); `documents`: the
    open ones, where the settings' reference layer is looked for; `colours`: the foreground and
    background colours as sRGB u8, the palette when the settings ask for one."""
    source = doc_source(doc)
    rect = job.layer_rect(rect_of(source.bounds()), (0, 0, doc.width(), doc.height()))
    fmt = formats.wire_format(space_of(source))
    if hints is None:
        hints = read_hints(doc)
    reference, swatches = read_reference(documents, settings.reference, doc, rect[2:])
    painted = job.hints_to_send(settings.engine, hints.pixels if hints else None, hints.fmt if hints else fmt,
                                reference is not None)
    selection = doc.selection()
    mask = job.selection_to_send(selection.pixelData(*rect) if selection is not None else None)
    kwargs = dict(width=rect[2], height=rect[3], layout=fmt.layout, sample=fmt.sample,
                  pixels=read_pixels(source, rect, fmt), engine=settings.engine,
                  options=job.engine_options(settings, live), selection=mask,
                  guidance=tinct_plugin.guidance_fields(reference, job.palette_to_send(settings, colours), swatches))
    if painted is not None:
        kwargs.update(hints=painted, hints_layout=hints.fmt.layout, hints_sample=hints.fmt.sample)
    return kwargs, Target(key(source), rect, fmt, formats.result_space(space_of(source)))


def suggestion_request(doc: Document, hints_before: Hints, point: tuple[int, int],
                       k: int = job.SUGGESTIONS) -> dict[str, Any] | None:
    """Keyword arguments for Client.suggest at `point` (layer coordinates), with the hints as they
    were before the stroke that marked the point, so the stroke's own colour does not answer."""
    source = find_node(doc, hints_before.source)
    if source is None:
        return None
    rect, fmt = hints_before.rect, formats.wire_format(space_of(source))
    kwargs = dict(width=rect[2], height=rect[3], layout=fmt.layout, sample=fmt.sample,
                  pixels=read_pixels(source, rect, fmt), x=point[0], y=point[1], k=k)
    if formats.has_paint(hints_before.pixels, hints_before.fmt):
        kwargs.update(hints=hints_before.pixels, hints_layout=hints_before.fmt.layout,
                      hints_sample=hints_before.fmt.sample)
    return kwargs


def apply(doc: Document, target: Target, reply: dict[str, Any], in_place: bool = False) -> Node:
    """Put the answer into the "Colorized" layer directly above the photo; returns that layer.

    Filter → Colorize makes a new layer that replaces the previous one (keeping its visibility,
    opacity and blending mode).  Live mode (`in_place`) writes into the existing layer instead,
    so the layer the user sees and has selected stays the same while strokes go on; it falls
    back to a new layer when there is none in the result's colour space and inside the rectangle."""
    pixels = formats.check_reply(reply, target.fmt, target.rect[2], target.rect[3])
    source = find_node(doc, target.source)
    if source is None:
        raise job.ColorizeError("The photo layer was removed before its colours arrived; nothing was changed.")
    layers, stack = stack_of(source)
    old = layers[stack.result] if stack.result is not None else None
    if in_place and old is not None and old.type() == "paintlayer" and space_of(old) == target.space \
            and job.contains(target.rect, rect_of(old.bounds())):
        if target.space != target.fmt.space:  # converted on a detached copy: the layer is written once
            layer = doc.createNode(job.RESULT_NAME, "paintlayer")
            _convert(layer, target.fmt.space)
            layer.setPixelData(pixels, *target.rect)
            _convert(layer, target.space)
            pixels = bytes(layer.pixelData(*target.rect))
        old.setPixelData(pixels, *target.rect)
        doc.refreshProjection()
        return old
    layer = doc.createNode(job.RESULT_NAME, "paintlayer")
    _convert(layer, target.fmt.space)
    layer.setPixelData(pixels, *target.rect)
    if target.space != target.fmt.space:
        _convert(layer, target.space)
    if old is not None:
        layer.setVisible(old.visible())
        layer.setOpacity(old.opacity())
        layer.setBlendingMode(old.blendingMode())
    source.parentNode().addChildNode(layer, source)
    if old is not None:
        old.remove()
    doc.refreshProjection()
    return layer


def _convert(layer, space):
    if not layer.setColorSpace(space.model, space.depth, space.profile):
        raise formats.FormatError(f"Krita could not make a {space.model} {space.depth} layer ({space.profile}) "
                                  "for the result; nothing was changed.")


def add_hints_layer(doc: Document) -> Node:
    """Make (or find) the photo's "Colorize hints" layer above it; returns it.

    It is RGB whatever the photo is, since strokes carry colour, and at the photo's depth.  The
    caller makes it the active layer, which Krita can only do once its Layers docker has caught
    up with the new layer (on the next turn of the event loop)."""
    source = doc_source(doc)
    layers, stack = stack_of(source)
    if stack.hints is not None:
        hints = layers[stack.hints]
    else:
        hints = doc.createNode(job.HINTS_NAME, "paintlayer")
        _convert(hints, formats.result_space(space_of(source)))
        source.parentNode().addChildNode(hints, layers[stack.top])
    return hints
