#!/usr/bin/env bash
# The fusion's linear model choosing its C on a finer grid (GRID, default half-decade steps
# 1e-4,3e-4,...,3e-2,0.1,1) against the decade grid, paired on the same folds and image models: the
# speaker-centred fusion (draw seed 0) of seeds 111 and 112 as one model, as
# benchmarks/current_numbers.sh makes it (FUSED/CORPUS-ensemble-centre). Usage (from the repository root):
#
#   benchmarks/c_grid.sh SERVED FUSED CORPUS     # e.g. ../served ../current emodb
#
# The finer grid's fusion goes to FUSED/CORPUS-ensemble-centre-cfine (kept when it exists: an interrupted
# run resumes; remove it to measure another GRID); standard output: the C and image weight each fold chose, and benchmarks/paired_fusion.py
# (finer − decade grid, per mode).
set -euo pipefail
SERVED=${1:?usage: $0 SERVED FUSED CORPUS}
FUSED=${2:?usage: $0 SERVED FUSED CORPUS}
CORPUS=${3:?usage: $0 SERVED FUSED CORPUS}
GRID=${GRID:-1e-4,3e-4,1e-3,3e-3,1e-2,3e-2,0.1,1}
BIN=${BIN:-.venv/bin}
base="$FUSED/$CORPUS-ensemble-centre"
[ -f "$base/fusion.json" ] || {
  echo "$base holds no fusion to compare with: run benchmarks/current_numbers.sh SERVED $FUSED first" >&2
  exit 2
}
[ -f "$base-cfine/fusion.json" ] || $BIN/emovision ensemble "$SERVED/$CORPUS-none-epochs24-copies-last-valtrain" \
  "$SERVED/$CORPUS-none-epochs24-seed112-copies-last-valtrain" --functionals "$SERVED/$CORPUS-compare-aug.h5" \
  --centre --seed 0 --c-grid "$GRID" --out "$base-cfine" --quiet >&2
for run in "$base" "$base-cfine"; do
  $BIN/python -c 'import json, sys
folds = json.load(open(sys.argv[1] + "/fusion.json"))["folds"]
print(sys.argv[1] + ": C / image weight per fold:", ", ".join("%g / %.1f" % (f["C"], f["weight"]) for f in folds))' "$run"
done
echo
$BIN/python benchmarks/paired_fusion.py "$base:$base-cfine"
