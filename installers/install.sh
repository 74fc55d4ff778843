#!/usr/bin/env bash
# install.sh — set Tinct up for this user in one step: tinctd and its model, the GIMP 3 and Krita plugins.
#
#   installers/install.sh [--prefix DIR] [--gimp|--no-gimp] [--krita|--no-krita] [--endpoint ENDPOINT]
#                         [--no-service] [--python PYTHON] [--gimp-command GIMP] [--krita-command KRITA]
#   installers/install.sh --uninstall [--prefix DIR]
#   installers/install.sh --dev [VENV]     a VENV (default .venv) to work on Tinct in: editable, with
#                                          the test tools; no plugins, no service (setup-venv.sh)
#
# Into DIR (default ${XDG_DATA_HOME:-~/.local/share}/tinct): a virtual environment with PyTorch (the
# CUDA build when nvidia-smi answers, else the CPU build), tinct and its model, with tinct and tinctd
# linked into ~/.local/bin.  Each editor that is found gets its plugin (--gimp/--krita: even when it
# is not found; --no-gimp/--no-krita: never) through install-gimp-plugin.sh/install-krita-plugin.sh,
# with pyzmq and msgpack importable from that editor's own Python.  The plugins find tinctd through
# the settings file tinct/client.json in ~/.config: where `systemctl --user` works tinctd runs as the
# user service tinctd.service (restarted on failure), elsewhere (or with --no-service) the plugins
# start it when they first need it.  Run it again to upgrade: settings you changed stay.  All it adds
# is listed in DIR/install-manifest.json; --uninstall removes exactly that and nothing else.
set -euo pipefail

say() { echo "[install] $*"; }
die() { echo "[install] error: $*" >&2; exit 1; }

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PREFIX="${XDG_DATA_HOME:-$HOME/.local/share}/tinct"
PYTHON="${PYTHON:-python3}"
TORCH_VERSION="${TINCT_TORCH_VERSION:-2.13.0}"
MODE=install GIMP=auto KRITA=auto SERVICE=auto ENDPOINT="" GIMP_COMMAND="" KRITA_COMMAND="" VENV=""
while [ $# -gt 0 ]; do
  case "$1" in
    --prefix) PREFIX="$2"; shift 2 ;;
    --gimp) GIMP=yes; shift ;;
    --no-gimp) GIMP=no; shift ;;
    --krita) KRITA=yes; shift ;;
    --no-krita) KRITA=no; shift ;;
    --endpoint) ENDPOINT="$2"; shift 2 ;;
    --no-service) SERVICE=no; shift ;;
    --python) PYTHON="$2"; shift 2 ;;
    --gimp-command) GIMP_COMMAND="$2"; shift 2 ;;
    --krita-command) KRITA_COMMAND="$2"; shift 2 ;;
    --uninstall) MODE=uninstall; shift ;;
    --dev) MODE=dev; if [ $# -gt 1 ] && [ "${2#-}" = "$2" ]; then VENV="$2"; shift; fi; shift ;;
    -h|--help) sed -n '2,19s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) die "unknown option $1 (see --help)" ;;
  esac
done

command -v "$PYTHON" >/dev/null || die "no $PYTHON: install Python 3.10 or newer (or pass --python)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || die "$PYTHON is Python $("$PYTHON" -c 'import sys; print(sys.version.split()[0])'); Tinct needs 3.10 or newer"
PREFIX="$("$PYTHON" -c 'import os, sys; print(os.path.abspath(sys.argv[1]))' "$PREFIX")"
RECORD="$PREFIX/install-manifest.json"
setup() { "$PYTHON" "$ROOT/installers/tinct_setup.py" "$@"; }

if [ "$MODE" = uninstall ]; then
  say "uninstalling what $RECORD lists"
  setup uninstall "$RECORD"
  exit 0
fi

# PyTorch first, chosen for the machine: a laptop without an NVIDIA GPU gets the CPU build (a
# wheel already on this machine's pip find-links if there is one, else PyTorch's CPU index), not
# gigabytes of CUDA libraries.
install_torch() {
  # --no-cache-dir: nothing lands in ~/.cache, so an uninstall leaves HOME as it was
  local python=$1 pip=("$1" -m pip install --quiet --no-cache-dir)
  if "$python" -c "import torch" 2>/dev/null; then
    say "torch $("$python" -W ignore -c 'import torch; print(torch.__version__)') already installed"
  elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    say "NVIDIA GPU found: installing CUDA PyTorch $TORCH_VERSION"
    "${pip[@]}" "torch==$TORCH_VERSION"
  elif "${pip[@]}" --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null; then
    "${pip[@]}" "torch==$TORCH_VERSION"   # its dependencies, from the usual index
    say "installed PyTorch $("$python" -W ignore -c 'import torch; print(torch.__version__)') from a wheel on this machine"
  else
    say "no NVIDIA GPU: installing CPU PyTorch $TORCH_VERSION from PyTorch's CPU index"
    "${pip[@]}" "torch==$TORCH_VERSION" --index-url https://download.pytorch.org/whl/cpu
  fi
}

versions() {
  "$1" - <<'PY'
import warnings; warnings.simplefilter("ignore")  # torch warns about numpy before tinct's deps are in
import torch, tinct
from tinct.engines.learned import engine as learned
from tinct.native import kernels
print(f"[install] tinct {tinct.__version__}, torch {torch.__version__}, "
      f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, "
      f"C kernels {'built' if kernels.AVAILABLE else 'not built (plain PyTorch)'}, model {learned.model_path()}")
PY
}

if [ "$MODE" = dev ]; then
  VENV="${VENV:-$ROOT/.venv}"
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  install_torch "$VENV/bin/python"
  "$VENV/bin/python" -m pip install --quiet -e "$ROOT[test]"
  versions "$VENV/bin/python"
  exit 0
fi

VENV="$PREFIX/venv"
T0=$SECONDS
setup begin "$RECORD"
setup claim "$RECORD" "$VENV" --tree
[ -x "$VENV/bin/python" ] || { say "creating the virtual environment $VENV"; "$PYTHON" -m venv "$VENV"; }
install_torch "$VENV/bin/python"
say "installing tinct with its model from $ROOT"
"$VENV/bin/python" -m pip install --quiet --no-cache-dir "$ROOT"   # a local folder is always rebuilt: upgrades
versions "$VENV/bin/python"
STATE="${TINCT_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/tinct}"   # as tinct.serve.state.state_dir()
[ -e "$STATE" ] || setup claim "$RECORD" "$STATE" --tree
setup set "$RECORD" "prefix=$PREFIX" "venv=$VENV" "state_dir=$STATE"
setup stop "$RECORD" >/dev/null   # an upgraded tinctd starts fresh when next needed

BIN="$HOME/.local/bin"
for tool in tinct tinctd; do
  if [ "$(readlink "$BIN/$tool" 2>/dev/null)" != "$VENV/bin/$tool" ]; then
    if [ -e "$BIN/$tool" ] || [ -L "$BIN/$tool" ]; then
      say "left $BIN/$tool alone (not Tinct's); run $VENV/bin/$tool"
      continue
    fi
    setup claim "$RECORD" "$BIN/$tool"
    mkdir -p "$BIN"
    ln -s "$VENV/bin/$tool" "$BIN/$tool"
  fi
done

# Where each editor is, which Python runs its plugins and where they go: tinct.tools.editors, the
# same answer tinct doctor uses.
eval "$("$VENV/bin/python" -m tinct.tools.editors ${GIMP_COMMAND:+--gimp "$GIMP_COMMAND"} \
        ${KRITA_COMMAND:+--krita "$KRITA_COMMAND"})"
DONE=()
wanted() {  # wanted auto|yes|no NAME FLAG NOTE: whether to install that editor's plugin
  case "$1" in
    no) return 1 ;;
    yes) [ -z "$4" ] || say "$2: $4; installing its plugin anyway ($3)"; return 0 ;;
    auto) [ -z "$4" ] && return 0; say "$2 skipped: $4 ($3 installs its plugin anyway)"; return 1 ;;
  esac
}
if wanted "$GIMP" "GIMP 3" --gimp "$gimp_note"; then
  setup claim "$RECORD" "$gimp_plugins/tinct-colorize" --tree
  bash "$ROOT/installers/install-gimp-plugin.sh" --plug-ins "$gimp_plugins" --python "$gimp_python"
  setup set "$RECORD" "editors.gimp.command=$gimp_command" "editors.gimp.folder=$gimp_plugins/tinct-colorize"
  DONE+=("GIMP 3 plug-in: $gimp_plugins/tinct-colorize — restart GIMP, then Filters → Colorize → Add Hints Layer, paint strokes, Filters → Colorize → Colorize…")
fi
if wanted "$KRITA" Krita --krita "$krita_note"; then
  for added in pykrita/tinct_krita pykrita/tinct_krita.desktop actions/tinct_krita.action; do
    setup claim "$RECORD" "$krita_resources/$added" $([ "$added" = pykrita/tinct_krita ] && echo --tree)
  done
  setup claim "$RECORD" "$PREFIX/tinct-krita.zip"
  setup kritarc "$RECORD" "$kritarc"
  bash "$ROOT/installers/install-krita-plugin.sh" --resources "$krita_resources" --kritarc "$kritarc" \
    --zip "$PREFIX/tinct-krita.zip" ${krita_python:+--python "$krita_python"}
  setup set "$RECORD" "editors.krita.command=$krita_command" "editors.krita.folder=$krita_resources/pykrita/tinct_krita" \
    "editors.krita.kritarc=$kritarc"
  DONE+=("Krita plugin: $krita_resources/pykrita/tinct_krita — restart Krita: Filter → Colorize (Tinct)…, Filter → Add Colorize Hints Layer, Settings → Dockers → Tinct")
fi

# How the plugins reach tinctd: the settings file their tinct_client reads, and a user service
# where systemd runs one for this user.
CLIENT_CONFIG="$("$VENV/bin/python" -c 'import sys; sys.path.insert(0, sys.argv[1]); import tinct_client; print(tinct_client.config_path())' \
                 "$ROOT/plugins/common")"
if [ "$SERVICE" = auto ] && command -v systemctl >/dev/null && systemctl --user show-environment >/dev/null 2>&1; then
  SERVICE=yes
fi
UNIT_NAME=""
[ "$SERVICE" = yes ] && UNIT_NAME=tinctd.service
ENDPOINT="$(setup config "$RECORD" "$CLIENT_CONFIG" --tinctd "$VENV/bin/tinctd" ${ENDPOINT:+--endpoint "$ENDPOINT"} \
            ${UNIT_NAME:+--service "$UNIT_NAME"})"
if [ "$SERVICE" = yes ]; then
  UNITS="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  setup claim "$RECORD" "$UNITS/$UNIT_NAME"
  setup claim "$RECORD" "$UNITS/default.target.wants/$UNIT_NAME"
  mkdir -p "$UNITS"
  setup unit --tinctd "$VENV/bin/tinctd" ${ENDPOINT:+--endpoint "$ENDPOINT"} >"$UNITS/$UNIT_NAME"
  systemctl --user daemon-reload
  systemctl --user enable "$UNIT_NAME" >/dev/null 2>&1
  systemctl --user restart "$UNIT_NAME"
  setup set "$RECORD" "service=$UNIT_NAME"
  DONE+=("tinctd: systemd user service $UNIT_NAME, started now and at login, restarted on failure")
else
  setup set "$RECORD" "service="
  why="no systemd user session here"
  [ "$SERVICE" = no ] && why="--no-service"
  DONE+=("tinctd: started by the plugins when they first need it ($why)")
fi
DONE+=("settings: $CLIENT_CONFIG (tinctd at ${ENDPOINT:-the default endpoint})")
# tinctd's and the plugins' CURVE keys: a tcp endpoint is authenticated with them (docs/protocol.md)
KEYS="$("$VENV/bin/python" -c 'from tinct.serve import keys; print(keys.key_dir())')"
[ -e "$KEYS" ] || setup claim "$RECORD" "$KEYS" --tree
"$VENV/bin/python" -m tinct.serve.keys >/dev/null
DONE+=("keys: $KEYS (private; tinctd proves itself with them where it listens on TCP)")

echo
say "done in $(( SECONDS - T0 )) s:"
for line in "${DONE[@]}"; do echo "  - $line"; done
case ":$PATH:" in *":$BIN:"*) TINCT=tinct ;; *) TINCT="$VENV/bin/tinct" ;; esac
echo
echo "Next: run '$TINCT doctor' to check every piece; then open a black-and-white photo in GIMP or Krita,"
echo "add the hints layer, paint a few colour strokes on it and colorize (menus above)."
echo "Upgrade: run this again. Remove: $0 --uninstall${PREFIX:+ --prefix $PREFIX}"
