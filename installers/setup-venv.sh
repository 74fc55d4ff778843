#!/usr/bin/env bash
# Create (or update) the virtual environment that runs Tinct and its tests.
#
#   installers/setup-venv.sh [VENV_DIR]      (default: .venv beside this checkout)
#
# A thin wrapper of install.sh --dev: PyTorch chosen for the machine (CUDA only where an NVIDIA
# GPU answers nvidia-smi), Tinct editable with its test tools, its small C kernels when a C
# compiler is present; no editor plugins, no service (installers/install.sh does those).
exec "$(dirname "${BASH_SOURCE[0]}")/install.sh" --dev "$@"
