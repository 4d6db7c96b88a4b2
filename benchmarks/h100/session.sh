#!/usr/bin/env bash
# All of one short GPU session in ONE device call (issues #3-#6), from the repo root:
#   here: bash benchmarks/h100/fetch_wheels.sh; MAX_MB=21 DST=.cache/gen-mini \
#         bash benchmarks/h100/pack_training_shards.sh .cache/generator-shards-full   # .whl + 3 shards < 64 MiB
#   run: carry [".whl", ".cache/gen-mini"], timeout_s 590, command `bash benchmarks/h100/session.sh`
#   (as run on 2026-11-26; with the generator weights now tracked, split .whl over two calls: README.md)
# PROFILE=1 adds checks.sh's ab and profile parts after the timings; EXTRA passes flags to the training run.
# 1. generator training starts in the background (TRAIN_MINUTES) while the CUDA tests run (correctness only:
#    sharing the GPU changes no result); 2. after training has ended, the engine latency table and the bench
#    run alone on the GPU (timings). Everything small is packed into $OUT/results.tgz and the FP16 compact
#    checkpoint parts are copied beside it: the device tool returns at most 8 files.
set -uo pipefail
FINAL=${OUT:-out/h100-final}
WORK=out/h100                     # git-ignored (out/), packed at the end
TRAIN_MINUTES=${TRAIN_MINUTES:-4}
RUN=${RUN:-.cache/gen-run}
mkdir -p "$WORK" "$FINAL"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }

stamp "training starts in the background ($TRAIN_MINUTES min)"
OUT=$WORK/train RUN=$RUN MINUTES=$TRAIN_MINUTES DATA=${DATA:-.cache/gen-mini} \
  bash benchmarks/h100/train.sh >"$WORK/train-console.log" 2>&1 &
train_pid=$!

stamp "CUDA tests (while training)"
OUT=$WORK PYTEST_LIMIT=${PYTEST_LIMIT:-240} bash benchmarks/h100/checks.sh tests

stamp "waiting for training"
wait "$train_pid"
cat "$WORK/train-console.log"

stamp "timings (GPU alone)"
weights=random
[ -f "$RUN/generator.safetensors" ] && weights=$RUN/generator.safetensors
OUT=$WORK WHEELS=none GENERATOR_WEIGHTS=$weights LATENCY_LIMIT=${LATENCY_LIMIT:-100} \
  BENCH_LIMIT=${BENCH_LIMIT:-170} SECONDS_CLIP=${SECONDS_CLIP:-6} bash benchmarks/h100/checks.sh timings

if [ "${PROFILE:-0}" = 1 ]; then
  for part in ab profile; do
    stamp "$part (GPU alone)"
    OUT=$WORK WHEELS=none GENERATOR_WEIGHTS=$weights bash benchmarks/h100/checks.sh "$part"
  done
fi

stamp "packing"
cp "$WORK"/train/compact-*.safetensors "$FINAL"/ 2>/dev/null
tar -czf "$FINAL/results.tgz" --exclude='compact-*.safetensors' -C "$WORK" .
ls -la "$FINAL"
stamp "done"
cat "$WORK"/summary-*.txt "$WORK/train/summary-train.txt" 2>/dev/null
! grep -qE ': exit [1-9]' "$WORK"/summary-*.txt "$WORK/train/summary-train.txt"
