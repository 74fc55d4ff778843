#!/usr/bin/env bash
# Builds the Debian 13 editors chroot: the GIMP 3 the integration test drives (tests/test_gimp.py)
# and the Krita 5.2 that tests/test_krita.py drives beside the host's Krita 5.1.
#
# Debian 12 ships GIMP 2.10 and Krita 5.1 only, so GIMP 3.0.4 and Krita 5.2.9 come from a
# Debian 13 "trixie" minbase chroot made with debootstrap.  Needs root.  Idempotent: every step
# leaves a stamp and is skipped next time, so a warm run takes a second.  No mounts are left behind:
# commands that need /proc run in a private mount namespace (unshare --mount).
#
#   TINCT_GIMP_ROOT  chroot location (default /tmp/tinct-gimp3-trixie; the tests read the same variable)
#   DEBIAN_MIRROR    default http://deb.debian.org/debian
set -euo pipefail

ROOT="${TINCT_GIMP_ROOT:-/tmp/tinct-gimp3-trixie}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# GIMP with its Python (PyGObject) plug-in support; Krita with PyQt5 for its Python plug-ins (krita
# only recommends it) and xvfb-run's X server, since Krita's window needs one; and what both
# plug-ins import.  Pixels are checked on the host, so no numpy/Pillow in the chroot.
PKGS="gimp python3-gi gir1.2-gimp-3.0 krita python3-pyqt5 xvfb xauth python3-zmq python3-msgpack"

say() { echo "[editors-setup] $*"; }
[ "$(id -u)" -eq 0 ] || { say "must run as root (debootstrap, chroot)" >&2; exit 1; }
T0=$(date +%s)
export DEBIAN_FRONTEND=noninteractive

in_chroot() {
  unshare --mount --propagation private -- sh -c '
    root=$1; shift
    mount -t proc proc "$root/proc"
    exec chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin \
         LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "$@"' sh "$ROOT" "$@"
}

# On the host: debootstrap (bookworm's keyring knows trixie); for the dialog test, which runs the
# GUI GIMP on a private Xvfb here and types into it with XTest (tests/editors/gimp/xserver.py),
# Xvfb with libX11 and libXtst.
HOST_PKGS=""
command -v debootstrap >/dev/null || HOST_PKGS="debootstrap"
command -v Xvfb >/dev/null || HOST_PKGS="$HOST_PKGS xvfb"
LIBS="$(ldconfig -p)"
for lib in libX11.so.6:libx11-6 libXtst.so.6:libxtst6; do
  grep -q "[[:space:]]${lib%%:*} " <<<"$LIBS" || HOST_PKGS="$HOST_PKGS ${lib##*:}"
done
if [ -n "$HOST_PKGS" ]; then
  apt-get update -q
  # shellcheck disable=SC2086
  apt-get install -y -q --no-install-recommends $HOST_PKGS
fi

if [ ! -f "$ROOT/.stamp-debootstrap" ]; then
  if [ -e "$ROOT" ]; then
    # a half-finished earlier attempt; never rm -rf through a live mount
    if grep -q " $ROOT/" /proc/mounts; then say "$ROOT has mounts inside; unmount them first" >&2; exit 1; fi
    rm -rf "$ROOT"
  fi
  t=$(date +%s)
  debootstrap --variant=minbase trixie "$ROOT" "$MIRROR"
  touch "$ROOT/.stamp-debootstrap"
  say "debootstrap took $(( $(date +%s) - t )) s"
fi

if [ "$(cat "$ROOT/.stamp-packages" 2>/dev/null)" != "$PKGS" ]; then
  t=$(date +%s)
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  echo "deb $MIRROR trixie main" >"$ROOT/etc/apt/sources.list"
  in_chroot apt-get update -q
  # shellcheck disable=SC2086  # plain `install gimp` would pull ~60 recommended packages
  in_chroot apt-get install -y -q --no-install-recommends $PKGS
  in_chroot apt-get clean
  rm -rf "$ROOT"/var/lib/apt/lists/*
  echo "$PKGS" >"$ROOT/.stamp-packages"
  say "apt-get in the chroot took $(( $(date +%s) - t )) s"
fi

in_chroot gimp-console-3.0 --version
in_chroot python3 -c 'import sys, gi; gi.require_version("Gimp", "3.0"); from gi.repository import Gimp; import zmq, msgpack; print("[editors-setup] python", sys.version.split()[0], "with Gimp 3.0 GI, zmq, msgpack")'
in_chroot xvfb-run -a krita --version 2>/dev/null   # its window needs an X server even for this
in_chroot python3 -c 'import PyQt5.QtCore; print("[editors-setup] PyQt5", PyQt5.QtCore.PYQT_VERSION_STR, "for Krita")'
say "ready: $ROOT ($(du -sxh "$ROOT" | cut -f1)) in $(( $(date +%s) - T0 )) s"
