#!/bin/sh
# in-chroot.sh ROOT REPO [VAR=VALUE...] COMMAND [ARG...]
#
# Runs COMMAND in the GIMP chroot (made by setup.sh) with nothing from the host's environment
# but the given variables, in a private mount namespace holding /proc and the repository
# mounted read-only at /opt/tinct: every mount vanishes when the command exits, so an
# interrupted run leaves nothing behind.  The chroot shares the host's loopback network.
set -eu
[ $# -ge 3 ] || { echo "usage: $0 ROOT REPO [VAR=VALUE...] COMMAND [ARG...]" >&2; exit 2; }
mkdir -p "$1/opt/tinct"
exec unshare --mount --propagation private -- sh -c '
  root=$1 repo=$2; shift 2
  mount -t proc proc "$root/proc"
  mount --bind "$repo" "$root/opt/tinct"
  mount -o remount,bind,ro "$root/opt/tinct"
  exec chroot "$root" env -i PATH=/usr/bin:/bin LANG=C.UTF-8 "$@"' sh "$@"
