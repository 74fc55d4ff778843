"""Check each piece of this Tinct installation and say how to fix what is broken.

    tinct doctor [--gimp | --no-gimp] [--krita | --no-krita] [--no-start] [--record FILE]

One row per check: Python, the torch device, the GPU (its memory, whether the Triton kernels compile
for it), the model file, the daemon (started the way the plugins start it, when nothing answers),
and for each editor: found, plug-in installed, plug-in importable by that editor's own Python.  A
fix follows each failure.  What was asked for comes from the flags, else from the installer's
record (install-manifest.json beside the virtual environment), else from which plug-ins are
installed; an editor nobody asked for is reported but cannot fail the run.  Exit status 1 when
anything asked for is broken.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from . import editors

RECORD_NAME = "install-manifest.json"   # written by installers/tinct_setup.py into the prefix
CHECKOUT = Path(__file__).resolve().parents[3]
# Run in the editor's Python with the plug-in's folder first on sys.path, the way the plug-in
# imports them (a private pythonX.Y folder beside it wins over that Python's own packages).
PROBE = """
import json, os, sys
folder = sys.argv[1]
sys.path[:0] = [os.path.join(folder, "python%d.%d" % sys.version_info[:2]), folder]
import msgpack, zmq, tinct_client
client = tinct_client.Client()
client.close()
print(json.dumps({"python": sys.version.split()[0], "zmq": zmq.__version__, "protocol": tinct_client.PROTOCOL_VERSION,
                  "endpoint": client.endpoint, "start_command": client.start_command}))
"""


@dataclass
class Row:
    check: str
    status: str          # "ok", "FAIL", or "-" (not asked for, nothing to check)
    detail: str
    fix: str = ""


def _ok(check, detail):
    return Row(check, "ok", detail)


def _fail(check, detail, fix):
    return Row(check, "FAIL", detail, fix)


def check_python() -> Row:
    version = ".".join(map(str, sys.version_info[:3]))
    if sys.version_info < (3, 10):  # noqa: UP036  (the Python that runs this may be any)
        return _fail("python", f"{version} ({sys.executable})", "Tinct needs Python 3.10 or newer: run "
                     "installers/install.sh --python python3.X with a newer one")
    return _ok("python", f"{version} ({sys.executable})")


def nvidia_gpu() -> str | None:
    """The first GPU nvidia-smi lists, or None where there is no NVIDIA driver answering."""
    try:
        done = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None


def check_torch() -> Row:
    try:
        import torch
    except ImportError as exc:
        return _fail("torch device", f"PyTorch does not import ({exc})", "run installers/install.sh again")
    gpu = nvidia_gpu()
    if torch.cuda.is_available():
        return _ok("torch device", f"torch {torch.__version__}, CUDA: {torch.cuda.get_device_name(0)}")
    if gpu:
        return _fail("torch device", f"torch {torch.__version__} cannot use the NVIDIA GPU ({gpu})",
                     f"remove {sys.prefix} and run installers/install.sh again: it installs CUDA PyTorch "
                     "when nvidia-smi answers")
    return _ok("torch device", f"torch {torch.__version__}, CPU ({torch.get_num_threads()} threads; no NVIDIA GPU)")


def check_gpu() -> Row:
    """The GPU the solver would run on, its memory, and whether the Triton kernels compile for it: a small
    solve on it through them must give the CPU's colours."""
    import torch

    if not torch.cuda.is_available():
        return Row("gpu", "-", "no GPU: the solver runs on the CPU (its C loops), the Triton kernels are not used")
    props = torch.cuda.get_device_properties(0)
    arch = f"sm_{props.major}{props.minor}"
    detail = f"{props.name}, {props.total_memory / 2**30:.0f} GiB, {arch}"
    from tinct.engines.optimization import levin
    from tinct.native import kernels

    fix = "reinstall with installers/install.sh (CUDA PyTorch brings Triton); the solver falls back to plain PyTorch"
    if kernels.triton_kernels() is None:
        return _fail("gpu", f"{detail}; Triton does not import ({kernels.triton_error()})", fix)
    y = torch.linspace(0, 100, 96 * 80).reshape(1, 96, 80)
    ab, weight = torch.zeros(2, 96, 80), torch.zeros(1, 96, 80)
    ab[:, 5, 5], ab[:, 90, 70] = torch.tensor([40.0, -20.0]), torch.tensor([-30.0, 25.0])
    weight[0, 5, 5] = weight[0, 90, 70] = 1
    try:
        gpu = levin.solve_ab(y.cuda(), ab.cuda(), weight.cuda())[0].cpu()
    except Exception as exc:  # noqa: BLE001 - whatever broke is the row's detail
        return _fail("gpu", f"{detail}; the Triton kernels failed: {type(exc).__name__}: {exc}", fix)
    off = float((gpu - levin.solve_ab(y, ab, weight)[0]).abs().max())
    if off > 2 * levin.ERROR_TOL["final"]:  # each final solve stops within ERROR_TOL of the exact answer
        return _fail("gpu", f"{detail}; the Triton kernels' solve is {off:.2f} ab units off the CPU's", fix)
    return _ok("gpu", f"{detail}; Triton kernels compiled for {arch}, a test solve matches the CPU's")


def check_model() -> Row:
    from tinct import api
    from tinct.engines.learned import engine as learned

    path = learned.model_path()
    try:
        meta = learned.load(path)[2]
    except api.ModelNotInstalled as exc:
        return _fail("model file", str(exc), "run installers/install.sh again (it installs the model with "
                     "tinct), or set TINCT_MODEL to the weights file")
    return _ok("model file", f"{path} ({path.stat().st_size / 2**20:.1f} MiB, step {meta.get('step', '?')})")


def load_client(folders: list[Path]) -> ModuleType | None:
    """The plugins' own tinct_client module, from the first folder that has it (None if none), with
    the sibling modules it imports (tinct_shm) taken from that same folder."""
    for folder in folders:
        path = folder / "tinct_client.py"
        if path.is_file():
            spec = importlib.util.spec_from_file_location("tinct_client", path)
            assert spec is not None and spec.loader is not None  # a .py file always has both
            module = importlib.util.module_from_spec(spec)
            sys.modules.pop("tinct_shm", None)
            sys.path.insert(0, str(folder))
            try:
                spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(folder))
            return module
    return None


def check_daemon(client_module: ModuleType | None, start: bool) -> Row:
    """Ask tinctd hello where the plugins would; start it with their start command if nothing answers."""
    if client_module is None:
        return _fail("daemon", "no copy of tinct_client to ask with (no plug-in installed, no checkout)",
                     "run installers/install.sh")
    client = client_module.Client(timeout=10, retries=0)
    command = client.start_command
    if not start:
        client.start_command = []
    info, transport = None, "frames"
    try:
        info = client.hello()
    except client_module.TinctError as exc:
        if command and not start and exc.code == "unavailable":
            return Row("daemon", "-", f"not running at {client.endpoint}; the plugins start it with "
                                      f"'{shlex.join(command)}' when they need it (--no-start: not tried)")
        how = (f"the plugins start it with '{shlex.join(command)}'; run that and read its output" if command else
               "start it: tinctd (or run installers/install.sh so the plugins can start it)")
        return _fail("daemon", str(exc), how)
    finally:
        if info is not None:  # the way the plugins' pixels would go
            way = client._shared_memory(info)
            transport = way.kind if way else "frames"
        client.close()
    assert info is not None  # hello answered: its failures returned above
    engines = info.get("engines", {})
    broken = {name: state for name, state in engines.items() if state != "ready"}
    authenticated = ("private socket: only your user can reach it" if client.endpoint.startswith("ipc://") else
                     "CURVE: tinctd proved it holds its key" if client.endpoint.startswith("tcp://") else
                     "not authenticated")
    detail = (f"tinctd {info.get('tinct', '?')} at {client.endpoint} ({authenticated}; pixels via {transport}), "
              f"{info.get('device', '?')}, engines: "
              + ", ".join(f"{name} {'ready' if state == 'ready' else 'NOT ready'}" for name, state in engines.items()))
    if client.started:
        detail += f"; started it the way the plugins do ('{shlex.join(command)}'), left running"
    if broken:
        return _fail("daemon", detail, "; ".join(f"{name}: {state}" for name, state in broken.items()))
    return _ok("daemon", detail)


def check_service(unit: str) -> Row:
    done = subprocess.run(["systemctl", "--user", "is-active", unit], capture_output=True, text=True)
    state = done.stdout.strip() or done.stderr.strip()
    if state != "active":
        return _fail("service", f"{unit} is {state}", f"systemctl --user restart {unit}; "
                     f"journalctl --user -u {unit} says why it stopped")
    return _ok("service", f"{unit} active (systemd user service, restarted on failure)")


def probe(python: str, folder: Path) -> dict:
    """What the plug-in's tinct_client sees in the editor's Python, started as from a desktop menu
    (without this shell's TINCT_ENDPOINT/TINCTD_COMMAND); {"error": ...} when it does not import."""
    env = {k: v for k, v in os.environ.items() if k not in ("TINCT_ENDPOINT", "TINCTD_COMMAND", "PYTHONPATH")}
    try:
        done = subprocess.run([python, "-c", PROBE, str(folder)], capture_output=True, text=True, env=env, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"error": str(exc)}
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


@dataclass
class Plugin:
    """What one editor needs: the files of its plug-in and the folder that holds tinct_client."""
    key: str                 # "gimp" or "krita", the flag and the record's name
    editor: editors.Editor
    files: list[Path]        # must all exist
    client_folder: Path      # where the plug-in's tinct_client.py and private pythonX.Y live
    enabled: tuple[Path, str] | None = None   # (settings file, line that switches it on)


def gimp_plugin(command: str | None = None, folder: str | None = None) -> Plugin:
    editor = editors.gimp(command)
    plugin = Path(folder) if folder else editor.plugins / "tinct-colorize"
    return Plugin("gimp", editor, [plugin / name for name in ("tinct-colorize.py", "colorize_logic.py",
                                                               "tinct_client.py")], plugin)


def krita_plugin(command: str | None = None, folder: str | None = None, kritarc: str | None = None) -> Plugin:
    editor = editors.krita(command)
    plugin = Path(folder) if folder else editor.plugins / "tinct_krita"
    return Plugin("krita", editor, [plugin.parent / "tinct_krita.desktop", plugin / "__init__.py",
                                    plugin / "tinct_client.py"], plugin,
                  (Path(kritarc) if kritarc else editors.kritarc(), "enable_tinct_krita=true"))


def check_plugin(plugin: Plugin, asked: bool, installer: str) -> list[Row]:
    editor, name = plugin.editor, plugin.editor.name
    fail = _fail if asked else (lambda check, detail, fix: Row(check, "-", detail + " (not asked for)"))
    rows = []
    if editor.note:
        rows.append(fail(name, editor.note, "install GIMP 3 (gimp.org, or your distribution's gimp 3.0 package)"
                         if plugin.key == "gimp" else "install Krita 5 (krita.org, or your distribution's krita)"))
    else:
        rows.append(_ok(name, f"{editor.version + ' at ' if editor.version else ''}{editor.command}"))
    if not plugin.client_folder.is_dir():
        rows.append(fail(f"{name} plug-in", f"not installed (no {plugin.client_folder})", f"run {installer}"))
        return rows
    missing = [str(path) for path in plugin.files if not path.is_file()]
    if plugin.key == "gimp" and not missing and os.name == "posix" and not os.access(plugin.files[0], os.X_OK):
        missing = [f"{plugin.files[0]} is not executable (GIMP runs only executable plug-ins)"]
    if plugin.enabled and not missing:
        settings, line = plugin.enabled
        text = settings.read_text(errors="replace") if settings.is_file() else ""
        if line not in text.splitlines():
            missing = [f"'{line}' in {settings}"]
    if missing:
        rows.append(fail(f"{name} plug-in", "missing: " + ", ".join(missing), f"run {installer}"))
        return rows
    rows.append(_ok(f"{name} plug-in", str(plugin.client_folder)))
    if editor.python is None:
        rows.append(Row(f"{name} Python", "-", f"{name}'s Python cannot be run on its own here; "
                        "see its Python Plugin Manager"))
        return rows
    seen = probe(editor.python, plugin.client_folder)
    from tinct.serve import protocol

    if "error" in seen:
        rows.append(fail(f"{name} Python", f"{editor.python}: {seen['error']}",
                         f"run {installer} (it makes pyzmq and msgpack importable by {editor.python})"))
    elif seen["protocol"] != protocol.VERSION:
        rows.append(fail(f"{name} Python", f"the plug-in speaks protocol {seen['protocol']}, tinct "
                         f"{protocol.VERSION}", f"run {installer} to update the plug-in"))
    elif seen["start_command"] and not shutil.which(seen["start_command"][0]):
        rows.append(fail(f"{name} Python", "the plug-in would start tinctd with "
                                           f"'{shlex.join(seen['start_command'])}', "
                         "which is not there", "run installers/install.sh again"))
    else:
        start = (f"starts it with '{shlex.join(seen['start_command'])}'" if seen["start_command"]
                 else "cannot start it (start tinctd yourself)")
        rows.append(_ok(f"{name} Python", f"{editor.python} {seen['python']} imports zmq {seen['zmq']}, msgpack, "
                                          f"tinct_client; tinctd at {seen['endpoint']}, {start}"))
    return rows


def read_record(path: Path | None) -> dict:
    path = path or Path(sys.prefix).parent / RECORD_NAME
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return {}


def table(rows: list[Row]) -> str:
    width = max(len(row.check) for row in rows)
    lines = [f"{'check':<{width}}  {'':4}  detail"]
    for row in rows:
        lines.append(f"{row.check:<{width}}  {row.status:<4}  {row.detail}")
        if row.fix:
            lines.append(f"{'':<{width}}        fix: {row.fix}")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    assert __doc__ is not None  # this module's docstring
    parser.description = __doc__.split("\n\n")[-1].replace("\n", " ")
    for key, editor in (("gimp", "GIMP 3"), ("krita", "Krita")):
        parser.add_argument(f"--{key}", action=argparse.BooleanOptionalAction, default=None,
                            help=f"{editor} and its plug-in are (not) asked for (default: as installed)")
    parser.add_argument("--no-start", action="store_true", help="do not start tinctd when nothing answers")
    parser.add_argument("--record", type=Path, help=f"the installer's record (default: {RECORD_NAME} beside the venv)")


def run(args: argparse.Namespace) -> int:
    record = read_record(args.record)
    installed = record.get("editors", {})
    plugins = [gimp_plugin(**installed.get("gimp", {})), krita_plugin(**installed.get("krita", {}))]
    rows = [check_python(), check_torch(), check_gpu(), check_model()]
    client = load_client([p.client_folder for p in plugins] + [CHECKOUT / "plugins" / "common"])
    rows.append(check_daemon(client, start=not args.no_start))
    if record.get("service"):
        rows.append(check_service(record["service"]))
    installer = "installers/install.sh"
    for plugin in plugins:
        asked = getattr(args, plugin.key)
        if asked is None:
            asked = plugin.key in installed if record else plugin.client_folder.is_dir()
        rows += check_plugin(plugin, asked, installer)
    print(table(rows))
    broken = [row for row in rows if row.status == "FAIL"]
    print(f"\n{len(broken)} problem{'s' * (len(broken) != 1)} to fix." if broken else "\nEverything asked for works.")
    return 1 if broken else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tinct doctor")
    configure(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
