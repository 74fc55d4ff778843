"""What the GIMP session scripts share: calling procedures through the PDB like a batch script
and recording the image before and after, exporting layers for the host to check, and having
the test type keys into the image window (a GUI session only).

Imported by batch_colorize.py and dialog_colorize.py, which GIMP's Python-Fu batch interpreter
runs inside the chroot (session.sh puts this folder on sys.path).  Inputs and outputs live in
$TINCT_WORK.
"""
import hashlib
import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = os.environ["TINCT_WORK"]
P = json.load(open(os.path.join(WORK, "params.json")))  # written by tests/test_gimp.py
COLORIZE, ADD_HINTS = "plug-in-tinct-colorize", "plug-in-tinct-add-hints-layer"
pdb = Gimp.get_pdb()


def log(*args):
    print("[gimp-session]", *args, flush=True)


def path(name):
    return Gio.File.new_for_path(os.path.join(WORK, name))


def load(name):
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, path(name))


def layer_info(layer):
    _, x, y = layer.get_offsets()
    return {"name": layer.get_name(), "visible": layer.get_visible(), "alpha": layer.has_alpha(),
            "offsets": [x, y], "size": [layer.get_width(), layer.get_height()],
            "md5": hashlib.md5(bytes(layer.get_buffer().get(
                Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height()), 1.0,
                "R'G'B'A float", Gegl.AbyssPolicy.NONE))).hexdigest()}


def state(image):
    return {"layers": [layer_info(l) for l in image.get_layers()],
            "selected": [l.get_name() for l in image.get_selected_layers()],
            "base": image.get_base_type().value_nick,
            "precision": image.get_precision().value_nick}


def procedure(name):
    found = pdb.lookup_procedure(name)
    assert found is not None, f"{name} is not registered (installer? syntax error?)"
    return found


def run(name, image, layer, run_mode=Gimp.RunMode.NONINTERACTIVE, **args):
    """Call a procedure like a batch script; the image state before and after goes in the record."""
    called = procedure(name)
    config = called.create_config()
    config.set_property("run-mode", run_mode)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in args.items():
        config.set_property(key.replace("_", "-"), value)
    before = state(image)
    t = time.monotonic()
    values = called.run(config)
    status = values.index(0)
    record = {"status": status.value_nick, "seconds": round(time.monotonic() - t, 2),
              "error": values.index(1) if values.length() > 1 and status != Gimp.PDBStatusType.SUCCESS else None,
              "before": before, "after": state(image)}
    log(name, run_mode.value_nick, args, "->", record["status"], record["error"] or "", f"{record['seconds']} s")
    return record


def export(image, layer, name):
    """One layer alone, at the image's precision, as WORK/name (PNG keeps 16 bits)."""
    copy_image = Gimp.Image.new_with_precision(layer.get_width(), layer.get_height(),
                                               image.get_base_type(), image.get_precision())
    copy = Gimp.Layer.new_from_drawable(layer, copy_image)
    copy_image.insert_layer(copy, None, 0)
    copy.set_offsets(0, 0)
    assert Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, copy_image, path(name), None)
    copy_image.delete()
    return name


def dump(layer, name):
    """A layer's pixels as raw native-endian R'G'B'A float in WORK/name: float layers unrounded."""
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    with open(os.path.join(WORK, name), "wb") as f:
        f.write(bytes(layer.get_buffer().get(rect, 1.0, "R'G'B'A float", Gegl.AbyssPolicy.NONE)))
    return name


def layer(image, name):
    found = image.get_layer_by_name(name)
    assert found is not None, f"no layer {name!r} in {state(image)['layers']}"
    return found


def with_hints(image, source, hints_file):
    """The painted hints layer, loaded like File → Open as Layers, above the source."""
    hints = Gimp.file_load_layer(Gimp.RunMode.NONINTERACTIVE, image, path(hints_file))
    hints.set_name("Colorize hints")
    image.insert_layer(hints, None, 0)
    image.set_selected_layers([source])
    return hints


def _look(image):
    """The image's state, or None when GIMP changed it midway (a layer gone between two calls)."""
    try:
        return state(image)
    except Exception:  # e.g. AttributeError: a layer the keys removed has no buffer any more
        return None


def type_keys(keys, image, timeout=20):
    """Has the test type `keys` (as tests/editors/gimp/xserver.py KeyRequests takes them) into the
    image window, and returns the image's state once it changed and holds still: GIMP acts on
    the keys whenever it likes, maybe between the many calls one look at the image takes, so
    only two equal looks in a row count.  None if nobody typed the keys."""
    request = os.path.join(WORK, "type-keys")
    before = state(image)
    with open(request + ".new", "w") as f:
        f.write(keys)
    os.rename(request + ".new", request)  # the test never reads half a request
    t = time.monotonic()
    deadline = t + timeout
    while os.path.exists(request):
        if time.monotonic() > deadline:
            os.remove(request)
            log("nobody typed", keys, f"into the image window within {timeout} s")
            return None
        time.sleep(0.05)
    now = _look(image)
    while time.monotonic() < deadline:
        time.sleep(0.1)
        again = _look(image)
        if again is not None and again == now != before:
            break
        now = again
    now = now or state(image)
    log("typed", keys, "->", [(l["name"], l["visible"]) for l in now["layers"]], now["base"],
        f"{time.monotonic() - t:.2f} s")
    return now


def write_report(name, report):
    with open(os.path.join(WORK, name), "w") as f:
        json.dump(report, f, indent=1)
    log(name, "written")
