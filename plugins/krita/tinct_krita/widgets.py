"""The Tinct docker and the Colorize dialog (Krita glue; all they do goes through the controller)."""

from __future__ import annotations

from krita import DockWidget, Krita
from PyQt5.QtCore import QSize, Qt
from PyQt5.QtGui import QIcon, QImage, QPixmap
from PyQt5.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSlider,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from . import job, tinct_plugin
from .controller import controller

DOCKER_ID = "tinct_docker"
THUMBNAIL = 56   # px, a variation's thumbnail: four side by side fit the docker's width
ENGINE_LABELS = {"optimization": "Optimization", "learned": "Learned"}


class ReferenceBox(QComboBox):
    """The reference picker: none, or any paint layer of any open document, listed afresh whenever
    it opens (documents and layers come and go)."""

    def __init__(self):
        super().__init__(objectName="tinct_reference")
        self.setToolTip("A colour photo whose colours the photo takes where they match: any paint layer "
                        "of any open document")
        self.choice = None

    def chosen(self, index: int | None = None) -> tuple[str, str] | None:
        """The (document key, layer key) of an entry (default: the current one), None for none."""
        data = self.itemData(self.currentIndex() if index is None else index)
        return tuple(data) if data else None  # pyright: ignore[reportReturnType]  # stored as a pair

    def show_choice(self, choice: tuple[str, str] | None) -> None:
        """List the layers and select `choice` (a gone layer stays listed as gone, as the settings hold it)."""
        self.blockSignals(True)
        self.clear()
        self.addItem("None", None)
        for layer, label in controller().reference_layers():
            self.addItem(label, layer)
        listed = [self.chosen(i) for i in range(self.count())]
        if choice not in listed:
            self.addItem("(closed or removed)", choice)
            listed.append(choice)
        self.setCurrentIndex(listed.index(choice))
        self.choice = choice
        self.blockSignals(False)

    def showPopup(self) -> None:
        self.show_choice(self.chosen())
        super().showPopup()


class PaletteBox(QComboBox):
    """The palette picker: none, the foreground and background colours, or one of Krita's palettes,
    listed afresh whenever it opens."""

    def __init__(self):
        super().__init__(objectName="tinct_palette")
        self.setToolTip("Learned engine: steer the colours towards a palette")

    def show_choice(self, choice: str) -> None:
        self.blockSignals(True)
        self.clear()
        self.addItem("None", "")
        self.addItem("Foreground and background colours", job.FOREGROUND_BACKGROUND)
        for name in controller().palettes():
            self.addItem(name, name)
        if self.findData(choice) < 0:
            self.addItem(f"{choice} (gone)", choice)
        self.setCurrentIndex(self.findData(choice))
        self.blockSignals(False)

    def showPopup(self) -> None:
        self.show_choice(self.currentData() or "")
        super().showPopup()


class SettingsForm(QWidget):
    """Engine, vibrancy, reference layer and palette; vibrancy and the palette only apply to the
    learned engine, so they are greyed out otherwise."""

    def __init__(self, settings: job.Settings, parent: QWidget | None = None):
        super().__init__(parent)
        self.engine = QComboBox(objectName="tinct_engine")
        for name in job.ENGINES:
            self.engine.addItem(ENGINE_LABELS[name], name)
        self.vibrancy = QSlider(Qt.Horizontal, objectName="tinct_vibrancy")
        self.vibrancy.setRange(0, 100)
        self.vibrancy.setToolTip("Learned engine: from muted, safe colours (left) to bold ones (right)")
        self.reference = ReferenceBox()
        self.palette = PaletteBox()
        layout = QFormLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addRow("Engine", self.engine)
        layout.addRow("Vibrancy", self.vibrancy)
        layout.addRow("Reference", self.reference)
        layout.addRow("Palette", self.palette)
        self.load(settings)
        self.engine.currentIndexChanged.connect(self._enable)

    def load(self, settings: job.Settings) -> None:
        """Show `settings` without sending them back as changes."""
        for widget in (self.engine, self.vibrancy):
            widget.blockSignals(True)
        self.engine.setCurrentIndex(job.ENGINES.index(settings.engine))
        self.vibrancy.setValue(settings.vibrancy)
        for widget in (self.engine, self.vibrancy):
            widget.blockSignals(False)
        if settings.palette != self.palette.currentData() or self.palette.count() == 0:
            self.palette.show_choice(settings.palette)
        if settings.reference != self.reference.choice or self.reference.count() == 0:
            self.reference.show_choice(settings.reference)
        self._enable()

    def _enable(self):
        learned = self.engine.currentData() == "learned"
        self.vibrancy.setEnabled(learned)
        self.palette.setEnabled(learned)

    def values(self) -> dict:
        """The keyword arguments of the controller's set_settings."""
        return {"engine": self.engine.currentData(), "vibrancy": self.vibrancy.value(),
                "palette": self.palette.currentData() or ""}


class ColorizeDialog(QDialog):
    """Filter → Colorize (Tinct)…: confirm engine, vibrancy, reference and palette, then run."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent, objectName="tinct_colorize_dialog")
        self.setWindowTitle("Colorize (Tinct)")
        self.form = SettingsForm(controller().settings)
        buttons = QDialogButtonBox(QDialogButtonBox.Ok | QDialogButtonBox.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Colorize the selected photo layer from the strokes on its "
                                f'"{job.HINTS_NAME}" layer and the colours of the reference layer.',
                                wordWrap=True))
        layout.addWidget(self.form)
        layout.addWidget(buttons)


class VariationsRow(QWidget):
    """Variations: a button that asks the learned engine for several colorizations of the photo, a
    row of their thumbnails (a click applies that one as the Colorized layer) and More, which asks
    for the next ones."""

    def __init__(self):
        super().__init__()
        self.control = controller()
        self.ask = QPushButton("Variations", objectName="tinct_variations")
        self.more = QPushButton("More", objectName="tinct_variations_more", enabled=False,
                                toolTip="Ask for other variations")
        self.thumbnails = [QToolButton(objectName=f"tinct_variation_{i}", enabled=False)
                           for i in range(tinct_plugin.VARIATIONS)]
        self.shown = None   # the job.Variations the thumbnails show
        buttons, row = QHBoxLayout(), QHBoxLayout()
        buttons.addWidget(self.ask)
        buttons.addWidget(self.more)
        row.setSpacing(2)
        for i, button in enumerate(self.thumbnails):
            button.setIconSize(QSize(THUMBNAIL, THUMBNAIL))
            button.setFixedSize(THUMBNAIL + 6, THUMBNAIL + 6)
            button.clicked.connect(lambda _=False, i=i: self.control.apply_variation(i))
            row.addWidget(button)
        row.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(buttons)
        layout.addLayout(row)
        self.ask.clicked.connect(lambda: self.control.ask_variations())
        self.more.clicked.connect(lambda: self.control.ask_variations(more=True))

    def show_state(self) -> None:
        why_not = self.control.variations_unavailable()
        self.ask.setEnabled(why_not is None)
        self.ask.setToolTip(why_not or f"Ask the Learned engine for {tinct_plugin.VARIATIONS} colorizations of the "
                                       "photo with your strokes; click one to apply it")
        self.more.setEnabled(why_not is None and self.control.variations is not None)
        if self.control.variations is self.shown:
            return
        self.shown = self.control.variations
        pictures = self.shown.thumbnails(THUMBNAIL) if self.shown is not None else []
        for i, button in enumerate(self.thumbnails):
            if i < len(pictures):
                width, height, rgba = pictures[i]
                image = QImage(rgba, width, height, 4 * width, QImage.Format_RGBA8888).copy()
                button.setIcon(QIcon(QPixmap.fromImage(image)))
                button.setToolTip(f"Variation {i + 1}: apply it as the {job.RESULT_NAME} layer")
            else:
                button.setIcon(QIcon())
                button.setToolTip("")
            button.setEnabled(i < len(pictures))


class TinctDocker(DockWidget):
    """Engine, vibrancy, reference, palette, Live mode, variations to choose from, suggested colours
    for the spot last painted, and status."""

    def __init__(self):
        super().__init__()
        self.setWindowTitle("Tinct")
        self.control = controller()
        body = QWidget(self)
        self.form = SettingsForm(self.control.settings)
        self.live = QCheckBox("Live", objectName="tinct_live",
                              toolTip="Colorize again a moment after every stroke on the hints layer")
        add = QPushButton("Add Hints Layer", objectName="tinct_add_hints")
        run = QPushButton("Colorize", objectName="tinct_run")
        self.variations = VariationsRow()
        self.swatches = [QPushButton(objectName=f"tinct_swatch_{i}", enabled=False) for i in range(job.SUGGESTIONS)]
        self.status = QLabel(wordWrap=True, objectName="tinct_status")
        buttons, row = QHBoxLayout(), QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(run)
        row.setSpacing(2)
        for swatch in self.swatches:
            swatch.setFixedSize(26, 22)
            row.addWidget(swatch)
            swatch.clicked.connect(lambda _=False, s=swatch: self._pick(s))
        row.addStretch(1)
        layout = QVBoxLayout(body)
        layout.addWidget(self.form)
        layout.addWidget(self.live)
        layout.addLayout(buttons)
        layout.addWidget(self.variations)
        layout.addWidget(QLabel("Suggested colours for the spot last painted:", wordWrap=True))
        layout.addLayout(row)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.setWidget(body)
        self.form.engine.currentIndexChanged.connect(self._settings)
        self.form.vibrancy.valueChanged.connect(self._settings)
        self.form.palette.currentIndexChanged.connect(self._settings)
        self.form.reference.currentIndexChanged.connect(
            lambda: self.control.set_reference(self.form.reference.chosen()))
        self.live.toggled.connect(lambda on: self.control.set_settings(live_mode=on))
        add.clicked.connect(self.control.add_hints_layer)
        run.clicked.connect(lambda: self.control.colorize())
        self.control.changed.connect(self._show)
        # suggestions are worked out only while a docker is there to show them
        key = id(self)
        self.visibilityChanged.connect(lambda on: controller().show_docker(key, on))
        self.destroyed.connect(lambda: controller().show_docker(key, False))

    def canvasChanged(self, canvas: object) -> None:
        pass  # everything follows Krita's active document, read when needed

    def _settings(self):
        self.control.set_settings(**self.form.values())

    def _pick(self, swatch):
        colour = swatch.property("rgb")
        if colour:
            self.control.set_foreground(tuple(colour))

    def _show(self):
        # the Colorize dialog or another window's docker may have changed the settings
        self.form.load(self.control.settings)
        self.live.blockSignals(True)
        self.live.setChecked(self.control.settings.live)
        self.live.blockSignals(False)
        self.status.setText(self.control.status)
        self.variations.show_state()
        for i, swatch in enumerate(self.swatches):
            colour = self.control.suggestions[i] if i < len(self.control.suggestions) else None
            swatch.setEnabled(colour is not None)
            swatch.setProperty("rgb", list(colour) if colour else None)
            swatch.setStyleSheet("background-color: rgb(%d, %d, %d);" % colour if colour else "")
            swatch.setToolTip("#%02x%02x%02x: set as foreground colour" % colour if colour else "")


def run_colorize_dialog() -> None:
    """Filter → Colorize (Tinct)…: the dialog unless Krita runs in batch mode, then the request."""
    if not Krita.instance().batchmode():
        window = Krita.instance().activeWindow()
        dialog = ColorizeDialog(window.qwindow() if window is not None else None)
        if dialog.exec_() != QDialog.Accepted:
            return
        controller().set_settings(**dialog.form.values())
        controller().set_reference(dialog.form.reference.chosen())
    controller().colorize()
