"""installers/install-gimp-plugin.sh on the host (the chroot run in test_gimp.py covers Debian's packages)."""

import stat
import subprocess
import sys
from pathlib import Path

from plugin_deps import assert_imported_from, needs_pypi

REPO = Path(__file__).resolve().parents[1]
INSTALLER = REPO / "installers" / "install-gimp-plugin.sh"
VERSION = "python%d.%d" % sys.version_info[:2]
COMMON = ("tinct_plugin.py", "tinct_client.py", "tinct_shm.py")  # vendored from plugins/common
FILES = {"tinct-colorize.py", "colorize_logic.py", *COMMON}


def _install(plug_ins, *options):
    return subprocess.run(["bash", str(INSTALLER), "--plug-ins", str(plug_ins), "--python", sys.executable, *options],
                          capture_output=True, text=True, timeout=300)


def test_installs_the_plugin_with_the_python_that_has_the_packages(tmp_path):
    done = _install(tmp_path)
    assert done.returncode == 0, done.stderr
    plugin = tmp_path / "tinct-colorize"
    assert {p.name for p in plugin.iterdir()} == FILES  # this Python has pyzmq/msgpack: no private folder
    assert stat.S_IMODE((plugin / "tinct-colorize.py").stat().st_mode) == 0o755  # GIMP runs only executables
    for name in COMMON:
        assert (plugin / name).read_bytes() == (REPO / "plugins/common" / name).read_bytes()
    assert "Filters → Colorize" in done.stdout


def test_a_failed_install_leaves_the_previous_one(tmp_path):
    assert _install(tmp_path).returncode == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "tinct-colorize").iterdir()}
    done = subprocess.run(["bash", str(INSTALLER), "--plug-ins", str(tmp_path), "--python", "/nonexistent/python3"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and "no /nonexistent/python3" in done.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "tinct-colorize").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["tinct-colorize"]  # no staging folder left


@needs_pypi
def test_private_folder_for_gimps_python_version(tmp_path):
    done = _install(tmp_path, "--private-deps")
    assert done.returncode == 0, done.stderr
    private = tmp_path / "tinct-colorize" / VERSION
    assert_imported_from(private)
