#!/usr/bin/env bash
# The compose set without Docker, on machines that already run PostgreSQL and Redis.
# Settings come from the environment (see deploy/example.env); run from the repository root
# after `make install` (or with `spectra` on PATH).
#   deploy/bare-metal.sh migrate            # create / upgrade the schema once
#   deploy/bare-metal.sh api [PORT]         # the HTTP API
#   deploy/bare-metal.sh workers [GPUS]     # one worker per GPU, e.g. 0,1,2,3 (default: all)
#   deploy/bare-metal.sh cpu-worker         # one worker on the CPU
#   deploy/bare-metal.sh flower [PORT]      # the Celery dashboard
set -euo pipefail
bin="${VENV:-.venv}/bin"
export PATH="$bin:$PATH"
# Keep large blocks mapped between batched products: less time in the kernel.
export MALLOC_MMAP_MAX_="${MALLOC_MMAP_MAX_:-0}" MALLOC_TRIM_THRESHOLD_="${MALLOC_TRIM_THRESHOLD_:-1073741824}"

all_gpus() {
    nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | paste -sd, - || true
}

case "${1:-}" in
    migrate) exec spectra migrate ;;
    api) exec spectra serve --host 0.0.0.0 --port "${2:-8000}" ;;
    workers)
        gpus="${2:-$(all_gpus)}"
        [ -n "$gpus" ] || { echo "no GPU found (nvidia-smi); use 'cpu-worker' or name them: workers 0,1" >&2; exit 2; }
        exec spectra worker --gpus "$gpus" ;;
    cpu-worker) exec spectra worker --cpu ;;
    flower) exec celery -A worker.celery_app:app flower --port="${2:-5555}" ;;
    *) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
