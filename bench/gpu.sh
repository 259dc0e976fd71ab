#!/usr/bin/env bash
# The GPU rows in one call, on a machine with a CUDA device:
#   bash bench/gpu.sh            (from the repository root or anywhere inside it)
# Installs what it needs from the project's own files (deploy/install.sh into $VENV, default
# .venv, unless a torch there already sees the device), runs bench/gpu_rows.py within
# GPU_BUDGET_S seconds of measuring (default 420: the whole call stays under 8 minutes on one
# H100 once installed) and writes bench/results/gpu.json and gpu.md: one table, every row
# beside its floor and ratio. Refuses, before installing anything, where there is no CUDA device.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${VENV:-.venv}"

refuse() { echo "bench/gpu.sh: $*; nothing was measured." >&2; exit 2; }

# 1. A CUDA device, seen by the driver (no torch needed to know that).
if ! command -v nvidia-smi >/dev/null 2>&1; then
    refuse "no CUDA device here (nvidia-smi is not installed); run it on a machine with an NVIDIA GPU"
fi
if ! devices="$(nvidia-smi -L 2>/dev/null)" || [ -z "$devices" ]; then
    refuse "nvidia-smi lists no CUDA device; run it on a machine with an NVIDIA GPU"
fi
echo "== devices"; echo "$devices"

# 2. The project's environment, with a torch that sees the device.
sees_cuda() { [ -x "$venv/bin/python" ] && "$venv/bin/python" -c \
    "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; }
if ! sees_cuda; then
    echo "== installing into $venv (deploy/install.sh)"
    bash deploy/install.sh "$venv" dev
fi
if ! sees_cuda; then
    refuse "the torch in $venv does not see the device ($("$venv/bin/python" -c \
        'import torch; print(torch.__version__)' 2>&1 | tail -1)); install the CUDA build of the pinned version"
fi

# 3. The rows.
echo "== rows (budget ${GPU_BUDGET_S:-420} s)"
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$venv/bin/python" bench/gpu_rows.py \
    --device cuda --budget-s "${GPU_BUDGET_S:-420}" "$@"
