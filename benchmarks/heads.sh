#!/usr/bin/env bash
# Attention pooling against global average pooling (--head attention | gap) with the demo's recipe
# (benchmarks/served_accuracy.sh, no speaker normalisation, SpecAugment), two seeds, on emoDB's ten
# folds and RAVDESS's six, for each number of epochs given, every cv at once (benchmarks/served_round.sh).
# Usage: benchmarks/heads.sh OUT EPOCHS [EPOCHS ...]    e.g. DEVICE=cuda benchmarks/heads.sh ../heads 12 24
set -euo pipefail
OUT=${1:?usage: $0 OUT EPOCHS [EPOCHS ...]}
shift
[ $# -ge 1 ] || { echo "usage: $0 OUT EPOCHS [EPOCHS ...]" >&2; exit 2; }
configs=()
for epochs in "$@"; do
  for head in "" -attention; do
    for seed in "" -seed112; do configs+=("none$head$seed-epochs$epochs"); done
  done
done
exec "$(dirname "$0")/served_round.sh" "$OUT" "${configs[@]}"
