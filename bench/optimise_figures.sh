#!/usr/bin/env bash
# The README's optimisation figures, through the command line (embedded store, in-process
# runner): a basis from a stored jacobian job on dcgan-faces, 16 targets generated from known
# codes, each optimiser on the same targets from the same starts, then the report and figures.
# Usage: bash bench/optimise_figures.sh [DATABASE_URL]   (writes docs/figures/, bench/results/)
set -euo pipefail
cd "$(dirname "$0")/.."
DB=${1:-sqlite:///bench/results/optimise.db}
PY=${PYTHON:-.venv/bin/python}
mkdir -p bench/results docs/figures/optimise-all
spectra() { "$PY" -m api.cli "$@"; }
last() { tail -n 1; }

STEPS=${STEPS:-120}          # Adam steps
GENERATIONS=${GENERATIONS:-30}  # CMA-ES generations
POPULATION=${POPULATION:-12}    # CMA-ES candidates per generation
K=${K:-20}
THRESHOLD=${THRESHOLD:-0.05}
COMMON=(--model dcgan-faces --distance mse --targets 16 --target-seed 7 --seed 0
        --threshold "$THRESHOLD" --database "$DB" --quiet)

basis=$(spectra run --model dcgan-faces --distance mse --method jacobian --latents 32 --seed 100 \
        --database "$DB" --quiet | last)
echo "basis job $basis"
jobs=()
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser adam --steps "$STEPS" | last)")
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser adam-eigenbasis --basis-job "$basis" --steps "$STEPS" | last)")
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser adam-topk --basis-job "$basis" --k "$K" --steps "$STEPS" | last)")
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser cma --population "$POPULATION" --steps "$GENERATIONS" | last)")
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser cma-topk --basis-job "$basis" --k "$K" --population "$POPULATION" --steps "$GENERATIONS" | last)")
jobs+=("$(spectra optimise "${COMMON[@]}" --optimiser cma-topk --basis-job "$basis" --k 8 --population "$POPULATION" --steps "$GENERATIONS" | last)")
echo "jobs ${jobs[*]}"
spectra optimise-report "${jobs[@]:0:3}" --database "$DB" --json bench/results/optimise-adam.json \
    --plots docs/figures/optimise-adam --formats png,svg
spectra optimise-report "${jobs[@]:3:3}" --database "$DB" --json bench/results/optimise-cma.json \
    --plots docs/figures/optimise-cma --formats png,svg
spectra optimise-report "${jobs[@]}" --database "$DB" --json bench/results/optimise-all.json \
    --plots bench/results/optimise-all --formats png
cp bench/results/optimise-all/convergence-evaluations.png docs/figures/optimise-all/
