#!/usr/bin/env bash
# Several served-accuracy configurations on both corpora at once: every (corpus, CONFIG) cv of
# benchmarks/served_accuracy.sh runs as its own process (one fold at a time each), for a GPU
# (DEVICE=cuda) or a machine with many cores. Logs go to OUT/logs/; finished cvs are kept (resume).
# Usage: benchmarks/served_round.sh OUT CONFIG [CONFIG ...]
#   e.g. DEVICE=cuda benchmarks/served_round.sh ../resize none-epochs12 none-resize224-epochs12
set -euo pipefail
OUT=${1:?usage: $0 OUT CONFIG [CONFIG ...]}
shift
[ $# -ge 1 ] || { echo "usage: $0 OUT CONFIG [CONFIG ...]" >&2; exit 2; }
HERE=$(dirname "$0")
mkdir -p "$OUT/logs"
pids=()
for config in "$@"; do
  for corpus in emodb ravdess; do
    if [ -f "$OUT/$corpus-$config/summary.json" ]; then continue; fi
    PARALLEL=${PARALLEL:-1} "$HERE/served_accuracy.sh" "$OUT" "$corpus" "$config" \
      >"$OUT/logs/$corpus-$config.log" 2>&1 &
    pids+=($!)
  done
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
exit $status
