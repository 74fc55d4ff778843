#!/bin/bash
# session.sh WORK SCRIPT console|gui — runs inside the chroot (see in-chroot.sh; $HOME is a
# throw-away profile): installs the plug-in with the project's installer, then has GIMP's
# Python-Fu batch interpreter execute SCRIPT (batch_colorize.py, dialog_colorize.py), which
# drives the plug-in and writes its report and layers into WORK.  console: gimp-console-3.0
# without any UI, as batch scripts run; gui: the full GIMP on $DISPLAY, so plug-ins can open
# dialogs.  Exit status 64: the script raised.
set -euo pipefail
WORK=$1 SCRIPT=$2 MODE=$3
HERE=/opt/tinct/tests/editors/gimp
mkdir -m 700 -p "$WORK/runtime"
export XDG_RUNTIME_DIR="$WORK/runtime" TINCT_WORK="$WORK"
[ -n "${TINCT_GIMP_INSTALLED:-}" ] || /opt/tinct/installers/install-gimp-plugin.sh   # set: installed by install.sh
case "$MODE" in
  console) GIMP=(gimp-console-3.0 -i) ;;
  gui) GIMP=(gimp-3.0 --no-splash) ;;
  *) echo "session.sh: mode must be console or gui, not $MODE" >&2; exit 2 ;;
esac
# --quit: leave when the script is done (without it GIMP lingers)
exec "${GIMP[@]}" --quit --batch-interpreter=python-fu-eval \
  -b "import sys; sys.path.insert(0, '$HERE'); exec(open('$HERE/$SCRIPT').read())"
