# Executed by GIMP's Python-Fu batch interpreter in a GUI GIMP under Xvfb (session.sh ... gui),
# with the image shown in GIMP's image window: colorizes the grayscale photo once through the
# PDB (it becomes RGB and gets a first result), then runs Colorize… interactively twice, so the
# plug-in opens GIMP's dialog each time; the test (tests/test_gimp.py) answers the first with
# Escape and the second with Return (OK), which replaces the first result and hides the hints.
# Then the test types Ctrl+Z into the image window three times, when asked; the image after
# each goes into $TINCT_WORK/dialog.json beside the runs' records and the exported result.
from pdb_record import COLORIZE, Gimp, export, layer, load, run, type_keys, with_hints, write_report

image = load("photo_gray.png")
photo = image.get_layers()[0]
photo.set_name("photo")
Gimp.Display.new(image)  # where Ctrl+Z goes
report = {"first": run(COLORIZE, image, photo, engine="learned")}
with_hints(image, photo, "hints_photo.png")
report.update({answer: run(COLORIZE, image, photo, Gimp.RunMode.INTERACTIVE) for answer in ("cancel", "ok")})
if report["ok"]["status"] == "success":
    report["ok"]["export"] = export(image, layer(image, "Colorized"), "dialog.png")
report["undo"] = [type_keys("Control_L+z", image) for _ in range(3)]
image.delete()
write_report("dialog.json", report)
