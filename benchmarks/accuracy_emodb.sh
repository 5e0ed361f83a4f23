#!/usr/bin/env bash
# emoDB 7-class leave-one-speaker-out accuracy of emovision configurations and of the classical
# openSMILE + linear SVM baseline, all on the same folds. Usage (from the repository root):
#
#   benchmarks/accuracy_emodb.sh OUT [CONFIG ...]      # no CONFIG: all of them, in this order
#
# CONFIG: alexnet_gap lite0-pretrained alexnet_gap-mixup alexnet_gap-stability alexnet_gap-lognrevspec
#         alexnet_gap-lognrevspec-stability alexnet_gap-oversampling alexnet lite0-scratch alexnet-all
#         opensmile-egemaps opensmile-compare
# Each cv run folder gets command.txt with the exact command. EPOCHS (20) and PARALLEL (2) can be set.
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
mkdir -p "$OUT"
LOGMEL="$OUT/emodb-logmel64.h5"
LOGNREV="$OUT/emodb-lognrevspec.h5"
[ -f "$LOGMEL" ] || $BIN/emovision extract emodb "$EMODB" --n-mels 64 --segment-frames 100 --segment-tail shift -o "$LOGMEL" --quiet
[ -f "$LOGNREV" ] || $BIN/emovision extract emodb "$EMODB" --features lognrevspec --segment-frames 100 --segment-tail shift -o "$LOGNREV" --quiet
COMMON=(--epochs "$EPOCHS" --batch-size 32 --schedule cosine --parallel-folds "$PARALLEL" --device cpu --quiet)

cv() {
  local name=$1
  shift
  mkdir -p "$OUT/$name"
  echo "$BIN/emovision cv $* --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/emovision cv "$@" --out "$OUT/$name"
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
    lite0-pretrained) cv "$config" "$LOGMEL" --model efficientnet_lite0 --pretrained --lr 1e-3 "${COMMON[@]}" ;;
    lite0-scratch) cv "$config" "$LOGMEL" --model efficientnet_lite0 --lr 1e-3 "${COMMON[@]}" ;;
    opensmile-egemaps | opensmile-compare)
      set_name=eGeMAPSv02
      [ "$config" = opensmile-compare ] && set_name=ComParE_2016
      mkdir -p "$OUT/$config"
      echo "$BIN/python benchmarks/opensmile_svm.py emodb $EMODB $LOGMEL --feature-set $set_name --out $OUT/$config" > "$OUT/$config/command.txt"
      $BIN/python benchmarks/opensmile_svm.py emodb "$EMODB" "$LOGMEL" --feature-set "$set_name" --out "$OUT/$config" ;;
    *) echo "unknown configuration $config" >&2; exit 2 ;;
  esac
done
$BIN/emovision report "$OUT"/*/ --markdown
