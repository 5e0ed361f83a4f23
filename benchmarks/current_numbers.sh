#!/usr/bin/env bash
# BENCHMARKS.md's "Current numbers", from the runs that make them: its standard output is the Markdown of
# the section below the introduction (each run skipped when its output exists, so an interrupted run
# resumes; the progress of the runs goes to standard error). Usage (from the repository root):
#
#   benchmarks/current_numbers.sh SERVED FUSED > current.md     # e.g. ../served ../fused
#
# SERVED holds what does not depend on the fusion (features files and the image models' cvs), FUSED every
# fusion and its robustness (a new FUSED folder refits them all with the code of the day):
# 1. the recommended recipe at 24 epochs (recipes/demo-gpu.toml: last epoch, validation speakers train;
#    benchmarks/served_accuracy.sh CONFIG none-epochs24[-seed112]-copies-last-valtrain, on the CPU) for
#    training seeds 111 and 112 on both corpora;
# 2. the ComParE_2016 functionals of every utterance and of its noisy, reverberant and speed-perturbed
#    copies, both corpora (SERVED/CORPUS-compare-aug.h5);
# 3. each corpus's two seeds as one model, late-fused with the linear model on plain functionals and on
#    speaker-centred ones (emovision ensemble --functionals [--centre], draw seed 0);
# 4. seed 111's plain fusion and its speaker-centred one (fuse --centre, draw seed 0) (benchmarks/fuse_copy.sh);
#    in every fusion each fold's C and image weight are chosen on the other folds' test speakers;
# 5. the plain fusion in noise and a room, each recording alone (emovision robustness --fusion: white,
#    pink and babble noise at 10 dB SNR, RT60 0.6 s), which scores the image models too;
# 6. the tables: `emovision report` of the image models and of the fusions, benchmarks/paired_fusion.py
#    (centred − plain per mode) and `emovision report` of the robustness.
set -euo pipefail
SERVED=${1:?usage: $0 SERVED FUSED}
FUSED=${2:?usage: $0 SERVED FUSED}
BIN=${BIN:-.venv/bin}
mkdir -p "$SERVED" "$FUSED"
runs=(none-epochs24-copies-last-valtrain none-epochs24-seed112-copies-last-valtrain)
{
  for corpus in emodb ravdess; do
    benchmarks/served_accuracy.sh "$SERVED" "$corpus" "${runs[@]}"
    [ -f "$SERVED/$corpus-compare-aug.h5" ] || $BIN/emovision extract "$corpus" "../shared/data/$corpus" \
      --config recipes/served-none.toml --augment noise,reverb,speed --functionals ComParE_2016 \
      -o "$SERVED/$corpus-compare-aug.h5" --quiet
    members=("$SERVED/$corpus-${runs[0]}" "$SERVED/$corpus-${runs[1]}")
    [ -f "$FUSED/$corpus-ensemble/fusion.json" ] || $BIN/emovision ensemble "${members[@]}" \
      --functionals "$SERVED/$corpus-compare-aug.h5" --out "$FUSED/$corpus-ensemble" --quiet
    [ -f "$FUSED/$corpus-ensemble-centre/fusion.json" ] || $BIN/emovision ensemble "${members[@]}" \
      --functionals "$SERVED/$corpus-compare-aug.h5" --centre --seed 0 --out "$FUSED/$corpus-ensemble-centre" --quiet
    benchmarks/fuse_copy.sh "$FUSED" "$corpus-plain" "$SERVED/$corpus-${runs[0]}" "$SERVED/$corpus-compare-aug.h5"
    benchmarks/fuse_copy.sh "$FUSED" "$corpus-centre" "$SERVED/$corpus-${runs[0]}" \
      "$SERVED/$corpus-compare-aug.h5" --centre --seed 0
    [ -f "$FUSED/$corpus-plain/robustness.json" ] || $BIN/emovision robustness "$FUSED/$corpus-plain" \
      --root "../shared/data/$corpus" --snr 10 --noise white,pink,babble --rt60 0.6 --fusion --quiet
  done
} >&2
echo "### The recommended image model: two training seeds, and both as one model"
echo
$BIN/emovision report "$SERVED/emodb-${runs[0]}" "$SERVED/emodb-${runs[1]}" "$FUSED/emodb-ensemble" \
  "$SERVED/ravdess-${runs[0]}" "$SERVED/ravdess-${runs[1]}" "$FUSED/ravdess-ensemble" --markdown --only runs
echo
echo "### Late fusion: seed 111 and both seeds as one model, plain and speaker-centred"
echo
$BIN/emovision report "$FUSED/emodb-plain" "$FUSED/emodb-centre" "$FUSED/emodb-ensemble" \
  "$FUSED/emodb-ensemble-centre" "$FUSED/ravdess-plain" "$FUSED/ravdess-centre" "$FUSED/ravdess-ensemble" \
  "$FUSED/ravdess-ensemble-centre" --markdown --only fusion
echo
echo "Pooled UA of the plain fusion (A) and of the centred one (B, draw seed 0) in every mode, seed 111 and"
echo "both seeds as one model; paired ΔUA B − A over the folds, mean ± standard error (folds better). emoDB,"
echo "then RAVDESS:"
for corpus in emodb ravdess; do
  for run in "" -ensemble; do
    echo
    $BIN/python benchmarks/paired_fusion.py "$FUSED/$corpus${run:--plain}:$FUSED/$corpus${run}-centre"
  done
done
echo
echo "### In noise and a room: seed 111's image model and its plain fusion, each recording alone"
echo
echo "The test speaker's recordings corrupted (seed 0):"
echo
$BIN/emovision report "$FUSED/emodb-plain" "$FUSED/ravdess-plain" --markdown --only robustness
echo
$BIN/emovision report "$FUSED/emodb-plain" "$FUSED/ravdess-plain" --markdown --only fusion-robustness
