"""installers/install.sh for real, in a throw-away HOME and prefix: a full install (virtual environment,
CPU PyTorch, tinct with its model, the GIMP and Krita plugins, the plugins' settings), the installed
Krita plugin's own client starting the installed tinctd in Krita's Python, tinct doctor, an upgrade
that keeps what the user changed, the systemd unit, and an uninstall that leaves HOME as it was.
Plus installers/tinct_setup.py's merge and restore rules on their own."""
import configparser
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from daemon_fixture import ROOT, free_port
from tinct.tools import editors

INSTALL = ROOT / "installers" / "install.sh"
SETUP = ROOT / "installers" / "tinct_setup.py"
INSTALL_TIMEOUT = 1200
# Files a user already has in the folders the installer writes to; they must survive everything.
UNRELATED = {".config/GIMP/3.0/plug-ins/other-plugin/other.py": "print('not Tinct')\n",
             ".local/share/krita/pykrita/other.desktop": "[Desktop Entry]\nName=Other\n",
             ".local/share/krita/actions/other.action": "<ActionCollection/>\n",
             ".local/bin/other-tool": "#!/bin/sh\n",
             ".config/tinct/notes.txt": "my notes\n",
             ".config/kritarc": "[General]\nfoo=bar\n"}


def snapshot(root: Path) -> dict:
    """Every path under root with its content (files), target (links) or None (folders)."""
    found = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        found[key] = (os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None)
    return found


def tinct_setup():
    spec = importlib.util.spec_from_file_location("tinct_setup", SETUP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def install(box, *options):
    t0 = time.monotonic()
    done = subprocess.run(["bash", str(INSTALL), "--prefix", str(box.prefix), *options], env=box.env,
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    return done.stdout + done.stderr, time.monotonic() - t0


def daemon_pid(box):
    lock = box.home / ".local/state/tinct/tinctd.lock"
    pid = json.loads(lock.read_text() or "{}").get("pid") if lock.exists() else None
    return pid if pid and Path(f"/proc/{pid}").exists() else None


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    root = tmp_path_factory.mktemp("install")
    home, prefix = root / "home", root / "prefix"
    for name, text in UNRELATED.items():
        (home / name).parent.mkdir(parents=True, exist_ok=True)
        (home / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("XDG_", "TINCT"))}
    # pip asks rustc its version for its user agent, and this machine's rustup then writes its
    # settings into HOME: keep that out of the HOME we compare
    env.update(HOME=str(home), RUSTUP_HOME=str(root / "rustup"))
    box = types.SimpleNamespace(home=home, prefix=prefix, env=env, endpoint=f"tcp://127.0.0.1:{free_port()}",
                                before=snapshot(home))
    try:
        # both plugins even where an editor is missing, so that both are checked everywhere
        box.output, seconds = install(box, "--endpoint", box.endpoint, "--gimp", "--krita")
        print(f"\n[install] full install in {seconds:.0f} s")
        box.record = json.loads((prefix / "install-manifest.json").read_text())
        yield box
    finally:
        if (prefix / "install-manifest.json").exists():
            subprocess.run(["bash", str(INSTALL), "--uninstall", "--prefix", str(prefix)], env=env, timeout=300)


def test_the_install_says_what_it_did_and_what_to_do_next(box):
    out = box.output
    assert "Filters → Colorize → Add Hints Layer" in out and "Filter → Colorize (Tinct)" in out
    assert "tinct doctor" in out and "--uninstall" in out
    assert "started by the plugins when they first need it" in out  # no systemd user session here
    assert str(box.home / ".config/tinct/client.json") in out


def test_tinct_runs_from_the_prefix_with_its_own_copy_of_the_model(box):
    python = box.prefix / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-c", "import tinct, tinct.engines.learned.engine as l; p = l.model_path(); "
                           "print(tinct.__file__); print(p); print(p.stat().st_size)"],
                          capture_output=True, text=True, env=box.env, cwd="/")
    assert done.returncode == 0, done.stderr
    module, model, size = done.stdout.split()
    assert module.startswith(str(box.prefix)) and model.startswith(str(box.prefix)) and int(size) > 1 << 20
    for tool in ("tinct", "tinctd"):
        assert os.readlink(box.home / ".local/bin" / tool) == str(box.prefix / "venv/bin" / tool)


def test_the_plugins_settings_point_at_the_installed_tinctd(box):
    settings = json.loads((box.home / ".config/tinct/client.json").read_text())
    assert settings == {"endpoint": box.endpoint,
                        "start_command": [str(box.prefix / "venv/bin/tinctd"), "--endpoint", box.endpoint]}


def test_the_installed_krita_plugin_starts_the_installed_tinctd_in_kritas_python(box):
    """As from a desktop menu: no TINCT_* variables, only HOME; the plugin's own copy of the client."""
    python = editors.krita().python or "/usr/bin/python3"
    folder = box.home / ".local/share/krita/pykrita/tinct_krita"
    code = ("import os, sys; folder = sys.argv[1]; "
            "sys.path[:0] = [os.path.join(folder, 'python%d.%d' % sys.version_info[:2]), folder]; "
            "import tinct_client; c = tinct_client.Client(timeout=10, retries=0); "
            "print(c.hello()['tinct'], c.started, c.endpoint); c.close()")
    assert daemon_pid(box) is None
    done = subprocess.run([python, "-c", code, str(folder)], capture_output=True, text=True, env=box.env, timeout=180)
    assert done.returncode == 0, done.stderr
    version, started, endpoint = done.stdout.split()
    assert started == "True" and endpoint == box.endpoint
    pid = daemon_pid(box)
    assert pid, "no tinctd lock in the state folder the installer recorded"
    assert str(box.prefix / "venv") in Path(f"/proc/{pid}/cmdline").read_text()


def _doctor(box, *options):
    done = subprocess.run([str(box.home / ".local/bin/tinct"), "doctor", *options], capture_output=True,
                          text=True, env=box.env, timeout=300)
    failed = {line.split("  ")[0] for line in done.stdout.splitlines() if "  FAIL  " in line}
    return done, failed


def test_doctor_passes_what_this_machine_has_and_names_what_it_lacks(box):
    missing = {editor.name for editor in (editors.gimp(), editors.krita()) if editor.note}  # e.g. no GIMP 3 here
    done, failed = _doctor(box)
    assert failed == missing, done.stdout
    assert done.returncode == (1 if missing else 0), done.stdout
    for name in ("GIMP 3", "Krita"):  # the plug-ins themselves are there and import in the editors' Pythons
        assert any(line.startswith(f"{name} plug-in ") and "  ok  " in line for line in done.stdout.splitlines())
    assert "install-manifest.json" not in done.stdout
    done, failed = _doctor(box, "--no-gimp", "--no-krita")
    assert done.returncode == 0 and not failed, done.stdout


def test_an_upgrade_keeps_what_the_user_changed(box):
    settings = box.home / ".config/tinct/client.json"
    mine = json.loads(settings.read_text())
    mine["start_command"] += ["--max-megapixels", "50"]
    mine["note"] = "my own key"
    settings.write_text(json.dumps(mine))
    kritarc = box.home / ".config/kritarc"
    kritarc.write_text(kritarc.read_text() + "\n[tinct]\nengine=learned\n")   # what the plugin itself keeps
    running = daemon_pid(box)
    out, seconds = install(box)   # no options: the endpoint stays the one in the settings
    print(f"\n[install] upgrade in {seconds:.0f} s")
    assert json.loads(settings.read_text()) == mine
    assert f"kept the endpoint {box.endpoint}" in out and "kept your start_command" in out
    text = kritarc.read_text()
    assert "[General]\nfoo=bar" in text and "[tinct]\nengine=learned" in text
    assert text.count("enable_tinct_krita=true") == 1
    assert json.loads((box.prefix / "install-manifest.json").read_text())["added"] == box.record["added"]
    assert running is None or not Path(f"/proc/{running}").exists()  # the old tinctd makes way for the new one


def test_the_systemd_unit_restarts_tinctd_on_failure_without_socket_activation(box, tmp_path):
    tinctd = str(box.prefix / "venv/bin/tinctd")
    text = subprocess.run([sys.executable, str(SETUP), "unit", "--tinctd", tinctd, "--endpoint", box.endpoint],
                          capture_output=True, text=True, check=True).stdout
    unit = configparser.ConfigParser()
    unit.optionxform = str
    unit.read_string(text)
    assert unit["Service"]["ExecStart"] == f"{tinctd} --endpoint {box.endpoint}"
    assert unit["Service"]["Restart"] == "on-failure"
    assert unit["Install"]["WantedBy"] == "default.target"
    assert "socket" not in text.lower().replace("no socket", "") and "Listen" not in text
    if shutil.which("systemd-analyze") is None:
        return
    (tmp_path / "tinctd.service").write_text(text)
    verified = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "tinctd.service")],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and "tinctd.service" not in verified.stderr, verified.stderr


def test_uninstall_removes_what_it_added_and_nothing_else(box):
    pid = daemon_pid(box)
    done = subprocess.run(["bash", str(INSTALL), "--uninstall", "--prefix", str(box.prefix)], env=box.env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    expected = dict(box.before)  # the plugin's own settings in kritarc are the user's: they stay
    expected[".config/kritarc"] += b"\n[tinct]\nengine=learned\n"
    assert snapshot(box.home) == expected
    assert not box.prefix.exists()
    assert pid is None or not Path(f"/proc/{pid}").exists()


# -- tinct_setup's rules on their own ---------------------------------------------------------
def test_claim_records_only_the_folders_it_creates(tmp_path):
    setup = tinct_setup()
    data = {"added": []}
    (tmp_path / "a").mkdir()
    setup.claim(data, tmp_path / "a/b/c/plugin", "tree")
    setup.claim(data, tmp_path / "a/b/c/plugin", "tree")  # idempotent
    assert data["added"] == [{"path": str(tmp_path / "a/b"), "kind": "dir"},
                             {"path": str(tmp_path / "a/b/c"), "kind": "dir"},
                             {"path": str(tmp_path / "a/b/c/plugin"), "kind": "tree"}]


def test_a_settings_file_the_user_had_keeps_their_keys_after_uninstall(tmp_path):
    setup = tinct_setup()
    record, file = tmp_path / "prefix/install-manifest.json", tmp_path / "client.json"
    file.write_text(json.dumps({"endpoint": "tcp://127.0.0.1:6001", "mine": 1}))
    record.parent.mkdir()
    data = setup.load(record)
    endpoint, notes = setup.merge_config(data, file, "/p/tinctd", None, None)
    assert endpoint == "tcp://127.0.0.1:6001" and notes
    assert json.loads(file.read_text()) == {"endpoint": endpoint, "mine": 1,
                                            "start_command": ["/p/tinctd", "--endpoint", endpoint]}
    setup.save(record, data)
    setup.uninstall(record)
    assert json.loads(file.read_text()) == {"mine": 1}


def test_a_broken_settings_file_stops_the_install_and_stays(tmp_path):
    setup = tinct_setup()
    file = tmp_path / "client.json"
    file.write_text("{oops")
    with pytest.raises(SystemExit, match="not valid JSON"):
        setup.merge_config({"added": []}, file, "/p/tinctd", None, None)
    assert file.read_text() == "{oops"


@pytest.mark.parametrize("before, after", [
    ("", None),                                                         # no kritarc before: gone again
    ("[General]\nfoo=bar\n", "[General]\nfoo=bar\n"),                   # our [python] section goes
    ("[python]\nenable_other=true\n", "[python]\nenable_other=true\n"),  # Krita's section stays
    ("[python]\nenable_tinct_krita=false\n", "[python]\nenable_tinct_krita=false\n"),  # the user's own line
])
def test_kritarc_gets_back_what_it_had(tmp_path, before, after):
    setup = tinct_setup()
    kritarc = tmp_path / "kritarc"
    if before:
        kritarc.write_text(before)
    state = setup.kritarc_state(kritarc)
    # what install-krita-plugin.sh does, and what Krita adds of its own while it runs
    text = kritarc.read_text() if kritarc.exists() else ""
    if "enable_tinct_krita=" in text:
        text = text.replace("enable_tinct_krita=false", "enable_tinct_krita=true")
    elif "[python]" in text:
        text = text.replace("[python]\n", "[python]\nenable_tinct_krita=true\n")
    else:
        text += "\n[python]\nenable_tinct_krita=true\n"
    kritarc.write_text(text)
    setup.restore_kritarc(state)
    assert (kritarc.read_text() if kritarc.exists() else None) == after
