"""Tinct's Krita plugin inside a real Krita 5 window (Xvfb), talking to a real tinctd.

Every test runs against two Kritas: the host's Debian 12 Krita 5.1, and Debian 13's Krita 5.2
(what most Krita users run) inside the Debian 13 editors chroot that tests/editors/gimp/setup.sh
builds for GIMP 3 too.  One Krita session each: the plugin is installed with
installers/install-krita-plugin.sh (inside the chroot for 5.2, as a Debian 13 user would run it)
into a throw-away HOME, next to a test-only driver plugin (tests/editors/krita/driver) that opens
the photos, triggers the plugin's real Filter actions, answers its dialog, flips the docker's
Live toggle and clicks a suggested colour, then records layers and pixels.  tinctd runs on the
host, its ipc socket in the session's work folder (inside the chroot's /tmp for 5.2, so both
sides see the same file).  The tests below assert on that record and on the pixels.  Needs
Debian's krita and xvfb-run (tests/editors/krita/setup.sh), and for 5.2 root and the chroot;
each variant is skipped with the reason otherwise.
"""

import json
import os
import shutil
import subprocess
import tempfile
import time
import types
from pathlib import Path

import numpy as np
import pytest
from tinct_krita import tinct_plugin  # plugins/common, laid out as installed by tests/conftest.py

from daemon_fixture import RunningDaemon
from editor_scene import (
    CANVAS,
    OFFSETS,
    PALETTE,
    SELECTION,
    STROKES,
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
    lab_of,
    reference_photo,
    swatch_guidance,
    two_tone_reference,
)
from tinct.color import imagefile

pytestmark = pytest.mark.editor

REPO = Path(__file__).resolve().parents[1]
DRIVER = REPO / "tests" / "editors" / "krita" / "driver"
INSTALLER = REPO / "installers" / "install-krita-plugin.sh"
IN_CHROOT = REPO / "tests" / "editors" / "gimp" / "in-chroot.sh"
# the Debian 13 editors chroot (tests/editors/gimp/setup.sh), which has Krita 5.2 beside GIMP 3
ROOT = Path(os.environ.get("TINCT_GIMP_ROOT", "/tmp/tinct-gimp3-trixie"))
SESSION_TIMEOUT = 300
# A HOME where installers/install.sh already put the plugin (.ci/installed): test that instead.
# Krita 5.2 reaches it when it lies in the chroot's /tmp (the host path may be a symlink there).
INSTALLED_HOME = os.environ.get("TINCT_KRITA_HOME")
# Krita's window needs an X server (it ignores QT_QPA_PLATFORM=offscreen)
XVFB_RUN = ["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24 -nolisten tcp"]

FEATHER = 4                              # of the selection, px
LIVE_STROKE = ((190, 60, 170), 40, 125, 40)
# painted while Live mode is on, BURST_GAP s apart: less than the plugin's debounce (0.3 s)
BURST = [((200, 190, 60), 170, 20, 30), ((200, 190, 60), 170, 26, 30), ((200, 190, 60), 170, 32, 30)]
BURST_GAP, DEBOUNCE = 0.08, 0.3
ALPHA_PATCHES = [(10, 60, 20, 15, 0), (40, 60, 20, 15, 128)]   # (x, y, w, h, alpha) on the float photo
GUIDED_VIBRANCY = 65                     # the slider where the reference and palette runs leave it, %
THUMBNAIL = 56                           # px, the docker's variation thumbnails (tinct_krita.widgets)


class Host:
    """Debian 12's Krita 5.1 on this machine."""
    version = "5.1."

    def skip_reason(self):
        missing = [tool for tool in ("krita", "xvfb-run") if shutil.which(tool) is None]
        if missing:
            return f"{' and '.join(missing)} not installed: run tests/editors/krita/setup.sh (apt, as root)"
        return None

    def work_folder(self, tmp_path_factory):
        return tmp_path_factory.mktemp("krita")

    def seen(self, path):
        """`path` as Krita sees it."""
        return str(path)

    def install(self, home):
        env = {"HOME": str(home), "PATH": os.environ["PATH"]}
        return subprocess.run(["bash", str(INSTALLER)], env=env, capture_output=True, text=True, timeout=300)

    def command(self, env):
        """(argv, environment) of Krita run with `env`."""
        return [*XVFB_RUN, "krita", "--nosplash"], {**env, "PATH": os.environ["PATH"]}


class Chroot:
    """Debian 13's Krita 5.2 in the editors chroot, run with in-chroot.sh: nothing from the host's
    environment, the repository read-only at /opt/tinct, the host's loopback network."""
    version = "5.2."

    def skip_reason(self):
        if os.geteuid() != 0:
            return "Krita 5.2 runs in the Debian 13 chroot, which needs root (chroot, mount namespace)"
        if not all((ROOT / "usr/bin" / tool).exists() for tool in ("krita", "xvfb-run", "xauth")):
            return (f"no Krita 5.2 in a Debian 13 chroot at {ROOT}: run tests/editors/gimp/setup.sh as root "
                    "(TINCT_GIMP_ROOT moves it)")
        if INSTALLED_HOME and not Path(INSTALLED_HOME).resolve().is_relative_to(ROOT.resolve()):
            return f"the installed HOME {INSTALLED_HOME} is outside the chroot {ROOT}: Krita 5.2 cannot load it"
        return None

    def work_folder(self, tmp_path_factory):
        return Path(tempfile.mkdtemp(prefix="tinct-krita-test-", dir=ROOT / "tmp"))

    def seen(self, path):
        return "/" + str(Path(path).resolve().relative_to(ROOT.resolve()))

    def _in_chroot(self, env, argv):
        return [str(IN_CHROOT), str(ROOT), str(REPO), *(f"{k}={v}" for k, v in env.items()), *argv]

    def install(self, home):
        # the installer run where a Debian 13 user runs it: it finds Krita 5.2's Python 3.13 and its packages
        return subprocess.run(self._in_chroot({"HOME": self.seen(home)},
                                              ["bash", "/opt/tinct/installers/install-krita-plugin.sh"]),
                              capture_output=True, text=True, timeout=300)

    def command(self, env):
        return self._in_chroot(env, [*XVFB_RUN, "krita", "--nosplash"]), None


def _install(krita, home):
    if not INSTALLED_HOME:
        done = krita.install(home)
        assert done.returncode == 0, done.stdout + done.stderr
    pykrita = home / ".local/share/krita/pykrita"
    # an installed HOME serves both Kritas in turn
    shutil.copytree(DRIVER / "tinct_test_driver", pykrita / "tinct_test_driver", dirs_exist_ok=True)
    shutil.copy(DRIVER / "tinct_test_driver.desktop", pykrita)
    kritarc = home / ".config/kritarc"
    config = kritarc.read_text()
    if "enable_tinct_test_driver=true" not in config:
        kritarc.write_text(config.replace("[python]\n", "[python]\nenable_tinct_test_driver=true\n"))


def _as_krita(rgb):
    """An 8-bit sRGB layer as Krita gives it: BGRA."""
    return np.dstack([rgb[..., ::-1], np.full((H, W), 255, np.uint8)]).tobytes()


def _guided(client, photo8, guidance, engine="optimization", **options):
    """What tinctd answers for the photo as Krita sends it (BGRA u8) with colour guidance and no strokes,
    as RGB."""
    reply = client.colorize(width=W, height=H, layout="BGRA", sample="u8", pixels=_as_krita(photo8),
                            guidance=guidance, engine=engine, options={"quality": "final", **options})
    return np.frombuffer(reply["pixels"], np.uint8).reshape(H, W, 4)[..., 2::-1]


def _references(client, photo8, photo16):
    """What tinctd answers for the photos with aligned hints, and its suggestions at the Live stroke."""
    def colorize(image, sample, with_hints=True, **options):
        reply = client.colorize(width=W, height=H, layout="RGB", sample=sample, pixels=image.tobytes(),
                                hints=hints().tobytes() if with_hints else None,
                                engine=options.pop("engine", "optimization"), options={"quality": "final", **options})
        return np.frombuffer(reply["pixels"], image.dtype).reshape(H, W, 3)

    def guided(guidance, **options):
        return _guided(client, photo8, guidance, **options)

    referenced = {"reference": _as_krita(reference_photo()), "reference_width": W, "reference_height": H,
                  "reference_layout": "BGRA", "reference_sample": "u8"}
    vibrancy = GUIDED_VIBRANCY / 100

    colour, x, y, length = LIVE_STROKE
    point = (x + (length - 1) // 2, y + 1)   # the centre of the stroke: where the user last painted
    suggested = client.suggest(width=W, height=H, layout="RGB", sample="u8", pixels=photo8.tobytes(),
                               hints=hints().tobytes(), x=point[0], y=point[1], k=8)
    def variations(seed):
        """The learned engine's variations of the photo without strokes at 100 % (where the driver asks)."""
        return client.colorize(width=W, height=H, layout="BGRA", sample="u8", pixels=_as_krita(photo8),
                               engine="learned", options={"quality": "final", "vibrancy": 1.0}, variations=4,
                               seed=seed)

    first, more = variations(0), variations(1)
    return {"variations": [np.frombuffer(r["pixels"], np.uint8).reshape(H, W, 4)[..., 2::-1] for r in first],
            "variation_thumbnails": [tinct_plugin.thumbnail(r, THUMBNAIL) for r in first + more],
            "reference": guided(referenced), "swatch": guided(swatch_guidance("BGRA")),
            "reference_learned": guided(referenced, engine="learned", vibrancy=vibrancy),
            "palette": guided({"palette": [list(c) for c in PALETTE]}, engine="learned", vibrancy=vibrancy),
            "learned_alone": guided(None, engine="learned", vibrancy=vibrancy),
            "photo8": colorize(photo8, "u8"), "photo16": colorize(photo16, "u16"),
            "suggested": [list(c) for c in suggested],
            **{f"learned_{v}": colorize(photo8, "u8", with_hints=False, engine="learned", vibrancy=v)
               for v in (0.0, 1.0)}}


@pytest.fixture(scope="module", params=[Host(), Chroot()], ids=["5.1-host", "5.2-chroot"])
def krita(request, tmp_path_factory):
    variant = request.param
    reason = variant.skip_reason()
    if reason:
        pytest.skip(reason)
    root = variant.work_folder(tmp_path_factory)
    work, home, state = root / "work", Path(INSTALLED_HOME or root / "home"), root / "tinctd"
    daemon = process = None
    try:
        for folder in (work, home, state, work / "runtime"):
            folder.mkdir(mode=0o700, exist_ok=folder == home and bool(INSTALLED_HOME))
        grey = grey_photo()
        photo8 = np.repeat(np.round(grey * 255).astype(np.uint8)[..., None], 3, axis=2)
        photo16 = np.repeat(np.round(grey * 65535).astype(np.uint16)[..., None], 3, axis=2)
        imagefile.write(work / "photo8.png", photo8)
        imagefile.write(work / "photo16.png", photo16)
        imagefile.write(work / "reference.png", reference_photo())
        imagefile.write(work / "reference_two_tone.png", two_tone_reference())
        (work / "params.json").write_text(json.dumps({
            "canvas": CANVAS, "offsets": OFFSETS, "selection": SELECTION, "feather": FEATHER,
            "strokes": STROKES, "live_stroke": LIVE_STROKE, "burst": BURST, "burst_gap": BURST_GAP,
            "debounce": DEBOUNCE, "alpha_patches": ALPHA_PATCHES, "vibrancy": GUIDED_VIBRANCY,
            "palette": PALETTE, "swatch": SWATCH}))
        t0 = time.monotonic()
        _install(variant, home)
        installed = time.monotonic() - t0
        # its socket in the work folder: the same file from the host and from a chroot's Krita
        daemon = RunningDaemon(state, endpoint=f"ipc://{work}/tinctd.sock")
        with daemon.client(timeout=30) as client:
            references = _references(client, photo8, photo16)
        argv, env = variant.command({
            "HOME": variant.seen(home), "LANG": "C.UTF-8", "TINCT_KRITA_TEST": variant.seen(work),
            "TINCT_ENDPOINT": f"ipc://{variant.seen(work)}/tinctd.sock",
            "XDG_RUNTIME_DIR": variant.seen(work / "runtime"), "PYTHONDONTWRITEBYTECODE": "1"})
        log = tmp_path_factory.mktemp("krita-log") / "krita.log"   # kept after the work folder goes
        t0 = time.monotonic()
        with open(log, "w") as out:
            process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
            while process.poll() is None:
                if (work / "stop-daemon").exists() and daemon.alive():
                    if (work / "palette.json").exists():   # the Krita palette the driver chose, as tinctd answers it
                        with daemon.client(timeout=30) as client:
                            colours = json.loads((work / "palette.json").read_text())
                            references["krita_palette"] = _guided(client, photo8, {"palette": colours}, "learned",
                                                                  vibrancy=GUIDED_VIBRANCY / 100)
                    daemon.stop()
                    (work / "daemon-stopped").touch()
                if time.monotonic() - t0 > SESSION_TIMEOUT:
                    pytest.fail(f"Krita still running after {SESSION_TIMEOUT} s: {log}")
                time.sleep(0.1)
        session = time.monotonic() - t0
        # Krita exits 0 whatever its Python did: judge by the report
        report_file = work / "report.json"
        tail = log.read_text(errors="replace")[-4000:]
        assert report_file.exists(), f"the driver wrote no report (Krita exit {process.returncode}):\n{tail}"
        report = json.loads(report_file.read_text())
        assert report["ok"], report.get("error", "") + "\n" + tail
        print(f"\n[krita {report['krita']}] install {installed:.1f} s, Krita session {session:.1f} s "
              f"(driver {report['driver_seconds']} s); colorize: " +
              ", ".join(f"{k} {v['seconds']} s" for k, v in report["steps"].items() if "seconds" in v))
        yield types.SimpleNamespace(report=report, steps=report["steps"], work=work, home=home, variant=variant,
                                    references=references, photo8=photo8, photo16=photo16)
    finally:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
        if daemon is not None:
            daemon.stop()
        if isinstance(variant, Chroot):
            shutil.rmtree(root, ignore_errors=True)


# -- helpers -------------------------------------------------------------------------
def _names(record, when="after"):
    """The layers' names, top to bottom; Krita's global selection mask is no layer."""
    return [layer["name"] for layer in record[when] if layer["type"] != "selectionmask"]


def _layer(record, name, when="after"):
    return next(layer for layer in record[when] if layer["name"] == name)


def _raw(krita, dump):
    """A Colorized layer's stored pixels as RGB(A) in their own dtype (Krita keeps 8 and 16 bits as BGRA)."""
    dtype = {"U8": np.uint8, "U16": np.uint16, "F16": np.float16, "F32": np.float32}[dump["depth"]]
    pixels = np.fromfile(krita.work / dump["raw"], dtype).reshape(dump["rect"][3], dump["rect"][2], 4)
    return pixels[..., [2, 1, 0, 3]] if dump["depth"] in ("U8", "U16") else pixels


def _srgb(krita, dump):
    """A Colorized layer as Krita converts it to float sRGB, (H, W, 4) in 0..1."""
    return np.fromfile(krita.work / dump["f32"], np.float32).reshape(dump["rect"][3], dump["rect"][2], 4)


def _assert_failed_cleanly(record, sentence):
    assert record["error"] is not None and sentence in record["error"], record["error"]
    assert "Traceback" not in record["error"]
    assert record["after"] == record["before"], "a layer changed although Colorize failed"


# -- the tests -----------------------------------------------------------------------
def test_actions_are_in_the_filter_menu_and_the_docker_is_there(krita):
    assert krita.report["krita"].startswith(krita.variant.version)
    assert set(krita.report["menus"]["filter"]) == {"tinct_colorize", "tinct_add_hints_layer"}
    assert [name for name, actions in krita.report["menus"].items() if actions] == ["filter"]
    assert krita.report["docker"]
    assert krita.report["python"].startswith("3.")


def test_shortcuts_come_from_the_action_file(krita):
    assert krita.report["shortcuts"] == {"tinct_colorize": "Ctrl+Alt+Shift+K",
                                         "tinct_add_hints_layer": "Ctrl+Alt+Shift+H"}


def test_add_hints_layer_goes_above_the_photo_and_becomes_active(krita):
    record = krita.steps["add_hints"]
    assert _names(record) == ["Top", "Colorize hints", "photo"]
    assert record["active"] == "Colorize hints"
    hints = _layer(record, "Colorize hints")
    assert (hints["model"], hints["depth"]) == ("RGBA", "U8") and hints["bounds"] == [0, 0, 0, 0]


def test_optimization_without_strokes_explains_what_to_do(krita):
    _assert_failed_cleanly(krita.steps["no_strokes"], "paint a few strokes")


def test_result_goes_directly_above_the_photo(krita):
    record = krita.steps["optimization"]
    assert record["error"] is None
    assert _names(record, "before") == ["Top", "Colorize hints", "photo"]
    assert _names(record) == ["Top", "Colorize hints", "Colorized", "photo"]
    photo, result = _layer(record, "photo"), _layer(record, "Colorized")
    assert photo["bounds"] == result["bounds"] == [*OFFSETS, W, H] == krita.report["source_rect"]
    assert photo == _layer(record, "photo", "before"), "the photo layer changed"
    assert record["active"] == "Colorize hints"  # painting goes on where it was


def test_result_keeps_the_lightness_and_shows_the_hint_colours(krita):
    result = _raw(krita, krita.steps["optimization"]["dump"])
    assert result.dtype == np.uint8 and np.all(result[..., 3] == 255)
    assert_lightness_kept(result, krita.photo8)
    assert_hint_colours(result)


def test_result_equals_the_daemons_answer_for_aligned_hints(krita):
    """BGRA read and written the right way round, and the hints cropped to the moved photo exactly."""
    result = _raw(krita, krita.steps["optimization"]["dump"])[..., :3].astype(int)
    assert np.abs(result - krita.references["photo8"].astype(int)).max() <= 1


def test_exported_png_shows_the_result(krita):
    exported = imagefile.read(krita.work / "optimization.png")
    x, y = OFFSETS
    result = _raw(krita, krita.steps["optimization"]["dump"])
    assert exported.shape[:2] == CANVAS[::-1]
    assert np.array_equal(exported[y:y + H, x:x + W, :3], result[..., :3])


def test_learned_engine_replaces_the_result(krita):
    record = krita.steps["learned"]
    assert record["error"] is None
    assert _names(record) == _names(record, "before") == ["Top", "Colorize hints", "Colorized", "photo"]
    assert _layer(record, "Colorized")["id"] != _layer(record, "Colorized", "before")["id"]
    result = _raw(krita, record["dump"])
    assert_lightness_kept(result, krita.photo8)
    assert_hint_colours(result)
    optimization = _raw(krita, krita.steps["optimization"]["dump"])
    assert np.abs(result.astype(int) - optimization.astype(int)).max() > 2  # a different engine answered


def test_learned_engine_without_strokes_gets_the_vibrancy_slider(krita):
    """The photo alone, no hints layer: the learned engine colorizes by itself, and the slider at
    0 % and 100 % reaches it as vibrancy 0 and 1, and 100 % is the bolder (test_learned checks the
    shipped model does that on the evaluation photos too)."""
    muted, bold = krita.steps["muted"], krita.steps["bold"]
    assert muted["error"] is None and bold["error"] is None
    assert _names(muted) == _names(bold) == ["Colorized", "photo"]
    results = []
    for record, vibrancy in ((muted, 0.0), (bold, 1.0)):
        result = _raw(krita, record["dump"])[..., :3]
        assert_lightness_kept(result, krita.photo8)
        assert np.hypot(*lab_of(result)[1:]).mean() > 5, "the learned engine left the photo grey"
        assert np.abs(result.astype(int) - krita.references[f"learned_{vibrancy}"].astype(int)).max() <= 1
        results.append(result)
    assert np.abs(results[0].astype(int) - results[1]).max() > 2, "0 % and 100 % gave the same colours"
    assert chroma(results[1]).mean() > chroma(results[0]).mean() + 2, "100 % is not bolder than 0 %"


def test_only_selected_pixels_change(krita):
    record = krita.steps["selection"]
    assert record["error"] is None and _names(record) == _names(record, "before")
    result = _raw(krita, record["dump"])[..., :3].astype(int)
    source = krita.photo8.astype(int)
    full = _raw(krita, krita.steps["optimization"]["dump"])[..., :3].astype(int)
    assert_selection_respected(result, source, full, 2 * FEATHER)


def test_live_mode_colorizes_again_after_a_stroke_in_place(krita):
    on, stroke = krita.steps["live_on"], krita.steps["live_stroke"]
    assert _names(on) == _names(stroke) == ["Top", "Colorize hints", "Colorized", "photo"]
    assert stroke["active"] == "Colorize hints"  # the result updates without taking the brush away
    # the same layer each time, with new pixels
    assert on["before"][0] == _layer(on, "Colorized")["id"] == stroke["before"][0] == _layer(stroke, "Colorized")["id"]
    assert on["before"][1] != stroke["before"][1] != _layer(stroke, "Colorized")["md5"]
    result = _raw(krita, stroke["dump"])
    assert_lightness_kept(result, krita.photo8)
    assert_hint_colours(result, STROKES + [LIVE_STROKE])


def test_live_mode_receives_the_quick_answer_first_and_ends_on_the_full_one(krita):
    """A Live request asks tinctd for its `live` answer first (a `partial` reply); it reaches the plugin
    before the full answer to the same request, which is what the layer ends on."""
    stroke = krita.steps["live_stroke"]
    (*_, (done_at, quick, request)) = stroke["applied"]
    assert not quick
    assert [r for _, r in stroke["partials"]].count(request) == 1, stroke
    assert next(t for t, r in stroke["partials"] if r == request) <= done_at


def test_live_mode_waits_for_a_burst_of_strokes_to_end(krita):
    """Strokes closer together than the debounce make one request, after the last one; its answer,
    which has every stroke of the burst, is what the layer shows."""
    burst = krita.steps["burst"]
    colorize = [t for t, method in burst["requests"] if method == "colorize"]
    pauses = sum(gap >= DEBOUNCE for gap in burst["gaps"])  # Krita stalled that long: a request may go out
    assert 1 <= len(colorize) <= 1 + pauses, burst
    assert colorize[-1] >= sum(burst["gaps"]) + DEBOUNCE  # once the last stroke had been still that long
    assert _layer(burst, "Colorized")["id"] == burst["before"][0]
    assert_hint_colours(_raw(krita, burst["dump"]), STROKES + [LIVE_STROKE] + BURST)


def test_suggested_colours_are_the_learned_engines_and_set_the_foreground(krita):
    record = krita.steps["suggestions"]
    assert record["swatches"] == krita.references["suggested"]
    assert record["foreground"] == record["swatches"][2]


@pytest.mark.parametrize("name, model, depth, profile", [
    ("u16", "RGBA", "U16", "sRGB-elle-V2-srgbtrc.icc"),
    ("f16", "RGBA", "F16", "sRGB-elle-V2-g10.icc"),      # half float in linear light
    ("f32", "RGBA", "F32", "sRGB-elle-V2-srgbtrc.icc"),
    ("gray", "RGBA", "U8", "sRGB-elle-V2-srgbtrc.icc"),  # a grey photo gets an RGB result
])
def test_other_depths_and_models_keep_their_format(krita, name, model, depth, profile):
    record = krita.steps[name]
    assert record["error"] is None
    assert _names(record) == ["Colorize hints", "Colorized", "photo"]
    hints, result = _layer(record["hints"], "Colorize hints"), _layer(record, "Colorized")
    assert (hints["model"], hints["depth"]) == (model, depth)
    assert (result["model"], result["depth"], result["profile"]) == (model, depth, profile)
    if name != "gray":
        assert (record["source"]["model"], record["source"]["depth"]) == (model, depth)
    colours = _srgb(krita, record["dump"])
    visible = _srgb(krita, record["source_dump"])[..., 3] > 0   # transparent pixels have no lightness to keep
    assert_lightness_kept(colours, krita.photo8 if name != "u16" else krita.photo16, where=visible)
    assert_hint_colours(colours)


def test_alpha_is_kept_exactly(krita):
    record = krita.steps["f32"]
    source, result = _raw(krita, record["source_dump"]), _raw(krita, record["dump"])
    assert result.dtype == source.dtype == np.float32
    assert np.array_equal(result[..., 3], source[..., 3])
    for x, y, w, h, alpha in ALPHA_PATCHES:   # the photo did have them
        assert np.allclose(source[y:y + h, x:x + w, 3], alpha / 255, atol=1e-6)
    assert np.all(result[..., 3][source[..., 3] == 1] == 1)


def test_sixteen_bits_stay_sixteen_bits(krita):
    result = _raw(krita, krita.steps["u16"]["dump"])
    assert result.dtype == np.uint16
    assert np.mean(result[..., :3] % 257 != 0) > 0.5, "the colours were computed at 8 bits"
    assert np.abs(result[..., :3].astype(int) - krita.references["photo16"].astype(int)).max() <= 1
    exported = imagefile.read(krita.work / "u16.png")
    assert exported.dtype == np.uint16 and np.mean(exported[..., :3] % 257 != 0) > 0.5
    # Krita's 16-bit compositing of the flattened export moves some values by a few of 65535 levels
    assert np.abs(exported[..., :3].astype(int) - result[..., :3]).max() <= 16


def test_the_reference_picker_lists_every_open_documents_paint_layers(krita):
    record = krita.steps["reference_picker"]
    assert record["labels"][0] == "None" and "reference.png › reference" in record["labels"]
    assert "photo16.png › photo" in record["labels"] and "photo8.png › Colorize hints" in record["labels"]
    assert len(record["chosen"]) == 2   # the docker's choice reached the settings: (document, layer)


@pytest.mark.parametrize("name", ["reference", "reference_learned"])
def test_a_layer_of_another_document_lends_its_colours(krita, name):
    """A grey photo without strokes, the reference a strongly blue, mirrored copy of it in another open
    document, picked in the docker: the result takes its colours with either engine (the optimization
    one runs without strokes then), as tinctd answers the host for the same reference."""
    record = krita.steps[name]
    assert record["error"] is None
    assert _names(record) == ["Colorized", "photo"]
    result = _raw(krita, record["dump"])[..., :3]
    assert_lightness_kept(result, krita.photo8)
    assert np.abs(result.astype(int) - krita.references[name].astype(int)).max() <= 1
    assert_reference_colours(result, krita.references["learned_alone"], reference_photo())


def test_a_selection_in_the_references_document_picks_the_colours_to_take(krita):
    """The reference blue on its left half and red on its right, the right half selected in its document:
    the photo takes the red alone (Welsh's swatches), exactly as tinctd answers the host for that swatch."""
    record = krita.steps["swatch"]
    assert record["error"] is None
    result = _raw(krita, record["dump"])[..., :3]
    assert np.abs(result.astype(int) - krita.references["swatch"].astype(int)).max() <= 1
    assert_reference_colours(result, krita.references["reference"], reference_photo(SWATCH_TINT))


def test_a_grey_reference_is_refused_with_a_sentence(krita):
    _assert_failed_cleanly(krita.steps["grey_reference"], "is grey, so it has no colours to give")


def test_palette_from_the_foreground_and_background_colours(krita):
    """The docker's Palette box (enabled for the learned engine) with red and orange as the foreground and
    background colours, no reference: the result leans to them, as tinctd answers the host for that palette."""
    record = krita.steps["palette"]
    assert record["error"] is None and record["box_enabled"] and record["reference"] is None
    assert record["colours"] == [list(c) for c in PALETTE]
    assert record["choices"][:2] == ["", "foreground and background"] and len(record["choices"]) > 3
    result = _raw(krita, record["dump"])[..., :3]
    assert_lightness_kept(result, krita.photo8)
    assert np.abs(result.astype(int) - krita.references["palette"].astype(int)).max() <= 1
    assert_palette_colours(result, krita.references["learned_alone"])


def test_palette_from_one_of_kritas_palettes(krita):
    """A palette Krita ships, chosen in the docker: the colours sent are the ones Krita's palette holds, as
    tinctd answers the host for them, and they change the learned engine's result."""
    record = krita.steps["krita_palette"]
    assert record["error"] is None, record["name"]
    result = _raw(krita, record["dump"])[..., :3]
    assert_lightness_kept(result, krita.photo8)
    assert np.abs(result.astype(int) - krita.references["krita_palette"].astype(int)).max() <= 1
    assert np.abs(result.astype(int) - krita.references["learned_alone"].astype(int)).mean() > 1


def _thumbnail(krita, shown):
    width, height = shown["size"]
    return np.fromfile(krita.work / shown["file"], np.uint8).reshape(height, width, 4).astype(int)


def test_variations_show_four_thumbnails_and_a_click_applies_that_one(krita):
    """The docker's Variations button (off, with its reason, for the optimization engine) asks tinctd for
    four colorizations of the photo: four distinct thumbnails, each tinctd's own layer scaled down; a
    click on the third makes it the Colorized layer, as tinctd answers the host for that variation; More
    shows the next seed's (the first of each being the ordinary answer)."""
    record = krita.steps["variations"]
    assert record["error"] is None
    assert record["optimization"] == [False, record["optimization"][1]] and "Learned" in record["optimization"][1]
    assert record["learned"] == [True, False, [False] * 4]   # nothing to choose from yet
    expected = [np.frombuffer(pixels, np.uint8).reshape(height, width, 4).astype(int)
                for width, height, pixels in krita.references["variation_thumbnails"]]
    first, more = record["first"], record["more"]
    assert len({shown["md5"] for shown in first}) == 4 and record["more_enabled"]
    for shown, want in zip(first + more, expected):
        assert shown["size"] == [want.shape[1], want.shape[0]]
        assert np.abs(_thumbnail(krita, shown) - want).max() <= 1
    assert not {shown["md5"] for shown in more[1:]} & {shown["md5"] for shown in first}
    assert record["while_asking"] == [False] * 4

    assert _names(record) == _names(record, "before") == ["Colorized", "photo"]
    assert _layer(record, "Colorized")["id"] != _layer(record, "Colorized", "before")["id"]
    assert "Variation 3 applied" in record["status"]
    result = _raw(krita, record["dump"])[..., :3]
    assert_lightness_kept(result, krita.photo8)
    applied = [np.abs(result.astype(int) - variation).max() for variation in krita.references["variations"]]
    assert applied[2] <= 1 and min(applied[:2] + applied[3:]) > 2   # the third, and no other


def test_daemon_stopped_is_a_clear_error_and_changes_nothing(krita):
    _assert_failed_cleanly(krita.steps["daemon_stopped"], "not running")
