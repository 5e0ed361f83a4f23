#!/usr/bin/env bash
# Attention pooling against global average pooling (--head attention | gap) with the demo's recipe
# (benchmarks/served_accuracy.sh, no speaker normalisation, SpecAugment), two seeds, on emoDB's ten
# folds and RAVDESS's six, for each number of epochs given: every cv runs as its own process at once,
# for a GPU (DEVICE=cuda) or a machine with many cores. Logs go to OUT/logs/.
# Usage: benchmarks/heads.sh OUT EPOCHS [EPOCHS ...]    e.g. DEVICE=cuda benchmarks/heads.sh ../heads 12 24
set -euo pipefail
OUT=${1:?usage: $0 OUT EPOCHS [EPOCHS ...]}
shift
[ $# -ge 1 ] || { echo "usage: $0 OUT EPOCHS [EPOCHS ...]" >&2; exit 2; }
HERE=$(dirname "$0")
mkdir -p "$OUT/logs"
pids=()
for epochs in "$@"; do
  for corpus in emodb ravdess; do
    for head in "" -attention; do
      for seed in "" -seed112; do
        config="none$head$seed-epochs$epochs"
        PARALLEL=${PARALLEL:-1} "$HERE/served_accuracy.sh" "$OUT" "$corpus" "$config" \
          >"$OUT/logs/$corpus-$config.log" 2>&1 &
        pids+=($!)
      done
    done
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
