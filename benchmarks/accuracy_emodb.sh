#!/usr/bin/env bash
# emoDB 7-class leave-one-speaker-out accuracy of the configurations BENCHMARKS.md reports and of the
# classical openSMILE + linear SVM baseline, all on the same folds. Usage (from the repository root):
#
#   benchmarks/accuracy_emodb.sh OUT [NAME ...]      # no NAME: the original work's configurations
#
# NAME is either
#   - a recipe, recipes/experiments/NAME.toml (its training options and, in its [extract] table, its
#     features), optionally with -seedS appended for another seed (lite0-aug-2s-seed112): the features
#     are extracted once per [extract] table into OUT, then `emovision cv FEATURES --config RECIPE`; or
#   - a step on cv folders made before: fusion (lite0-aug late-fused with the ComParE functionals),
#     ensemble-2s, ensemble-2s-1s, ensemble-1s-2s, ensemble-all (within-fold ensembles of lite0-aug-2s,
#     its seed112, lite0-aug and its seed112, fused with the ComParE functionals), demo-cpu-fusion,
#     demo-cpu-spknorm-fusion, demo-cpu-spknorm-ensemble, demo-cpu-spknorm-aug-mc (the linear side trained
#     on the copies' functionals too), demo-cpu-spknorm-aug-24ep-fusion, demo-cpu-spknorm-aug-ensemble;
#     opensmile-egemaps, opensmile-compare, opensmile-compare-spknorm and demo-cpu-opensmile-compare
#     (openSMILE functionals + linear SVM, benchmarks/opensmile_svm.py).
# demo-cpu-spknorm-aug and demo-cpu-spknorm-aug-no-white are fused after their cv. Each run folder gets
# command.txt with the exact command. EPOCHS (the recipe's), PARALLEL (2) and FOLDS (auto: all ten; or
# a fold file, to search on a few folds first) can be set.
set -euo pipefail
OUT=${1:?usage: $0 OUT [NAME ...]}
shift
CONFIGS=("$@")
[ ${#CONFIGS[@]} -gt 0 ] || CONFIGS=(alexnet_gap lite0-pretrained alexnet_gap-mixup alexnet_gap-stability
  alexnet_gap-lognrevspec alexnet_gap-lognrevspec-stability alexnet_gap-oversampling alexnet lite0-scratch alexnet-all
  opensmile-egemaps opensmile-compare)
EMODB=${EMODB_DIR:-../shared/data/emodb}
BIN=.venv/bin
RECIPES=recipes/experiments
PARALLEL=${PARALLEL:-2}
FOLDS=${FOLDS:-auto}
mkdir -p "$OUT"
RUN=(--parallel-folds "$PARALLEL" --device cpu --folds "$FOLDS" --quiet)
[ -z "${EPOCHS:-}" ] || RUN+=(--epochs "$EPOCHS")

# The features file of a recipe (extracted on first use), named by a digest of its [extract] table.
features_of() {
  local recipe=$RECIPES/$1.toml digest file
  digest=$($BIN/python -c 'import hashlib, json, sys, tomllib
table = tomllib.load(open(sys.argv[1], "rb")).get("extract", {})
print(hashlib.sha1(json.dumps(table, sort_keys=True).encode()).hexdigest()[:10])' "$recipe")
  file="$OUT/emodb-$digest.h5"
  [ -f "$file" ] || $BIN/emovision extract emodb "$EMODB" --config "$recipe" -o "$file" --quiet >&2
  echo "$file"
}

# The functionals the steps fuse with or classify: ComParE_2016 (or eGeMAPSv02) of every utterance.
functionals() {  # NAME [extract options]
  local file="$OUT/emodb-$1.h5"
  shift
  [ -f "$file" ] || $BIN/emovision extract emodb "$EMODB" "$@" -o "$file" --quiet >&2
  echo "$file"
}
compare() { functionals compare --n-mels 64 --segment-frames 100 --segment-tail shift --functionals ComParE_2016; }
compare_trim() { functionals compare-trim --n-mels 64 --segment-frames 200 --segment-tail trim --functionals ComParE_2016; }
compare_spknorm() {
  functionals compare-speakernorm --n-mels 64 --segment-frames 200 --segment-tail trim --speaker-norm --functionals ComParE_2016
}

recipe_of() {  # NAME: the recipe a configuration name runs (NAME-seedS: NAME's)
  if [[ $1 =~ ^(.+)-seed[0-9]+$ ]]; then echo "${BASH_REMATCH[1]}"; else echo "$1"; fi
}

cv() {  # NAME: a recipe, optionally -seedS
  local name=$1 base seed=() features
  base=$(recipe_of "$name")
  [ "$base" = "$name" ] || seed=(--seed "${name##*-seed}")
  features=$(features_of "$base")
  mkdir -p "$OUT/$name"
  echo "$BIN/emovision cv $features --config $RECIPES/$base.toml ${RUN[*]} ${seed[*]} --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/emovision cv "$features" --config "$RECIPES/$base.toml" "${RUN[@]}" "${seed[@]}" --out "$OUT/$name"
}

fuse() {  # RUN [fuse options]: late fusion of a finished cv folder
  local run=$1
  shift
  echo "$BIN/emovision fuse $OUT/$run $*" > "$OUT/$run/fusion-command.txt"
  $BIN/emovision fuse "$OUT/$run" "$@" --quiet
}

ensemble() {  # NAME FUNCTIONALS MEMBER...
  local name=$1 table=$2
  shift 2
  local members=("${@/#/$OUT/}")
  mkdir -p "$OUT/$name"
  echo "$BIN/emovision ensemble ${members[*]} --out $OUT/$name --functionals $table" > "$OUT/$name/command.txt"
  $BIN/emovision ensemble "${members[@]}" --out "$OUT/$name" --functionals "$table" --quiet
}

svm() {  # NAME FUNCTIONALS [opensmile_svm options]: openSMILE functionals + linear SVM on the same folds
  local name=$1
  shift
  mkdir -p "$OUT/$name"
  echo "$BIN/python benchmarks/opensmile_svm.py $* --folds $FOLDS --out $OUT/$name" > "$OUT/$name/command.txt"
  $BIN/python benchmarks/opensmile_svm.py "$@" --folds "$FOLDS" --out "$OUT/$name"
}

# Every name checked before any work starts: a step of the loop below, or a recipe.
STEPS=" $(sed -n 's/^    \([a-z0-9_-]*\)).*/\1/p' "$0" | tr '\n' ' ')"
for config in "${CONFIGS[@]}"; do
  [[ $STEPS == *" $config "* || -f $RECIPES/$(recipe_of "$config").toml ]] ||
    { echo "unknown configuration $config: neither a step nor $RECIPES/$(recipe_of "$config").toml" >&2; exit 2; }
done

for config in "${CONFIGS[@]}"; do
  case $config in
    fusion) fuse lite0-aug --functionals "$(compare)" ;;
    ensemble-2s) ensemble "$config" "$(compare)" lite0-aug-2s lite0-aug-2s-seed112 ;;
    ensemble-2s-1s) ensemble "$config" "$(compare)" lite0-aug-2s lite0-aug-2s-seed112 lite0-aug ;;
    ensemble-1s-2s) ensemble "$config" "$(compare)" lite0-aug-2s lite0-aug ;;
    ensemble-all) ensemble "$config" "$(compare)" lite0-aug-2s lite0-aug-2s-seed112 lite0-aug lite0-aug-seed112 ;;
    demo-cpu-fusion) fuse demo-cpu --functionals "$(compare_trim)" ;;
    demo-cpu-spknorm-fusion) fuse demo-cpu-spknorm --functionals "$(compare_spknorm)" ;;
    demo-cpu-spknorm-ensemble) ensemble "$config" "$(compare_spknorm)" demo-cpu-spknorm demo-cpu-spknorm-seed112 ;;
    demo-cpu-spknorm-aug) cv "$config" && fuse "$config" --functionals "$(compare_spknorm)" ;;
    demo-cpu-spknorm-aug-no-white) cv "$config" && fuse "$config" ;;
    demo-cpu-spknorm-aug-mc)
      rm -rf "${OUT:?}/$config"
      cp -r "$OUT/demo-cpu-spknorm-aug" "$OUT/$config"
      rm -f "$OUT/$config"/robustness.* "$OUT/$config"/fusion*
      fuse "$config" ;;
    demo-cpu-spknorm-aug-24ep-fusion) fuse demo-cpu-spknorm-aug-24ep ;;
    demo-cpu-spknorm-aug-ensemble)
      ensemble "$config" "$(features_of demo-cpu-spknorm-aug)" demo-cpu-spknorm-aug demo-cpu-spknorm-aug-seed112 ;;
    demo-cpu-opensmile-compare) svm "$config" "$(compare_trim)" ;;
    opensmile-compare) svm "$config" "$(compare)" ;;
    opensmile-compare-spknorm) svm "$config" "$(compare)" --speaker-norm ;;
    opensmile-egemaps)
      svm "$config" "$(functionals egemaps --n-mels 64 --segment-frames 100 --segment-tail shift --functionals eGeMAPSv02)" ;;
    *) cv "$config" ;;
  esac
done
finished=()
for run in "$OUT"/*/; do [ -f "$run/summary.json" ] && finished+=("${run%/}"); done
$BIN/emovision report "${finished[@]}" --markdown
