# Executed by GIMP's Python-Fu batch interpreter (session.sh) inside the chroot: drives the
# installed Tinct plug-in through the PDB the way a batch script would, and records what
# happened — procedure statuses and messages, layer stacks, exported layers — in
# $TINCT_WORK/report.json for tests/test_gimp.py, which makes every assertion on the host.
# Inputs (written by the test): params.json, photo8.png, photo16.png, photo_gray.png, hints_canvas.png, hints_photo.png.
import hashlib
import json
import os
import time

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402

WORK = os.environ["TINCT_WORK"]
P = json.load(open(os.path.join(WORK, "params.json")))
COLORIZE, ADD_HINTS = "plug-in-tinct-colorize", "plug-in-tinct-add-hints-layer"
pdb = Gimp.get_pdb()
report = {"menu": {}}


def log(*args):
    print("[batch_colorize]", *args, flush=True)


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


def run(name, image, layer, **args):
    """Call a procedure like a batch script; the image state before and after goes in the record."""
    procedure = pdb.lookup_procedure(name)
    assert procedure is not None, f"{name} is not registered (installer? syntax error?)"
    report["menu"][name] = list(procedure.get_menu_paths())
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", [layer])
    for key, value in args.items():
        config.set_property(key.replace("_", "-"), value)
    before = state(image)
    t = time.monotonic()
    values = procedure.run(config)
    status = values.index(0)
    record = {"status": status.value_nick, "seconds": round(time.monotonic() - t, 2),
              "error": values.index(1) if status != Gimp.PDBStatusType.SUCCESS else None,
              "before": before, "after": state(image)}
    log(name, args, "->", record["status"], record["error"] or "", f"{record['seconds']} s")
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


# -- grayscale-mode image: learned without strokes, then Add Hints Layer --------------------
gray = load("photo_gray.png")
gray_photo = gray.get_layers()[0]
report["gray_learned"] = run(COLORIZE, gray, gray_photo, engine="learned")
if report["gray_learned"]["status"] == "success":
    report["gray_learned"]["export"] = export(gray, layer(gray, "Colorized"), "gray_learned.png")
    report["gray_learned"]["source_export"] = export(gray, gray_photo, "gray_source.png")
report["add_hints"] = run(ADD_HINTS, gray, gray_photo)
report["no_strokes"] = run(COLORIZE, gray, layer(gray, "Colorize hints"), engine="optimization")
gray.delete()

# -- 8-bit RGB: layer offsets, canvas-sized hints, a layer on top, selection, re-runs --------
rgb = load("photo8.png")
photo = rgb.get_layers()[0]
photo.set_name("photo")
rgb.resize(*P["canvas"], 0, 0)
photo.set_offsets(*P["offsets"])
with_hints(rgb, photo, "hints_canvas.png")
top = Gimp.Layer.new(rgb, "Top", 8, 8, Gimp.ImageType.RGBA_IMAGE, 100.0, Gimp.LayerMode.NORMAL)
rgb.insert_layer(top, None, 0)
rgb.set_selected_layers([photo])

report["optimization"] = run(COLORIZE, rgb, photo, engine="optimization")
report["optimization"]["export"] = export(rgb, layer(rgb, "Colorized"), "optimization.png")
report["source_export"] = export(rgb, photo, "source8.png")

Gimp.context_set_feather(True)
Gimp.context_set_feather_radius(P["feather"], P["feather"])
rgb.select_rectangle(Gimp.ChannelOps.REPLACE, *P["selection"])
Gimp.context_set_feather(False)
layer(rgb, "Colorize hints").set_visible(True)  # shown again to paint more; this run keeps it
report["selection"] = run(COLORIZE, rgb, photo, engine="optimization", keep_hints_visible=True)
report["selection"]["export"] = export(rgb, layer(rgb, "Colorized"), "selection.png")
Gimp.Selection.none(rgb)

report["learned"] = run(COLORIZE, rgb, photo, engine="learned", vibrancy=0.5)
if report["learned"]["status"] == "success":
    report["learned"]["export"] = export(rgb, layer(rgb, "Colorized"), "learned.png")

# re-run with the result layer selected: the plug-in must find the photo it was made for
report["rerun_from_result"] = run(COLORIZE, rgb, layer(rgb, "Colorized"), engine="optimization")

# -- 16-bit ------------------------------------------------------------------------------
deep = load("photo16.png")
deep_photo = deep.get_layers()[0]
with_hints(deep, deep_photo, "hints_photo.png")
report["deep"] = run(COLORIZE, deep, deep_photo, engine="optimization")
report["deep"]["export"] = export(deep, layer(deep, "Colorized"), "deep.png")
report["deep"]["source_export"] = export(deep, deep_photo, "deep_source.png")
deep.delete()

# -- tinctd stopped: the test kills it when asked, then the procedure must fail cleanly -------
open(os.path.join(WORK, "stop-daemon"), "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(WORK, "daemon-stopped")):
    assert time.monotonic() < deadline, "the test never stopped tinctd"
    time.sleep(0.1)
report["daemon_stopped"] = run(COLORIZE, rgb, photo, engine="optimization")
rgb.delete()

with open(os.path.join(WORK, "report.json"), "w") as f:
    json.dump(report, f, indent=1)
log("report written")
