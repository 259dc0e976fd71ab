#!/usr/bin/env bash
# Reproduces the README's model-zoo walk-through figures with the service's own CLI.
# No pretrained StyleGAN2 weights can be downloaded here, so the StyleGAN2 part runs on a
# narrow random-initialised rosinality checkpoint written by the service itself.
set -euo pipefail
OUT=${1:-docs/figures}
WORK=${ZOO_WORK:-$(mktemp -d)}  # set ZOO_WORK to resume in a directory (jobs are deduplicated)
DB="sqlite:///$WORK/zoo.db"
SPECTRA="python -m api.cli"
[ -f "$WORK/sg2.pt" ] || python - "$WORK/sg2.pt" <<'PY'
import sys
from tests.support.checkpoints import write_random_checkpoint
write_random_checkpoint(sys.argv[1], size=32, style_dim=64, n_mlp=4,
                        channels={4: 32, 8: 32, 16: 16, 32: 16}, seed=0, exercise_zeros=False)
PY
SG2="stylegan2:$WORK/sg2.pt"
job() { $SPECTRA run --database "$DB" --quiet "$@" | tail -1; }
W=$(job --model "$SG2" --space w --psi 0.7 --latents 12 --seed 1)
WP=$(job --model "$SG2" --space w+ --psi 0.7 --latents 6 --seed 1)
SEFA=$(job --model "$SG2" --space w --psi 0.7 --method sefa)
GSP=$(job --model "$SG2" --space w --psi 0.7 --method ganspace --samples 20000)
$SPECTRA compare --database "$DB" "$W" "$SEFA" "$GSP" --plots "$WORK/sg2-w" | tee "$WORK/sg2-w.txt"
$SPECTRA compare --database "$DB" "$W" "$WP" --plots "$WORK/sg2-wplus" | tee "$WORK/sg2-wplus.txt"
TRAINED=$(job --model dcgan-faces --latents 12 --seed 2)
SHUFFLED=$(job --model shuffled:0:dcgan-faces --latents 12 --seed 2)
$SPECTRA compare --database "$DB" "$TRAINED" "$SHUFFLED" --plots "$WORK/dcgan" | tee "$WORK/dcgan.txt"
mkdir -p "$OUT"
cp "$WORK/sg2-w/spectrum.png" "$OUT/stylegan2-w-hessian-sefa-ganspace.png"
cp "$WORK"/sg2-w/montage-*jacobian*.png "$OUT/stylegan2-w-hessian-montage.png"
cp "$WORK/sg2-wplus/spectrum.png" "$OUT/stylegan2-w-vs-wplus.png"
cp "$WORK/dcgan/spectrum.png" "$OUT/dcgan-trained-vs-shuffled.png"
cp "$WORK/dcgan/homogeneity-log.png" "$OUT/dcgan-trained-vs-shuffled-homogeneity.png"
cp "$WORK"/dcgan/montage-shuffled*.png "$OUT/dcgan-shuffled-montage.png"
cp "$WORK"/*.txt "$OUT/"
echo "figures in $OUT; work files in $WORK"
