#!/usr/bin/env bash
# install-krita-plugin.sh — install Tinct's Krita plugin for this user, or build its zip.
#
#   installers/install-krita-plugin.sh [--resources DIR] [--kritarc FILE] [--python PYTHON]
#                                      [--private-deps] [--zip FILE [--zip-only]]
#
# Copies plugins/krita (tinct_krita.desktop, the tinct_krita package, plugins/common's modules added
# to it) into DIR/pykrita (default ${XDG_DATA_HOME:-~/.local/share}/krita),
# the shortcuts file tinct_krita.action into DIR/actions, enables the plugin in kritarc
# (default ${XDG_CONFIG_HOME:-~/.config}/kritarc) and makes pyzmq and msgpack importable from
# Krita's embedded Python: the system Python its pykrita module links (found with ldd), or
# --python.  Uses what that Python has (Debian/Ubuntu: python3-zmq python3-msgpack, installed
# with apt-get when run as root); otherwise, or with --private-deps, pip installs them into a
# private folder tinct_krita/pythonX.Y that the plugin puts on sys.path.  The new copy
# replaces the old one only once complete.  Quit Krita first: it rewrites kritarc on exit.
#
# --zip FILE also writes FILE, a zip that Krita's Tools → Scripts → Import Python Plugin from
# File accepts (tinct_krita.desktop, tinct_krita.action and tinct_krita/ at the top level).
# Krita's importer cannot install pyzmq, so the zip holds the private folder only with
# --private-deps (then it suits Krita builds whose Python is the same X.Y on this platform);
# otherwise the plugin uses the packages of Krita's Python and says so if they are missing.
# --zip-only builds the zip and installs nothing.
set -euo pipefail

say() { echo "[install-krita-plugin] $*"; }
die() { echo "[install-krita-plugin] error: $*" >&2; exit 1; }

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
RESOURCES="${XDG_DATA_HOME:-$HOME/.local/share}/krita"
KRITARC="${XDG_CONFIG_HOME:-$HOME/.config}/kritarc"
PYTHON=""
PRIVATE=0
ZIP=""
INSTALL=1
while [ $# -gt 0 ]; do
  case "$1" in
    --resources) RESOURCES="${2:?--resources needs a folder}"; shift 2 ;;
    --kritarc) KRITARC="${2:?--kritarc needs a file}"; shift 2 ;;
    --python) PYTHON="${2:?--python needs a program}"; shift 2 ;;
    --private-deps) PRIVATE=1; shift ;;
    --zip) ZIP="${2:?--zip needs a file name}"; shift 2 ;;
    --zip-only) INSTALL=0; shift ;;
    -h|--help) sed -n '2,22s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done
[ "$INSTALL" = 1 ] || [ -n "$ZIP" ] || die "--zip-only needs --zip FILE"

SRC="$REPO/plugins/krita"
# the modules both plugins share, vendored into the tinct_krita package
COMMON=("$REPO"/plugins/common/{tinct_plugin,tinct_client,tinct_shm}.py)
for f in "${COMMON[@]}"; do [ -f "$f" ] || die "$f is missing; run this from a complete Tinct checkout"; done

# Krita embeds a system Python; pip and import checks must use that one, not whatever
# python3 is first on PATH (a venv or pyenv would check the wrong site-packages).
if [ -z "$PYTHON" ]; then
  PYKRITA_SO="$(find /usr/lib /usr/lib64 /usr/local/lib -name kritapykrita.so 2>/dev/null | head -1 || true)"
  LIBPY="$( [ -n "$PYKRITA_SO" ] && ldd "$PYKRITA_SO" 2>/dev/null | grep -o 'libpython3\.[0-9]*' | head -1 || true)"
  if [ -n "$LIBPY" ] && [ -x "/usr/bin/${LIBPY#lib}" ]; then PYTHON="/usr/bin/${LIBPY#lib}"
  elif [ -x /usr/bin/python3 ]; then PYTHON=/usr/bin/python3
  else PYTHON=python3
  fi
fi
command -v "$PYTHON" >/dev/null || die "no $PYTHON: pass --python with the Python Krita embeds"
VERSION="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"

if [ "$INSTALL" = 1 ]; then PARENT="$RESOURCES/pykrita"; else PARENT="${TMPDIR:-/tmp}"; fi
mkdir -p "$PARENT"
STAGE="$(mktemp -d "$PARENT/.tinct_krita.XXXXXX")"
trap 'rm -rf "$STAGE"' EXIT
mkdir "$STAGE/tinct_krita"
install -m 644 "$SRC"/tinct_krita/*.py "${COMMON[@]}" "$STAGE/tinct_krita/"
install -m 644 "$SRC/tinct_krita.desktop" "$SRC/tinct_krita.action" "$STAGE/"

# shellcheck source=plugin-deps.sh
. "$REPO/installers/plugin-deps.sh"
# a zip alone needs no pyzmq/msgpack here unless it is to carry them (--private-deps)
if [ "$INSTALL" = 1 ] || [ "$PRIVATE" = 1 ]; then
  plugin_deps "$PYTHON" "$STAGE/tinct_krita/python$VERSION" "$PRIVATE" "$INSTALL" Krita
fi

if [ -n "$ZIP" ]; then
  mkdir -p "$(dirname "$ZIP")"
  ZIP="$(cd "$(dirname "$ZIP")" && pwd)/$(basename "$ZIP")"
  rm -f "$ZIP"
  # Krita's importer looks for NAME.desktop, a folder NAME/ holding __init__.py, and NAME.action
  (cd "$STAGE" && "$PYTHON" - "$ZIP" "$PRIVATE" "python$VERSION" <<'PY'
import os, sys, zipfile
zip_name, private, deps = sys.argv[1:]
with zipfile.ZipFile(zip_name, "w", zipfile.ZIP_DEFLATED) as z:
    for name in ("tinct_krita.desktop", "tinct_krita.action"):
        z.write(name)
    for folder, dirs, files in os.walk("tinct_krita"):
        skip = {"__pycache__"} | ({deps} if private == "0" and folder == "tinct_krita" else set())
        dirs[:] = sorted(d for d in dirs if d not in skip)
        z.write(folder)
        for f in sorted(files):
            z.write(os.path.join(folder, f))
PY
  )
  if [ "$PRIVATE" = 1 ]; then DEPS="with pyzmq/msgpack for Python $VERSION"; else DEPS="without pyzmq/msgpack"; fi
  say "wrote $ZIP ($DEPS; Tools → Scripts → Import Python Plugin from File)"
fi
[ "$INSTALL" = 1 ] || exit 0

mkdir -p "$RESOURCES/actions"
install -m 644 "$STAGE/tinct_krita.action" "$RESOURCES/actions/tinct_krita.action"
install -m 644 "$STAGE/tinct_krita.desktop" "$PARENT/tinct_krita.desktop"
rm -rf "$PARENT/tinct_krita"
mv "$STAGE/tinct_krita" "$PARENT/tinct_krita"
rm -rf "$STAGE"
trap - EXIT

# Enable it: [python] enable_tinct_krita=true, keeping everything else in kritarc as it is.
mkdir -p "$(dirname "$KRITARC")"
touch "$KRITARC"
awk '
  /^\[/ { if (in_python && !done) { print "enable_tinct_krita=true"; done = 1 } in_python = ($0 == "[python]") }
  in_python && /^enable_tinct_krita=/ { if (!done) print "enable_tinct_krita=true"; done = 1; next }
  { print }
  END { if (!done) { if (!in_python) { if (NR) print ""; print "[python]" } print "enable_tinct_krita=true" } }
' "$KRITARC" >"$KRITARC.tinct-new"
mv "$KRITARC.tinct-new" "$KRITARC"

if [ -d "$PARENT/tinct_krita/python$VERSION" ]; then DEPS="private folder python$VERSION"; else DEPS="$PYTHON's own packages"; fi
say "installed into $PARENT/tinct_krita (pyzmq/msgpack: $DEPS), enabled in $KRITARC"
say "restart Krita: Filter → Colorize (Tinct)…, Filter → Add Colorize Hints Layer, Settings → Dockers → Tinct"
