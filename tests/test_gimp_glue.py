"""tinct-colorize.py, the GIMP glue itself, run against a small stand-in of GIMP's Python API
(gi.repository Gimp, Gegl, GLib, GObject) with the real client and a real tinctd: what it tells
GIMP's progress bar, and that it changes the image inside one undo group, wholly or not at all.

These are what the session tests (tests/test_gimp.py) cannot see: a Python plug-in cannot
install a progress handler in a real GIMP ("Cannot translate Python object to callback type"),
and a real GIMP cannot be made to refuse a call midway through the change; here the stand-in
(tests/fakes/gimp.py) records the Gimp.progress_* calls and fails the call a test names, the way GIMP 3.0.4 fails
(found in the chroot: libgimp answers False and keeps the reason as the PDB's last error).
"""

import importlib.util
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from daemon_fixture import RunningDaemon, free_port, tinct_client
from fakes.gimp import Image, Layer, Log, gi_module, parasite

PLUGIN = Path(__file__).resolve().parents[1] / "plugins" / "gimp" / "tinct-colorize"
SIZE = 320  # the photo where the image change is tested
BUSY = 960  # a photo with a second or two of solver work here, for several progress reports (polled every 0.3 s)
SMALL = 64  # where the change is what is tested, not the solver's work
PROGRESS_CALLS = ("progress_init", "progress_update", "progress_end")
UNDO_GROUP = ("undo_group_start", "undo_group_end")
# The calls that change the image, in the order the plug-in makes them, for Colorize on a
# grayscale image colorized before (_gray_rerun) and for Add Hints Layer on a grayscale photo
COLORIZE_STEPS = ["convert_rgb", "set_name", "Layer.new", "set_offsets", "write_pixels", "attach_parasite",
                  "insert_layer", "set_visible", "set_selected_layers", "remove_layer"]
ADD_HINTS_STEPS = ["convert_rgb", "Layer.new", "set_offsets", "fill", "attach_parasite", "insert_layer",
                   "set_selected_layers"]


@pytest.fixture
def gimp(monkeypatch):
    """tinct-colorize.py loaded against the stand-in; `log` collects what it does, in order."""
    log = Log()
    gi = gi_module(log)
    monkeypatch.setitem(sys.modules, "gi", gi)
    monkeypatch.setitem(sys.modules, "gi.repository", gi.repository)
    monkeypatch.syspath_prepend(str(PLUGIN))  # colorize_logic beside it, and plugins/common's modules
    # on sys.path already (daemon_fixture), as the installer lays them out
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


def _grey(size):
    return np.tile(np.linspace(0, 255, size).astype(np.uint8), (size, 1))


def _hints(log, size):
    """A "Colorize hints" layer with two strokes."""
    strokes = np.zeros((size, size, 4), np.uint8)
    strokes[20:26, 20:80] = (200, 40, 40, 255)
    strokes[-26:-20, -80:-20] = (40, 40, 200, 255)
    return Layer(log, "Colorize hints", size, size, "R'G'B'A u8", strokes.tobytes())


def _photo(log, size=SIZE):
    """A grey gradient photo under a hints layer with two strokes, the photo selected."""
    photo = Layer(log, "photo", size, size, "R'G'B' u8", np.repeat(_grey(size)[..., None], 3, axis=2).tobytes())
    hints = _hints(log, size)
    return Image(log, [hints, photo]), photo, hints


def _gray_rerun(gimp, results=1):
    """A grayscale image (converted back after an earlier run) holding hints, `results` earlier
    results made for the photo (a duplicate keeps the mark) and the photo, which is selected."""
    photo = Layer(gimp.log, "photo", SMALL, SMALL, "Y' u8", _grey(SMALL).tobytes())
    earlier = [Layer(gimp.log, name, SMALL, SMALL, "Y' u8", bytes(SMALL * SMALL))
               for name in ("Colorized", "Colorized copy")[:results]]
    mark = list(gimp.plugin.logic.encode_tattoo(photo.tattoo))
    for layer in earlier:
        layer.parasites[gimp.plugin.logic.RESULT_PARASITE] = parasite(gimp.plugin.logic.RESULT_PARASITE, 3, mark)
    return Image(gimp.log, [_hints(gimp.log, SMALL), *earlier, photo], base="gray"), photo


_PROCEDURE = types.SimpleNamespace(new_return_values=lambda status, error: (status, error))


def _colorize(gimp, image, layer, engine="optimization", reference=None, palette="none"):
    """Colorize as GIMP calls it from a batch script; the (status, error) it returns."""
    values = {"engine": engine, "vibrancy": 0.65, "reference": reference, "palette": palette,
              "hints-layer": "Colorize hints", "keep-hints-visible": False}
    config = types.SimpleNamespace(get_property=values.__getitem__)
    return gimp.plugin.TinctColorize().run_colorize(_PROCEDURE, "noninteractive", image, [layer], config, None)


def _add_hints(gimp, image, layer):
    return gimp.plugin.TinctColorize().run_add_hints(_PROCEDURE, "noninteractive", image, [layer], None, None)


def _progress(log):
    return [entry for entry in log if entry[0] in PROGRESS_CALLS]


def test_progress_names_the_layer_follows_the_daemons_job_and_ends(gimp, tinctd, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, hints = _photo(gimp.log, BUSY)
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
    """Running it again (the hints shown again to paint more) replaces the first result: removing
    it is part of the same group."""
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, hints = _photo(gimp.log)
    for _ in range(2):
        hints.visible = True
        del gimp.log[:]
        status, error = _colorize(gimp, image, photo)
        assert status == "success", error.message
    changes = [entry for entry in gimp.log if entry[0] not in PROGRESS_CALLS]
    assert changes[0] == ("undo_group_start",) and changes[-1] == ("undo_group_end",)
    assert not any(entry[0] in UNDO_GROUP for entry in changes[1:-1])
    assert ("remove_layer", "Colorized (replaced)") in changes and ("insert_layer", "Colorized") in changes
    assert ("set_visible", "Colorize hints", False) in changes
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


def _state(image):
    """All of the stand-in image that a run may change."""
    return {"base": image.base, "selected": image.get_selected_layers(),
            "layers": [(layer, layer.name, layer.visible, layer.offsets, layer.babl, layer.pixels,
                        dict(layer.parasites))
                       for layer in image.layers]}


def _changes(log):
    """The calls that changed the image, without the undo group around them (asserted here)."""
    changes = [entry for entry in log if entry[0] not in PROGRESS_CALLS]
    assert changes[0] == ("undo_group_start",) and changes[-1] == ("undo_group_end",)
    assert not any(entry[0] in UNDO_GROUP for entry in changes[1:-1])
    return changes[1:-1]


def _steps(how):
    return [(step, how) for step in COLORIZE_STEPS if (step, how) != ("write_pixels", "refuses")]


def _reason(step, how):
    """GIMP's reason for the failure the stand-in made, as the sentence gives it."""
    if how == "raises":
        return f"RuntimeError: {step} broke"
    return "TypeError: constructor returned NULL" if step == "Layer.new" else f"GIMP refused {step}"


def _assert_put_back(gimp, image, before, status, error, what, step, how):
    assert not gimp.log.faults, f"the run never came to {step}"
    assert status == "execution-error"
    assert error.message == f"GIMP could not {what} ({_reason(step, how)}). The image was not changed."
    assert _state(image) == before, "the image was left half-changed"
    assert all(layer.gone for layer in image.made), "a layer made by the run was left in GIMP"
    _changes(gimp.log)
    assert [entry for entry in gimp.log if entry[0] == "progress_end"] == [("progress_end",)]


def test_colorize_converts_first_builds_the_result_before_it_goes_in_and_replaces_last(gimp, tinctd, monkeypatch):
    """The order that lets a failure be put back: a removed layer is gone for good in GIMP."""
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo = _gray_rerun(gimp)
    hints, earlier = image.layers[:2]
    status, error = _colorize(gimp, image, photo)
    assert status == "success", error.message
    assert [entry[0] for entry in _changes(gimp.log)] == COLORIZE_STEPS
    result = image.layers[1]
    assert [layer.name for layer in image.layers] == ["Colorize hints", "Colorized", "photo"]  # not "Colorized #1"
    assert result is not earlier and earlier.gone and image.base == "rgb"
    assert result.babl == "R'G'B' u8" and len(result.pixels) == SMALL * SMALL * 3
    assert not hints.visible and image.selected == [result]


@pytest.mark.parametrize("step, how", _steps("refuses") + _steps("raises"))
def test_colorize_failing_at_any_step_of_the_change_leaves_the_image_as_it_was(gimp, tinctd, monkeypatch, step, how):
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo = _gray_rerun(gimp)
    before = _state(image)
    gimp.log.faults[step] = how
    status, error = _colorize(gimp, image, photo)
    _assert_put_back(gimp, image, before, status, error, "add the colorized layer", step, how)


def test_a_removed_earlier_result_cannot_be_put_back_so_the_sentence_says_undo(gimp, tinctd, monkeypatch):
    """Two earlier results: the first is removed, removing the second fails; all else is put back."""
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo = _gray_rerun(gimp, results=2)
    hints, first, second = image.layers[:3]
    gimp.log.faults[("remove_layer", "Colorized copy (replaced)")] = "refuses"
    status, error = _colorize(gimp, image, photo)
    assert status == "execution-error" and not gimp.log.faults
    assert error.message == ("GIMP could not add the colorized layer (GIMP refused remove_layer), and Colorize "
                             "could not put everything back; choose Edit → Undo to get the image back as it was.")
    assert image.layers == [hints, second, photo] and second.name == "Colorized copy" and first.gone
    assert image.base == "gray" and hints.visible and image.selected == [photo]


def test_when_putting_back_fails_the_sentence_says_undo(gimp, tinctd, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo = _gray_rerun(gimp)
    layers = list(image.layers)
    gimp.log.faults.update({"insert_layer": "refuses", "convert_grayscale": "refuses"})
    status, error = _colorize(gimp, image, photo)
    assert status == "execution-error" and not gimp.log.faults
    assert error.message.startswith("GIMP could not add the colorized layer (GIMP refused insert_layer), and ")
    assert error.message.endswith("choose Edit → Undo to get the image back as it was.")
    assert image.base == "rgb" and image.layers == layers and image.selected == [photo]  # all but the mode


def test_add_hints_layer_converts_first_and_fills_the_layer_before_it_goes_in(gimp):
    photo = Layer(gimp.log, "photo", SMALL, SMALL, "Y' u8", _grey(SMALL).tobytes())
    image = Image(gimp.log, [photo], base="gray")
    status, error = _add_hints(gimp, image, photo)
    assert status == "success", error.message
    assert [entry[0] for entry in _changes(gimp.log)] == ADD_HINTS_STEPS
    hints = image.layers[0]
    assert image.layers == [hints, photo] and image.base == "rgb" and image.selected == [hints]
    assert hints.name == "Colorize hints" and hints.pixels == bytes(SMALL * SMALL * 4)
    assert gimp.plugin.logic.HINTS_PARASITE in hints.parasites


@pytest.mark.parametrize("step, how", [(step, how) for how in ("refuses", "raises") for step in ADD_HINTS_STEPS])
def test_add_hints_layer_failing_at_any_step_leaves_the_image_as_it_was(gimp, step, how):
    photo = Layer(gimp.log, "photo", SMALL, SMALL, "Y' u8", _grey(SMALL).tobytes())
    image = Image(gimp.log, [photo], base="gray")
    before = _state(image)
    gimp.log.faults[step] = how
    status, error = _add_hints(gimp, image, photo)
    _assert_put_back(gimp, image, before, status, error, "add the hints layer", step, how)


def _guided(gimp, reference_babl="R'G'B'A u8"):
    """A grey photo with no hints layer, and as the reference a layer of another image: blue, its
    right half red (its image's `selection` unset)."""
    photo = Layer(gimp.log, "photo", SMALL, SMALL, "R'G'B' u8",
                  np.repeat(_grey(SMALL)[..., None], 3, axis=2).tobytes())
    channels = len(reference_babl.split()[0].replace("'", ""))
    colours = np.zeros((SMALL, SMALL, channels), np.uint8) + np.array([40, 60, 200, 255][-channels:], np.uint8)
    colours[:, SMALL // 2:] = np.array([200, 60, 40, 255][-channels:], np.uint8)
    reference = Layer(gimp.log, "Sky", SMALL, SMALL, reference_babl, colours.tobytes())
    Image(gimp.log, [reference])
    return Image(gimp.log, [photo]), photo, reference


def _blue_over_red(image):
    result = np.frombuffer(image.layers[0].pixels, np.uint8).reshape(SMALL, SMALL, 3).astype(int)
    return (result[..., 2] - result[..., 0]).mean()


def test_a_reference_colours_the_photo_without_strokes(gimp, tinctd, monkeypatch):
    """The optimization engine, no hints layer, a layer of another image as the reference: it runs
    (without a reference it refuses) and the result takes the reference's colours, mixed, and only
    the selected part's when the reference's image has a selection; the palette choice waits unused
    (tinctd refuses a palette for this engine)."""
    monkeypatch.setenv("TINCT_ENDPOINT", tinctd.endpoint)
    image, photo, reference = _guided(gimp)
    status, error = _colorize(gimp, image, photo, reference=reference, palette="colours")
    assert status == "success", error.message
    assert [layer.name for layer in image.layers] == ["Colorized", "photo"]
    assert [layer.name for layer in image.layers] == ["Colorized", "photo"]
    mixed = _blue_over_red(image)
    # the reference's image selects the blue half (offset by 3 px): the result is blue, and from the red
    # half only: red
    reference.set_offsets(3, 0)
    for selection, sign in (((0, 0, SMALL // 2 + 3, SMALL), 1), ((SMALL // 2 + 3, 5, SMALL + 3, SMALL), -1)):
        reference.image.selection = selection
        status, error = _colorize(gimp, image, photo, reference=reference)
        assert status == "success", error.message
        assert sign * _blue_over_red(image) > 40 and abs(mixed) < 40, (mixed, _blue_over_red(image))


def test_a_selection_on_the_references_image_that_misses_it_is_refused(gimp, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", f"tcp://127.0.0.1:{free_port()}")
    image, photo, reference = _guided(gimp)
    reference.image.selection = (SMALL, 0, SMALL + 5, 5)
    status, error = _colorize(gimp, image, photo, reference=reference)
    assert status == "execution-error" and "does not touch the reference layer" in error.message, error.message


def test_a_grey_reference_is_refused_before_anything_is_sent(gimp, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", f"tcp://127.0.0.1:{free_port()}")   # nothing listens: not asked
    image, photo, reference = _guided(gimp, "Y' u8")
    before = _state(image)
    status, error = _colorize(gimp, image, photo, reference=reference)
    assert status == "execution-error" and 'reference layer "Sky" is grey' in error.message, error.message
    assert _state(image) == before and [entry for entry in gimp.log if entry[0] not in PROGRESS_CALLS] == []
