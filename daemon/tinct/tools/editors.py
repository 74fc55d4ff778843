"""Where GIMP 3 and Krita are, which Python runs their plugins, and where a user's plugins go,
on Linux, Windows and macOS.

One answer for the installers and for `tinct doctor`, so both look in the same places:
install.sh reads `python -m tinct.tools.editors` (shell assignments) and passes the folders to the
per-editor installers; a PowerShell or zsh installer can read the same.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GIMP_NAMES = ("gimp-3.0", "gimp-console-3.0", "gimp-3", "gimp")  # the last one may be 2.10: checked
GIMP_FLATPAK = "org.gimp.GIMP"
KRITA_NAMES = ("krita",)
# Standard install locations where no editor is on PATH (Windows installers, macOS app bundles).
GIMP_PLACES = {"win32": [r"{ProgramFiles}\GIMP 3\bin\gimp-3.0.exe", r"{LOCALAPPDATA}\Programs\GIMP 3\bin\gimp-3.0.exe"],
               "darwin": ["/Applications/GIMP.app/Contents/MacOS/gimp"]}
KRITA_PLACES = {"win32": [r"{ProgramFiles}\Krita (x64)\bin\krita.exe"],
                "darwin": ["/Applications/krita.app/Contents/MacOS/krita"]}


@dataclass
class Editor:
    """One editor as found on this computer; `command` is None when it is not installed."""
    name: str
    command: str | None
    version: str | None     # what the editor says, when it can say it without a display
    python: str | None      # the interpreter its plugins run in, when one can be run on its own
    plugins: Path           # the per-user folder its plugins are installed into
    note: str = ""          # set when the editor cannot run our plugin: why, for people


def config_home() -> Path:
    """The per-user settings folder: %APPDATA%, ~/Library/Application Support, $XDG_CONFIG_HOME."""
    if sys.platform == "win32":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support"
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")


def data_home() -> Path:
    """The per-user data folder: the same as config_home() except on Linux ($XDG_DATA_HOME)."""
    if sys.platform in ("win32", "darwin"):
        return config_home()
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")


def gimp_plug_ins() -> Path:
    return config_home() / "GIMP" / "3.0" / "plug-ins"


def krita_resources() -> Path:
    """Krita's resource folder; its pykrita/ holds Python plugins, actions/ their shortcuts."""
    return data_home() / "krita"


def kritarc() -> Path:
    """Krita's settings file, where a Python plugin is switched on ([python] enable_NAME=true)."""
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "kritarc"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Preferences" / "kritarc"
    return config_home() / "kritarc"


def _installed(names, places, given: str | None) -> str | None:
    if given:
        return shutil.which(given)
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    for place in places.get(sys.platform, []):
        path = place.format(**{k: os.environ.get(k, "") for k in ("ProgramFiles", "LOCALAPPDATA")})
        if os.path.isfile(path):
            return path
    return None


def _output(command: list[str], timeout: float = 60) -> str | None:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _sibling_python(command: str) -> str | None:
    """The python3 installed beside an editor's executable (distributions, GIMP's Windows bundle)."""
    for name in ("python3", "python3.exe", "python.exe"):
        candidate = Path(command).parent / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def _system_python() -> str | None:
    return "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else shutil.which("python3")


def gimp(command: str | None = None) -> Editor:
    """GIMP 3: `command` if given, else the first GIMP on PATH or in the standard places.

    GIMP runs a Python plug-in with the python3 it finds for the plug-in's #! line: the one beside
    GIMP's own executable where there is one (distributions, the Windows bundle), else the system's."""
    found = _installed(GIMP_NAMES, GIMP_PLACES, command)
    plugins = gimp_plug_ins()
    if command and not found:
        return Editor("GIMP 3", None, None, _system_python(), plugins, f"{command} is not an executable")
    command = found
    if command is None:
        if sys.platform.startswith("linux") and _output(["flatpak", "info", GIMP_FLATPAK], 30) is not None:
            return Editor("GIMP 3", None, None, None,
                          Path.home() / ".var/app" / GIMP_FLATPAK / "config/GIMP/3.0/plug-ins",
                          f"only the Flatpak {GIMP_FLATPAK} is installed; its Python lacks pyzmq and the "
                          "installers do not handle Flatpak yet")
        return Editor("GIMP 3", None, None, _system_python(), plugins, "not found on PATH")
    said = _output([command, "--version"])
    version = (re.search(r"version\s+(\S+)", said or "") or [None, None])[1]
    python = _sibling_python(command) or _system_python()
    note = "" if version is None or version.startswith("3") else f"{command} is GIMP {version}; Tinct needs GIMP 3"
    return Editor("GIMP 3", command, version, python, plugins, note)


def _krita_python(command: str) -> str | None:
    """The system Python that Krita's pykrita module links (Linux), found like the dynamic linker would."""
    if not sys.platform.startswith("linux"):
        return None  # Windows and macOS builds embed a Python that cannot run on its own
    prefixes = dict.fromkeys([Path(command).resolve().parent.parent, Path("/usr"), Path("/usr/local")])
    for prefix in prefixes:  # <prefix>/lib/kritaplugins or <prefix>/lib/<multiarch>/kritaplugins
        for module in sorted(prefix.glob("lib*/kritaplugins/kritapykrita.so")) + \
                sorted(prefix.glob("lib*/*/kritaplugins/kritapykrita.so")):
            linked = re.search(r"libpython(3\.\d+)", _output(["ldd", str(module)]) or "")
            return f"/usr/bin/python{linked[1]}" if linked else None
    return None


def krita(command: str | None = None) -> Editor:
    """Krita 5: `command` if given, else krita on PATH or in the standard places.  Its plugins run in
    the Python it embeds, which on Linux is the system Python its pykrita module links."""
    found = _installed(KRITA_NAMES, KRITA_PLACES, command)
    if command and not found:
        return Editor("Krita", None, None, None, krita_resources() / "pykrita", f"{command} is not an executable")
    command = found
    if command is None:
        return Editor("Krita", None, None, None, krita_resources() / "pykrita", "not found on PATH")
    python = _krita_python(command)
    note = "" if python or not sys.platform.startswith("linux") else \
        "its Python support (kritapykrita) was not found; on Debian/Ubuntu install krita with python3-pyqt5"
    return Editor("Krita", command, None, python, krita_resources() / "pykrita", note)


def main(argv: Sequence[str] | None = None) -> int:
    """Print what was found as shell assignments (for install.sh): gimp_command=..., krita_python=..."""
    ap = argparse.ArgumentParser(prog="python -m tinct.tools.editors", description=main.__doc__)
    ap.add_argument("--gimp", help="the GIMP 3 executable to use instead of searching")
    ap.add_argument("--krita", help="the Krita executable to use instead of searching")
    args = ap.parse_args(argv)
    found = {"gimp": gimp(args.gimp), "krita": krita(args.krita)}
    values = {f"{key}_{field}": getattr(editor, field) for key, editor in found.items()
              for field in ("command", "version", "python", "plugins", "note")}
    values.update(krita_resources=krita_resources(), kritarc=kritarc())
    for key, value in values.items():
        print(f"{key}={shlex.quote('' if value is None else str(value))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
