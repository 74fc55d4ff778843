"""tinct doctor and tinct.tools.editors against real failures: a missing or corrupt model, nothing listening,
a plug-in folder that is not there, a Python without pyzmq, a plugin not enabled in kritarc, GIMP 2.10."""
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from daemon_fixture import ROOT, free_port
from tinct.tools import doctor, editors

COMMON = ROOT / "plugins" / "common"
VENDORED = ("tinct_plugin.py", "tinct_client.py", "tinct_shm.py")  # what the installers copy from COMMON


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A throw-away HOME with no Tinct settings and none of our environment variables."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "TINCT_ENDPOINT", "TINCTD_COMMAND", "TINCT_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return home


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def gimp_plugin_folder(tmp_path) -> Path:
    folder = tmp_path / "plug-ins" / "tinct-colorize"
    folder.mkdir(parents=True)
    for name in ("tinct-colorize.py", "colorize_logic.py"):
        shutil.copy(ROOT / "plugins/gimp/tinct-colorize" / name, folder)
    for name in VENDORED:
        shutil.copy(COMMON / name, folder)
    (folder / "tinct-colorize.py").chmod(0o755)
    return folder


def run_doctor(*args, env=None):
    return subprocess.run([sys.executable, "-m", "tinct.tools.cli", "doctor", *args], capture_output=True, text=True,
                          timeout=300, env=env)


def test_a_missing_model_fails_with_a_fix(home, tmp_path, monkeypatch):
    monkeypatch.setenv("TINCT_MODEL", str(tmp_path / "nothing.pt"))
    row = doctor.check_model()
    assert row.status == "FAIL" and "no file" in row.detail and "install.sh" in row.fix


def test_a_corrupt_model_fails_with_a_fix(home, tmp_path, monkeypatch):
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    monkeypatch.setenv("TINCT_MODEL", str(tmp_path / "bad.pt"))
    row = doctor.check_model()
    assert row.status == "FAIL" and "corrupt" in row.detail and row.fix


def test_the_shipped_model_is_found():
    row = doctor.check_model()
    assert row.status == "ok" and "tinct-hint-v1.pt" in row.detail


def test_nothing_listening_fails_with_how_to_start_it(home, monkeypatch):
    monkeypatch.setenv("TINCT_ENDPOINT", f"tcp://127.0.0.1:{free_port()}")
    row = doctor.check_daemon(doctor.load_client([COMMON]), start=True)
    assert row.status == "FAIL" and "not running" in row.detail and "tinctd" in row.fix


def test_a_running_daemon_is_ok_with_its_engines(tinctd, home, tmp_path, monkeypatch):
    daemon = tinctd(tmp_path)
    try:
        monkeypatch.setenv("TINCT_ENDPOINT", daemon.endpoint)
        row = doctor.check_daemon(doctor.load_client([COMMON]), start=False)
    finally:
        daemon.stop()
    assert row.status == "ok" and daemon.endpoint in row.detail and "optimization ready" in row.detail
    assert "started" not in row.detail


def test_the_daemon_is_started_the_way_the_plugins_start_it(home, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    state = tmp_path / "state"
    config = home / ".config" / "tinct" / "client.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"endpoint": endpoint, "start_command": [
        sys.executable, "-m", "tinct.serve", "--endpoint", endpoint, "--state-dir", str(state)]}))
    try:
        row = doctor.check_daemon(doctor.load_client([COMMON]), start=True)
    finally:
        pid = json.loads((state / "tinctd.lock").read_text())["pid"]
        subprocess.run(["kill", str(pid)], check=True)
    assert row.status == "ok" and "started it the way the plugins do" in row.detail


def test_no_start_leaves_an_on_demand_daemon_alone(home, tmp_path):
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    marker = tmp_path / "started"
    config = home / ".config" / "tinct" / "client.json"
    config.parent.mkdir(parents=True)
    config.write_text(json.dumps({"endpoint": endpoint, "start_command": ["touch", str(marker)]}))
    row = doctor.check_daemon(doctor.load_client([COMMON]), start=False)
    assert row.status == "-" and "not running" in row.detail and "touch" in row.detail
    assert not marker.exists()


def test_an_absent_plugin_folder_fails_only_when_asked_for(home, tmp_path):
    plugin = doctor.gimp_plugin(command=sys.executable, folder=tmp_path / "none" / "tinct-colorize")
    rows = {row.check: row for row in doctor.check_plugin(plugin, True, "installers/install.sh")}
    assert rows["GIMP 3 plug-in"].status == "FAIL" and "not installed" in rows["GIMP 3 plug-in"].detail
    assert rows["GIMP 3 plug-in"].fix == "run installers/install.sh"
    rows = doctor.check_plugin(plugin, False, "installers/install.sh")
    assert [row.status for row in rows if "plug-in" in row.check] == ["-"]


def test_a_plugin_whose_python_lacks_pyzmq_fails(home, tmp_path):
    folder = gimp_plugin_folder(tmp_path)
    no_site = executable(tmp_path / "python3", f"#!/bin/sh\nexec {sys.executable} -S \"$@\"\n")  # no site-packages
    plugin = doctor.gimp_plugin(command=sys.executable, folder=folder)
    plugin.editor.python, plugin.editor.note = str(no_site), ""
    rows = {row.check: row for row in doctor.check_plugin(plugin, True, "installers/install.sh")}
    assert rows["GIMP 3 Python"].status == "FAIL" and "No module named" in rows["GIMP 3 Python"].detail
    assert "pyzmq" in rows["GIMP 3 Python"].fix


def test_a_working_plugin_says_where_it_finds_tinctd(home, tmp_path):
    folder = gimp_plugin_folder(tmp_path)
    plugin = doctor.gimp_plugin(command=sys.executable, folder=folder)
    plugin.editor.python, plugin.editor.note = sys.executable, ""
    rows = {row.check: row for row in doctor.check_plugin(plugin, True, "installers/install.sh")}
    assert [row.status for row in rows.values()] == ["ok", "ok", "ok"], rows
    detail = rows["GIMP 3 Python"].detail
    assert "tinct_client" in detail and "/tinctd.sock" in detail  # the default endpoint: a private ipc socket
    (folder / "tinct-colorize.py").chmod(0o644)  # GIMP runs only executable plug-ins
    rows = {row.check: row for row in doctor.check_plugin(plugin, True, "installers/install.sh")}
    assert rows["GIMP 3 plug-in"].status == "FAIL" and "not executable" in rows["GIMP 3 plug-in"].detail


def test_a_krita_plugin_not_enabled_in_kritarc_fails(home, tmp_path):
    folder = tmp_path / "pykrita" / "tinct_krita"
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text("")
    for name in VENDORED:
        shutil.copy(COMMON / name, folder)
    (folder.parent / "tinct_krita.desktop").write_text("[Desktop Entry]\n")
    kritarc = tmp_path / "kritarc"
    kritarc.write_text("[python]\nenable_tinct_krita=false\n")
    plugin = doctor.krita_plugin(command=sys.executable, folder=folder, kritarc=kritarc)
    rows = {row.check: row for row in doctor.check_plugin(plugin, True, "installers/install.sh")}
    assert rows["Krita plug-in"].status == "FAIL" and "enable_tinct_krita=true" in rows["Krita plug-in"].detail


def test_gimp_2_is_not_gimp_3(tmp_path):
    old = executable(tmp_path / "gimp", "#!/bin/sh\necho 'GNU Image Manipulation Program version 2.10.34'\n")
    found = editors.gimp(str(old))
    assert found.version == "2.10.34" and "needs GIMP 3" in found.note
    new = executable(tmp_path / "gimp-3.0", "#!/bin/sh\necho 'GNU Image Manipulation Program version 3.0.4'\n")
    assert (editors.gimp(str(new)).version, editors.gimp(str(new)).note) == ("3.0.4", "")
    assert "not an executable" in editors.gimp(str(tmp_path / "none")).note


def test_gimps_python_is_the_one_beside_it(tmp_path):
    gimp = executable(tmp_path / "gimp-3.0", "#!/bin/sh\necho 'GNU Image Manipulation Program version 3.0.4'\n")
    python = executable(tmp_path / "python3", "#!/bin/sh\n")
    assert editors.gimp(str(gimp)).python == str(python)


@pytest.mark.parametrize("platform, env, gimp, pykrita, kritarc", [
    ("linux", {"HOME": "/h", "XDG_CONFIG_HOME": "/c", "XDG_DATA_HOME": "/d"},
     "/c/GIMP/3.0/plug-ins", "/d/krita/pykrita", "/c/kritarc"),
    ("linux", {"HOME": "/h"}, "/h/.config/GIMP/3.0/plug-ins", "/h/.local/share/krita/pykrita", "/h/.config/kritarc"),
    ("darwin", {"HOME": "/Users/u"}, "/Users/u/Library/Application Support/GIMP/3.0/plug-ins",
     "/Users/u/Library/Application Support/krita/pykrita", "/Users/u/Library/Preferences/kritarc"),
    ("win32", {"HOME": "/h", "APPDATA": "/R", "LOCALAPPDATA": "/L"}, "/R/GIMP/3.0/plug-ins", "/R/krita/pykrita",
     "/L/kritarc"),
])
def test_plugin_folders_per_system(monkeypatch, platform, env, gimp, pykrita, kritarc):
    for name in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "APPDATA", "LOCALAPPDATA"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "platform", platform)
    assert str(editors.gimp_plug_ins()) == gimp
    assert str(editors.krita_resources() / "pykrita") == pykrita and str(editors.kritarc()) == kritarc


def test_krita_python_is_the_system_python_pykrita_links():
    if shutil.which("krita") is None:
        pytest.skip("krita not installed (tests/editors/krita/setup.sh)")
    found = editors.krita()
    assert found.python and found.python.startswith("/usr/bin/python3") and not found.note
    linked = subprocess.run(["ldd", *map(str, Path("/usr/lib").glob("*/kritaplugins/kritapykrita.so"))],
                            capture_output=True, text=True).stdout
    assert f"lib{Path(found.python).name}" in linked


def test_no_user_systemd_is_a_failed_service_row():
    if subprocess.run(["systemctl", "--user", "show-environment"], capture_output=True).returncode == 0:
        pytest.skip("this machine has a systemd user session")
    row = doctor.check_service("tinctd.service")
    assert row.status == "FAIL" and "systemctl --user restart tinctd.service" in row.fix


def test_the_command_prints_a_table_and_exits_1_when_something_asked_for_is_broken(home, tmp_path):
    env = dict(os.environ, TINCT_ENDPOINT=f"tcp://127.0.0.1:{free_port()}", TINCT_MODEL=str(tmp_path / "no.pt"))
    done = run_doctor("--no-gimp", "--krita", "--record", str(tmp_path / "none.json"), env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    failed = [line for line in lines if "  FAIL  " in line]
    assert {line.split()[0] for line in failed} >= {"model", "daemon", "Krita"}
    fixes = [line for line in lines if line.strip().startswith("fix:")]
    assert len(fixes) == len(failed)  # a fix under each failure
    assert any(line.startswith("python ") and "  ok  " in line for line in lines)


def test_the_command_exits_0_when_all_asked_for_works(tinctd, home, tmp_path):
    daemon = tinctd(tmp_path)
    try:
        env = dict(os.environ, TINCT_ENDPOINT=daemon.endpoint)
        done = run_doctor("--no-gimp", "--no-krita", "--no-start", "--record", str(tmp_path / "none.json"), env=env)
    finally:
        daemon.stop()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Everything asked for works." in done.stdout and " FAIL " not in done.stdout
