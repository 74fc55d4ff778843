# Executed by GIMP's Python-Fu batch interpreter in a GUI GIMP under Xvfb (session.sh ... gui):
# runs Colorize… interactively twice, so the plug-in opens GIMP's dialog each time; the test
# (tests/test_gimp.py) answers the first with Escape and the second with Return (OK) through
# the X server, and checks $TINCT_WORK/dialog.json and the exported result.
from pdb_record import COLORIZE, Gimp, export, layer, load, run, with_hints, write_report

image = load("photo8.png")
photo = image.get_layers()[0]
photo.set_name("photo")
with_hints(image, photo, "hints_photo.png")
report = {answer: run(COLORIZE, image, photo, Gimp.RunMode.INTERACTIVE) for answer in ("cancel", "ok")}
if report["ok"]["status"] == "success":
    report["ok"]["export"] = export(image, layer(image, "Colorized"), "dialog.png")
image.delete()
write_report("dialog.json", report)
