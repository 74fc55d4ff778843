#!/usr/bin/env bash
# Installs the Krita that tests/test_krita.py drives: Debian 12's krita 5.1.5 (it embeds the
# system Python 3.11) and an X server for it, since Krita's window ignores QT_QPA_PLATFORM=offscreen.
#
#   krita python3-pyqt5 python3-sip   the editor; pykrita needs PyQt5, which krita only recommends
#   python3-zmq python3-msgpack       what the plug-in imports (installers/install-krita-plugin.sh
#                                     would apt-get them too, but a test should not reach the network)
#   xvfb xauth                        xvfb-run
#
# Idempotent (a warm run only checks), needs root or sudo, apt-based.
set -euo pipefail
PKGS=(krita python3-pyqt5 python3-sip python3-zmq python3-msgpack xvfb xauth)
say() { echo "[krita-setup] $*"; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
T0=$(date +%s)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  # without --no-install-recommends krita brings krita-gmic, QML multimedia and more
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

for b in krita kritarunner xvfb-run; do
  command -v "$b" >/dev/null || { say "$b is missing after installing" >&2; exit 1; }
done
/usr/bin/python3 -c 'import sys, PyQt5.QtCore, zmq, msgpack; print("[krita-setup] python", sys.version.split()[0], "with PyQt5, zmq", zmq.__version__)'
say "ready: krita $(dpkg-query -W -f='${Version}' krita) in $(( $(date +%s) - T0 )) s"
