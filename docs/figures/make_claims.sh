#!/usr/bin/env bash
# The paper's claims over two trained families and their controls, as ONE campaign computed
# and compared by the service itself (embedded store, in-process): dcgan-faces and omniart-eye,
# each with its shuffled, shuffled-published and random-init controls (seed 0; omniart-eye in
# its noise space), the mse Jacobian metric at LATENTS codes per model (seed 0), SeFa and
# GANSpace as direction members. Writes into OUT: the campaign comparison's text table
# (claims.txt), its JSON result document (claims.json), the Markdown claims table (claims.md,
# a selection of that document's numbers), its homogeneity histograms, and per family the
# service's comparison of the Hessian members with the trained model's SeFa (spectrum figure,
# montages of the trained model's top Hessian and SeFa axes). Figures as PNG and SVG.
# Usage (from the repository root): bash docs/figures/make_claims.sh [OUT] [LATENTS]
#   CLAIMS_WORK=DIR keeps the store and every figure there (jobs are deduplicated: a rerun
#   resumes); CLAIMS_MODELS / CLAIMS_DIRECTIONS narrow the recipe (the test does).
set -euo pipefail
OUT=${1:-docs/figures/claims}
LATENTS=${2:-16}
WORK=${CLAIMS_WORK:-$(mktemp -d)}
DB="sqlite:///$WORK/claims.db"
spectra() { python -m api.cli "$@"; }
ALL=dcgan-faces,shuffled:0:dcgan-faces,shuffled-published:0:dcgan-faces,random-init:0:dcgan-faces
ALL=$ALL,omniart-eye,shuffled:0:omniart-eye,shuffled-published:0:omniart-eye,random-init:0:omniart-eye
MODELS=${CLAIMS_MODELS:-$ALL}
DIRECTIONS=${CLAIMS_DIRECTIONS:-sefa,ganspace}
# omniart-eye and its controls in their noise space (d = 100, the label fixed and recorded);
# dcgan-faces has only z.
SPACES=()
for model in ${MODELS//,/ }; do
    if [[ $model == *omniart-eye ]]; then SPACES+=(--model-space "$model=noise"); fi
done
mkdir -p "$OUT" "$WORK/campaign"
ID=$(spectra campaign submit --name paper-claims --models "$MODELS" --distances mse \
    --methods jacobian "${SPACES[@]}" --directions "$DIRECTIONS" --latents "$LATENTS" --seed 0 \
    --database "$DB" | tail -n 1)
spectra campaign status "$ID" --database "$DB" > "$OUT/campaign-status.txt"
spectra campaign compare "$ID" --plots "$WORK/campaign" --formats png,svg \
    --json "$OUT/claims.json" --database "$DB" > "$OUT/claims.txt"
python docs/figures/claims_table.py "$OUT/claims.json" > "$OUT/claims.md"
cp "$WORK"/campaign/homogeneity-log.{png,svg} "$OUT/"
# Per family, a readable figure: its Hessian members and the trained model's SeFa.
for base in dcgan-faces omniart-eye; do
    hessians=$(awk -v b="$base" '$1 ~ /\/mse\/jacobian$/ && index($1, b) {print $2}' \
        "$OUT/campaign-status.txt")
    sefa=$(awk -v b="$base" '$1 == b "/sefa" || $1 == b "[noise]/sefa" {print $2}' \
        "$OUT/campaign-status.txt")
    [ -n "$hessians" ] || continue
    # shellcheck disable=SC2086  # the job ids are words
    spectra compare $hessians $sefa --normalise top --plots "$WORK/$base" --formats png,svg \
        --database "$DB" > "$OUT/$base.txt"
    for ext in png svg; do
        cp "$WORK/$base/spectrum.$ext" "$OUT/spectrum-$base.$ext"
    done
    cp "$WORK/$base"/montage-"$base"_*jacobian*.png "$OUT/montage-$base-hessian.png"
    if [ -n "$sefa" ]; then
        cp "$WORK/$base"/montage-"$base"_*sefa*.png "$OUT/montage-$base-sefa.png"
    fi
done
echo "table in $OUT/claims.md; figures in $OUT; store and every figure in $WORK"
