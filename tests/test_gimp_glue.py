"""tinct-colorize.py, the GIMP glue itself, run against a small stand-in of GIMP's Python API
(gi.repository Gimp, Gegl, GLib, GObject) with the real client and a real tinctd: what it tells
GIMP's progress bar, and that it changes the image inside one undo group or not at all.

The progress bar is what these tests are for: a Python plug-in cannot install a progress
handler in a real GIMP ("Cannot translate Python object to callback type"), so the session
tests (tests/test_gimp.py) cannot see it; here the stand-in records the Gimp.progress_* calls.
"""

import importlib.util
import itertools
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from daemon_fixture import RunningDaemon, free_port, tinct_client

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "gimp" / "tinct-colorize"
SIZE = 320  # a second or so of solver work here, enough for several progress reports
PROGRESS_CALLS = ("progress_init", "progress_update", "progress_end")
UNDO_GROUP = ("undo_group_start", "undo_group_end")


# -- a stand-in for the part of GIMP 3's Python API that tinct-colorize.py uses ---------------
class Layer:
    """Gimp.Layer: pixels kept in the one Babl format the plug-in reads or writes them in."""

    tattoos = itertools.count(1)

    def __init__(self, log, name, width, height, babl=None, pixels=None):
        self.log, self.name, self.width, self.height = log, name, width, height
        self.babl, self.pixels = babl, pixels
        self.tattoo, self.offsets, self.visible, self.parasites = next(Layer.tattoos), (0, 0), True, {}

    @classmethod
    def new(cls, image, name, width, height, kind, opacity, mode):
        return cls(image.log, name, width, height)

    def get_name(self):
        return self.name

    def get_tattoo(self):
        return self.tattoo

    def get_width(self):
        return self.width

    def get_height(self):
        return self.height

    def get_offsets(self):
        return (True, *self.offsets)

    def set_offsets(self, x, y):
        self.log.append(("set_offsets", self.name))
        self.offsets = (x, y)

    def has_alpha(self):
        return self.babl is not None and self.babl.split()[0].endswith("A")

    def is_gray(self):
        return self.babl is not None and self.babl.startswith("Y'")

    def is_group(self):
        return False

    def get_parent(self):
        return None

    def get_parasite(self, name):
        return self.parasites.get(name)

    def attach_parasite(self, parasite):
        self.log.append(("attach_parasite", self.name))
        self.parasites[parasite.name] = parasite

    def set_visible(self, visible):
        self.log.append(("set_visible", self.name))
        self.visible = visible

    def get_buffer(self):
        return Buffer(self)

    def update(self, x, y, width, height):
        self.log.append(("update", self.name))


class Buffer:
    def __init__(self, layer):
        self.layer = layer

    def get(self, rect, scale, babl, abyss):
        layer = self.layer
        assert (rect.x, rect.y, rect.width, rect.height, babl) == (0, 0, layer.width, layer.height, layer.babl), \
            "this stand-in only reads a whole layer in its own format"
        return layer.pixels

    def set(self, rect, babl, data):
        self.layer.log.append(("write_pixels", self.layer.name))
        self.layer.babl, self.layer.pixels = babl, bytes(data)

    def flush(self):
        pass


class Image:
    """Gimp.Image: an 8-bit RGB image whose layers are listed top first."""

    def __init__(self, log, layers):
        self.log, self.layers, self.selected = log, list(layers), [layers[-1]]

    def get_id(self):
        return 1

    def get_precision(self):
        return types.SimpleNamespace(value_nick="u8-non-linear")

    def get_base_type(self):
        return "rgb"

    def get_layers(self):
        return list(self.layers)

    def get_layer_by_tattoo(self, tattoo):
        return next((layer for layer in self.layers if layer.tattoo == tattoo), None)

    def get_layer_by_name(self, name):
        return next((layer for layer in self.layers if layer.name == name), None)

    def get_item_position(self, layer):
        return self.layers.index(layer)

    def insert_layer(self, layer, parent, position):
        assert parent is None
        self.log.append(("insert_layer", layer.name))
        self.layers.insert(position, layer)

    def remove_layer(self, layer):
        self.log.append(("remove_layer", layer.name))
        self.layers.remove(layer)

    def set_selected_layers(self, layers):
        self.log.append(("set_selected_layers", [layer.name for layer in layers]))
        self.selected = layers

    def undo_group_start(self):
        self.log.append(("undo_group_start",))

    def undo_group_end(self):
        self.log.append(("undo_group_end",))


class GLibError:
    def __init__(self, message=None):
        self.message = message

    @classmethod
    def new_literal(cls, domain, message, code):
        return cls(message)


def _gi(log):
    """The gi package as the plug-in imports it; GIMP's progress calls go into `log`."""
    ns = types.SimpleNamespace
    gimp = ns(
        ImageType=ns(RGB_IMAGE="RGB", RGBA_IMAGE="RGBA"), ImageBaseType=ns(RGB="rgb", GRAY="gray"),
        PARASITE_PERSISTENT=1, PARASITE_UNDOABLE=2, LayerMode=ns(NORMAL="normal"),
        PlugIn=type("PlugIn", (), {"__gtype__": "GimpPlugIn"}), main=lambda gtype, argv: None,
        Layer=Layer, Parasite=ns(new=lambda name, flags, data: ns(name=name, get_data=lambda: data)),
        Selection=ns(is_empty=lambda image: True), displays_flush=lambda: None,
        progress_init=lambda message: log.append(("progress_init", message)),
        progress_update=lambda fraction: log.append(("progress_update", fraction)),
        progress_end=lambda: log.append(("progress_end",)),
        PDBStatusType=ns(SUCCESS="success", EXECUTION_ERROR="execution-error", CANCEL="cancel"),
        RunMode=ns(INTERACTIVE="interactive", NONINTERACTIVE="noninteractive"))
    gegl = ns(Rectangle=ns(new=lambda x, y, width, height: ns(x=x, y=y, width=width, height=height)),
              AbyssPolicy=ns(NONE="none"))
    repository = types.ModuleType("gi.repository")
    repository.Gimp, repository.Gegl = gimp, gegl
    repository.GLib = ns(Error=GLibError, quark_from_string=lambda name: name)
    repository.GObject = ns(ParamFlags=ns(READWRITE=3))
    gi = types.ModuleType("gi")
    gi.require_version, gi.repository = (lambda namespace, version: None), repository
    return gi


@pytest.fixture
def gimp(monkeypatch):
    """tinct-colorize.py loaded against the stand-in; `log` collects what it does, in order."""
    log = []
    gi = _gi(log)
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", gi.repository)
    monkeypatch.syspath_prepend(str(PLUGIN))  # colorize_logic beside it, as installed
    spec = importlib.util.spec_from_file_location("tinct_colorize_glue", PLUGIN / "tinct-colorize.py")
    plugin = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugin)
    # the real client, asking about the job ten times as often as it does in GIMP, so that even
    # a fast machine sees several of tinctd's progress reports during a short job
    monkeypatch.setattr(tinct_client, "PROBE_EVERY", 0.05)
    monkeypatch.setenv("TINCTD_COMMAND", "")  # never start a tinctd of its own
    return types.SimpleNamespace(plugin=plugin, log=log)


@pytest.fixture(scope="module")
def tinctd(tmp_path_factory):
    """A real tinctd without the learned engine's model, so it refuses learned jobs."""
    folder = tmp_path_factory.mktemp("tinctd")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TINCT_MODEL", str(folder / "no-model.pt"))
        daemon = RunningDaemon(folder)
    yield daemon
    assert daemon.stop() == 0


def _photo(log):
    """A grey gradient photo under a hints layer with two strokes, the photo selected."""
    grey = np.tile(np.linspace(0, 255, SIZE).astype(np.uint8), (SIZE, 1))
    strokes = np.zeros((SIZE, SIZE, 4), np.uint8)
    strokes[20:26, 20:80] = (200, 40, 40, 255)
    strokes[-26:-20, -80:-20] = (40, 40, 200, 255)
    photo = Layer(log, "photo", SIZE, SIZE, "R'G'B' u8", np.repeat(grey[..., None], 3, axis=2).tobytes())
    hints = Layer(log, "Colorize hints", SIZE, SIZE, "R'G'B'A u8", strokes.tobytes())
    return Image(log, [hints, photo]), photo, hints


def _colorize(gimp, image, layer, engine="optimization"):
    """Colorize as GIMP calls it from a batch script; the (status, error) it returns."""
    values = {"engine": engine, "vibrancy": 0.65, "hints-layer": "Colorize hints", "keep-hints-visible": False}
    config = types.SimpleNamespace(get_property=values.__getitem__)
    procedure = types.SimpleNamespace(new_return_values=lambda status, error: (status, error))
    return gimp.plugin.TinctColorize().run_colorize(procedure, "noninteractive", image, [layer], config, None)


def _progress(log):
    return [entry for entry in log if entry[0] in PROGRESS_CALLS]


def test_progress_names_the_layer_follows_the_daemons_job_and_ends(gimp, tinctd, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, hints = _photo(gimp.log)
    status, error = _colorize(gimp, image, photo)
    assert status == "success", error.message
    progress = _progress(gimp.log)
    assert progress[0][0] == "progress_init" and "“photo”" in progress[0][1]
    fractions = [entry[1] for entry in progress if entry[0] == "progress_update"]
    assert len(fractions) >= 3, f"only {len(fractions)} progress reports"
    assert fractions == sorted(fractions) and all(0 <= f <= 1 for f in fractions), fractions
    assert any(0 < f < 0.99 for f in fractions), f"no solver progress between start and end: {fractions}"
    assert progress[-1] == ("progress_end",) and progress.count(("progress_end",)) == 1
    # the reports come while tinctd works, before the image is touched; the bar goes after the change
    calls = [entry[0] for entry in gimp.log]
    assert len(progress) - 2 == len(fractions) and calls.index("undo_group_start") > calls.index("progress_update")
    assert calls.index("progress_end") > calls.index("undo_group_end")
    assert [layer.name for layer in image.layers] == ["Colorize hints", "Colorized", "photo"] and not hints.visible


def test_everything_the_run_changes_is_inside_one_undo_group(gimp, tinctd, monkeypatch):
    """Running it again replaces the first result: removing it is part of the same group."""
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, hints = _photo(gimp.log)
    for _ in range(2):
        del gimp.log[:]
        status, error = _colorize(gimp, image, photo)
        assert status == "success", error.message
    changes = [entry for entry in gimp.log if entry[0] not in PROGRESS_CALLS]
    assert changes[0] == ("undo_group_start",) and changes[-1] == ("undo_group_end",)
    assert not any(entry[0] in UNDO_GROUP for entry in changes[1:-1])
    assert ("remove_layer", "Colorized") in changes and ("insert_layer", "Colorized") in changes
    assert ("set_visible", "Colorize hints") in changes
    assert [layer.name for layer in image.layers] == ["Colorize hints", "Colorized", "photo"]


def _assert_refused_cleanly(gimp, image, status, error, sentence):
    assert status == "execution-error" and sentence in error.message, error.message
    assert error.message.endswith("The image was not changed.") or "not running" in error.message
    progress = _progress(gimp.log)
    assert progress[0][0] == "progress_init" and progress[-1] == ("progress_end",)
    assert all(0 <= entry[1] <= 1 for entry in progress if entry[0] == "progress_update")
    assert [entry for entry in gimp.log if entry[0] not in PROGRESS_CALLS] == [], "the image was touched"
    assert [layer.name for layer in image.layers] == ["Colorize hints", "photo"] and image.layers[0].visible


def test_progress_ends_when_tinctd_refuses_the_job(gimp, tinctd, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, _ = _photo(gimp.log)
    status, error = _colorize(gimp, image, photo, engine="learned")
    _assert_refused_cleanly(gimp, image, status, error, "the learned engine's model is not installed")


def test_progress_ends_when_tinctd_is_not_running(gimp, monkeypatch):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    monkeypatch.setenv("TINCT_ENDPOINT", endpoint)
    image, photo, _ = _photo(gimp.log)
    status, error = _colorize(gimp, image, photo)
    _assert_refused_cleanly(gimp, image, status, error, f"The Tinct daemon is not running at {endpoint}.")
