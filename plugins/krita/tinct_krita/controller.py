"""The one object behind the Filter actions and the Tinct docker (Krita glue).

It holds the settings (kept in kritarc), runs requests through live.Runner, applies finished
ones on the GUI thread, and, while a Tinct docker is on screen or Live mode is on, watches
the active photo's hints layer: 300 ms after a change (live.ChangeWatch) the changed spot
gets colour suggestions and, in Live mode, the photo is colorized again.  Changes are
noticed through the layer's thumbnail, which Krita caches until the layer changes, so
watching an idle image costs next to nothing.
"""

from __future__ import annotations

import hashlib
import sys
import time
import traceback

from krita import Krita, ManagedColor, Palette
from PyQt5.QtCore import QObject, Qt, QTimer, pyqtSignal
from PyQt5.QtGui import QColor
from PyQt5.QtWidgets import QMessageBox

from . import document, job, live, tinct_plugin

POLL_MS = 100
THUMBNAIL = 256


def _client(client_id):
    from . import tinct_client  # vendored by the installer; imported late so a missing pyzmq is a sentence

    return tinct_client.Client(client_id=client_id)


def _doc_key(doc):
    return document.key(doc.rootNode())


def _find_doc(doc_key):
    return next((d for d in Krita.instance().documents() if _doc_key(d) == doc_key), None)


def _log(text):
    # Krita's stderr may be ASCII-only; a UnicodeEncodeError here would become Krita's own error box
    print(f"[tinct] {text}".encode("ascii", "backslashreplace").decode(), file=sys.stderr, flush=True)


class Controller(QObject):
    changed = pyqtSignal()   # status or suggestions changed: the dockers redraw

    def __init__(self):
        super().__init__()
        app = Krita.instance()
        self.settings = job.saved_settings(app.readSetting("tinct", "engine", ""),
                                           app.readSetting("tinct", "vibrancy", ""),
                                           app.readSetting("tinct", "palette", ""))
        self.runner = live.Runner(_client)
        self.watch = live.ChangeWatch(job.LIVE_DEBOUNCE)
        self.viewers = set()       # dockers on screen
        self.snapshot = None       # document.Hints as of the last settled change
        self.suggestions = []      # [(r, g, b)] for the spot last painted
        self.variations = None     # job.Variations: the last ones asked for, to choose from
        self.seed = 0              # theirs: "more" asks for the next
        self.status = ""
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._tick)
        app.notifier().applicationClosing.connect(self.runner.close)

    # -- settings -------------------------------------------------------------------
    def set_settings(self, engine: str | None = None, vibrancy: int | None = None,
                     live_mode: bool | None = None, palette: str | None = None) -> None:
        app = Krita.instance()
        if engine is not None:
            self.settings.engine = engine
            app.writeSetting("tinct", "engine", engine)
        if palette is not None:
            self.settings.palette = palette
            app.writeSetting("tinct", "palette", palette)
        if vibrancy is not None and int(vibrancy) != self.settings.vibrancy:  # moved by the user: kept from now on
            self.settings.vibrancy, self.settings.vibrancy_chosen = int(vibrancy), True
            app.writeSetting("tinct", "vibrancy", str(int(vibrancy)))
        if live_mode is not None:
            self.settings.live = bool(live_mode)
        if self.settings.live:
            self.watch.poke(time.monotonic())  # colorize soon with what is there now
        self.changed.emit()
        self._wake()

    def set_reference(self, choice: tuple[str, str] | None) -> None:
        """The reference layer, (document key, layer key), or None for none."""
        self.settings.reference = choice
        self.set_settings()

    # -- actions ----------------------------------------------------------------------
    def colorize(self, live_mode: bool = False, hints: document.Hints | None = None) -> None:
        """Colorize the active photo; the answer is applied when it arrives.  Live requests for one
        photo supersede each other; one from the Filter menu always runs to the end."""
        if self._request("colorize", live_mode, hints):
            self._say(f"Colorizing with the {self.settings.engine} engine…")

    def ask_variations(self, more: bool = False) -> None:
        """Ask for tinct_plugin.VARIATIONS colorizations of the active photo to choose from (the
        docker shows them; apply_variation applies one); `more`: the next seed's, else the first."""
        seed = self.seed + 1 if more else 0
        if self._request("variations", False, None, variations=tinct_plugin.VARIATIONS, seed=seed):
            self.seed, self.variations = seed, None
            self._say(f"Asking the {self.settings.engine} engine for {tinct_plugin.VARIATIONS} variations…")

    def variations_unavailable(self) -> str | None:
        """Why the docker's Variations button is off (its tooltip), or None when it is on."""
        return tinct_plugin.variations_unavailable(self.runner.hello, self.settings.engine,
                                                   self.settings.reference is not None)

    def apply_variation(self, index: int) -> None:
        """Apply the variation clicked as the Colorized layer, as a Colorize answer is applied."""
        choice = self.variations
        if choice is None or not 0 <= index < len(choice.replies):
            return
        if _find_doc(choice.doc_key) is None:
            self.fail(job.ColorizeError("The photo's document was closed; open it and ask for variations again."))
            return
        if self._apply(choice.doc_key, choice.target, choice.replies[index], False):
            self._say(f"Variation {index + 1} applied as the {job.RESULT_NAME} layer.")

    def _request(self, kind: str, live_mode: bool, hints: document.Hints | None, **extra) -> bool:
        """Send a colorize for the active photo (with `extra` fields), tagged `kind`; False if it failed."""
        app = Krita.instance()
        doc = app.activeDocument()
        try:
            kwargs, target = document.prepare(doc, self.settings, live_mode, hints, app.documents(),
                                              self._palette_colours())
            superseding = {"colorize": target.source if live_mode else None,
                           "variations": f"variations {target.source}"}[kind]
            self.runner.submit("colorize", {**kwargs, **extra}, document=superseding,
                               tag=(kind, _doc_key(doc), target, live_mode, time.monotonic()), partial=live_mode)
        except Exception as exc:
            self.fail(exc, quiet=live_mode)
            return False
        self._wake()
        return True

    def add_hints_layer(self) -> None:
        doc = Krita.instance().activeDocument()
        try:
            hints = document.add_hints_layer(doc)
        except Exception as exc:
            self.fail(exc)
            return
        QTimer.singleShot(0, lambda: doc.setActiveNode(hints))  # paint on it next

    def reference_layers(self) -> list[tuple[tuple[str, str], str]]:
        """The reference picker's choices: every paint layer of every open document."""
        return document.reference_layers(Krita.instance().documents())

    def palettes(self) -> list[str]:
        """The names of Krita's palettes (Settings → Manage Resources), for the palette picker."""
        return sorted(Krita.instance().resources("palette"))

    def _palette_colours(self):
        """The chosen palette's colours as sRGB u8: the active view's foreground and background
        colours (None without a view) or a Krita palette's; None when none is chosen."""
        choice = self.settings.palette
        if not choice:
            return None
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        if choice == job.FOREGROUND_BACKGROUND:
            if view is None:
                return None
            colours = [view.foregroundColor(), view.backgroundColor()]
        else:
            resource = Krita.instance().resources("palette").get(choice)
            if resource is None:
                raise job.ColorizeError(f'The palette "{choice}" is gone; choose another in the Tinct docker.')
            palette = Palette(resource)
            swatches = (palette.colorSetEntryByIndex(i) for i in range(palette.colorsCountTotal()))
            colours = [swatch.color() for swatch in swatches if swatch.isValid()]
        # as shown on the canvas (sRGB without a view)
        shown = (colour.colorForCanvas(view.canvas() if view is not None else None) for colour in colours)
        return [(c.red(), c.green(), c.blue()) for c in shown]

    def set_foreground(self, rgb: tuple[int, int, int]) -> None:
        window = Krita.instance().activeWindow()
        view = window.activeView() if window is not None else None
        if view is not None:
            view.setForeGroundColor(ManagedColor.fromQColor(QColor(*rgb)))

    # -- reporting ----------------------------------------------------------------------
    def _say(self, text):
        self.status = text
        self.changed.emit()

    def fail(self, exc: BaseException, quiet: bool = False) -> None:
        """Say what went wrong: a message box for what the user asked for; the docker's status and
        a floating message for Live mode and suggestions, which run by themselves."""
        text = job.error_sentence(exc)
        _log(text)
        if not tinct_plugin.expected(exc):
            _log("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
        self._say(text)
        window = Krita.instance().activeWindow()
        if quiet:
            view = window.activeView() if window is not None else None
            if view is not None:
                view.showFloatingMessage(text, Krita.instance().icon("warning"), 4000, 1)
            return
        box = QMessageBox(QMessageBox.Warning, "Tinct", text, QMessageBox.Ok,
                          window.qwindow() if window is not None else None)
        box.setObjectName("tinct_error")
        box.setAttribute(Qt.WA_DeleteOnClose)
        box.open()            # not exec_(): no nested event loop inside a timer callback

    # -- the GUI-thread loop --------------------------------------------------------------
    def show_docker(self, key: object, on: bool) -> None:
        """Docker `key` came on screen (on) or went off it; watching runs while one is on or Live mode is on."""
        (self.viewers.add if on else self.viewers.discard)(key)
        self._wake()

    def _wake(self):
        if not self.timer.isActive():
            self.timer.start()

    def _tick(self):
        for outcome in self.runner.poll():
            self._finish(outcome)
        watching = bool(self.viewers) or self.settings.live
        if watching:
            try:
                self._look()
            except Exception as exc:  # e.g. an image closed mid-look; tell, and keep watching
                self.fail(exc, quiet=True)
        if not watching and not self.runner.busy():
            self.timer.stop()

    def _finish(self, outcome):
        if job.advertised(self.settings, self.runner.hello):
            self.changed.emit()  # the dockers show tinctd's own default vibrancy
        kind, doc_key = outcome.tag[:2]
        if outcome.error is not None:
            self.fail(outcome.error, quiet=kind == "suggest" or outcome.tag[3])
            return
        if kind == "suggest":
            self.suggestions = list(outcome.result)
            self.changed.emit()
            return
        target, live_mode, started = outcome.tag[2:]
        if kind == "variations":
            self.variations = job.Variations(doc_key, target, list(outcome.result))
            self._say(f"{len(self.variations.replies)} variations in {time.monotonic() - started:.1f} s: "
                      "click one to apply it.")
            return
        if not self._apply(doc_key, target, outcome.result, live_mode):
            return
        engine = outcome.result.get("engine", self.settings.engine)
        if outcome.partial:
            self._say(f"Colorizing with the {engine} engine… (a quick look in {time.monotonic() - started:.1f} s)")
        else:
            self._say(f"Colorized with the {engine} engine in {time.monotonic() - started:.1f} s.")

    def _apply(self, doc_key, target, reply, live_mode):
        """Write an answer into its photo's Colorized layer (document.apply); False if it could not."""
        doc = _find_doc(doc_key)
        if doc is None:
            return False  # closed meanwhile: nothing to show it on
        active = doc.activeNode()
        try:
            document.apply(doc, target, reply, in_place=live_mode)
        except Exception as exc:
            self.fail(exc, quiet=live_mode)
            return False
        if active is not None and document.find_node(doc, document.key(active)) is not None:
            # Krita makes a new layer the active one; painting goes on where it was
            QTimer.singleShot(0, lambda: doc.setActiveNode(active))
        return True

    def _look(self):
        """Notice changes to the active photo's hints layer; once they settle, suggest and colorize."""
        now = time.monotonic()
        doc = Krita.instance().activeDocument()
        hints_node = document.hints_layer(doc)
        if hints_node is None:
            self.watch.see(now, None, None)
            self.snapshot = None
        else:
            image = hints_node.thumbnail(THUMBNAIL, THUMBNAIL)
            digest = hashlib.blake2b(image.constBits().asstring(image.sizeInBytes())).digest()
            if self.watch.see(now, document.key(hints_node), digest):
                self.snapshot = document.read_hints(doc)   # the "before" of the first stroke
        if doc is not None and self.watch.due(now):
            self._changed(doc)

    def _changed(self, doc):
        hints = document.read_hints(doc) if self.snapshot is not None else None
        before, self.snapshot = self.snapshot, hints
        if self.viewers and before is not None and hints is not None and before.rect == hints.rect:
            point = job.changed_point(before.pixels, hints.pixels, hints.rect[2], hints.fmt.bytes_per_pixel)
            kwargs = document.suggestion_request(doc, before, point) if point is not None else None
            if kwargs is not None:
                self.runner.submit("suggest", kwargs, document="suggest", tag=("suggest", _doc_key(doc)))
        if self.settings.live:
            self.colorize(live_mode=True, hints=hints)


_controller = None


def controller() -> Controller:
    """The plugin's one controller, made on first use (after Krita's application object exists)."""
    global _controller
    if _controller is None:
        _controller = Controller()
    return _controller
