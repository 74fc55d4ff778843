# Executed by GIMP's Python-Fu batch interpreter in gimp-console (session.sh) inside the chroot:
# drives the installed Tinct plug-in through the PDB the way a batch script would, and records
# what happened — procedure statuses and messages, layer stacks, exported layers — in
# $TINCT_WORK/report.json for tests/test_gimp.py, which makes every assertion on the host.
# Inputs (written by the test): params.json, photo8.png, photo16.png, photo_gray.png, photo_alpha16.png,
# hints_canvas.png, hints_photo.png, reference.png, reference_two_tone.png.
import os
import time

from pdb_record import (
    ADD_HINTS,
    COLORIZE,
    WORK,
    Gegl,
    Gimp,
    P,
    dump,
    export,
    layer,
    load,
    procedure,
    run,
    with_hints,
    write_report,
)

report = {"menu": {name: list(procedure(name).get_menu_paths()) for name in (COLORIZE, ADD_HINTS)}}

# -- what the dialog is built from: the declared arguments of Colorize… ----------------------
colorize_procedure = procedure(COLORIZE)
defaults = colorize_procedure.create_config()
report["arguments"] = {
    spec.get_name(): {"default": defaults.get_property(spec.get_name()), "blurb": spec.get_blurb(),
                      "type": spec.value_type.name}
    for spec in colorize_procedure.get_arguments() if spec.get_name() not in ("run-mode", "image", "drawables")}
for name in ("engine", "palette"):
    report["arguments"][name]["choices"] = list(
        Gimp.param_spec_choice_get_choice(colorize_procedure.find_argument(name)).list_nicks())

# -- grayscale-mode image: learned without any hints layer; Add Hints Layer on a fresh copy ----
gray = load("photo_gray.png")
gray_photo = gray.get_layers()[0]
report["gray_learned"] = run(COLORIZE, gray, gray_photo, engine="learned")
if report["gray_learned"]["status"] == "success":
    report["gray_learned"]["export"] = export(gray, layer(gray, "Colorized"), "gray_learned.png")
    report["gray_learned"]["source_export"] = export(gray, gray_photo, "gray_source.png")
gray.delete()
gray = load("photo_gray.png")
gray_photo = gray.get_layers()[0]
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

report["learned"] = run(COLORIZE, rgb, photo, engine="learned", vibrancy=P["learned_vibrancy"])
if report["learned"]["status"] == "success":
    report["learned"]["export"] = export(rgb, layer(rgb, "Colorized"), "learned.png")

# re-run with the result layer selected: the plug-in must find the photo it was made for
report["rerun_from_result"] = run(COLORIZE, rgb, layer(rgb, "Colorized"), engine="optimization")

# -- colour guidance: a layer of another open image as the reference, a palette ----------------
def colour(rgb):
    """A Gegl.Color of sRGB u8 `rgb`, set as the linear light Gegl.Color keeps."""
    c = Gegl.Color.new("black")
    c.set_rgba(*(((v / 255 + 0.055) / 1.055) ** 2.4 if v / 255 > 0.04045 else v / 255 / 12.92 for v in rgb), 1.0)
    return c


reference_image = load("reference.png")
gray = load("photo_gray.png")
guided = load("photo8.png")
guided_photo = guided.get_layers()[0]
guided_photo.set_name("photo")
for name, engine in (("reference", "optimization"), ("reference_learned", "learned")):
    report[name] = run(COLORIZE, guided, guided_photo, engine=engine, reference=reference_image.get_layers()[0])
    if report[name]["status"] == "success":
        report[name]["export"] = export(guided, layer(guided, "Colorized"), name + ".png")
two_tone = load("reference_two_tone.png")
two_tone.select_rectangle(Gimp.ChannelOps.REPLACE, *P["swatch"])
report["swatch"] = run(COLORIZE, guided, guided_photo, engine="optimization", reference=two_tone.get_layers()[0])
if report["swatch"]["status"] == "success":
    report["swatch"]["export"] = export(guided, layer(guided, "Colorized"), "swatch.png")
two_tone.delete()
Gimp.context_set_foreground(colour(P["palette"][0]))
Gimp.context_set_background(colour(P["palette"][1]))
report["palette"] = run(COLORIZE, guided, guided_photo, engine="learned", palette="colours")
if report["palette"]["status"] == "success":
    report["palette"]["export"] = export(guided, layer(guided, "Colorized"), "palette.png")
report["grey_reference"] = run(COLORIZE, guided, guided_photo, engine="learned", reference=gray.get_layers()[0])
for image in (reference_image, gray, guided):
    image.delete()

# -- 16-bit ------------------------------------------------------------------------------
deep = load("photo16.png")
deep_photo = deep.get_layers()[0]
with_hints(deep, deep_photo, "hints_photo.png")
report["deep"] = run(COLORIZE, deep, deep_photo, engine="optimization")
report["deep"]["export"] = export(deep, layer(deep, "Colorized"), "deep.png")
report["deep"]["source_export"] = export(deep, deep_photo, "deep_source.png")
deep.delete()

# -- 32-bit float with a transparency ramp -------------------------------------------------
flat = load("photo_alpha16.png")
flat.convert_precision(Gimp.Precision.FLOAT_NON_LINEAR)
flat_photo = flat.get_layers()[0]
with_hints(flat, flat_photo, "hints_photo.png")
report["float"] = run(COLORIZE, flat, flat_photo, engine="optimization")
report["float"]["raw"] = dump(layer(flat, "Colorized"), "float.f32")
report["float"]["source_raw"] = dump(flat_photo, "float_source.f32")
flat.delete()

# -- tinctd stopped: the test kills it when asked, then the procedure must fail cleanly -------
open(os.path.join(WORK, "stop-daemon"), "w").close()
deadline = time.monotonic() + 60
while not os.path.exists(os.path.join(WORK, "daemon-stopped")):
    assert time.monotonic() < deadline, "the test never stopped tinctd"
    time.sleep(0.1)
report["daemon_stopped"] = run(COLORIZE, rgb, photo, engine="optimization")
rgb.delete()

write_report("report.json", report)
