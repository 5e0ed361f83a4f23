#!/usr/bin/env bash
# One late fusion of a finished cv in a hard-linked copy of its folder (the fold models are shared, the
# fusion files are the copy's own), skipped when the copy already holds its fusion.json; the command is
# kept as OUT/NAME/fuse-command.txt. The linear model trains on the noisy, reverberant and
# speed-perturbed copies' functionals (FUNCTIONALS from emovision extract ... --augment noise,reverb,speed
# --functionals ComParE_2016).
# Usage: benchmarks/fuse_copy.sh OUT NAME CV FUNCTIONALS [fuse options]
set -euo pipefail
[ $# -ge 4 ] || { sed -n 2,7p "$0" >&2; exit 2; }
OUT=$1 name=$2 cv=$3 functionals=$4
shift 4
BIN=${BIN:-.venv/bin}
if [ ! -f "$OUT/$name/fusion.json" ]; then
  rm -rf "${OUT:?}/$name"
  mkdir -p "$OUT"
  cp -al "$cv" "$OUT/$name"
  rm -f "$OUT/$name"/fusion* "$OUT/$name"/robustness*
  echo "$BIN/emovision fuse $OUT/$name --functionals $functionals --augment noise,reverb,speed $*" > "$OUT/$name/fuse-command.txt"
  $BIN/emovision fuse "$OUT/$name" --functionals "$functionals" --augment noise,reverb,speed --quiet "$@"
fi
