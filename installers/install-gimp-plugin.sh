#!/usr/bin/env bash
# install-gimp-plugin.sh — install Tinct's GIMP 3 plug-in (Filters → Colorize) for this user.
#
#   installers/install-gimp-plugin.sh [--plug-ins DIR] [--python PYTHON] [--private-deps]
#
# Copies plugins/gimp/tinct-colorize/ plus plugins/common's tinct_plugin.py, tinct_client.py and
# tinct_shm.py into DIR/tinct-colorize/ (default ${XDG_CONFIG_HOME:-~/.config}/GIMP/3.0/plug-ins), the main
# script executable, and makes pyzmq and msgpack importable from GIMP's Python — the python3
# GIMP finds on its PATH (the plug-in's #! line), or --python.  Uses what that Python already
# has (Debian/Ubuntu: python3-zmq python3-msgpack, installed with apt-get when run as root for
# the system Python); otherwise, or with --private-deps, pip installs them into a private
# folder tinct-colorize/pythonX.Y that the plug-in puts on sys.path for that Python version.
# The new copy replaces the old one only once complete, so a failed install changes nothing.
set -euo pipefail

say() { echo "[install-gimp-plugin] $*"; }
die() { echo "[install-gimp-plugin] error: $*" >&2; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PLUGINS="${XDG_CONFIG_HOME:-$HOME/.config}/GIMP/3.0/plug-ins"
PYTHON=python3
PRIVATE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --plug-ins) PLUGINS="$2"; shift 2 ;;
    --python) PYTHON="$2"; shift 2 ;;
    --private-deps) PRIVATE=1; shift ;;
    -h|--help) sed -n '2,14s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

SRC="$REPO/plugins/gimp/tinct-colorize"
# the modules both plugins share, vendored beside the plug-in's own
COMMON=("$REPO"/plugins/common/{tinct_plugin,tinct_client,tinct_shm}.py)
for f in "${COMMON[@]}"; do [ -f "$f" ] || die "$f is missing; run this from a complete Tinct checkout"; done
command -v "$PYTHON" >/dev/null || die "no $PYTHON: GIMP 3 runs its Python plug-ins with python3 (install gimp-python / python3-gi)"
VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

mkdir -p "$PLUGINS"
STAGE="$(mktemp -d "$PLUGINS/.tinct-colorize.XXXXXX")"
chmod 755 "$STAGE"
trap 'rm -rf "$STAGE"' EXIT
install -m 755 "$SRC/tinct-colorize.py" "$STAGE/"
install -m 644 "$SRC/colorize_logic.py" "${COMMON[@]}" "$STAGE/"

# shellcheck source=plugin-deps.sh
. "$REPO/installers/plugin-deps.sh"
plugin_deps "$PYTHON" "$STAGE/python$VERSION" "$PRIVATE" 1 GIMP

rm -rf "$PLUGINS/tinct-colorize"
mv "$STAGE" "$PLUGINS/tinct-colorize"
trap - EXIT
if [ -d "$PLUGINS/tinct-colorize/python$VERSION" ]; then DEPS="private folder python$VERSION"; else DEPS="$PYTHON's own packages"; fi
say "installed into $PLUGINS/tinct-colorize (pyzmq/msgpack: $DEPS); restart GIMP, then Filters → Colorize"
