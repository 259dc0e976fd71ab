#!/usr/bin/env bash
# The README's campaign: dcgan-faces, its shuffled-weights control and SeFa, mse jacobian at
# 16 codes (seed 0), computed and drawn by the service itself (embedded store, in-process).
# Usage: bash docs/figures/make-campaign-figures.sh [DATABASE_URL]   (from the repository root)
set -euo pipefail
DB=${1:-sqlite:///$(mktemp -d)/campaign.db}
OUT=docs/figures
spectra() { python -m api.cli "$@"; }
ID=$(spectra campaign submit --name readme-demo --models dcgan-faces,shuffled:0:dcgan-faces \
    --distances mse --methods jacobian --directions sefa --latents 16 --seed 0 \
    --database "$DB" | tail -n 1)
spectra campaign status "$ID" --database "$DB"
spectra campaign compare "$ID" --plots "$OUT" --formats png \
    --database "$DB" | tee "$OUT/campaign.txt"
