#!/usr/bin/env bash
# Accuracy in the three evaluation modes (cold, enrolled-5, transductive; emovision.data.speaker_norm)
# of the demo's recipe on features extracted without --speaker-norm, normalised in the data pipeline:
#   none          no speaker normalisation (the modes coincide)
#   transductive  each speaker by all of its recordings (the classic protocol, as extract --speaker-norm)
#   mixed         each training segment by the recording alone, a few other recordings or all of them
# Usage: benchmarks/served_accuracy.sh OUT CORPUS CONFIG [CONFIG ...]
#   CORPUS: emodb (../shared/data/emodb, ten speakers) or ravdess (../shared/data/ravdess, twelve actors)
#   CONFIG: NORM[-attention][-resizeN][-seedS][-epochsN][-copies][-priorP][-trimD][-smoothE][-warp[W]][-last][-valtrain] with NORM one of none, transductive,
#   mixed, e.g. mixed-seed112-copies; -attention trains with --head attention, -resizeN with --resize N (each segment
#   interpolated to N×N before the backbone), -epochsN for N epochs instead of EPOCHS,
#   -trimD on features extracted with --trim-db D (each recording's leading and trailing silence cut),
#   -smoothE trains with --label-smoothing E, -warp[W] adds warp to --augment (with --warp-max W when given),
#   -last keeps each fold's last epoch (--select-by last) instead of its best validation epoch,
#   -valtrain trains each fold's validation speakers too (--validation train; needs -last)
# The base recipe is recipes/served-none.toml (BASE can name another); each CONFIG changes it as named.
# Every cv folder gets command.txt with the exact command; EPOCHS (12), PARALLEL (2), FOLDS (auto),
# DEVICE (cpu) and BIN (the folder holding the emovision command, .venv/bin) can be set.
set -euo pipefail
OUT=${1:?usage: $0 OUT CORPUS CONFIG ...}
CORPUS=${2:?usage: $0 OUT CORPUS CONFIG ...}
shift 2
BIN=${BIN:-.venv/bin}
DEVICE=${DEVICE:-cpu}
EPOCHS=${EPOCHS:-12}
PARALLEL=${PARALLEL:-2}
FOLDS=${FOLDS:-auto}
mkdir -p "$OUT"
case $CORPUS in
  emodb) DATA=../shared/data/emodb ;;
  ravdess) DATA=../shared/data/ravdess ;;
  *) echo "unknown corpus $CORPUS: emodb or ravdess" >&2; exit 2 ;;
esac
BASE=${BASE:-recipes/served-none.toml}
RECIPE=(--config "$BASE" --parallel-folds "$PARALLEL" --device "$DEVICE" --folds "$FOLDS" --quiet)
for config in "$@"; do
  norm=${config%%-*}
  FEATURES=(--config "$BASE")
  PLAIN="$OUT/$CORPUS-logmel64x200-trim.h5"
  COPIES="$OUT/$CORPUS-logmel64x200-trim-aug.h5"
  if [[ $config =~ -trim([0-9.]+) ]]; then
    FEATURES+=(--trim-db "${BASH_REMATCH[1]}")
    PLAIN="$OUT/$CORPUS-logmel64x200-trim-t${BASH_REMATCH[1]}.h5"
    COPIES="$OUT/$CORPUS-logmel64x200-trim-t${BASH_REMATCH[1]}-aug.h5"
  fi
  epochs=$EPOCHS
  [[ $config =~ -epochs([0-9]+) ]] && epochs=${BASH_REMATCH[1]}
  args=(--speaker-norm "$norm" --epochs "$epochs")
  [[ $config == *-attention* ]] && args+=(--head attention)
  [[ $config =~ -resize([0-9]+) ]] && args+=(--resize "${BASH_REMATCH[1]}")
  [[ $config =~ -seed([0-9]+) ]] && args+=(--seed "${BASH_REMATCH[1]}")
  [[ $config =~ -prior([0-9.]+) ]] && args+=(--speaker-prior "${BASH_REMATCH[1]}")
  [[ $config =~ -smooth([0-9.]+) ]] && args+=(--label-smoothing "${BASH_REMATCH[1]}")
  [[ $config == *-last* ]] && args+=(--select-by last)
  [[ $config == *-valtrain* ]] && args+=(--validation train)
  batch=specaugment
  if [[ $config =~ -warp([0-9.]*) ]]; then
    batch+=,warp
    [ -n "${BASH_REMATCH[1]}" ] && args+=(--warp-max "${BASH_REMATCH[1]}")
  fi
  if [[ $config == *-copies* ]]; then
    [ -f "$COPIES" ] || $BIN/emovision extract "$CORPUS" "$DATA" "${FEATURES[@]}" --augment noise,reverb,speed -o "$COPIES" --quiet
    features=$COPIES
    args+=(--augment "$batch,noise,reverb,speed")
  else
    [ -f "$PLAIN" ] || $BIN/emovision extract "$CORPUS" "$DATA" "${FEATURES[@]}" -o "$PLAIN" --quiet
    features=$PLAIN
    args+=(--augment "$batch")
  fi
  name="$CORPUS-$config"
  mkdir -p "$OUT/$name"
  echo "$BIN/emovision cv $features ${RECIPE[*]} ${args[*]} --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/emovision cv "$features" "${RECIPE[@]}" "${args[@]}" --out "$OUT/$name"
done
