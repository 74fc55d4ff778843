"""The path-agnostic half of Tinct's installers: the record of what an install added, the
plugins' settings file, the systemd unit, and uninstalling exactly what was added.

Standard library only, Python 3.8+, so any python3 runs it: install.sh uses the one it builds
the virtual environment from, which still works when that environment is broken.  A later
PowerShell or zsh installer calls the same commands; only the paths it passes differ.

    tinct_setup.py begin RECORD                     start (or continue) the record of an install
    tinct_setup.py claim RECORD PATH [--tree]       we are about to add PATH (and the folders above
                                                    it that do not exist yet); --tree: a folder, all ours
    tinct_setup.py config RECORD FILE --tinctd PATH [--endpoint E] [--service UNIT]
                                                    write the plugins' settings, keeping the user's
                                                    edits; prints the endpoint in effect
    tinct_setup.py kritarc RECORD FILE              note what kritarc held before the Krita installer
    tinct_setup.py set RECORD KEY.SUB=VALUE...      store facts for tinct doctor (venv, editors.gimp.folder)
    tinct_setup.py stop RECORD                      stop a tinctd running from this install (upgrades)
    tinct_setup.py unit --tinctd PATH [--endpoint E]   print the systemd user unit
    tinct_setup.py uninstall RECORD                 remove what the record says was added
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVICE = "tinctd.service"
KRITA_KEY = "enable_tinct_krita"


# -- the record ------------------------------------------------------------------------
def load(record: Path) -> dict:
    if record.is_file():
        return json.loads(record.read_text(encoding="utf-8"))
    return {"format": 1, "added": []}


def save(record: Path, data: dict) -> None:
    write_atomically(record, json.dumps(data, indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` only once the new text is complete, so an interrupted install loses nothing."""
    handle, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=str(path.parent))
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as f:
            f.write(text)
        if path.exists():
            shutil.copymode(str(path), tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, str(path))
    except BaseException:
        os.unlink(tmp)
        raise


def claim(data: dict, path: Path, kind: str | None) -> None:
    """Record that `path` is ours (kind "tree": a folder and all in it, "file": a file or link; None:
    only the folders above it), after any folders above it that do not exist yet (kind "dir":
    removed again only if empty)."""
    path = Path(os.path.abspath(str(path)))
    known = {entry["path"] for entry in data["added"]}
    missing = [p for p in path.parents if not p.exists()]
    for folder in reversed(missing):
        if str(folder) not in known:
            data["added"].append({"path": str(folder), "kind": "dir"})
    if kind and str(path) not in known:
        data["added"].append({"path": str(path), "kind": kind})


def owned(data: dict, path: Path) -> bool:
    return str(Path(os.path.abspath(str(path)))) in {entry["path"] for entry in data["added"]}


# -- the plugins' settings file ----------------------------------------------------------
def merge_config(data: dict, file: Path, tinctd: str, endpoint: str | None,
                 service: str | None) -> tuple[str | None, list[str]]:
    """Write endpoint and start_command into the settings file.  The endpoint stays what the file
    says unless `endpoint` is given; a start_command the user changed since the last install stays
    too, and so does every other key.  Returns (endpoint in effect or None for the default, notes)."""
    try:
        current = json.loads(file.read_text(encoding="utf-8")) if file.exists() else {}
    except ValueError as exc:
        raise SystemExit(f"{file} is not valid JSON ({exc}); correct or delete it, then install again") from None
    if not isinstance(current, dict):
        raise SystemExit(f"{file} should hold a JSON object; correct or delete it, then install again")
    ours = data.get("config", {}).get("written", {})
    notes = []

    if endpoint is None and current.get("endpoint"):
        endpoint = current["endpoint"]
        notes.append(f"kept the endpoint {endpoint} from {file}")
    start = ["systemctl", "--user", "start", service] if service else \
        [tinctd] + (["--endpoint", endpoint] if endpoint else [])
    written = {"start_command": start, **({"endpoint": endpoint} if endpoint else {})}
    if "start_command" in current and current["start_command"] != ours.get("start_command"):
        written["start_command"] = current["start_command"]
        notes.append(f"kept your start_command {current['start_command']} from {file}")
    merged = {k: v for k, v in current.items() if k not in ("endpoint", "start_command") or k in written}
    merged.update(written)
    if not file.exists():
        claim(data, file, "file")
        file.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(file, json.dumps(merged, indent=2) + "\n")
    data["config"] = {"path": str(file), "written": written}
    return endpoint, notes


def unmerge_config(data: dict) -> str | None:
    """Take our keys out of a settings file the user had before the install (ours is just deleted)."""
    config = data.get("config")
    if not config or owned(data, Path(config["path"])):
        return None
    file = Path(config["path"])
    try:
        current = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return f"left {file} as it is (unreadable)"
    kept = {k: v for k, v in current.items() if config["written"].get(k, object()) != v}
    write_atomically(file, json.dumps(kept, indent=2) + "\n")
    return f"took Tinct's settings out of {file}, which was there before"


# -- kritarc -----------------------------------------------------------------------------
def kritarc_sections(text: str) -> list[tuple[str | None, list[str]]]:
    """[(section name or None before the first header, its lines)] keeping every line as it was."""
    sections = [(None, [])]
    for line in text.splitlines():
        header = re.fullmatch(r"\[(.*)\]", line.strip())
        if header:
            sections.append((header[1], [line]))
        else:
            sections[-1][1].append(line)
    return sections


def kritarc_state(file: Path) -> dict:
    """What uninstall puts back: whether kritarc, its [python] section and our key's line were there."""
    if not file.is_file():
        return {"path": str(file), "existed": False, "had_section": False, "key_line": None}
    sections = kritarc_sections(file.read_text(encoding="utf-8", errors="surrogateescape"))
    python = [line for name, lines in sections if name == "python" for line in lines]
    return {"path": str(file), "existed": True, "had_section": any(line == "[python]" for line in python),
            "key_line": next((line for line in python if line.startswith(KRITA_KEY + "=")), None)}


def restore_kritarc(before: dict) -> str | None:
    """Put our key's line back as it was (gone, or the user's own value), and drop a [python] header or
    a whole file that only the installer made; everything else Krita and the user wrote there stays."""
    file = Path(before["path"])
    if not file.is_file():
        return None
    out = []
    for name, lines in kritarc_sections(file.read_text(encoding="utf-8", errors="surrogateescape")):
        if name == "python":
            lines = [before["key_line"] if line.startswith(KRITA_KEY + "=") else line for line in lines]
            lines = [line for line in lines if line is not None]
            if not before["had_section"] and not any(line.strip() for line in lines[1:]):
                continue
        out += lines
    text = "\n".join(out).strip("\n")
    if not before["existed"] and not text.strip():
        file.unlink()
        return f"removed {file} (only Tinct had written to it)"
    write_atomically(file, text + "\n")
    return f"put {KRITA_KEY} in {file} back as it was"


# -- the service -------------------------------------------------------------------------
def unit_text(tinctd: str, endpoint: str | None) -> str:
    """A systemd user unit: tinctd started at login and again whenever it fails (no socket
    activation: tinctd binds its ZeroMQ endpoint itself and must keep its engines warm)."""
    command = " ".join(_systemd_quote(arg) for arg in [tinctd] + (["--endpoint", endpoint] if endpoint else []))
    return f"""[Unit]
Description=Tinct colorization daemon for the GIMP and Krita plugins
After=default.target

[Service]
Type=simple
ExecStart={command}
Restart=on-failure
RestartSec=2

[Install]
WantedBy=default.target
"""


def _systemd_quote(arg: str) -> str:
    if re.fullmatch(r"[\w@%+=:,./-]+", arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


# -- uninstalling ------------------------------------------------------------------------
def stop_daemon(data: dict) -> str | None:
    """Stop a tinctd that runs from this install's environment (its lock file names its pid)."""
    lock, venv = data.get("state_dir"), data.get("venv")
    if not (lock and venv):
        return None
    try:
        pid = int(json.loads((Path(lock) / "tinctd.lock").read_text() or "{}").get("pid", 0))
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError, TypeError):
        return None
    if pid <= 0 or venv not in command:
        return None
    os.kill(pid, signal.SIGTERM)
    for _ in range(100):
        if not os.path.exists(f"/proc/{pid}"):
            break
        time.sleep(0.1)
    return f"stopped tinctd (pid {pid})"


def uninstall(record: Path) -> list[str]:
    data = load(record)
    done = []
    if data.get("service") and shutil.which("systemctl"):
        subprocess.run(["systemctl", "--user", "disable", "--now", data["service"]], capture_output=True)
        done.append(f"stopped and disabled {data['service']}")
    done += filter(None, [stop_daemon(data), unmerge_config(data)])
    if data.get("kritarc"):
        done += filter(None, [restore_kritarc(data["kritarc"])])
    entries = list(reversed(data["added"]))
    for entry in entries:
        path = Path(entry["path"])
        if entry["kind"] == "tree" and path.is_dir() and not path.is_symlink():
            shutil.rmtree(str(path))
            done.append(f"removed {path}/")
        elif entry["kind"] != "dir" and (path.exists() or path.is_symlink()):
            path.unlink()
            done.append(f"removed {path}")
    if record.exists():
        record.unlink()
    for entry in entries:
        path = Path(entry["path"])
        if entry["kind"] == "dir" and path.is_dir():
            if any(path.iterdir()):
                done.append(f"kept {path}/ (it holds files Tinct did not add)")
            else:
                path.rmdir()
    if data.get("service") and shutil.which("systemctl"):
        subprocess.run(["systemctl", "--user", "daemon-reload"], capture_output=True)
    return done


# -- command line ------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="tinct_setup.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("begin").add_argument("record", type=Path)
    p = sub.add_parser("claim")
    p.add_argument("record", type=Path)
    p.add_argument("path", type=Path)
    p.add_argument("--tree", action="store_true")
    p = sub.add_parser("config")
    p.add_argument("record", type=Path)
    p.add_argument("file", type=Path)
    p.add_argument("--tinctd", required=True)
    p.add_argument("--endpoint")
    p.add_argument("--service")
    p = sub.add_parser("kritarc")
    p.add_argument("record", type=Path)
    p.add_argument("file", type=Path)
    p = sub.add_parser("set")
    p.add_argument("record", type=Path)
    p.add_argument("assignments", nargs="+", metavar="KEY.SUB=VALUE")
    sub.add_parser("stop").add_argument("record", type=Path)
    p = sub.add_parser("unit")
    p.add_argument("--tinctd", required=True)
    p.add_argument("--endpoint")
    sub.add_parser("uninstall").add_argument("record", type=Path)
    args = ap.parse_args(argv)

    if args.command == "unit":
        sys.stdout.write(unit_text(args.tinctd, args.endpoint))
        return 0
    if args.command == "stop":
        print(stop_daemon(load(args.record)) or "no tinctd of this install is running")
        return 0
    if args.command == "uninstall":
        if not args.record.is_file():
            print(f"nothing to uninstall: no record {args.record}")
            return 0
        for line in uninstall(args.record):
            print(line)
        return 0
    data = load(args.record)
    if args.command == "begin":
        if not data["added"] and not args.record.parent.exists():
            claim(data, args.record.parent, "dir")
    elif args.command == "claim":
        claim(data, args.path, "tree" if args.tree else "file")
    elif args.command == "config":
        endpoint, notes = merge_config(data, args.file, args.tinctd, args.endpoint, args.service)
        for note in notes:
            print(note, file=sys.stderr)
        print(endpoint or "")
    elif args.command == "kritarc":
        if "kritarc" not in data:  # the state before the first install is what uninstall restores
            data["kritarc"] = kritarc_state(args.file)
            claim(data, args.file, None)
    elif args.command == "set":
        for assignment in args.assignments:
            key, _, value = assignment.partition("=")
            *parents, last = key.split(".")
            place = data
            for name in parents:
                place = place.setdefault(name, {})
            place[last] = value
    args.record.parent.mkdir(parents=True, exist_ok=True)
    save(args.record, data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
