#!/usr/bin/env bash
# The recommended recipe's image models of several training seeds as one model, late-fused with the
# speaker-centred linear model (emovision ensemble --functionals --centre, draw seed 0), against the
# same fusion of seeds 111 and 112 (benchmarks/current_numbers.sh's FUSED/CORPUS-ensemble-centre).
# Usage (from the repository root):
#
#   benchmarks/seed_ensembles.sh SERVED FUSED CORPUS SEED [SEED ...]     # e.g. ../served ../current emodb 111 112 113
#
# Each seed's cv (benchmarks/served_accuracy.sh none-epochs24[-seedS]-copies-last-valtrain) is trained
# when SERVED lacks it (DEVICE and PARALLEL as there: DEVICE=cuda trains on a GPU), the ensemble goes to
# FUSED/CORPUS-seeds-S1-S2-...-centre (kept when it exists: an interrupted run resumes), then the
# tables: `emovision report` of the seeds' image models and the ensemble, benchmarks/paired_modes.py (the
# image models as one model, these seeds − seeds 111 and 112) and benchmarks/paired_fusion.py (the same for
# the fusions, per mode). Progress goes to standard error.
set -euo pipefail
SERVED=${1:?usage: $0 SERVED FUSED CORPUS SEED [SEED ...]}
FUSED=${2:?usage: $0 SERVED FUSED CORPUS SEED [SEED ...]}
CORPUS=${3:?usage: $0 SERVED FUSED CORPUS SEED [SEED ...]}
shift 3
[ $# -ge 2 ] || { echo "usage: $0 SERVED FUSED CORPUS SEED SEED [SEED ...] (two seeds at least)" >&2; exit 2; }
BIN=${BIN:-.venv/bin}
[ -f "$FUSED/$CORPUS-ensemble-centre/fusion.json" ] || {
  echo "$FUSED/$CORPUS-ensemble-centre holds no fusion of seeds 111 and 112 to compare with: run benchmarks/current_numbers.sh SERVED $FUSED first" >&2
  exit 2
}
members=()
for seed in "$@"; do
  config=none-epochs24-seed$seed-copies-last-valtrain
  [ "$seed" = 111 ] && config=none-epochs24-copies-last-valtrain
  [ -f "$SERVED/$CORPUS-$config/summary.json" ] || benchmarks/served_accuracy.sh "$SERVED" "$CORPUS" "$config" >&2
  members+=("$SERVED/$CORPUS-$config")
done
out="$FUSED/$CORPUS-seeds-$(IFS=-; echo "$*")-centre"
[ -f "$out/fusion.json" ] || $BIN/emovision ensemble "${members[@]}" --functionals "$SERVED/$CORPUS-compare-aug.h5" \
  --centre --seed 0 --out "$out" --quiet >&2
$BIN/emovision report "${members[@]}" "$out" --markdown --only runs
echo
$BIN/emovision report "$out" --markdown --only fusion
echo
$BIN/python benchmarks/paired_modes.py "$FUSED/$CORPUS-ensemble-centre:$out"
echo
$BIN/python benchmarks/paired_fusion.py "$FUSED/$CORPUS-ensemble-centre:$out"
