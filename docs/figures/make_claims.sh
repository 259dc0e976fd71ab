#!/usr/bin/env bash
# The paper's claims over two trained families and their controls, as ONE campaign computed
# and compared by the service itself (embedded store, in-process): dcgan-faces and omniart-eye,
# each with its shuffled, shuffled-published and random-init controls (seed 0; omniart-eye in
# its noise space), the mse Jacobian metric at LATENTS codes per model (seed 0), SeFa and
# GANSpace as direction members.
# Writes the comparison's text table, its JSON result document, its figures (PNG + SVG) and
# the Markdown claims table (a selection of that document's numbers) into OUT.
# Usage (from the repository root): bash docs/figures/make_claims.sh [OUT] [LATENTS]
#   CLAIMS_WORK=DIR keeps the store there (jobs are deduplicated: a rerun resumes).
set -euo pipefail
OUT=${1:-docs/figures/claims}
LATENTS=${2:-16}
WORK=${CLAIMS_WORK:-$(mktemp -d)}
DB="sqlite:///$WORK/claims.db"
spectra() { python -m api.cli "$@"; }
ALL=dcgan-faces,shuffled:0:dcgan-faces,shuffled-published:0:dcgan-faces,random-init:0:dcgan-faces
ALL=$ALL,omniart-eye,shuffled:0:omniart-eye,shuffled-published:0:omniart-eye,random-init:0:omniart-eye
MODELS=${CLAIMS_MODELS:-$ALL}  # the test runs this recipe on fewer models and codes
DIRECTIONS=${CLAIMS_DIRECTIONS:-sefa,ganspace}
# omniart-eye and its controls in their noise space (d = 100, the label fixed and recorded);
# dcgan-faces has only z.
SPACES=()
for model in ${MODELS//,/ }; do
    if [[ $model == *omniart-eye ]]; then SPACES+=(--model-space "$model=noise"); fi
done
mkdir -p "$OUT"
ID=$(spectra campaign submit --name paper-claims --models "$MODELS" --distances mse --methods jacobian \
    "${SPACES[@]}" --directions "$DIRECTIONS" --latents "$LATENTS" --seed 0 --database "$DB" | tail -n 1)
spectra campaign status "$ID" --database "$DB" > "$OUT/campaign-status.txt"
spectra campaign compare "$ID" --plots "$OUT" --formats png,svg --json "$OUT/claims.json" \
    --database "$DB" > "$OUT/claims.txt"
python docs/figures/claims_table.py "$OUT/claims.json" "$DB" > "$OUT/claims.md"
echo "table in $OUT/claims.md; figures in $OUT; store in $WORK"
