#!/usr/bin/env bash
# The late fusion's linear model on plain functionals against speaker-centred ones (fuse --centre), two
# draw seeds, on a finished cv folder of each corpus: every fusion in a hard-linked copy of the cv folder
# (the models are shared, the fusion files are each copy's own), then the paired differences per mode.
# Usage: benchmarks/centred_fusion.sh OUT EMODB_CV EMODB_FUNCTIONALS RAVDESS_CV RAVDESS_FUNCTIONALS
#   e.g. benchmarks/centred_fusion.sh ../centred ../served/demo-cv ../served/emodb-compare-aug.h5 \
#          ../served/ravdess-none-copies ../served/ravdess-compare-aug.h5
# The functionals files come from emovision extract CORPUS DIR ... --augment noise,reverb,speed
# --functionals ComParE_2016; the linear models train on the noisy, reverberant and speed-perturbed copies.
set -euo pipefail
[ $# -eq 5 ] || { sed -n 2,9p "$0" >&2; exit 2; }
OUT=$1
BIN=${BIN:-.venv/bin}
fuse() { benchmarks/fuse_copy.sh "$OUT" "$@"; }  # NAME CV FUNCTIONALS [fuse options]
for corpus in emodb ravdess; do
  if [ $corpus = emodb ]; then cv=$2 functionals=$3; else cv=$4 functionals=$5; fi
  fuse "$corpus-plain" "$cv" "$functionals"
  fuse "$corpus-centre" "$cv" "$functionals" --centre --seed 0
  fuse "$corpus-centre-seed1" "$cv" "$functionals" --centre --seed 1
done
$BIN/python benchmarks/paired_fusion.py "$OUT/emodb-plain:$OUT/emodb-centre" "$OUT/emodb-plain:$OUT/emodb-centre-seed1"
$BIN/python benchmarks/paired_fusion.py "$OUT/ravdess-plain:$OUT/ravdess-centre" "$OUT/ravdess-plain:$OUT/ravdess-centre-seed1"
