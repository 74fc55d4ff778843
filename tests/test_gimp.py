"""Tinct's GIMP plug-in inside a real GIMP 3.0 (Debian 13 chroot), talking to a real tinctd.

Two GIMP sessions, each installing the plug-in with the project's installer into the same
throw-away profile.  The full GIMP on a private Xvfb (tests/editors/gimp/dialog_colorize.py)
opens the Colorize… dialog twice; the test answers it with Escape, then Return, and then types
Ctrl+Z into the image window, once per Colorize run to take back.  gimp-console
(batch_colorize.py) drives both procedures through the PDB as a batch script would and exports
the layers.  The tests below assert on their reports and on the exported pixels, against what
the same tinctd answers the host for correctly aligned inputs.  Needs root and the chroot made
by tests/editors/gimp/setup.sh; skipped with the reason otherwise (the dialog tests alone
without Xvfb/libXtst on the host).
"""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pytest
import xserver  # tests/editors/gimp: pyproject's pythonpath

from daemon_fixture import RunningDaemon
from editor_scene import (
    CANVAS,
    OFFSETS,
    PALETTE,
    SELECTION,
    SWATCH,
    SWATCH_TINT,
    H,
    W,
    assert_hint_colours,
    assert_lightness_kept,
    assert_palette_colours,
    assert_reference_colours,
    assert_selection_respected,
    chroma,
    grey_photo,
    hints,
    reference_photo,
    swatch_guidance,
    two_tone_reference,
)
from tinct.color import imagefile

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "editors" / "gimp"

pytestmark = pytest.mark.editor

ROOT = Path(os.environ.get("TINCT_GIMP_ROOT", "/tmp/tinct-gimp3-trixie"))
SESSION_TIMEOUT = 300
# A HOME (the same path inside the chroot) where installers/install.sh already put the plug-in
# (.ci/installed): the sessions use it instead of installing one
INSTALLED_HOME = os.environ.get("TINCT_GIMP_HOME")

FEATHER = 6                           # of the selection, px
DEFAULT_VIBRANCY = 0.65               # the Colorize… dialog's default boldness (0 muted .. 1 bold)
LEARNED_VIBRANCY = 0.15               # what batch_colorize.py asks the learned engine for, with strokes
UNSTARTABLE = "/opt/no-such-tinctd"   # GIMP's $TINCTD_COMMAND: how the plug-in tries to start tinctd


def _skip_reason():
    if os.geteuid() != 0:
        return "the GIMP 3 chroot needs root (chroot, mount namespace)"
    if not (ROOT / "usr/bin/gimp-console-3.0").exists():
        return f"no GIMP 3 chroot at {ROOT}: run tests/editors/gimp/setup.sh as root (TINCT_GIMP_ROOT moves it)"
    return None


def _with_alpha_ramp(grey16):
    """RGBA u16: the grey photo, fully transparent at the left edge to opaque at the right."""
    alpha = np.broadcast_to(np.round(np.linspace(0, 65535, W)).astype(np.uint16), (H, W))
    return np.dstack([grey16, grey16, grey16, alpha])


def _write_inputs(work):
    """The files batch_colorize.py opens; returns the photos and the layer-aligned hints as arrays."""
    grey = grey_photo()
    grey8 = np.round(grey * 255).astype(np.uint8)
    inputs = {"photo8": np.repeat(grey8[..., None], 3, axis=2), "photo_gray": grey8,
              "photo16": np.repeat(np.round(grey * 65535).astype(np.uint16)[..., None], 3, axis=2),
              "photo_alpha16": _with_alpha_ramp(np.round(grey * 65535).astype(np.uint16)),
              "hints_photo": hints(), "hints_canvas": hints(shape=CANVAS[::-1], origin=OFFSETS),
              "reference": reference_photo(), "reference_two_tone": two_tone_reference()}
    for name, array in inputs.items():
        imagefile.write(work / f"{name}.png", array)
    (work / "params.json").write_text(json.dumps(
        {"canvas": CANVAS, "offsets": OFFSETS, "selection": SELECTION, "feather": FEATHER,
         "learned_vibrancy": LEARNED_VIBRANCY, "palette": PALETTE, "swatch": SWATCH}))
    return inputs


def _stop(process):
    """End a GIMP session's whole process group (GIMP and its plug-ins)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _reference(client, photo, hints=None, engine="optimization", guidance=None, **options):
    """What tinctd answers for `photo` with correctly aligned hints, asked from the host the way the
    plug-in asks (layer at its own depth, hints RGBA u8, reference RGBA u8, the same engine options)."""
    channels = 1 if photo.ndim == 2 else photo.shape[2]
    reply = client.colorize(width=W, height=H, layout={1: "GRAY", 3: "RGB", 4: "RGBA"}[channels],
                            sample={"uint8": "u8", "uint16": "u16", "float32": "f32"}[photo.dtype.name],
                            pixels=photo.tobytes(), hints=None if hints is None else hints.tobytes(),
                            engine=engine, options=options, guidance=guidance)
    return np.frombuffer(reply["pixels"], photo.dtype).reshape(H, W, max(channels, 3))


def _references(client, inputs):
    photo8, hints = inputs["photo8"], inputs["hints_photo"]
    rgba = np.dstack([inputs["reference"], np.full((H, W), 255, np.uint8)])
    guided = {"reference": rgba.tobytes(), "reference_width": W, "reference_height": H,
              "reference_layout": "RGBA", "reference_sample": "u8"}
    return {"reference": _reference(client, photo8, guidance=guided),
            "swatch": _reference(client, photo8, guidance=swatch_guidance()),
            "reference_learned": _reference(client, photo8, None, "learned", guided, vibrancy=DEFAULT_VIBRANCY),
            "palette": _reference(client, photo8, None, "learned", {"palette": [list(c) for c in PALETTE]},
                                  vibrancy=DEFAULT_VIBRANCY),
            "learned_alone": _reference(client, photo8, None, "learned", vibrancy=DEFAULT_VIBRANCY),
            "photo8": _reference(client, photo8, hints),
            "photo16": _reference(client, inputs["photo16"], hints),
            "float": _reference(client, inputs["photo_alpha16"].astype(np.float32) / 65535, hints),
            "learned": _reference(client, photo8, hints, "learned", vibrancy=LEARNED_VIBRANCY),
            "gray_learned": _reference(client, inputs["photo_gray"], None, "learned", vibrancy=DEFAULT_VIBRANCY)}


def _session(work, inside, logs, script, mode, env, poll):
    """One GIMP session in the chroot running `script`; poll() is called every 0.1 s meanwhile.
    Returns its seconds."""
    log_path = logs / f"gimp-{mode}.log"
    t0 = time.monotonic()
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(SCRIPTS / "in-chroot.sh"), str(ROOT), str(REPO), f"HOME={INSTALLED_HOME or inside + '/home'}",
             *(["TINCT_GIMP_INSTALLED=1"] if INSTALLED_HOME else []), *env,
             "bash", "/opt/tinct/tests/editors/gimp/session.sh", inside, script, mode],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while process.poll() is None:
                poll()
                if time.monotonic() - t0 > SESSION_TIMEOUT:
                    pytest.fail(f"GIMP session ({script}) still running after {SESSION_TIMEOUT} s: {log_path}")
                time.sleep(0.1)
        finally:
            _stop(process)
    tail = log_path.read_text()[-3000:]
    assert process.returncode == 0, f"GIMP session ({script}) failed ({process.returncode}):\n{tail}"
    return time.monotonic() - t0


def _dialog_session(work, inside, logs, env):
    """GUI GIMP under a private Xvfb answering the two Colorize… dialogs (Escape, then Return) and
    typing into the image window ("… – GIMP") what the script asks for."""
    x = xserver.Xvfb()
    try:
        answers = xserver.DialogAnswers(x, "Colorize", ["Escape", "Return"])
        keys = xserver.KeyRequests(x, work / "type-keys", " – GIMP")

        def poll():
            answers.poll()
            keys.poll()

        seconds = _session(work, inside, logs, "dialog_colorize.py", "gui", env + [f"DISPLAY={x.display}"], poll)
    finally:
        x.stop()
    assert answers.done, f"only {2 - len(answers.keys)} of 2 Colorize dialogs appeared"
    return json.loads((work / "dialog.json").read_text()), seconds


@pytest.fixture(scope="module")
def gimp(tmp_path_factory):
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    chroot_work = Path(tempfile.mkdtemp(prefix="tinct-gimp-test-", dir=ROOT / "tmp"))
    inside = "/" + str(chroot_work.relative_to(ROOT))
    logs = tmp_path_factory.mktemp("gimp-logs")
    daemon = None
    try:
        inputs = _write_inputs(chroot_work)
        t0 = time.monotonic()
        # its socket in the chroot's private work folder: the same file from both sides
        daemon = RunningDaemon(logs, endpoint=f"ipc://{chroot_work}/tinctd.sock")
        started = time.monotonic() - t0
        with daemon.client(timeout=30) as client:
            references = _references(client, inputs)
        env = [f"TINCT_ENDPOINT=ipc://{inside}/tinctd.sock", f"TINCTD_COMMAND={UNSTARTABLE}"]
        dialog, dialog_skip, gui = None, xserver.missing(), 0.0
        if dialog_skip is None:  # first: the batch session stops tinctd at its end
            dialog, gui = _dialog_session(chroot_work, inside, logs, env)

        def stop_daemon_when_asked():
            if (chroot_work / "stop-daemon").exists() and daemon.alive():
                daemon.stop()
                (chroot_work / "daemon-stopped").touch()

        console = _session(chroot_work, inside, logs, "batch_colorize.py", "console", env, stop_daemon_when_asked)
        report = json.loads((chroot_work / "report.json").read_text())
        print(f"\n[gimp] tinctd ready in {started:.1f} s, GUI session {gui:.1f} s, console session {console:.1f} s")
        yield types.SimpleNamespace(report=report, dialog=dialog, dialog_skip=dialog_skip, work=chroot_work,
                                    references=references, inputs=inputs)
    finally:
        if daemon is not None:
            daemon.stop()
        shutil.rmtree(chroot_work, ignore_errors=True)


def _read(gimp, name):
    return imagefile.read(gimp.work / name)


def _raw(gimp, name):
    """A layer batch_colorize.py dumped as raw R'G'B'A float."""
    return np.fromfile(gimp.work / name, np.float32).reshape(H, W, 4)


def _names(record, when="after"):
    return [layer["name"] for layer in record[when]["layers"]]


def _layer(record, name, when="after"):
    return next(layer for layer in record[when]["layers"] if layer["name"] == name)


def _assert_failed_cleanly(record, sentence):
    assert record["status"] == "execution-error", record
    assert sentence in record["error"] and "Traceback" not in record["error"]
    assert record["after"] == record["before"], "the image changed although the procedure failed"


def _assert_lightness_kept(result, source):
    assert result.dtype == source.dtype, "the result is not at the photo's precision"
    assert_lightness_kept(result, source)


def test_colorize_dialog_is_built_from_these_arguments(gimp):
    """GimpUi.ProcedureDialog shows the declared arguments with these defaults and tooltips."""
    arguments = gimp.report["arguments"]
    assert set(arguments) == {"engine", "vibrancy", "reference", "palette", "hints-layer", "keep-hints-visible"}
    assert arguments["reference"]["default"] is None and arguments["reference"]["type"] == "GimpDrawable"
    assert arguments["palette"]["default"] == "none"
    assert arguments["palette"]["choices"] == ["none", "colours", "palette"]
    assert arguments["engine"]["default"] == "optimization"
    assert arguments["engine"]["choices"] == ["optimization", "learned"]
    assert arguments["vibrancy"]["default"] == pytest.approx(DEFAULT_VIBRANCY)
    assert "0 muted" in arguments["vibrancy"]["blurb"] and "1 bold" in arguments["vibrancy"]["blurb"]
    assert arguments["hints-layer"]["default"] == "Colorize hints"
    assert arguments["keep-hints-visible"]["default"] is False


def test_both_procedures_are_under_filters_colorize(gimp):
    assert set(gimp.report["menu"]) == {"plug-in-tinct-colorize", "plug-in-tinct-add-hints-layer"}
    for paths in gimp.report["menu"].values():
        assert paths == ["<Image>/Filters/Colorize"]


def test_add_hints_layer_on_a_grayscale_image(gimp):
    record = gimp.report["add_hints"]
    assert record["status"] == "success", record["error"]
    assert record["before"]["base"] == "gray" and record["after"]["base"] == "rgb"  # strokes need colour
    photo = record["before"]["layers"][0]
    assert _names(record) == ["Colorize hints", photo["name"]]
    assert record["after"]["selected"] == ["Colorize hints"]
    hints = _layer(record, "Colorize hints")
    assert hints["alpha"] and hints["size"] == photo["size"] and hints["offsets"] == photo["offsets"]
    empty = __import__("hashlib").md5(bytes(W * H * 16)).hexdigest()  # RGBA float zeros
    assert hints["md5"] == empty


def test_optimization_without_strokes_explains_what_to_do(gimp):
    _assert_failed_cleanly(gimp.report["no_strokes"], "paint a few strokes")


def test_result_goes_directly_above_the_source(gimp):
    record = gimp.report["optimization"]
    assert record["status"] == "success", record["error"]
    assert _names(record, "before") == ["Top", "Colorize hints", "photo"]
    assert _names(record) == ["Top", "Colorize hints", "Colorized", "photo"]
    result, photo = _layer(record, "Colorized"), _layer(record, "photo")
    assert result["offsets"] == photo["offsets"] == list(OFFSETS) and result["size"] == photo["size"] == [W, H]
    assert photo == _layer(record, "photo", "before"), "the source layer changed"
    assert not _layer(record, "Colorize hints")["visible"]  # keep-hints-visible defaults to off
    assert record["after"]["selected"] == ["Colorized"]


def test_result_keeps_the_lightness_and_shows_the_hint_colours(gimp):
    result = _read(gimp, gimp.report["optimization"]["export"])
    _assert_lightness_kept(result, _read(gimp, gimp.report["source_export"]))
    assert_hint_colours(result)


def test_result_equals_the_daemons_answer_for_aligned_hints(gimp):
    """Offsets honoured: the canvas-sized hints were cropped to the layer exactly."""
    result = _read(gimp, gimp.report["optimization"]["export"]).astype(int)
    assert np.abs(result - gimp.references["photo8"].astype(int)).max() <= 1


def test_only_selected_pixels_change_and_rerun_replaces_the_result(gimp):
    record = gimp.report["selection"]
    assert record["status"] == "success", record["error"]
    assert _names(record) == _names(record, "before")  # replaced, not stacked
    assert _layer(record, "Colorize hints")["visible"]  # keep-hints-visible on
    result = _read(gimp, record["export"]).astype(int)
    source = _read(gimp, gimp.report["source_export"]).astype(int)
    full = _read(gimp, gimp.report["optimization"]["export"]).astype(int)
    assert_selection_respected(result, source, full, FEATHER)


def test_rerun_with_the_result_selected_finds_its_photo(gimp):
    record = gimp.report["rerun_from_result"]
    assert record["status"] == "success", record["error"]
    assert _names(record) == ["Top", "Colorize hints", "Colorized", "photo"]
    assert _layer(record, "Colorized")["md5"] != _layer(record, "Colorized", "before")["md5"]


def test_sixteen_bit_image_stays_sixteen_bit(gimp):
    record = gimp.report["deep"]
    assert record["status"] == "success", record["error"]
    assert record["before"]["precision"] == record["after"]["precision"] == "u16-non-linear"
    result = _read(gimp, record["export"])
    assert result.dtype == np.uint16
    _assert_lightness_kept(result, _read(gimp, record["source_export"]))
    assert_hint_colours(result)
    assert np.mean(result % 257 != 0) > 0.5, "the colours were computed at 8 bits"
    assert np.abs(result.astype(int) - gimp.references["photo16"].astype(int)).max() <= 257


def test_float_image_with_alpha_stays_float_and_keeps_its_alpha(gimp):
    record = gimp.report["float"]
    assert record["status"] == "success", record["error"]
    assert record["before"]["precision"] == record["after"]["precision"] == "float-non-linear"
    result, source = _raw(gimp, record["raw"]), _raw(gimp, record["source_raw"])
    assert source[..., 3].min() == 0 and source[..., 3].max() == 1  # the ramp arrived
    assert np.array_equal(result[..., 3], source[..., 3]), "the alpha channel changed"
    _assert_lightness_kept(result, source)
    assert_hint_colours(result)
    # The reference's input is numpy's u16 -> float, GIMP's its own conversion (float rounding apart); the final
    # solve stops on an error estimate, which may then fall an iteration apart: 1.5e-3 seen, half an 8-bit level.
    assert np.abs(result - gimp.references["float"]).max() < 2e-3
    steps = result[..., :3] * 65535
    assert np.mean(np.abs(steps - np.round(steps)) > 0.01) > 0.5, "the colours were computed at 16 bits or less"


def test_daemon_stopped_and_not_startable_is_an_error_and_changes_nothing(gimp):
    """tinctd gone and its start command failing: the sentence says so and the image is as it was."""
    _assert_failed_cleanly(gimp.report["daemon_stopped"], f"Could not start the Tinct daemon with '{UNSTARTABLE}'")


def test_learned_colorizes_a_gray_photo_without_strokes(gimp):
    """No hints layer at all, default vibrancy: the network's own colours, the photo's lightness."""
    record = gimp.report["gray_learned"]
    assert record["status"] == "success", record["error"]
    assert record["before"]["base"] == "gray" and record["after"]["base"] == "rgb"
    assert _names(record) == ["Colorized"] + _names(record, "before") and len(_names(record, "before")) == 1
    assert record["after"]["selected"] == ["Colorized"]
    result, source = _read(gimp, record["export"]), _read(gimp, record["source_export"])
    _assert_lightness_kept(result, source)
    assert chroma(source).max() < 1 and np.median(chroma(result)) > 5, "the learned result is not coloured"
    assert np.abs(result.astype(int) - gimp.references["gray_learned"].astype(int)).max() <= 1


def test_learned_with_strokes_keeps_lightness_and_the_chosen_vibrancy(gimp):
    record = gimp.report["learned"]
    assert record["status"] == "success", record["error"]
    assert _names(record) == ["Top", "Colorize hints", "Colorized", "photo"]  # replaced the earlier result
    result = _read(gimp, record["export"])
    _assert_lightness_kept(result, _read(gimp, gimp.report["source_export"]))
    assert_hint_colours(result)
    # the daemon's answer for the aligned hints at the vibrancy the batch asked for, not the default
    assert np.abs(result.astype(int) - gimp.references["learned"].astype(int)).max() <= 1


@pytest.mark.parametrize("name, engine", [("reference", "optimization"), ("reference_learned", "learned")])
def test_a_layer_of_another_image_lends_its_colours(gimp, name, engine):
    """A grey photo, no strokes, the reference a layer of another open image (a strongly blue copy of the
    photo, mirrored): the result takes its colours (with the optimization engine too, which would
    refuse to run without strokes or a reference), exactly as tinctd answers the host for the same
    reference, and far from the learned engine's own colours."""
    record = gimp.report[name]
    assert record["status"] == "success", record["error"]
    assert _names(record) == ["Colorized", "photo"]
    result = _read(gimp, record["export"])
    _assert_lightness_kept(result, gimp.inputs["photo8"])
    assert np.abs(result.astype(int) - gimp.references[name].astype(int)).max() <= 1
    assert_reference_colours(result, gimp.references["learned_alone"], reference_photo())


def test_a_selection_on_the_references_image_picks_the_colours_to_take(gimp):
    """The reference blue on its left half and red on its right, the right half selected in its image:
    the photo takes the red alone (Welsh's swatches), exactly as tinctd answers the host for that swatch."""
    record = gimp.report["swatch"]
    assert record["status"] == "success", record["error"]
    result = _read(gimp, record["export"])
    assert np.abs(result.astype(int) - gimp.references["swatch"].astype(int)).max() <= 1
    assert_reference_colours(result, gimp.references["reference"], reference_photo(SWATCH_TINT))


def test_palette_from_the_foreground_and_background_colours(gimp):
    """Learned engine, palette "Foreground and background colours" set to red and orange: the result leans
    to them, as tinctd answers the host for that palette."""
    record = gimp.report["palette"]
    assert record["status"] == "success", record["error"]
    result = _read(gimp, record["export"])
    assert np.abs(result.astype(int) - gimp.references["palette"].astype(int)).max() <= 1
    assert_palette_colours(result, gimp.references["learned_alone"])


def test_a_grey_reference_is_refused_with_a_sentence(gimp):
    _assert_failed_cleanly(gimp.report["grey_reference"], "is grey, so it has no colours to give")


def _dialog(gimp):
    if gimp.dialog is None:
        pytest.skip(f"the Colorize… dialog needs a GUI GIMP on an X server: {gimp.dialog_skip}")
    return gimp.dialog


def test_dialog_cancelled_changes_nothing(gimp):
    record = _dialog(gimp)["cancel"]
    assert record["status"] == "cancel", record
    assert record["after"] == record["before"]


def test_dialog_ok_colorizes_with_the_values_shown(gimp):
    """OK with the dialog's defaults: optimization engine, strokes from "Colorize hints"."""
    record = _dialog(gimp)["ok"]
    assert record["status"] == "success", record["error"]
    assert _names(record) == ["Colorize hints", "Colorized", "photo"]
    result = _read(gimp, record["export"]).astype(int)
    assert np.abs(result - gimp.references["photo8"].astype(int)).max() <= 1


def _undoable(state):
    """What undo must bring back: the layers (names, visibility, offsets, pixels), mode, precision.
    Not which layer is selected: selecting is no undo step in GIMP, undoing selects what it restores."""
    return {key: value for key, value in state.items() if key != "selected"}


def test_one_ctrl_z_takes_a_whole_colorize_run_back(gimp):
    """Ctrl+Z typed into GIMP's image window after Colorize… (which replaced the first result and
    hid the hints layer) brings the image back exactly; the next Ctrl+Z already takes back the
    step before the run, and the one after that the first run, grayscale → RGB included."""
    dialog = _dialog(gimp)
    first, ok, undone = dialog["first"], dialog["ok"], dialog["undo"]
    assert first["status"] == "success", first["error"]
    assert first["before"]["base"] == "gray" and first["after"]["base"] == "rgb"
    assert ok["status"] == "success", ok["error"]
    assert _layer(ok, "Colorize hints", "before")["visible"] and not _layer(ok, "Colorize hints")["visible"]
    assert _layer(ok, "Colorized")["md5"] != _layer(ok, "Colorized", "before")["md5"]  # replaced
    assert None not in undone, f"Ctrl+Z was typed only {undone.index(None)} of 3 times"
    assert _undoable(undone[0]) == _undoable(ok["before"]), "one Ctrl+Z did not restore the image as before Colorize"
    assert _undoable(undone[1]) == _undoable(first["after"]), "the second Ctrl+Z did not undo adding the hints layer"
    assert _undoable(undone[2]) == _undoable(first["before"]), "the third Ctrl+Z did not undo the first Colorize"
