#!/usr/bin/env bash
# Robustness of emoDB cv runs (made by benchmarks/accuracy_emodb.sh) under noise and reverberation,
# every run on the same corrupted audio, then the comparison table with paired ΔUA. Usage:
#
#   benchmarks/robustness_emodb.sh OUT RUN [RUN ...]     # RUN: a cv folder name under OUT
#
# Conditions: white, pink and babble noise at 20, 10 and 0 dB SNR over active speech; synthetic
# rooms of RT60 0.3, 0.6 and 0.9 s; seed 0. The first RUN is the reference of the paired table.
# FUSION=1 also scores each run's late fusion (its fusion.json, from emovision fuse) under the same
# conditions, re-evaluating runs whose robustness.json lacks it.
set -euo pipefail
OUT=${1:?usage: $0 OUT RUN [RUN ...]}
shift
[ $# -gt 0 ] || { echo "usage: $0 OUT RUN [RUN ...]" >&2; exit 2; }
EMODB=${EMODB_DIR:-../shared/data/emodb}
BIN=.venv/bin
FUSION=${FUSION:-0}
extra=()
[ "$FUSION" != 1 ] || extra=(--fusion)
runs=()
for run in "$@"; do
  runs+=("$OUT/$run")
  json="$OUT/$run/robustness.json"
  if [ -f "$json" ] && { [ "$FUSION" != 1 ] || grep -q '"fusion"' "$json"; }; then continue; fi
  $BIN/emovision robustness "$OUT/$run" --corpus emodb --root "$EMODB" \
    --snr 20,10,0 --noise white,pink,babble --rt60 0.3,0.6,0.9 --device cpu --quiet "${extra[@]}"
done
$BIN/emovision report "${runs[@]}" --markdown
