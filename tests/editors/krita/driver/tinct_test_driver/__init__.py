"""Drives the installed Tinct plugin inside a real Krita window (tests/test_krita.py).

Installed only into the test's throw-away HOME.  With $TINCT_KRITA_TEST (a work folder
holding params.json and the photos) set, once the main window exists it runs `scenario()`:
opens the photos, triggers the plugin's real Filter actions (answering its dialog the way a
user would), uses the Tinct docker's Live toggle, swatches, reference picker and palette box,
and records what happened in WORK/report.json, with the Colorized layers' pixels in WORK/*.raw and PNG exports.  The
plugin works asynchronously, so the scenario is a generator that yields conditions to wait
for while Krita's event loop runs.  Then it closes every document (unmodified, or quitting
would ask about saving) and quits; a watchdog ends Krita if that hangs.
"""

import hashlib
import json
import os
import sys
import time
import traceback

from krita import Extension, InfoObject, Krita, ManagedColor, Palette, Selection
from PyQt5.QtCore import QTimer
from PyQt5.QtGui import QColor, QImage
from PyQt5.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
)

WORK = os.environ.get("TINCT_KRITA_TEST")
SRGB = "sRGB-elle-V2-srgbtrc.icc"
POLL_MS = 20


UNCAUGHT = []   # tracebacks Krita would show in its modal "Python error" box (which nobody can click here)


def log(*args):
    text = " ".join(map(str, ("[tinct-driver]",) + args))
    print(text.encode("ascii", "backslashreplace").decode(), flush=True)  # Krita's stdout may be ASCII-only


def _uncaught(kind, value, tb):
    UNCAUGHT.append("".join(traceback.format_exception(kind, value, tb)))
    log("uncaught exception:", UNCAUGHT[-1])


def rect(node):
    r = node.bounds()
    return [r.x(), r.y(), r.width(), r.height()]


def layers(doc):
    """Top-level layers, top to bottom, with what the tests check."""
    return [{"name": n.name(), "type": n.type(), "model": n.colorModel(), "depth": n.colorDepth(),
             "profile": n.colorProfile(), "bounds": rect(n), "visible": n.visible(),
             "id": n.uniqueId().toString(),
             "md5": hashlib.md5(bytes(n.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()}
            for n in reversed(doc.rootNode().childNodes())]


def node(doc, name):
    return next((n for n in doc.rootNode().childNodes() if n.name() == name), None)


def result_id(doc):
    n = node(doc, "Colorized")
    return n.uniqueId().toString() if n is not None else None


def result_look(doc):
    """The Colorized layer's identity and a digest of its pixels: Live mode changes the second only."""
    n = node(doc, "Colorized")
    if n is None:
        return None
    return n.uniqueId().toString(), hashlib.md5(bytes(n.pixelData(0, 0, doc.width(), doc.height()))).hexdigest()


def error_boxes():
    return [w for w in QApplication.topLevelWidgets() if w.objectName() == "tinct_error" and w.isVisible()]


def write_u8(target, x, y, w, h, bgra):
    """Paint 8-bit sRGB BGRA pixels into a layer of any colour space (as a brush would: converted)."""
    space = (target.colorModel(), target.colorDepth(), target.colorProfile())
    if space == ("RGBA", "U8", SRGB):
        target.setPixelData(bgra, x, y, w, h)
        return
    scratch = target.duplicate()
    scratch.setColorSpace("RGBA", "U8", SRGB)
    scratch.setPixelData(bgra, x, y, w, h)
    scratch.setColorSpace(*space)
    target.setPixelData(bytes(scratch.pixelData(x, y, w, h)), x, y, w, h)


def paint(target, strokes, origin):
    for (r, g, b), x, y, length in strokes:
        write_u8(target, origin[0] + x, origin[1] + y, length, 3, bytes((b, g, r, 255)) * (length * 3))


def set_alpha(target, x, y, w, h, alpha):
    """Make a rectangle of a layer (partly) transparent, its colour as it was."""
    scratch = target.duplicate()
    scratch.setColorSpace("RGBA", "U8", SRGB)
    data = bytearray(scratch.pixelData(x, y, w, h))
    data[3::4] = bytes([alpha]) * (w * h)
    write_u8(target, x, y, w, h, bytes(data))


def dump(doc, name, source_rect, layer_name="Colorized"):
    """A layer over the photo's rectangle: raw as stored, and as 32-bit float sRGB RGBA."""
    layer = node(doc, layer_name)
    x, y, w, h = source_rect
    with open(os.path.join(WORK, name + ".raw"), "wb") as f:
        f.write(bytes(layer.pixelData(x, y, w, h)))
    copy = layer.duplicate()
    copy.setColorSpace("RGBA", "F32", SRGB)
    with open(os.path.join(WORK, name + ".f32"), "wb") as f:
        f.write(bytes(copy.pixelData(x, y, w, h)))
    return {"raw": name + ".raw", "f32": name + ".f32", "depth": layer.colorDepth(),
            "model": layer.colorModel(), "profile": layer.colorProfile(), "rect": source_rect}


def controller_settings():
    from tinct_krita.controller import controller

    return controller().settings


class Driver(Extension):
    def setup(self):
        if WORK:
            Krita.instance().notifier().windowCreated.connect(lambda: QTimer.singleShot(500, self.start))

    def createActions(self, window):
        pass

    # -- a tiny coroutine runner on Qt timers ---------------------------------------
    def start(self):
        self.report = {"ok": False, "krita": Krita.instance().version(), "python": sys.version.split()[0], "steps": {}}
        self.t0 = time.monotonic()
        self.scenario = self.run()
        self.advance(None)

    def advance(self, value, error=None):
        try:
            wanted = self.scenario.throw(error) if error else self.scenario.send(value)
        except StopIteration:
            self.report["ok"] = True
            self.finish()
            return
        except Exception:
            self.report["error"] = traceback.format_exc()
            self.finish()
            return
        condition, timeout, what = wanted
        log(f"{time.monotonic() - self.t0:6.1f} s: waiting for {what}")
        deadline = time.monotonic() + timeout

        def check():
            try:
                got = condition()
            except Exception as exc:
                self.advance(None, exc)
                return
            if got:
                self.advance(got)
            elif time.monotonic() > deadline:
                self.advance(None, TimeoutError(f"waited {timeout} s for {what}"))
            else:
                QTimer.singleShot(POLL_MS, check)

        QTimer.singleShot(0, check)

    def finish(self):
        self.report["driver_seconds"] = round(time.monotonic() - self.t0, 1)
        self.report["uncaught"] = UNCAUGHT
        log(json.dumps({k: v for k, v in self.report.items() if k != "steps"}))
        with open(os.path.join(WORK, "report.json"), "w") as f:
            json.dump(self.report, f, indent=1)
        app = Krita.instance()
        for box in error_boxes():
            box.close()
        for doc in app.documents():
            doc.setModified(False)  # else quitting asks "save changes?" and hangs under Xvfb
            doc.close()
        QTimer.singleShot(0, lambda: app.action("file_quit").trigger())
        QTimer.singleShot(30000, lambda: os._exit(3))

    # -- steps ------------------------------------------------------------------------
    @staticmethod
    def pause(seconds):
        until = time.monotonic() + seconds
        yield (lambda: time.monotonic() >= until, seconds + 5, f"{seconds} s")

    def count_requests(self):
        """Note the time and kind of every request the plugin makes, each quick (partial) answer as it
        arrives and each answer as it is applied (observed, not changed)."""
        from tinct_krita.controller import controller

        runner, submit = controller().runner, controller().runner.submit
        partial, finish = runner._partial, controller()._finish
        self.requests, self.partials, self.applied = [], [], []

        def counted(method, *args, **kwargs):
            self.requests.append((time.monotonic(), method))
            return submit(method, *args, **kwargs)

        def arrived(request, reply):
            self.partials.append((time.monotonic(), request.request_id))
            return partial(request, reply)

        def applied(outcome):
            self.applied.append((time.monotonic(), outcome.partial, outcome.request_id))
            return finish(outcome)

        runner.submit, runner._partial, controller()._finish = counted, arrived, applied
        return runner

    def full_live_result(self, docker, doc, previous):
        """True once Live mode changed the Colorized layer with a full (not only a quick) answer."""
        return self.live_result(docker, doc, previous) and bool(self.applied) and not self.applied[-1][1]

    @staticmethod
    def live_result(docker, doc, previous):
        """True once Live mode changed the Colorized layer; raises with the plugin's sentence if it failed."""
        if result_look(doc) != previous:
            return True
        status = docker.findChild(QLabel, "tinct_status").text()
        if status and not status.startswith("Coloriz"):
            raise RuntimeError(f"Live mode failed: {status}")
        return False

    def colorize(self, doc, engine, vibrancy=None):
        """Filter → Colorize (Tinct)…, answering its dialog with `engine` (and `vibrancy`); then wait
        for the result layer to be replaced or an error message.  Returns the step's record."""
        before, previous = layers(doc), result_id(doc)

        def answer():
            dialog = next((w for w in QApplication.topLevelWidgets()
                           if w.objectName() == "tinct_colorize_dialog" and w.isVisible()), None)
            if dialog is None:
                QTimer.singleShot(POLL_MS, answer)
                return
            combo = dialog.findChild(QComboBox, "tinct_engine")
            combo.setCurrentIndex(combo.findData(engine))
            if vibrancy is not None:
                dialog.findChild(QSlider, "tinct_vibrancy").setValue(vibrancy)
            dialog.accept()

        QTimer.singleShot(POLL_MS, answer)
        log(f"{time.monotonic() - self.t0:6.1f} s: Filter → Colorize (Tinct)… with {engine}")
        started = time.monotonic()
        Krita.instance().action("tinct_colorize").trigger()
        yield (lambda: result_id(doc) != previous or error_boxes(), 60, f"a {engine} result or an error")
        record = {"before": before, "seconds": round(time.monotonic() - started, 2), "error": None}
        yield from self.pause(0.3)  # what the plugin does after a turn of the event loop
        for box in error_boxes():
            record["error"] = box.text()
            box.close()
        record["after"] = layers(doc)
        record["active"] = doc.activeNode().name()
        return record

    def thumbnails(self, buttons, name):
        """The thumbnails the docker's variation buttons show, written as RGBA u8 to WORK/NAME-I.rgba."""
        shown = []
        for i, button in enumerate(buttons):
            image = button.icon().pixmap(button.iconSize()).toImage().convertToFormat(QImage.Format_RGBA8888)
            data = bytes(image.constBits().asstring(image.sizeInBytes()))
            with open(os.path.join(WORK, f"{name}-{i}.rgba"), "wb") as f:
                f.write(data)
            shown.append({"file": f"{name}-{i}.rgba", "size": [image.width(), image.height()],
                          "md5": hashlib.md5(data).hexdigest()})
        return shown

    def variations(self, docker, doc):
        """The docker's Variations button: off for the optimization engine, then four thumbnails for
        the learned one; a click on the third applies it; More shows the next four."""
        ask = docker.findChild(QPushButton, "tinct_variations")
        more = docker.findChild(QPushButton, "tinct_variations_more")
        buttons = [docker.findChild(QToolButton, f"tinct_variation_{i}") for i in range(4)]
        engine = docker.findChild(QComboBox, "tinct_engine")
        engine.setCurrentIndex(engine.findData("optimization"))
        record = {"optimization": [ask.isEnabled(), ask.toolTip()]}
        engine.setCurrentIndex(engine.findData("learned"))
        record["learned"] = [ask.isEnabled(), more.isEnabled(), [b.isEnabled() for b in buttons]]
        started = time.monotonic()
        ask.click()
        yield (lambda: all(b.isEnabled() for b in buttons) or error_boxes(), 120, "four variations")
        record["seconds"], record["error"] = round(time.monotonic() - started, 2), None
        for box in error_boxes():   # told in the record; the steps after this one still run
            record["error"] = box.text()
            box.close()
            return record
        record["first"] = self.thumbnails(buttons, "variations")
        record["more_enabled"] = more.isEnabled()
        record["before"], previous = layers(doc), result_id(doc)
        buttons[2].click()
        yield (lambda: result_id(doc) != previous or error_boxes(), 10, "the third variation applied")
        yield from self.pause(0.3)
        record.update(after=layers(doc), active=doc.activeNode().name(),
                      status=docker.findChild(QLabel, "tinct_status").text(),
                      dump=dump(doc, "variation", rect(node(doc, "photo"))))
        more.click()
        record["while_asking"] = [b.isEnabled() for b in buttons]
        yield (lambda: all(b.isEnabled() for b in buttons) or error_boxes(), 120, "four more variations")
        record["more"] = self.thumbnails(buttons, "variations-more")
        return record

    def open_photo(self, name):
        app = Krita.instance()
        app.setBatchmode(True)  # else a 16-bit PNG opens a modal dialog; the plugin's own dialogs need it off
        try:
            doc = app.openDocument(os.path.join(WORK, name))
        finally:
            app.setBatchmode(False)
        doc.setBatchmode(True)  # else exportImage opens its options dialog and waits forever
        doc.waitForDone()
        view = app.activeWindow().addView(doc)
        doc.topLevelNodes()[0].setName("photo")
        yield from self.activate(doc, doc.topLevelNodes()[0])
        return doc, view

    @staticmethod
    def activate(doc, layer):
        """Make `layer` the active one, as a click in the Layers docker does.  Krita 5.2 gives a layer
        that a script has just added (or a document just shown) its canvas shape only a turn of the
        event loop later, refuses to activate it until then (SAFE ASSERT "shape" in its log), and
        then makes the added layer active by itself: so ask again until `layer` is the active one."""
        uid = layer.uniqueId()

        def active():
            current = doc.activeNode()
            if current is not None and current.uniqueId() == uid:
                return True
            doc.setActiveNode(layer)
            return False
        yield (active, 5, f'the layer "{layer.name()}" to become active')

    def add_hints(self, doc):
        """Filter → Add Colorize Hints Layer; the layer becomes active a moment later."""
        Krita.instance().action("tinct_add_hints_layer").trigger()
        doc.waitForDone()
        yield (lambda: doc.activeNode().name() == "Colorize hints", 5, "the hints layer to become active")
        return {"after": layers(doc), "active": doc.activeNode().name()}

    def run(self):
        app, p = Krita.instance(), json.load(open(os.path.join(WORK, "params.json")))
        steps = self.report["steps"]
        window = app.activeWindow()
        qwindow = window.qwindow()
        self.report["menus"] = {
            top.objectName().lower(): [a.objectName() for a in top.menu().actions()
                                       if a.objectName().startswith("tinct_")]
            for top in qwindow.menuBar().actions() if top.menu() is not None}
        self.report["shortcuts"] = {name: app.action(name).shortcut().toString()
                                    for name in ("tinct_colorize", "tinct_add_hints_layer")}
        docker = qwindow.findChild(QDockWidget, "tinct_docker")
        self.report["docker"] = docker is not None
        docker.show()
        live = docker.findChild(QCheckBox, "tinct_live")
        swatches = [docker.findChild(QPushButton, f"tinct_swatch_{i}") for i in range(8)]

        # 8-bit photo moved inside a bigger canvas, an unrelated layer on top
        doc, _ = yield from self.open_photo("photo8.png")
        photo = node(doc, "photo")
        doc.resizeImage(0, 0, *p["canvas"])
        photo.move(*p["offsets"])
        top = doc.createNode("Top", "paintlayer")
        doc.rootNode().addChildNode(top, photo)
        doc.waitForDone()
        yield from self.activate(doc, photo)
        source_rect = rect(photo)
        self.report["source_rect"] = source_rect
        steps["add_hints"] = yield from self.add_hints(doc)
        steps["no_strokes"] = yield from self.colorize(doc, "optimization")
        hints = node(doc, "Colorize hints")
        paint(hints, p["strokes"], p["offsets"])
        steps["optimization"] = yield from self.colorize(doc, "optimization")
        steps["optimization"]["dump"] = dump(doc, "optimization", source_rect)
        hints.setVisible(False)  # the export flattens: keep the strokes out of it
        doc.refreshProjection()
        doc.exportImage(os.path.join(WORK, "optimization.png"), InfoObject())
        hints.setVisible(True)
        yield from self.activate(doc, photo)
        steps["learned"] = yield from self.colorize(doc, "learned")
        steps["learned"]["dump"] = dump(doc, "learned", source_rect)

        x, y, w, h = p["selection"]
        selection = Selection()
        selection.select(x, y, w, h, 255)
        selection.feather(p["feather"])
        doc.setSelection(selection)
        steps["selection"] = yield from self.colorize(doc, "optimization")
        steps["selection"]["dump"] = dump(doc, "selection", source_rect)
        deselect = app.action("deselect")
        yield (deselect.isEnabled, 5, "Select → Deselect to be enabled")
        deselect.trigger()
        doc.waitForDone()
        yield (lambda: doc.selection() is None, 5, "the selection to go")

        # Live: the toggle colorizes at once, in place; a new stroke colorizes again and gets suggestions
        runner = self.count_requests()
        yield from self.activate(doc, node(doc, "Colorize hints"))
        swatches_before = [s.property("rgb") for s in swatches]
        previous = result_look(doc)
        started = time.monotonic()
        live.setChecked(True)
        yield (lambda: self.live_result(docker, doc, previous), 60, "the first Live result")
        steps["live_on"] = {"seconds": round(time.monotonic() - started, 2), "before": previous,
                            "after": layers(doc)}
        yield (lambda: not runner.busy(), 60, "the first Live requests to finish")
        previous, seen = result_look(doc), (len(self.partials), len(self.applied))
        started = time.monotonic()
        paint(node(doc, "Colorize hints"), [p["live_stroke"]], p["offsets"])
        yield (lambda: self.full_live_result(docker, doc, previous), 60, "a Live result after the new stroke")
        steps["live_stroke"] = {"seconds": round(time.monotonic() - started, 2), "before": previous,
                                "after": layers(doc), "active": doc.activeNode().name(),
                                "dump": dump(doc, "live", source_rect),
                                "partials": [[round(t - started, 3), r] for t, r in self.partials[seen[0]:]],
                                "applied": [[round(t - started, 3), q, r] for t, q, r in self.applied[seen[1]:]]}
        yield (lambda: swatches[0].isEnabled() and [s.property("rgb") for s in swatches] != swatches_before,
               60, "suggested colours for the new stroke")
        suggested = [s.property("rgb") for s in swatches]
        swatches[2].click()
        colour = window.activeView().foregroundColor().colorForCanvas(window.activeView().canvas())
        steps["suggestions"] = {"swatches": suggested, "foreground": [colour.red(), colour.green(), colour.blue()],
                                "seconds": round(time.monotonic() - started, 2)}

        # a quick burst of strokes while Live is on: one request once they stop, its answer shown
        yield (lambda: not runner.busy(), 60, "the Live requests to finish")
        previous, first = result_look(doc), len(self.requests)
        times = []
        for stroke in p["burst"]:
            if times:
                yield from self.pause(times[-1] + p["burst_gap"] - time.monotonic())
            paint(node(doc, "Colorize hints"), [stroke], p["offsets"])
            times.append(time.monotonic())
        yield (lambda: self.live_result(docker, doc, previous), 60, "a Live result after the burst")
        settled = time.monotonic() + 2 * p["debounce"]
        yield (lambda: time.monotonic() >= settled and not runner.busy(), 60, "Live mode to settle")
        steps["burst"] = {"gaps": [round(b - a, 3) for a, b in zip(times, times[1:])],
                          "requests": [[round(t - times[0], 3), method] for t, method in self.requests[first:]],
                          "before": previous, "after": layers(doc), "dump": dump(doc, "burst", source_rect)}
        live.setChecked(False)

        # other depths and colour models: 16-bit, half float in linear light, float, grey
        opened = {}
        for name, file, space in (("f16", "photo8.png", ("RGBA", "F16", "sRGB-elle-V2-g10.icc")),
                                  ("f32", "photo8.png", ("RGBA", "F32", SRGB)),
                                  ("gray", "photo8.png", ("GRAYA", "U8", "Gray-D50-elle-V2-srgbtrc.icc")),
                                  ("u16", "photo16.png", None)):
            doc, _ = yield from self.open_photo(file)
            opened[name] = doc
            if space:
                doc.setColorSpace(*space)
                doc.waitForDone()
            photo = node(doc, "photo")
            if name == "f32":   # and alpha: a transparent and a half-transparent patch
                for patch in p["alpha_patches"]:
                    set_alpha(photo, *patch)
            record = {"source": layers(doc)[0], "source_dump": dump(doc, name + "-photo", rect(photo), "photo"),
                      "hints": (yield from self.add_hints(doc))}
            paint(node(doc, "Colorize hints"), p["strokes"], (0, 0))
            record.update((yield from self.colorize(doc, "optimization")))
            if record["error"] is None:
                record["dump"] = dump(doc, name, rect(photo))
            steps[name] = record
        node(doc, "Colorize hints").setVisible(False)
        doc.refreshProjection()
        doc.exportImage(os.path.join(WORK, "u16.png"), InfoObject())

        # no strokes at all: the learned engine colorizes by itself, at the slider's two ends
        doc, _ = yield from self.open_photo("photo8.png")
        for name, vibrancy in (("muted", 0), ("bold", 100)):
            steps[name] = yield from self.colorize(doc, "learned", vibrancy)
            steps[name]["dump"] = dump(doc, name, rect(node(doc, "photo")))
        steps["variations"] = yield from self.variations(docker, doc)

        # colour guidance: the reference a layer of another open document, picked in the docker; then
        # no reference and the palette of the foreground and background colours
        picker = docker.findChild(QComboBox, "tinct_reference")
        palette_box = docker.findChild(QComboBox, "tinct_palette")
        reference_doc, _ = yield from self.open_photo("reference.png")
        node(reference_doc, "photo").setName("reference")
        two_tone, _ = yield from self.open_photo("reference_two_tone.png")
        node(two_tone, "photo").setName("two-tone")
        selection = Selection()
        selection.select(*p["swatch"], 255)
        two_tone.setSelection(selection)
        doc, view = yield from self.open_photo("photo8.png")
        picker.showPopup()   # lists the open documents' paint layers afresh
        labels = [picker.itemText(i) for i in range(picker.count())]
        picker.hidePopup()
        picker.setCurrentIndex(labels.index("reference.png › reference"))
        steps["reference_picker"] = {"labels": labels, "chosen": list(controller_settings().reference or [])}
        steps["reference"] = yield from self.colorize(doc, "optimization")
        steps["reference"]["dump"] = dump(doc, "reference", rect(node(doc, "photo")))
        steps["reference_learned"] = yield from self.colorize(doc, "learned", p["vibrancy"])
        steps["reference_learned"]["dump"] = dump(doc, "reference_learned", rect(node(doc, "photo")))
        picker.showPopup()
        picker.hidePopup()
        picker.setCurrentIndex(picker.findText("reference_two_tone.png › two-tone"))
        steps["swatch"] = yield from self.colorize(doc, "optimization")
        steps["swatch"]["dump"] = dump(doc, "swatch", rect(node(doc, "photo")))
        gray = node(opened["gray"], "photo")
        picker.showPopup()
        picker.hidePopup()
        picker.setCurrentIndex(next(i for i in range(picker.count())
                                    if (picker.itemData(i) or [None])[-1] == gray.uniqueId().toString()))
        steps["grey_reference"] = yield from self.colorize(doc, "learned", p["vibrancy"])
        picker.setCurrentIndex(0)   # None
        view.setForeGroundColor(ManagedColor.fromQColor(QColor(*p["palette"][0])))
        view.setBackGroundColor(ManagedColor.fromQColor(QColor(*p["palette"][1])))
        colours = [c.colorForCanvas(view.canvas()) for c in (view.foregroundColor(), view.backgroundColor())]
        enabled = palette_box.isEnabled()   # the engine is the learned one now
        palette_box.showPopup()
        choices = [palette_box.itemData(i) for i in range(palette_box.count())]
        palette_box.hidePopup()
        palette_box.setCurrentIndex(choices.index("foreground and background"))
        steps["palette"] = yield from self.colorize(doc, "learned", p["vibrancy"])
        steps["palette"].update(dump=dump(doc, "palette", rect(node(doc, "photo"))), box_enabled=enabled,
                                reference=controller_settings().reference, choices=choices,
                                colours=[[c.red(), c.green(), c.blue()] for c in colours])
        # one of Krita's own palettes, its colours read here too; the test asks tinctd for that palette
        # before it stops tinctd
        for name in choices[2:]:
            palette = Palette(app.resources("palette")[name])
            entries = (palette.colorSetEntryByIndex(i) for i in range(palette.colorsCountTotal()))
            colours = [e.color().colorForCanvas(view.canvas()) for e in entries if e.isValid()]
            colours = sorted({(c.red(), c.green(), c.blue()) for c in colours})
            if 3 <= len(colours) <= 64:
                break
        palette_box.setCurrentIndex(choices.index(name))
        steps["krita_palette"] = yield from self.colorize(doc, "learned", p["vibrancy"])
        steps["krita_palette"].update(dump=dump(doc, "krita_palette", rect(node(doc, "photo"))), name=name,
                                      colours=colours)
        with open(os.path.join(WORK, "palette.json"), "w") as f:
            json.dump(colours, f)
        palette_box.setCurrentIndex(0)

        # tinctd stopped: a clear message, nothing changed
        open(os.path.join(WORK, "stop-daemon"), "w").close()
        yield (lambda: os.path.exists(os.path.join(WORK, "daemon-stopped")), 30, "the test to stop tinctd")
        steps["daemon_stopped"] = yield from self.colorize(doc, "learned")


if WORK:
    sys.excepthook = _uncaught
    Krita.instance().addExtension(Driver(Krita.instance()))
