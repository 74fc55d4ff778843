"""Filter → Colorize (Tinct)… and Filter → Add Colorize Hints Layer (Krita glue)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from krita import Extension

from .controller import controller
from .widgets import run_colorize_dialog

if TYPE_CHECKING:
    from krita import Window

COLORIZE_ACTION = "tinct_colorize"
HINTS_ACTION = "tinct_add_hints_layer"


class TinctExtension(Extension):
    def setup(self) -> None:
        pass

    def createActions(self, window: Window) -> None:
        # "filter" is the objectName of Krita's Filter menu; shortcuts come from tinct_krita.action
        colorize = window.createAction(COLORIZE_ACTION, "Colorize (Tinct)…", "filter")
        colorize.triggered.connect(run_colorize_dialog)
        hints = window.createAction(HINTS_ACTION, "Add Colorize Hints Layer", "filter")
        hints.triggered.connect(lambda: controller().add_hints_layer())
