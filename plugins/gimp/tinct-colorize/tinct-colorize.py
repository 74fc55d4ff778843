#!/usr/bin/env python3
"""Tinct for GIMP 3: Filters → Colorize → Add Hints Layer / Colorize….

Only the GIMP-specific glue lives here (procedures, buffers, layers, undo, progress); the
decisions are in colorize_logic.py and, where Krita's plugin makes them alike, tinct_plugin.py,
and the talking to tinctd in tinct_client.py; the installer copies those two (and tinct_shm.py)
in beside this file from plugins/common.  Both procedures work non-interactively through the PDB.
"""
from __future__ import annotations

import contextlib
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# pyzmq/msgpack installed with pip by the installer when the system has no packages for them
_PRIVATE = os.path.join(HERE, "python%d.%d" % sys.version_info[:2])
if os.path.isdir(_PRIVATE):
    sys.path.insert(0, _PRIVATE)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
import colorize_logic as logic  # noqa: E402
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

import tinct_plugin  # noqa: E402

COLORIZE = "plug-in-tinct-colorize"
ADD_HINTS = "plug-in-tinct-add-hints-layer"
MENU = "<Image>/Filters/Colorize"
# layer type for the daemon's answer (always colour) and for the hints layer
_LAYER_TYPE = {"RGB": Gimp.ImageType.RGB_IMAGE, "RGBA": Gimp.ImageType.RGBA_IMAGE}
_MARK_FLAGS = Gimp.PARASITE_PERSISTENT | Gimp.PARASITE_UNDOABLE


def _read(drawable, fmt, x, y, width, height):
    """Pixels of a rectangle in drawable coordinates; outside the drawable reads transparent."""
    rect = Gegl.Rectangle.new(x, y, width, height)
    return bytes(drawable.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.NONE))


def _mark_of(layer, name):
    """The source tattoo a layer made by this plug-in records under `name`, or None."""
    parasite = layer.get_parasite(name)
    return None if parasite is None else logic.decode_tattoo(bytes(parasite.get_data()))


def _mark(layer, name, source):
    data = list(logic.encode_tattoo(source.get_tattoo()))
    _ok(layer.attach_parasite(Gimp.Parasite.new(name, _MARK_FLAGS, data)))


def _ok(done):
    """libgimp answers False, not an exception, when GIMP refuses a call; its reason is the PDB's last error."""
    if not done:
        raise logic.GimpRefused(Gimp.get_pdb().get_last_error())


def _source_layer(image, drawables):
    """The photo layer: the selected layer, or the one a selected Tinct layer was made for."""
    if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
        raise tinct_plugin.ColorizeError("Select the one photo layer to colorize in the Layers dialog.")
    selected = drawables[0]
    tattoo = logic.source_tattoo(selected.get_tattoo(), _mark_of(selected, logic.RESULT_PARASITE),
                                 _mark_of(selected, logic.HINTS_PARASITE))
    source = image.get_layer_by_tattoo(tattoo)
    if source is None:
        raise tinct_plugin.ColorizeError("The photo layer this layer was made for is gone; select a "
                                         "photo layer and run Colorize again.")
    if source.is_group():
        raise tinct_plugin.ColorizeError("Colorize works on a paint layer, not a layer group; select "
                                         "the photo layer inside the group.")
    return source


def _siblings(image, layer):
    parent = layer.get_parent()
    return parent.get_children() if parent is not None else image.get_layers()


@contextlib.contextmanager
def _all_or_nothing(image, what):
    """One undo group, taken back by hand if a step in it fails: GIMP 3 gives plug-ins no undo call.

    After each step the caller adds how to take it back (None: it cannot be); the selection, which
    GIMP's undo leaves alone, is put back too.  A failure becomes the sentence saying whether the
    image is as it was.
    """
    selected = image.get_selected_layers()
    undo = [lambda: _ok(image.set_selected_layers(selected))] if selected else []
    image.undo_group_start()
    try:
        yield undo.append
    except Exception as exc:
        restored = None not in undo
        for step in reversed(undo):
            if step is not None:
                try:
                    step()
                except Exception:  # and on with the others
                    restored = False
        raise tinct_plugin.ColorizeError(logic.change_failed(what, exc, restored)) from exc
    finally:
        image.undo_group_end()


def _to_rgb_if_gray(image, undo):
    """Colour needs an RGB image: a grayscale one becomes RGB.  Converted back, its layers are bit
    for bit as they were at 8-bit, 16-bit and half-float precision, at 32-bit and double within
    1e-6 of full scale (GIMP 3.0.4 converts through single floats)."""
    if image.get_base_type() == Gimp.ImageBaseType.GRAY:
        _ok(image.convert_rgb())
        undo(lambda: _ok(image.convert_grayscale()))


def _add_layer(image, undo, name, kind, source, mark, fill):
    """A new layer the size and place of `source`, marked as made for it and given its pixels by
    `fill` before it goes in directly above it, so a failure leaves no half-made layer behind."""
    layer = Gimp.Layer.new(image, name, source.get_width(), source.get_height(), kind, 100.0, Gimp.LayerMode.NORMAL)
    try:
        _, x, y = source.get_offsets()
        _ok(layer.set_offsets(x, y))
        fill(layer)
        _mark(layer, mark, source)
        _ok(image.insert_layer(layer, source.get_parent(), image.get_item_position(source)))
    except Exception:
        layer.delete()  # never in the image: only GIMP's memory to free
        raise
    undo(lambda: _ok(image.remove_layer(layer)))
    return layer


def _rename(layer, name, undo):
    old = layer.get_name()
    _ok(layer.set_name(name))
    undo(lambda: _ok(layer.set_name(old)))


def _write(layer, babl, pixels):
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height()), babl, pixels)
    buffer.flush()


def _selection_mask(image, x, y, width, height):
    """The selection as u8 coverage over the layer rectangle (image coordinates), or None."""
    if Gimp.Selection.is_empty(image):
        return None
    return _read(image.get_selection(), "Y u8", x, y, width, height)


def _hints_layer(image, name, source):
    layer = image.get_layer_by_name(name) if name else None
    if layer is not None:
        logic.check_hints_layer(layer.get_name(), layer.get_tattoo() == source.get_tattoo(),
                                layer.has_alpha())
    return layer


def _reference(drawable):
    """The request's fields for the reference, any drawable of any open image (None: no reference),
    read whole as sRGB RGBA u8: it only lends its colours, so 8 bits are plenty."""
    if drawable is None:
        return None
    width, height = drawable.get_width(), drawable.get_height()
    return tinct_plugin.reference_fields(drawable.get_name(), width, height,
                                         "GRAY" if drawable.is_gray() else "RGBA", "u8",
                                         lambda: _read(drawable, "R'G'B'A u8", 0, 0, width, height))


def _swatches(drawable, image, width, height):
    """The swatch of a selection on the reference's image (tinct_plugin.swatches_to_send), when that
    is another image: in the photo's own, the selection says which pixels may change."""
    source = drawable.get_image()
    if source.get_id() == image.get_id() or Gimp.Selection.is_empty(source):
        return None
    x0, y0, x1, y1 = Gimp.Selection.bounds(source)[-4:]
    _, x, y = drawable.get_offsets()
    return tinct_plugin.swatches_to_send((x0 - x, y0 - y, x1 - x0, y1 - y0),
                                         (drawable.get_width(), drawable.get_height()), (width, height))


def _palette(engine, choice):
    """The palette to send for the dialog's choice: the foreground and background colours, the
    active palette (Palettes dialog), or none."""
    if choice == "colours":
        colours, name = [Gimp.context_get_foreground(), Gimp.context_get_background()], "palette"
    elif choice == "palette":
        palette = Gimp.context_get_palette()
        colours, name = palette.get_colors(), f"palette “{palette.get_name()}”"
    else:
        return None
    return tinct_plugin.palette_to_send(engine, [logic.srgb_u8(c.get_rgba()[:3]) for c in colours], name)


def _progress(fraction, *_):
    Gimp.progress_update(fraction)


def colorize(image: Gimp.Image, drawables: list[Gimp.Drawable], config: Gimp.ProcedureConfig) -> None:
    """Read, ask tinctd, then change the image in one undo group: all of the change, or (raising) none."""
    import tinct_client  # here, so a missing pyzmq/msgpack becomes a sentence, not a dead plug-in

    engine = config.get_property("engine")
    source = _source_layer(image, drawables)
    fmt = logic.layer_format(image.get_precision().value_nick, source.is_gray(), source.has_alpha())
    width, height = source.get_width(), source.get_height()
    _, x, y = source.get_offsets()
    hints_layer = _hints_layer(image, config.get_property("hints-layer"), source)
    hints = None
    if hints_layer is not None:
        _, hx, hy = hints_layer.get_offsets()
        hints = _read(hints_layer, "R'G'B'A u8", x - hx, y - hy, width, height)
    chosen = config.get_property("reference")
    reference = _reference(chosen)
    hints = logic.hints_to_send(engine, hints, hints_layer and hints_layer.get_name(), reference is not None)
    selection = logic.selection_to_send(_selection_mask(image, x, y, width, height))
    guidance = tinct_plugin.guidance_fields(reference, _palette(engine, config.get_property("palette")),
                                            reference and _swatches(chosen, image, width, height))

    Gimp.progress_init(f"Colorizing “{source.get_name()}” with Tinct")
    client = tinct_client.Client()
    try:
        reply = tinct_plugin.colorize(
            client, guidance, width=width, height=height, layout=fmt.layout, sample=fmt.sample,
            pixels=_read(source, fmt.babl, 0, 0, width, height), hints=hints,
            engine=engine, options=tinct_plugin.engine_options(engine, config.get_property("vibrancy")),
            selection=selection, document=f"gimp-image-{image.get_id()}", progress=_progress)
    finally:
        client.close()
    out = logic.result_format(fmt, reply)
    logic.check_reply_size(reply, width, height, out)

    earlier = [layer for layer in _siblings(image, source)
               if _mark_of(layer, logic.RESULT_PARASITE) == source.get_tattoo()]
    with _all_or_nothing(image, "add the colorized layer") as undo:
        _to_rgb_if_gray(image, undo)
        for layer in earlier:  # out of the new one's way, or GIMP names that "Colorized #1"
            _rename(layer, f"{layer.get_name()} (replaced)", undo)
        result = _add_layer(image, undo, tinct_plugin.RESULT_NAME, _LAYER_TYPE[out.layout], source,
                            logic.RESULT_PARASITE, lambda layer: _write(layer, out.babl, reply["pixels"]))
        if hints_layer is not None and hints_layer.get_visible() and not config.get_property("keep-hints-visible"):
            _ok(hints_layer.set_visible(False))
            undo(lambda: _ok(hints_layer.set_visible(True)))
        _ok(image.set_selected_layers([result]))
        for layer in earlier:  # replaced last: a removed layer cannot be put back
            _ok(image.remove_layer(layer))
            undo(None)
    Gimp.progress_end()


def add_hints_layer(image: Gimp.Image, drawables: list[Gimp.Drawable]) -> None:
    """A transparent "Colorize hints" layer over the photo, selected so the user can paint."""
    source = _source_layer(image, drawables)
    existing = image.get_layer_by_name(tinct_plugin.HINTS_NAME)
    if existing is not None:
        image.set_selected_layers([existing])
        return
    with _all_or_nothing(image, "add the hints layer") as undo:
        _to_rgb_if_gray(image, undo)
        hints = _add_layer(image, undo, tinct_plugin.HINTS_NAME, _LAYER_TYPE["RGBA"], source, logic.HINTS_PARASITE,
                           lambda layer: _ok(layer.fill(Gimp.FillType.TRANSPARENT)))
        _ok(image.set_selected_layers([hints]))


class TinctColorize(Gimp.PlugIn):
    def do_query_procedures(self) -> list[str]:
        return [ADD_HINTS, COLORIZE]

    def do_set_i18n(self, name: str) -> bool:
        return False

    def do_create_procedure(self, name: str) -> Gimp.ImageProcedure:
        if name == ADD_HINTS:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_add_hints, None)
            procedure.set_menu_label("Add Hints Layer")
            procedure.set_documentation(
                "Add a transparent layer to paint colour strokes on",
                f'Adds "{tinct_plugin.HINTS_NAME}" above the selected layer and selects it; paint strokes '
                "in the colours you want there, then run Colorize. A grayscale image becomes RGB.",
                name)
        else:
            procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run_colorize, None)
            procedure.set_menu_label("Colorize…")
            procedure.set_documentation(
                "Colorize the selected layer with the Tinct daemon",
                f'Adds a layer "{tinct_plugin.RESULT_NAME}" directly above the selected layer with the '
                "photo's lightness and colours spread from the hint strokes, taken from a reference "
                "photo where they match, or predicted by the learned engine (steered towards a palette); "
                "only selected pixels change. Running it again replaces that layer.",
                name)
            engines = Gimp.Choice.new()
            engines.add("optimization", 0, "Optimization",
                        "Spreads the colours of your strokes along the photo's edges")
            engines.add("learned", 1, "Learned", "A trained network; colorizes even without strokes")
            procedure.add_choice_argument("engine", "_Engine", "Colorization engine", engines,
                                          "optimization", GObject.ParamFlags.READWRITE)
            procedure.add_double_argument("vibrancy", "_Vibrancy",
                                          "Learned engine: how bold its colours are, 0 muted .. 1 bold",
                                          0.0, 1.0, tinct_plugin.DEFAULT_VIBRANCY, GObject.ParamFlags.READWRITE)
            procedure.add_drawable_argument("reference", "_Reference",
                                            "A colour photo (a layer of any open image) whose colours the "
                                            "photo takes where they match (only from the selected part, "
                                            "when its image is another one with a selection); none: no "
                                            "reference",
                                            True, GObject.ParamFlags.READWRITE)
            palettes = Gimp.Choice.new()
            palettes.add("none", 0, "None", "The engine's own colours")
            palettes.add("colours", 1, "Foreground and background colours",
                         "Steer towards the foreground and background colours")
            palettes.add("palette", 2, "Active palette", "Steer towards the palette chosen in the Palettes dialog")
            procedure.add_choice_argument("palette", "_Palette",
                                          "Learned engine: colours to steer the result towards", palettes,
                                          "none", GObject.ParamFlags.READWRITE)
            procedure.add_string_argument("hints-layer", "_Hints layer", "Name of the layer with the colour strokes",
                                          tinct_plugin.HINTS_NAME, GObject.ParamFlags.READWRITE)
            procedure.add_boolean_argument("keep-hints-visible", "_Keep hints visible",
                                           "Leave the hints layer visible above the result",
                                           False, GObject.ParamFlags.READWRITE)
        procedure.set_image_types("RGB*, GRAY*")
        procedure.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        procedure.add_menu_path(MENU)
        procedure.set_attribution("Tinct", "Tinct", "2025")
        return procedure

    def run_add_hints(self, procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image,
                      drawables: list[Gimp.Drawable], config: Gimp.ProcedureConfig, data: object) -> Gimp.ValueArray:
        return _run(procedure, lambda: add_hints_layer(image, drawables))

    def run_colorize(self, procedure: Gimp.Procedure, run_mode: Gimp.RunMode, image: Gimp.Image,
                     drawables: list[Gimp.Drawable], config: Gimp.ProcedureConfig, data: object) -> Gimp.ValueArray:
        if run_mode == Gimp.RunMode.INTERACTIVE and not _dialog(procedure, config):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        return _run(procedure, lambda: colorize(image, drawables, config))


def _dialog(procedure, config):
    """GIMP's dialog built from the declared arguments; False when cancelled."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init("tinct-colorize")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Colorize")
    dialog.fill(None)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def _run(procedure, action):
    """Success, or EXECUTION_ERROR carrying the sentence GIMP shows the user."""
    try:
        action()
    except Exception as exc:  # every failure reaches the user as a sentence, never a traceback
        Gimp.progress_end()
        error = GLib.Error.new_literal(GLib.quark_from_string("tinct"), logic.error_sentence(exc), 0)
        return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, error)
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


Gimp.main(TinctColorize.__gtype__, sys.argv)
