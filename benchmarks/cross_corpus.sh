#!/usr/bin/env bash
# Cross-corpus accuracy on the classes emoDB and RAVDESS share (anger, happiness, sadness, fear,
# disgust, neutral), in the three evaluation modes (cold, enrolled-5, transductive): each corpus's
# cv folder of benchmarks/served_accuracy.sh (the ensemble of its fold models) scored on the other
# corpus's features. Usage: benchmarks/cross_corpus.sh OUT CONFIG (e.g. mixed), after
#   benchmarks/served_accuracy.sh OUT emodb CONFIG && benchmarks/served_accuracy.sh OUT ravdess CONFIG
set -euo pipefail
OUT=${1:?usage: $0 OUT CONFIG}
CONFIG=${2:?usage: $0 OUT CONFIG}
BIN=.venv/bin
$BIN/emovision evaluate "$OUT/emodb-$CONFIG" "$OUT/ravdess-logmel64x200-trim.h5" \
  --map angry=anger,happy=happiness,sad=sadness,fearful=fear --out "$OUT/emodb-$CONFIG-on-ravdess"
$BIN/emovision evaluate "$OUT/ravdess-$CONFIG" "$OUT/emodb-logmel64x200-trim.h5" \
  --map anger=angry,happiness=happy,sadness=sad,fear=fearful --out "$OUT/ravdess-$CONFIG-on-emodb"
