#!/usr/bin/env bash
# Pick, on the development machine, the training shards one device call can carry:
# train-*.npz files from SRC, alternating sources (FairFace, LFW), until MAX_MB, hard-linked
# (or copied) into DST (default .cache/gen-carry; git-ignored; carry it).
#   bash benchmarks/h100/pack_training_shards.sh [SRC]   # SRC default .cache/generator-shards
set -euo pipefail
cd "$(dirname "$0")/../.."
src=${1:-.cache/generator-shards}
max_bytes=$(( ${MAX_MB:-60} * 1024 * 1024 ))
dst=${DST:-.cache/gen-carry}
ls "$src"/train-*.npz >/dev/null 2>&1 || { echo "no train-*.npz in $src: python -m engines.generator.data --out $src" >&2; exit 1; }
rm -rf "$dst" && mkdir -p "$dst"
total=0 kept=0
# one file of each source in turn, so a partial carry still mixes tight (FairFace) and wide (LFW) crops
for f in $(paste -d '\n' <(ls "$src"/train-fairface-*.npz 2>/dev/null) <(ls "$src"/train-lfw-*.npz 2>/dev/null) | grep .); do
  size=$(stat -c %s "$f")
  [ $((total + size)) -gt "$max_bytes" ] && continue
  ln "$f" "$dst/" 2>/dev/null || cp "$f" "$dst/"
  total=$((total + size)) kept=$((kept + 1))
done
echo "$kept shards, $((total / 1024 / 1024)) MiB in $dst (of $(ls "$src"/train-*.npz | wc -l) in $src)"
