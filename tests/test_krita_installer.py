"""installers/install-krita-plugin.sh and the zip it builds, which Krita's own importer
(Tools → Scripts → Import Python Plugin from File, the plugin_importer module Krita ships)
must accept.  tests/test_krita.py installs with it too and runs the result in a real Krita."""

import builtins
import importlib.util
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from plugin_deps import assert_imported_from, needs_pypi

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installers" / "install-krita-plugin.sh"
KRITA_IMPORTER = Path("/usr/share/krita/pykrita/plugin_importer/plugin_importer.py")
VERSION = "python%d.%d" % sys.version_info[:2]
COMMON = ("tinct_plugin.py", "tinct_client.py", "tinct_shm.py")  # vendored from plugins/common
PACKAGE = {p.name for p in (REPO / "plugins/krita/tinct_krita").glob("*.py")} | set(COMMON)


def _run(home, *options):
    # this Python has pyzmq and msgpack; the test must not reach apt
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", str(INSTALLER), "--python", sys.executable, *options], env=env,
                          capture_output=True, text=True, timeout=300)


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_help_lists_every_option():
    done = subprocess.run(["bash", str(INSTALLER), "--help"], capture_output=True, text=True)
    assert done.returncode == 0
    for option in ("--resources", "--kritarc", "--python", "--private-deps", "--zip FILE", "--zip-only"):
        assert option in done.stdout
    assert "Import Python Plugin" in done.stdout


def test_unknown_options_and_a_zip_only_without_a_zip_are_refused(tmp_path):
    for options in (["--frobnicate"], ["--zip-only"]):
        done = _run(tmp_path, *options)
        assert done.returncode != 0 and "error:" in done.stderr
    assert not any(tmp_path.iterdir())


def test_installs_enables_and_keeps_the_rest_of_kritarc(tmp_path):
    kritarc = tmp_path / ".config/kritarc"
    kritarc.parent.mkdir(parents=True)
    kritarc.write_text("[General]\ntheme=Krita dark\n\n[python]\nenable_tinct_krita=false\nenable_other=true\n\n"
                       "[Tinct]\nengine=learned\n")
    done = _run(tmp_path)
    assert done.returncode == 0, done.stderr
    resources = tmp_path / ".local/share/krita"
    assert {p.name for p in (resources / "pykrita/tinct_krita").iterdir()} == PACKAGE   # no private folder
    for name in COMMON:
        assert (resources / "pykrita/tinct_krita" / name).read_bytes() == (REPO / "plugins/common" / name).read_bytes()
    assert (resources / "pykrita/tinct_krita.desktop").read_bytes() == \
        (REPO / "plugins/krita/tinct_krita.desktop").read_bytes()
    assert (resources / "actions/tinct_krita.action").read_bytes() == \
        (REPO / "plugins/krita/tinct_krita.action").read_bytes()
    assert [p.name for p in (resources / "pykrita").iterdir() if p.name.startswith(".")] == []   # no stage left
    assert _run(tmp_path).returncode == 0   # again: still one line
    text = kritarc.read_text()
    assert text.count("enable_tinct_krita") == 1
    assert text == ("[General]\ntheme=Krita dark\n\n[python]\nenable_tinct_krita=true\nenable_other=true\n\n"
                    "[Tinct]\nengine=learned\n")


def test_a_fresh_kritarc_gets_a_python_section(tmp_path):
    assert _run(tmp_path).returncode == 0
    assert (tmp_path / ".config/kritarc").read_text() == "[python]\nenable_tinct_krita=true\n"


def test_a_failed_install_leaves_the_previous_one(tmp_path):
    assert _run(tmp_path).returncode == 0
    before = _tree(tmp_path)
    done = subprocess.run(["bash", str(INSTALLER), "--python", "/nonexistent/python3"], env={"HOME": str(tmp_path),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no /nonexistent/python3" in done.stderr
    assert _tree(tmp_path) == before


def _zip(tmp_path, *options):
    archive = tmp_path / "out" / "tinct-krita.zip"
    done = _run(tmp_path / "home", "--zip", str(archive), "--zip-only", *options)
    assert done.returncode == 0, done.stderr
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())   # installed nothing
    return archive


def test_the_zip_has_the_layout_krita_expects(tmp_path):
    with zipfile.ZipFile(_zip(tmp_path)) as z:
        names = z.namelist()
        for name in COMMON:
            assert z.read(f"tinct_krita/{name}") == (REPO / "plugins/common" / name).read_bytes()
    assert {n for n in names if "/" not in n.rstrip("/")} == {"tinct_krita.desktop", "tinct_krita.action",
                                                             "tinct_krita/"}
    assert {n.split("/", 1)[1] for n in names if n.startswith("tinct_krita/") and n != "tinct_krita/"} == PACKAGE


@pytest.mark.skipif(not KRITA_IMPORTER.exists(), reason=f"Krita's plugin importer not installed ({KRITA_IMPORTER}): "
                                                       "run tests/editors/krita/setup.sh")
def test_kritas_own_importer_installs_the_zip_as_the_installer_does(tmp_path, monkeypatch):
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    importer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(importer)
    monkeypatch.setattr(builtins, "i18n", lambda text: text, raising=False)   # Krita's translation hook
    resources = tmp_path / "resources"
    resources.mkdir()
    imported = importer.PluginImporter(str(_zip(tmp_path)), str(resources), lambda plugin: True).import_all()
    assert [(p["name"], p["ui_name"]) for p in imported] == [("tinct_krita", "Tinct Colorize")]
    assert _run(tmp_path / "installed").returncode == 0
    assert _tree(resources) == _tree(tmp_path / "installed/.local/share/krita")


@needs_pypi
def test_private_folder_for_kritas_python_version_in_the_install_and_the_zip(tmp_path):
    done = _run(tmp_path, "--private-deps", "--zip", str(tmp_path / "with-deps.zip"))
    assert done.returncode == 0, done.stderr
    private = tmp_path / ".local/share/krita/pykrita/tinct_krita" / VERSION
    assert_imported_from(private)
    with zipfile.ZipFile(tmp_path / "with-deps.zip") as z:
        assert any(n.startswith(f"tinct_krita/{VERSION}/zmq/") for n in z.namelist())
