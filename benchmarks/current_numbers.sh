#!/usr/bin/env bash
# The tables of BENCHMARKS.md's "Current numbers", from the runs that make them (each step skipped when
# its output exists, so an interrupted run resumes). Run `make demo` first: its cv folder is emoDB's
# recommended model. Usage (from the repository root):
#
#   benchmarks/current_numbers.sh SERVED CENTRED     # e.g. ../served ../centred
#
# 1. the ComParE_2016 functionals of every utterance and of its noisy, reverberant and speed-perturbed
#    copies, both corpora (SERVED/CORPUS-compare-aug.h5; RAVDESS's also holds the segments its recipe
#    trains on, as benchmarks/served_accuracy.sh's copies file);
# 2. the recommended recipe on RAVDESS (served_accuracy.sh ... none-copies);
# 3. benchmarks/centred_fusion.sh: the plain and the speaker-centred fusion (two draw seeds) of both;
# 4. the tables: `emovision report` of the plain fusions (image, linear and fused, every mode alike),
#    then benchmarks/paired_fusion.py (centred − plain per mode, both draw seeds).
set -euo pipefail
SERVED=${1:?usage: $0 SERVED CENTRED}
CENTRED=${2:?usage: $0 SERVED CENTRED}
BIN=${BIN:-.venv/bin}
mkdir -p "$SERVED" "$CENTRED"
[ -d "$SERVED/demo-cv" ] || cp -r runs/demo/cv-efficientnet_lite0 "$SERVED/demo-cv"
for corpus in emodb ravdess; do
  [ -f "$SERVED/$corpus-compare-aug.h5" ] || $BIN/emovision extract "$corpus" "../shared/data/$corpus" \
    --config recipes/served-none.toml --augment noise,reverb,speed --functionals ComParE_2016 \
    -o "$SERVED/$corpus-compare-aug.h5" --quiet
done
ln -sf ravdess-compare-aug.h5 "$SERVED/ravdess-logmel64x200-trim-aug.h5"
[ -f "$SERVED/ravdess-none-copies/summary.json" ] || benchmarks/served_accuracy.sh "$SERVED" ravdess none-copies
benchmarks/centred_fusion.sh "$CENTRED" "$SERVED/demo-cv" "$SERVED/emodb-compare-aug.h5" \
  "$SERVED/ravdess-none-copies" "$SERVED/ravdess-compare-aug.h5" > "$CENTRED/paired.md"
$BIN/emovision report "$CENTRED/emodb-plain" "$CENTRED/ravdess-plain" --markdown
cat "$CENTRED/paired.md"
