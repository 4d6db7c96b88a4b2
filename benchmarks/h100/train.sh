#!/usr/bin/env bash
# One generator training chunk on the GPU machine (issue #6), from the repo root.
# Carry [".cache/gen-carry"] (benchmarks/h100/pack_training_shards.sh); no wheels needed.
#   MINUTES=8 bash benchmarks/h100/train.sh     # resumes .cache/gen-run on a warm machine
# $OUT gets what comes back under 16 MiB a file: the FP16 compact checkpoint (G EMA + D) and
# train-small.tgz (compact.json, log.jsonl, the newest sample sheets, the console log). Back here:
#   python -m engines.generator.train --data <shards> --run <returned folder> --minutes 0 --device cpu
# rebuilds generator.safetensors (the pipeline's file) from the compact checkpoint.
set -uo pipefail
OUT=${OUT:-out/h100}
RUN=${RUN:-.cache/gen-run}
MINUTES=${MINUTES:-8}
BATCH=${BATCH:-128}
mkdir -p "$OUT"
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  date -u +%Y-%m-%dT%H:%MZ; } | tee "$OUT/machine-train.txt"
# shellcheck disable=SC2086  # EXTRA holds extra flags, e.g. EXTRA=--compile
timeout $(( ${MINUTES%.*} * 60 + 180 )) python3 -m engines.generator.train --data "${DATA:-.cache/gen-carry}" --run "$RUN" \
  --minutes "$MINUTES" --batch "$BATCH" --save-minutes 4 ${EXTRA:-} >"$OUT/train.log" 2>&1
echo "train: exit $?" | tee "$OUT/summary-train.txt"
tail -n 4 "$OUT/train.log"
# at most 8 files come back: the checkpoint's parts, and one archive of everything small
cp "$RUN"/compact-*.safetensors "$OUT"/ 2>/dev/null
cp "$RUN"/compact.json "$RUN"/log.jsonl "$OUT"/ 2>/dev/null
ls "$RUN"/samples-*.png 2>/dev/null | tail -n 2 | xargs -r cp -t "$OUT"/
(shopt -s nullglob; cd "$OUT" && tar -czf train-small.tgz --remove-files -- *.txt *.log *.json *.jsonl *.png 2>/dev/null)
ls -la "$OUT"
