#!/usr/bin/env bash
# Cross-corpus accuracy on the classes emoDB and RAVDESS share (anger, happiness, sadness, fear,
# disgust, neutral): an emoDB cv folder (the ensemble of its fold models) scored on RAVDESS, a RAVDESS
# cv folder on emoDB, each with every class of the model as a possible answer (--answers all) and with
# the shared classes only (--answers shared). The other corpus's features are the copies file of
# benchmarks/served_accuracy.sh in OUT (its originals only are scored), or the files named.
# Usage: benchmarks/cross_corpus.sh OUT EMODB_CV RAVDESS_CV [EMODB_FEATURES RAVDESS_FEATURES], e.g. after
#   benchmarks/served_accuracy.sh ../served emodb none-copies && benchmarks/served_accuracy.sh ../served ravdess none-copies
#   benchmarks/cross_corpus.sh ../served ../served/emodb-none-copies ../served/ravdess-none-copies
# Writes OUT/xc-NAME-on-CORPUS-ANSWERS/summary.md for each cv folder NAME and each ANSWERS.
set -euo pipefail
OUT=${1:?usage: $0 OUT EMODB_CV RAVDESS_CV}
EMODB_CV=${2:?usage: $0 OUT EMODB_CV RAVDESS_CV}
RAVDESS_CV=${3:?usage: $0 OUT EMODB_CV RAVDESS_CV}
EMODB_FEATURES=${4:-$OUT/emodb-logmel64x200-trim-aug.h5}
RAVDESS_FEATURES=${5:-$OUT/ravdess-logmel64x200-trim-aug.h5}
BIN=${BIN:-.venv/bin}
for answers in all shared; do
  $BIN/emovision evaluate "$EMODB_CV" "$RAVDESS_FEATURES" --answers "$answers" \
    --map angry=anger,happy=happiness,sad=sadness,fearful=fear \
    --out "$OUT/xc-$(basename "$EMODB_CV")-on-ravdess-$answers"
  $BIN/emovision evaluate "$RAVDESS_CV" "$EMODB_FEATURES" --answers "$answers" \
    --map anger=angry,happiness=happy,sadness=sad,fear=fearful \
    --out "$OUT/xc-$(basename "$RAVDESS_CV")-on-emodb-$answers"
done
