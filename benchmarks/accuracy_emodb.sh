#!/usr/bin/env bash
# emoDB 7-class leave-one-speaker-out accuracy of emovision configurations and of the classical
# openSMILE + linear SVM baseline, all on the same folds. Usage (from the repository root):
#
#   benchmarks/accuracy_emodb.sh OUT [CONFIG ...]      # no CONFIG: all of them, in this order
#
# CONFIG: alexnet_gap lite0-pretrained alexnet_gap-mixup alexnet_gap-stability alexnet_gap-lognrevspec
#         alexnet_gap-lognrevspec-stability alexnet_gap-oversampling alexnet lite0-scratch alexnet-all
#         opensmile-egemaps opensmile-compare opensmile-compare-spknorm (functionals standardised per speaker)
#         lite0-aug (SpecAugment + noise, reverb and speed copies), lite0-specaugment, lite0-noise,
#         lite0-reverb, lite0-speed (each augmentation alone), lite0-aug-no-white (white noise held
#         out of training), lite0-aug-mixup (lite0-aug with mixup), lite0-aug-2s (lite0-aug on 2-s
#         segments: 64 mels × 200 frames), lite0-aug-2s-seed112 (the same with
#         the next seed), lite0-aug-2s-warmup (2 epochs of warm-up, pretrained layers at 0.25 × lr),
#         lite0-aug-seed112 (lite0-aug with the next seed), lite1-aug, lite2-aug, lite0-aug-x3 (3 seeds per fold: within-fold
#         ensemble), fusion (emovision fuse on lite0-aug with the ComParE functionals), ensemble-2s
#         (emovision ensemble of lite0-aug-2s and lite0-aug-2s-seed112: a within-fold ensemble of two
#         seeds), ensemble-2s-1s (the same with lite0-aug as a third member) and ensemble-1s-2s
#         (lite0-aug-2s with lite0-aug) and ensemble-all (both seeds of both), each also fused with
#         the ComParE functionals;
#         demo-cpu (the CPU recipe of `make demo`: SpecAugment, 2-s trimmed segments, batch 16,
#         12 epochs), demo-cpu-ema (the same with --ema 0.99), demo-cpu-delta (log-mel, Δ and ΔΔ as
#         three channels), demo-cpu-128 (128 mel bands), demo-cpu-seed112, demo-cpu-delta-seed112 and
#         demo-cpu-ema-seed112 (the next seed), demo-cpu-spknorm and demo-cpu-spknorm-seed112 (the
#         features speaker-normalised: extract --speaker-norm), demo-cpu-spknorm-fusion (demo-cpu-spknorm
#         late-fused with speaker-normalised ComParE functionals), demo-cpu-fusion (demo-cpu late-fused
#         with ComParE functionals as they are), demo-cpu-spknorm-ensemble (both seeds of demo-cpu-spknorm
#         as a within-fold ensemble, fused with the speaker-normalised ComParE functionals),
#         demo-cpu-spknorm-aug (demo-cpu-spknorm with the noise, reverb and speed copies, then fused),
#         demo-cpu-spknorm-aug-mc (the same cv folder, copied, fused with a linear model trained on the
#         functionals of the copies too: multi-condition), demo-cpu-spknorm-aug-no-white (white noise
#         held out of both sides' training, then fused likewise), demo-cpu-spknorm-aug-24ep (24 epochs)
#         and demo-cpu-spknorm-aug-24ep-seed112 (the same, next seed),
#         demo-cpu-spknorm-aug-seed112 (the next seed), demo-cpu-spknorm-aug-lite1 (efficientnet_lite1),
#         demo-cpu-spknorm-aug-ensemble (demo-cpu-spknorm-aug and its seed112 as a within-fold ensemble,
#         fused with the functionals of the utterances and their copies), demo-cpu-spknorm-aug-24ep-fusion
#         (that run fused likewise), demo-cpu-opensmile-compare (ComParE_2016 + linear SVM read from the
#         demo features' file: the same functionals and folds as opensmile-compare, without extracting
#         the 1-s files)
# Each cv run folder gets command.txt with the exact command. EPOCHS (20), PARALLEL (2) and FOLDS
# (auto: all ten; or a fold file, to search on a few folds first) can be set.
set -euo pipefail
OUT=${1:?usage: $0 OUT [CONFIG ...]}
shift
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(alexnet_gap lite0-pretrained alexnet_gap-mixup alexnet_gap-stability
  alexnet_gap-lognrevspec alexnet_gap-lognrevspec-stability alexnet_gap-oversampling alexnet lite0-scratch alexnet-all opensmile-egemaps opensmile-compare)
EMODB=${EMODB_DIR:-../shared/data/emodb}
BIN=.venv/bin
EPOCHS=${EPOCHS:-20}
PARALLEL=${PARALLEL:-2}
FOLDS=${FOLDS:-auto}
mkdir -p "$OUT"
LOGMEL="$OUT/emodb-logmel64.h5"
LOGMEL_AUG="$OUT/emodb-logmel64-aug.h5"
COMPARE="$OUT/emodb-compare.h5"
LOGNREV="$OUT/emodb-lognrevspec.h5"
LOGMEL200_AUG="$OUT/emodb-logmel64x200-aug.h5"
SEGMENTS=(--n-mels 64 --segment-frames 100 --segment-tail shift)
# The shared features files, unless every configuration is a demo-* one (those extract their own).
if printf '%s\n' "${CONFIGS[@]}" | grep -qv '^demo-'; then
  [ -f "$LOGMEL" ] || $BIN/emovision extract emodb "$EMODB" "${SEGMENTS[@]}" -o "$LOGMEL" --quiet
  [ -f "$LOGMEL_AUG" ] || $BIN/emovision extract emodb "$EMODB" "${SEGMENTS[@]}" --augment noise,reverb,speed -o "$LOGMEL_AUG" --quiet
  [ -f "$LOGMEL200_AUG" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 --segment-frames 200 --segment-tail shift \
    --augment noise,reverb,speed -o "$LOGMEL200_AUG" --quiet
  [ -f "$COMPARE" ] || $BIN/emovision extract emodb "$EMODB" "${SEGMENTS[@]}" --functionals ComParE_2016 -o "$COMPARE" --quiet
  [ -f "$LOGNREV" ] || $BIN/emovision extract emodb "$EMODB" --features lognrevspec --segment-frames 100 --segment-tail shift -o "$LOGNREV" --quiet
fi
TRIM200=(--segment-frames 200 --segment-tail trim)
DEMO_MEL64="$OUT/emodb-logmel64x200-trim.h5"
DEMO_DELTA="$OUT/emodb-logmeldelta64x200-trim.h5"
DEMO_MEL128="$OUT/emodb-logmel128x200-trim.h5"
DEMO_SPKNORM="$OUT/emodb-logmel64x200-trim-speakernorm.h5"
COMPARE_SPKNORM="$OUT/emodb-compare-speakernorm.h5"
COMPARE_TRIM="$OUT/emodb-compare-trim.h5"
DEMO_SPKNORM_AUG="$OUT/emodb-logmel64x200-trim-speakernorm-aug.h5"
demo_features() {
  case $1 in
    demo-cpu-delta) [ -f "$DEMO_DELTA" ] || $BIN/emovision extract emodb "$EMODB" --features logmeldeltaspec \
      --n-mels 64 "${TRIM200[@]}" -o "$DEMO_DELTA" --quiet >&2; echo "$DEMO_DELTA" ;;
    demo-cpu-spknorm) [ -f "$DEMO_SPKNORM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" \
      --speaker-norm -o "$DEMO_SPKNORM" --quiet >&2; echo "$DEMO_SPKNORM" ;;
    demo-cpu-128) [ -f "$DEMO_MEL128" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 128 "${TRIM200[@]}" \
      -o "$DEMO_MEL128" --quiet >&2; echo "$DEMO_MEL128" ;;
    *) [ -f "$DEMO_MEL64" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" \
      -o "$DEMO_MEL64" --quiet >&2; echo "$DEMO_MEL64" ;;
  esac
}
# the speaker-normalised segments with noise, reverb and speed copies, and the ComParE functionals of
# every utterance and copy
spknorm_aug_features() {
  [ -f "$DEMO_SPKNORM_AUG" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" --speaker-norm \
    --augment noise,reverb,speed --functionals ComParE_2016 -o "$DEMO_SPKNORM_AUG" --quiet
}
DEMO=(--model efficientnet_lite0 --pretrained --lr 1e-3 --schedule cosine --batch-size 16 --epochs 12
  --augment specaugment --parallel-folds "$PARALLEL" --device cpu --folds "$FOLDS" --quiet)
COMMON=(--epochs "$EPOCHS" --batch-size 32 --schedule cosine --parallel-folds "$PARALLEL" --device cpu --folds "$FOLDS" --quiet)
LITE0=(--model efficientnet_lite0 --pretrained --lr 1e-3)

cv() {
  local name=$1
  shift
  mkdir -p "$OUT/$name"
  echo "$BIN/emovision cv $* --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/emovision cv "$@" --out "$OUT/$name"
}

# openSMILE functionals of a features file + linear SVM on the same folds (benchmarks/opensmile_svm.py)
svm() {
  local name=$1
  shift
  mkdir -p "$OUT/$name"
  echo "$BIN/python benchmarks/opensmile_svm.py $* --folds $FOLDS --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/python benchmarks/opensmile_svm.py "$@" --folds "$FOLDS" --out "$OUT/$name"
}

for config in "${CONFIGS[@]}"; do
  case $config in
    alexnet_gap) cv "$config" "$LOGMEL" --model alexnet_gap --lr 1e-3 "${COMMON[@]}" ;;
    alexnet_gap-mixup) cv "$config" "$LOGMEL" --model alexnet_gap --lr 1e-3 --mixup "${COMMON[@]}" ;;
    alexnet_gap-stability) cv "$config" "$LOGMEL" --model alexnet_gap --lr 1e-3 --stability "${COMMON[@]}" ;;
    alexnet_gap-oversampling) cv "$config" "$LOGMEL" --model alexnet_gap --lr 1e-3 --oversampling "${COMMON[@]}" ;;
    alexnet_gap-lognrevspec) cv "$config" "$LOGNREV" --model alexnet_gap --lr 1e-3 "${COMMON[@]}" ;;
    alexnet_gap-lognrevspec-stability) cv "$config" "$LOGNREV" --model alexnet_gap --lr 1e-3 --stability "${COMMON[@]}" ;;
    alexnet) cv "$config" "$LOGMEL" --model alexnet --lr 1e-4 "${COMMON[@]}" ;;
    alexnet-all) cv "$config" "$LOGMEL" --model alexnet --lr 1e-4 --mixup --stability --oversampling "${COMMON[@]}" ;;
    lite0-pretrained) cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" "${COMMON[@]}" ;;
    lite0-aug) cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed "${COMMON[@]}" ;;
    lite0-specaugment | lite0-noise | lite0-reverb | lite0-speed)
      cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment "${config#lite0-}" "${COMMON[@]}" ;;
    lite0-aug-mixup)
      cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed --mixup "${COMMON[@]}" ;;
    lite0-aug-2s)
      cv "$config" "$LOGMEL200_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed "${COMMON[@]}" ;;
    lite0-aug-2s-seed112)
      cv "$config" "$LOGMEL200_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed --seed 112 "${COMMON[@]}" ;;
    lite0-aug-2s-warmup)
      cv "$config" "$LOGMEL200_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed --warmup-epochs 2 \
        --backbone-lr-scale 0.25 "${COMMON[@]}" ;;
    lite0-aug-seed112)
      cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed --seed 112 "${COMMON[@]}" ;;
    ensemble-2s | ensemble-2s-1s | ensemble-1s-2s | ensemble-all)
      members=("$OUT/lite0-aug-2s")
      [ "$config" = ensemble-1s-2s ] || members+=("$OUT/lite0-aug-2s-seed112")
      [ "$config" = ensemble-2s ] || members+=("$OUT/lite0-aug")
      [ "$config" != ensemble-all ] || members+=("$OUT/lite0-aug-seed112")
      mkdir -p "$OUT/$config"
      echo "$BIN/emovision ensemble ${members[*]} --out $OUT/$config --functionals $COMPARE" > "$OUT/$config/command.txt"
      $BIN/emovision ensemble "${members[@]}" --out "$OUT/$config" --functionals "$COMPARE" --quiet ;;
    lite0-aug-no-white)
      cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment specaugment,noise:pink,noise:babble,reverb,speed "${COMMON[@]}" ;;
    lite1-aug | lite2-aug)
      cv "$config" "$LOGMEL_AUG" --model "efficientnet_${config%-aug}" --pretrained --lr 1e-3 \
        --augment specaugment,noise,reverb,speed "${COMMON[@]}" ;;
    lite0-aug-x3) cv "$config" "$LOGMEL_AUG" "${LITE0[@]}" --augment specaugment,noise,reverb,speed --repeats 3 "${COMMON[@]}" ;;
    fusion)
      echo "$BIN/emovision fuse $OUT/lite0-aug --functionals $COMPARE" > "$OUT/lite0-aug/fusion-command.txt"
      $BIN/emovision fuse "$OUT/lite0-aug" --functionals "$COMPARE" --quiet ;;
    demo-cpu-spknorm-ensemble)
      [ -f "$COMPARE_SPKNORM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" --speaker-norm \
        --functionals ComParE_2016 -o "$COMPARE_SPKNORM" --quiet
      members=("$OUT/demo-cpu-spknorm" "$OUT/demo-cpu-spknorm-seed112")
      mkdir -p "$OUT/$config"
      echo "$BIN/emovision ensemble ${members[*]} --out $OUT/$config --functionals $COMPARE_SPKNORM" > "$OUT/$config/command.txt"
      $BIN/emovision ensemble "${members[@]}" --out "$OUT/$config" --functionals "$COMPARE_SPKNORM" --quiet ;;
    demo-cpu-spknorm-aug)
      spknorm_aug_features
      [ -f "$COMPARE_SPKNORM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" --speaker-norm \
        --functionals ComParE_2016 -o "$COMPARE_SPKNORM" --quiet
      cv "$config" "$DEMO_SPKNORM_AUG" "${DEMO[@]}" --augment specaugment,noise,reverb,speed
      echo "$BIN/emovision fuse $OUT/$config --functionals $COMPARE_SPKNORM" > "$OUT/$config/fusion-command.txt"
      $BIN/emovision fuse "$OUT/$config" --functionals "$COMPARE_SPKNORM" --quiet ;;
    demo-cpu-spknorm-aug-24ep | demo-cpu-spknorm-aug-24ep-seed112 | demo-cpu-spknorm-aug-seed112 | demo-cpu-spknorm-aug-lite1)
      spknorm_aug_features
      case $config in
        *-24ep) change=(--epochs 24) ;;
        *-24ep-seed112) change=(--epochs 24 --seed 112) ;;
        *-seed112) change=(--seed 112) ;;
        *-lite1) change=(--model efficientnet_lite1) ;;
      esac
      cv "$config" "$DEMO_SPKNORM_AUG" "${DEMO[@]}" --augment specaugment,noise,reverb,speed "${change[@]}" ;;
    demo-cpu-spknorm-aug-24ep-fusion)
      echo "$BIN/emovision fuse $OUT/demo-cpu-spknorm-aug-24ep" > "$OUT/demo-cpu-spknorm-aug-24ep/fusion-command.txt"
      $BIN/emovision fuse "$OUT/demo-cpu-spknorm-aug-24ep" --quiet ;;
    demo-cpu-opensmile-compare)
      [ -f "$COMPARE_TRIM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" \
        --functionals ComParE_2016 -o "$COMPARE_TRIM" --quiet
      svm "$config" "$COMPARE_TRIM" ;;
    demo-cpu-spknorm-aug-ensemble)
      members=("$OUT/demo-cpu-spknorm-aug" "$OUT/demo-cpu-spknorm-aug-seed112")
      mkdir -p "$OUT/$config"
      echo "$BIN/emovision ensemble ${members[*]} --out $OUT/$config --functionals $DEMO_SPKNORM_AUG" > "$OUT/$config/command.txt"
      $BIN/emovision ensemble "${members[@]}" --out "$OUT/$config" --functionals "$DEMO_SPKNORM_AUG" --quiet ;;
    demo-cpu-spknorm-aug-mc)
      rm -rf "${OUT:?}/$config"
      cp -r "$OUT/demo-cpu-spknorm-aug" "$OUT/$config"
      rm -f "$OUT/$config"/robustness.* "$OUT/$config"/fusion*
      echo "$BIN/emovision fuse $OUT/$config" > "$OUT/$config/fusion-command.txt"
      $BIN/emovision fuse "$OUT/$config" --quiet ;;
    demo-cpu-spknorm-aug-no-white)
      spknorm_aug_features
      cv "$config" "$DEMO_SPKNORM_AUG" "${DEMO[@]}" --augment specaugment,noise:pink,noise:babble,reverb,speed
      echo "$BIN/emovision fuse $OUT/$config" > "$OUT/$config/fusion-command.txt"
      $BIN/emovision fuse "$OUT/$config" --quiet ;;
    demo-cpu-fusion)
      [ -f "$COMPARE_TRIM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" \
        --functionals ComParE_2016 -o "$COMPARE_TRIM" --quiet
      echo "$BIN/emovision fuse $OUT/demo-cpu --functionals $COMPARE_TRIM" > "$OUT/demo-cpu/fusion-command.txt"
      $BIN/emovision fuse "$OUT/demo-cpu" --functionals "$COMPARE_TRIM" --quiet ;;
    demo-cpu-spknorm-fusion)
      [ -f "$COMPARE_SPKNORM" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 "${TRIM200[@]}" --speaker-norm \
        --functionals ComParE_2016 -o "$COMPARE_SPKNORM" --quiet
      echo "$BIN/emovision fuse $OUT/demo-cpu-spknorm --functionals $COMPARE_SPKNORM" > "$OUT/demo-cpu-spknorm/fusion-command.txt"
      $BIN/emovision fuse "$OUT/demo-cpu-spknorm" --functionals "$COMPARE_SPKNORM" --quiet ;;
    demo-cpu | demo-cpu-delta | demo-cpu-128 | demo-cpu-spknorm) cv "$config" "$(demo_features "$config")" "${DEMO[@]}" ;;
    demo-cpu-seed112 | demo-cpu-delta-seed112 | demo-cpu-spknorm-seed112) cv "$config" "$(demo_features "${config%-seed112}")" "${DEMO[@]}" --seed 112 ;;
    demo-cpu-ema) cv "$config" "$(demo_features "$config")" "${DEMO[@]}" --ema 0.99 ;;
    demo-cpu-ema-seed112) cv "$config" "$(demo_features "$config")" "${DEMO[@]}" --ema 0.99 --seed 112 ;;
    lite0-scratch) cv "$config" "$LOGMEL" --model efficientnet_lite0 --lr 1e-3 "${COMMON[@]}" ;;
    opensmile-compare-spknorm) svm "$config" "$COMPARE" --speaker-norm ;;
    opensmile-egemaps | opensmile-compare)
      table=$COMPARE
      if [ "$config" = opensmile-egemaps ]; then
        table="$OUT/emodb-egemaps.h5"
        [ -f "$table" ] || $BIN/emovision extract emodb "$EMODB" "${SEGMENTS[@]}" --functionals eGeMAPSv02 -o "$table" --quiet
      fi
      svm "$config" "$table" ;;
    *) echo "unknown configuration $config" >&2; exit 2 ;;
  esac
done
finished=()
for run in "$OUT"/*/; do [ -f "$run/summary.json" ] && finished+=("${run%/}"); done
$BIN/emovision report "${finished[@]}" --markdown
