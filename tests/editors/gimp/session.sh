#!/bin/bash
# session.sh WORK — runs inside the chroot (see in-chroot.sh; $HOME is a throw-away profile):
# installs the plug-in with the project's installer, then has gimp-console-3.0 execute
# batch_colorize.py through Python-Fu, which drives the plug-in through the PDB and writes
# WORK/report.json plus the exported layers.  Exit status 64: the batch script raised.
set -euo pipefail
WORK=$1
mkdir -m 700 -p "$WORK/runtime"
export XDG_RUNTIME_DIR="$WORK/runtime" TINCT_WORK="$WORK"
/opt/tinct/installers/install-gimp-plugin.sh
# -i: no UI, --quit: leave when the batch is done (without it GIMP lingers)
exec gimp-console-3.0 -i --quit --batch-interpreter=python-fu-eval \
  -b 'exec(open("/opt/tinct/tests/editors/gimp/batch_colorize.py").read())'
