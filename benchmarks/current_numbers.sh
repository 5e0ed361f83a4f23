#!/usr/bin/env bash
# BENCHMARKS.md's "Current numbers", from the runs that make them: its standard output is the Markdown of
# the section below the introduction (each run skipped when its output exists, so an interrupted run
# resumes; the progress of the runs goes to standard error). Run `make demo` first: its cv folder is
# emoDB's recommended model. Usage (from the repository root):
#
#   benchmarks/current_numbers.sh SERVED CENTRED > current.md     # e.g. ../served ../centred
#
# 1. the recommended recipe (recipes/demo-cpu.toml: last epoch, validation speakers train) for training
#    seeds 111 and 112 on both corpora, and each corpus's two seeds as one model (emovision ensemble); seed
#    111 again with its validation speakers held out (--validation hold-out), the cv its fusions below use;
# 2. the ComParE_2016 functionals of every utterance and of its noisy, reverberant and speed-perturbed
#    copies, both corpora (SERVED/CORPUS-compare-aug.h5; RAVDESS's also holds the segments its recipe
#    trains on, as benchmarks/served_accuracy.sh's copies file);
# 3. benchmarks/centred_fusion.sh: the held-out seed-111 cv's plain and speaker-centred fusion (two draw
#    seeds) on both corpora;
# 4. the plain fusion and the centred one (draw seed 0) in noise and a room, each recording alone and
#    enrolled from clean recordings (emovision robustness --fusion: white, pink and babble noise at 10 dB
#    SNR, RT60 0.6 s);
# 5. the tables: `emovision report` of the image models, benchmarks/paired_fusion.py (centred − plain per
#    mode, both draw seeds) and `emovision report` of the fusions' robustness.
set -euo pipefail
SERVED=${1:?usage: $0 SERVED CENTRED}
CENTRED=${2:?usage: $0 SERVED CENTRED}
BIN=${BIN:-.venv/bin}
mkdir -p "$SERVED" "$CENTRED"
{
  [ -d "$SERVED/demo-cv" ] || cp -r runs/demo/cv-efficientnet_lite0 "$SERVED/demo-cv"
  [ -f "$SERVED/demo-cv-seed112/summary.json" ] || $BIN/emovision cv --config "$SERVED/demo-cv/config.toml" \
    --seed 112 --parallel-folds 2 --out "$SERVED/demo-cv-seed112" --quiet
  [ -f "$SERVED/demo-cv-held-out/summary.json" ] || $BIN/emovision cv --config "$SERVED/demo-cv/config.toml" \
    --validation hold-out --parallel-folds 2 --out "$SERVED/demo-cv-held-out" --quiet
  for corpus in emodb ravdess; do
    [ -f "$SERVED/$corpus-compare-aug.h5" ] || $BIN/emovision extract "$corpus" "../shared/data/$corpus" \
      --config recipes/served-none.toml --augment noise,reverb,speed --functionals ComParE_2016 \
      -o "$SERVED/$corpus-compare-aug.h5" --quiet
  done
  ln -sf ravdess-compare-aug.h5 "$SERVED/ravdess-logmel64x200-trim-aug.h5"
  for config in none-copies-last-valtrain none-seed112-copies-last-valtrain none-copies-last; do
    [ -f "$SERVED/ravdess-$config/summary.json" ] || benchmarks/served_accuracy.sh "$SERVED" ravdess "$config"
  done
  [ -f "$SERVED/emodb-ensemble/summary.json" ] || $BIN/emovision ensemble "$SERVED/demo-cv" \
    "$SERVED/demo-cv-seed112" --out "$SERVED/emodb-ensemble"
  [ -f "$SERVED/ravdess-ensemble/summary.json" ] || $BIN/emovision ensemble \
    "$SERVED/ravdess-none-copies-last-valtrain" "$SERVED/ravdess-none-seed112-copies-last-valtrain" \
    --out "$SERVED/ravdess-ensemble"
  benchmarks/centred_fusion.sh "$CENTRED" "$SERVED/demo-cv-held-out" "$SERVED/emodb-compare-aug.h5" \
    "$SERVED/ravdess-none-copies-last" "$SERVED/ravdess-compare-aug.h5" > "$CENTRED/paired.md"
  for run in emodb-plain emodb-centre ravdess-plain ravdess-centre; do
    [ -f "$CENTRED/$run/robustness.json" ] || $BIN/emovision robustness "$CENTRED/$run" \
      --root "../shared/data/${run%%-*}" --snr 10 --noise white,pink,babble --rt60 0.6 --fusion --quiet
  done
} >&2
echo "### The recommended image model: two training seeds, and both as one model"
echo
$BIN/emovision report "$SERVED/demo-cv" "$SERVED/demo-cv-seed112" "$SERVED/emodb-ensemble" \
  "$SERVED/ravdess-none-copies-last-valtrain" "$SERVED/ravdess-none-seed112-copies-last-valtrain" \
  "$SERVED/ravdess-ensemble" --markdown
echo
echo "### Late fusion (seed 111, validation speakers held out): plain, and speaker-centred for draw seeds 0 and 1"
echo
echo "Pooled UA of the plain fusion (A) and of the centred one (B, draw seeds 0 / 1); paired ΔUA B − A over"
echo "both draw seeds' folds, mean ± standard error (folds better). emoDB, then RAVDESS:"
echo
head -n 8 "$CENTRED/paired.md"
echo
tail -n 8 "$CENTRED/paired.md"
echo
echo "### In noise and a room: the image model, the plain and the centred fusion (draw seed 0)"
echo
echo "The test speaker's recordings corrupted (seed 0); the centred fusion's enrolled and transductive modes"
echo "take the speaker's statistics from clean recordings. Seed 111's held-out image models:"
echo
$BIN/emovision report "$CENTRED/emodb-plain" "$CENTRED/ravdess-plain" --markdown --only robustness
echo
$BIN/emovision report "$CENTRED/emodb-plain" "$CENTRED/emodb-centre" "$CENTRED/ravdess-plain" \
  "$CENTRED/ravdess-centre" --markdown --only fusion-robustness
