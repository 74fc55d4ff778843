"""A stand-in for the part of Krita's Python API that the Krita plugin's document.py uses
(Document, Node, Selection), for tests/test_krita_logic.py; tests/test_krita.py runs the same
code against the real thing.

Importing this module also makes the plugin importable as `tinct_krita`, laid out as the
installer lays it out: plugins/common's modules inside the package.
"""

import itertools
import struct

import numpy as np
from tinct_krita import formats  # laid out as installed by tests/conftest.py


class Rect:
    def __init__(self, x, y, w, h):
        self._r = (x, y, w, h)

    def x(self):
        return self._r[0]

    def y(self):
        return self._r[1]

    def width(self):
        return self._r[2]

    def height(self):
        return self._r[3]


class Uid:
    def __init__(self, text):
        self.text = text

    def toString(self):
        return self.text


PLANE, ORIGIN = 64, 16   # a node's pixels cover x, y in -16..47, stored as float RGBA
ENCODING = {"U8": ("B", 255, [2, 1, 0, 3]), "U16": ("H", 65535, [2, 1, 0, 3]),
            "F16": ("e", None, [0, 1, 2, 3]), "F32": ("f", None, [0, 1, 2, 3])}


class Node:
    """Krita's Node as far as the plugin uses it: RGBA (BGRA for U8/U16, as Krita stores them) and
    GRAYA U8; converting colour spaces keeps the values (profiles are only names here)."""

    ids = itertools.count()

    def __init__(self, doc, name, kind, space):
        self.doc, self._name, self._type, self.space = doc, name, kind, space
        self.parent, self.children = None, []
        self.rgba = np.zeros((PLANE, PLANE, 4), np.float64)
        self.uid = f"{{node-{next(Node.ids)}}}"
        self._visible, self._opacity, self._blending = True, 255, "normal"

    def uniqueId(self):
        return Uid(self.uid)

    def name(self):
        return self._name

    def setName(self, name):
        self._name = name

    def type(self):
        return self._type

    def colorModel(self):
        return self.space.model

    def colorDepth(self):
        return self.space.depth

    def colorProfile(self):
        return self.space.profile

    def parentNode(self):
        return self.parent

    def childNodes(self):
        return list(self.children)

    def addChildNode(self, child, above):
        child.parent = self
        self.children.insert(self.children.index(above) + 1 if above is not None else 0, child)
        return True

    def remove(self):
        self.parent.children.remove(self)
        self.parent = None
        return True

    def visible(self):
        return self._visible

    def setVisible(self, on):
        self._visible = on

    def opacity(self):
        return self._opacity

    def setOpacity(self, value):
        self._opacity = value

    def blendingMode(self):
        return self._blending

    def setBlendingMode(self, mode):
        self._blending = mode

    def bounds(self):
        ys, xs = np.nonzero(self.rgba[..., 3] > 0)
        if not len(xs):
            return Rect(0, 0, 0, 0)
        return Rect(xs.min() - ORIGIN, ys.min() - ORIGIN, xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)

    def duplicate(self):
        copy = Node(self.doc, self._name, self._type, self.space)
        copy.rgba = self.rgba.copy()
        return copy

    def setColorSpace(self, model, depth, profile):
        if model not in ("RGBA", "GRAYA") or depth not in ENCODING:
            return False
        self.space = formats.Space(model, depth, profile)
        if model == "GRAYA":
            self.rgba[..., :3] = self.rgba[..., :3].mean(axis=2, keepdims=True)
        return True

    def _channels(self):
        code, scale, order = ENCODING[self.space.depth]
        return code, scale, ([0, 3] if self.space.model == "GRAYA" else order)

    def pixelData(self, x, y, w, h):
        code, scale, order = self._channels()
        values = self.rgba[y + ORIGIN:y + ORIGIN + h, x + ORIGIN:x + ORIGIN + w][..., order]
        if scale:
            values = np.round(values * scale).astype(np.int64)
        return struct.pack(f"={values.size}{code}", *values.ravel().tolist())

    def setPixelData(self, data, x, y, w, h):
        code, scale, order = self._channels()
        values = np.array(struct.unpack(f"={len(data) // struct.calcsize(code)}{code}", bytes(data)), np.float64)
        values = values.reshape(h, w, len(order)) / (scale or 1)
        target = self.rgba[y + ORIGIN:y + ORIGIN + h, x + ORIGIN:x + ORIGIN + w]
        if self.space.model == "GRAYA":
            target[..., :3], target[..., 3] = values[..., :1], values[..., 1]
        else:
            target[..., order] = values
        return True

    def fill(self, x, y, w, h, rgba):
        self.rgba[y + ORIGIN:y + ORIGIN + h, x + ORIGIN:x + ORIGIN + w] = np.asarray(rgba, np.float64) / 255


class Selection:
    def __init__(self, mask):
        self.mask = mask  # (height, width) u8 over the canvas

    def pixelData(self, x, y, w, h):
        return self.mask[y:y + h, x:x + w].tobytes()

    def _box(self):
        ys, xs = np.nonzero(self.mask)
        return xs.min(), ys.min(), xs.max() + 1 - xs.min(), ys.max() + 1 - ys.min()

    def x(self):
        return int(self._box()[0])

    def y(self):
        return int(self._box()[1])

    def width(self):
        return int(self._box()[2])

    def height(self):
        return int(self._box()[3])


class Document:
    def __init__(self, width, height, space=formats.Space("RGBA", "U8", formats.SRGB_PROFILE), file=""):
        self._size, self.space, self.file = (width, height), space, file
        self.root = Node(self, "root", "grouplayer", space)
        self.active, self._selection, self.refreshed = None, None, 0

    def rootNode(self):
        return self.root

    def fileName(self):
        return self.file

    def name(self):
        return ""   # Krita's title of a document opened from a file (its metadata has none)

    def width(self):
        return self._size[0]

    def height(self):
        return self._size[1]

    def activeNode(self):
        return self.active

    def setActiveNode(self, node):
        self.active = node

    def selection(self):
        return self._selection

    def createNode(self, name, kind):
        return Node(self, name, kind, self.space)

    def refreshProjection(self):
        self.refreshed += 1

    def add(self, name, kind="paintlayer", space=None):
        node = Node(self, name, kind, space or self.space)
        self.root.addChildNode(node, self.root.children[-1] if self.root.children else None)
        return node

    def names(self):
        return [n.name() for n in self.root.childNodes()]

    def state(self):
        """Everything a failed Colorize must leave as it was."""
        return [(n.name(), n.uid, n.space, n.rgba.tobytes()) for n in self.root.childNodes()]


# -- the Krita and PyQt5 classes controller.py uses, for driving the controller without Krita ---------------
class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


class pyqtSignal:  # noqa: N801 - PyQt5's name
    """A class attribute that gives each object a Signal of its own."""

    def __init__(self, *types):
        self.name = None

    def __set_name__(self, owner, name):
        self.name = f"_signal_{name}"

    def __get__(self, obj, owner):
        return self if obj is None else obj.__dict__.setdefault(self.name, Signal())


class QTimer:
    later = []   # singleShot callbacks: the test runs them when it wants the event loop to turn

    def __init__(self, parent=None):
        self.timeout, self.active = Signal(), False

    def setInterval(self, ms):
        pass

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    def isActive(self):
        return self.active

    @staticmethod
    def singleShot(ms, slot):
        QTimer.later.append(slot)


class QMessageBox:
    Warning, Ok = "warning", "ok"
    shown = []   # the texts of the boxes opened

    def __init__(self, icon, title, text, buttons, parent=None):
        self.text = text

    def setObjectName(self, name):
        pass

    def setAttribute(self, attribute):
        pass

    def open(self):
        QMessageBox.shown.append(self.text)


class Application:
    """Krita.instance(): kritarc settings, the open documents and the active one, no window."""

    def __init__(self, documents=()):
        self.docs, self.active, self.kritarc = list(documents), None, {}
        self.closing = Signal()

    def readSetting(self, group, name, default):
        return self.kritarc.get((group, name), default)

    def writeSetting(self, group, name, value):
        self.kritarc[(group, name)] = value

    def notifier(self):
        return type("Notifier", (), {"applicationClosing": self.closing})()

    def activeDocument(self):
        return self.active

    def documents(self):
        return list(self.docs)

    def activeWindow(self):
        return None

    def resources(self, kind):
        return {}


def glue_modules(app):
    """Stand-ins for the `krita` and PyQt5 modules controller.py imports, Krita.instance() being `app`."""
    import types

    krita = types.ModuleType("krita")
    krita.Krita = type("Krita", (), {"instance": staticmethod(lambda: app)})
    krita.ManagedColor = krita.Palette = object
    core = types.ModuleType("PyQt5.QtCore")
    core.QObject, core.QTimer, core.pyqtSignal = object, QTimer, pyqtSignal
    core.Qt = type("Qt", (), {"WA_DeleteOnClose": 55})
    gui = types.ModuleType("PyQt5.QtGui")
    gui.QColor = object
    widgets = types.ModuleType("PyQt5.QtWidgets")
    widgets.QMessageBox = QMessageBox
    return {"krita": krita, "PyQt5": types.ModuleType("PyQt5"), "PyQt5.QtCore": core, "PyQt5.QtGui": gui,
            "PyQt5.QtWidgets": widgets}
