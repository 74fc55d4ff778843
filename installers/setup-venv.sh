#!/usr/bin/env bash
# Create (or update) the virtual environment that runs Tinct and its tests.
#
#   installers/setup-venv.sh [VENV_DIR]      (default: .venv beside this checkout)
#
# PyTorch comes first and is chosen for the machine: the CUDA build where an NVIDIA GPU
# answers nvidia-smi, otherwise the CPU build - a wheel already on this machine's pip
# find-links if there is one, else PyTorch's CPU index - so a laptop without a GPU does
# not download gigabytes of CUDA libraries.  Then Tinct itself, editable, with test extras;
# its small C kernels compile if a C compiler is present (plain PyTorch otherwise).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${1:-$root/.venv}"
python="${PYTHON:-python3}"
torch_version="${TINCT_TORCH_VERSION:-2.13.0}"

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet)

if "$venv/bin/python" -c "import torch" 2>/dev/null; then
    echo "torch $("$venv/bin/python" -c 'import torch; print(torch.__version__)') already installed"
elif command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing CUDA PyTorch $torch_version"
    "${pip[@]}" "torch==$torch_version"
elif "${pip[@]}" --no-index "torch==$torch_version" 2>/dev/null; then
    echo "installed CPU PyTorch $torch_version from a local wheel"
else
    echo "no NVIDIA GPU: installing CPU PyTorch $torch_version from PyTorch's CPU index"
    "${pip[@]}" "torch==$torch_version" --index-url https://download.pytorch.org/whl/cpu
fi

"${pip[@]}" -e "$root[test]"
"$venv/bin/python" - <<'PY'
import torch, tinct
from tinct import stencil
print(f"tinct {tinct.__version__}, torch {torch.__version__}, "
      f"CUDA {'yes' if torch.cuda.is_available() else 'no'}, "
      f"C kernels {'built' if stencil._kernels else 'not built (plain PyTorch)'}")
PY
