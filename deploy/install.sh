#!/usr/bin/env bash
# Creates (or refreshes) a virtual environment with everything latent-spectra needs.
#   bash deploy/install.sh [VENV_DIR] [EXTRAS]
# torch is installed first, pinned, so that nothing later can pull a different (CUDA) build;
# gan-face-generate is installed without its dependencies: we need only its weights file,
# and its own dependency list pulls packages the service does not use. omniart-eye-generator
# (the omniart-eye weights) declares none and is listed in pyproject; pinned here --no-deps
# like gan-face-generate, so a release that added dependencies could not pull another torch.
set -euo pipefail
venv="${1:-.venv}"
extras="${2:-dev}"
python="${PYTHON:-python3}"
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
"${pip[@]}" --upgrade "pip>=24"
"${pip[@]}" "torch==${TORCH_VERSION:-2.13.0}"
"${pip[@]}" -e ".[${extras}]"
"${pip[@]}" --no-deps "gan-face-generate==1.1.1"
"${pip[@]}" --no-deps "omniart-eye-generator==0.1"
"$venv/bin/python" -c "import torch, services; print('installed: torch', torch.__version__)"
