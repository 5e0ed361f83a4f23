#!/usr/bin/env bash
# The late fusion's linear model on standardised functionals against quantile-scaled ones
# (fuse --scaling standard | quantile), on a finished cv folder of each corpus, then the paired
# differences (benchmarks/paired_fusion.py). With --centre, both on speaker-centred functionals too
# (draw seed 0), paired in every mode.
# Usage: benchmarks/scaled_fusion.sh OUT EMODB_CV EMODB_FUNCTIONALS RAVDESS_CV RAVDESS_FUNCTIONALS [--centre]
#   e.g. benchmarks/scaled_fusion.sh ../scaled ../served/demo-cv ../served/emodb-compare-aug.h5 \
#          ../served/ravdess-none-copies ../served/ravdess-compare-aug.h5
set -euo pipefail
if [ $# -lt 5 ] || [ $# -gt 6 ] || [ "${6:---centre}" != --centre ]; then sed -n 2,8p "$0" >&2; exit 2; fi
OUT=$1
CENTRE=${6:-}
BIN=${BIN:-.venv/bin}
for corpus in emodb ravdess; do
  if [ $corpus = emodb ]; then cv=$2 functionals=$3; else cv=$4 functionals=$5; fi
  for scaling in standard quantile; do
    benchmarks/fuse_copy.sh "$OUT" "$corpus-$scaling" "$cv" "$functionals" --scaling $scaling
    if [ -n "$CENTRE" ]; then
      benchmarks/fuse_copy.sh "$OUT" "$corpus-centre-$scaling" "$cv" "$functionals" --scaling $scaling --centre --seed 0
    fi
  done
done
for corpus in emodb ravdess; do
  echo "$corpus: B = quantile, A = standard"
  $BIN/python benchmarks/paired_fusion.py "$OUT/$corpus-standard:$OUT/$corpus-quantile"
  if [ -n "$CENTRE" ]; then
    $BIN/python benchmarks/paired_fusion.py "$OUT/$corpus-centre-standard:$OUT/$corpus-centre-quantile"
  fi
done
