#!/usr/bin/env bash
# One prepared GPU run (issue 16), for a fresh machine with an NVIDIA GPU: 145 s on an H200 (README.md):
#
#   benchmarks/gpu.sh            (from the checkout; results also under $OUT when it is set)
#
#   1. installs Tinct into a virtual environment that sees the machine's own CUDA PyTorch and Triton
#      (--system-site-packages: nothing of gigabytes is downloaded), editable, with its C kernels;
#   2. tinct doctor's GPU row: the GPU, its memory, whether the Triton kernels compiled for it;
#   3. tests/test_triton.py on the GPU (every kernel compiled against the C loops, whole solves, the
#      CUDA-graph replay, the real out-of-memory -> CPU retry) and the other CUDA-marked tests;
#   4. each kernel's time and GB/s at 12 MP (benchmarks/kernels.py --bandwidth 12);
#   5. the 1/4/12/50 MP table (benchmarks/kernels.py --solve): the solve at `final`, `preview` and `live`,
#      whole colorize calls of both engines;
#   6. where a 1 MP and a 12 MP solve's time goes (benchmarks/kernels.py --profile, torch.profiler).
#
# Where the machine reaches no package index, Tinct's own small dependencies it lacks (pyzmq,
# imagecodecs) must come as wheels in .whl/ for its Python, e.g. fetched elsewhere with
#   pip download --no-deps --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 \
#                --platform manylinux2014_x86_64 -d .whl pyzmq imagecodecs
# Every step runs under a time limit (645 s in all; each test under 90 s where pytest-timeout is
# there) and the script goes on after a failing one; the exit status is 1 when any step failed.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-}"
[ -n "$OUT" ] && mkdir -p "$OUT"
LOG="${OUT:-/tmp}/gpu.log"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
export PYTHON="${PYTHON:-python3}" VENV="${VENV:-/tmp/tinct-gpu-venv}"
failed=0
step() {  # step SECONDS NAME COMMAND...: one timed step, its status said
  local limit=$1 name=$2 t0=$SECONDS
  shift 2
  echo "== $name"
  if declare -F "$1" >/dev/null; then  # a function of this script: timeout runs programs only
    export -f "$1"
    timeout "$limit" bash -c "$1"
  else
    timeout "$limit" "$@"
  fi
  local rc=$?
  echo "== $name: exit $rc after $(( SECONDS - t0 )) s"
  [ $rc -eq 0 ] || failed=1
}

nvidia-smi -L || { echo "no NVIDIA GPU answers nvidia-smi"; exit 1; }
install() {
  if [ ! -x "$VENV/bin/python" ]; then
    # no pip or setuptools of its own (older ones would shadow the machine's); where $PYTHON is itself a
    # virtual environment's (the lent H200s' python3 is), --system-site-packages reaches past it to the
    # base Python, so that environment's packages (pip, setuptools, torch, triton) come in through a .pth
    "$PYTHON" -m venv --system-site-packages --without-pip "$VENV" || return 1
    "$PYTHON" -c 'import site; print("\n".join(site.getsitepackages()))' \
      >"$("$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])')/outer-python.pth" || return 1
  fi
  local pip=("$VENV/bin/python" -m pip install --quiet --no-build-isolation)
  if ! "$VENV/bin/python" -c "import zmq, imagecodecs" 2>/dev/null; then
    if [ -d .whl ]; then "${pip[@]}" --no-index --no-deps .whl/*.whl; else "${pip[@]}" pyzmq imagecodecs; fi
  fi
  "${pip[@]}" --no-deps -e . || return 1
  "$VENV/bin/python" -c "import torch, triton, tinct
from tinct.native import kernels
print(f'torch {torch.__version__}, triton {triton.__version__}, CUDA {torch.cuda.is_available()}, '
      f'C kernels {kernels.AVAILABLE}')
assert torch.cuda.is_available(), 'this PyTorch sees no GPU'"
}
step 60 "install" install
PY="$VENV/bin/python"
step 45 "tinct doctor (GPU row)" bash -c "'$PY' -m tinct.tools.cli doctor --no-start --no-gimp --no-krita | grep -E '^(check|torch device|gpu) '"
pytest=("$PY" -m pytest -ra -q -p no:cacheprovider)
"$PY" -c "import pytest_timeout" 2>/dev/null && pytest+=(--timeout 90)
step 150 "tests/test_triton.py on the GPU" "${pytest[@]}" tests/test_triton.py
step 60 "the other CUDA-marked tests" "${pytest[@]}" -m cuda $(grep -l "mark.cuda" tests/test_*.py | grep -v test_triton)
step 30 "each kernel at 12 MP" "$PY" benchmarks/kernels.py --bandwidth 12
json=()
[ -n "$OUT" ] && json=(--json "$OUT/solves.json")
step 180 "solves and colorize at 1, 4, 12, 50 MP" "$PY" benchmarks/kernels.py --solve 1 4 12 50 --repeats 3 "${json[@]}"
step 60 "where a 1 MP solve's time goes" "$PY" benchmarks/kernels.py --profile 1
step 60 "where a 12 MP solve's time goes" "$PY" benchmarks/kernels.py --profile 12
echo "== gpu.sh: $([ $failed -eq 0 ] && echo "every step passed" || echo "a step failed") in $SECONDS s; log: $LOG"
exit $failed
