#!/usr/bin/env bash
# A 15-minute GPU session (start-up included) in two back-to-back device calls on one warm machine:
#   call 1: carry [".whl"], timeout_s 420:       bash benchmarks/h100/quick.sh 1
#           the CUDA tests (engines, stages, sinks, orientation, file pipeline, gan anonymizer), the
#           detector/generator latency at the sizes, the bench with today's defaults (gan + blur,
#           16 streams null and encoded), then the same bench at batch 1 on one stage thread, the
#           frame path before the 2026-11-26 changes, in the same call (issue #5's A/B).
#   call 2: carry [".whl-nvdec"], timeout_s 240: bash benchmarks/h100/quick.sh 2
#           NVDEC: the source tests (tests/sources) and the bench with PyNvVideoCodec decode.
# Every step has its own time limit (checks.sh); after each part the logs and JSON are packed into
# $OUT/results-N.tgz (the device tool returns at most 8 files), so a call stopped at its limit still
# returns what ran. Check the script on a machine without a GPU: WHEELS=none DEVICE=cpu STREAMS=2 SECONDS_CLIP=0.5.
set -uo pipefail
call=${1:?usage: quick.sh 1|2}
FINAL=${OUT:-out/h100-final}
WORK=out/h100-quick-$call          # git-ignored (out/)
mkdir -p "$WORK" "$FINAL"
t0=$(date +%s)
part() {  # part NAME [VAR=VALUE...]: run checks.sh NAME with results in $WORK, then pack them
  local name=$1; shift
  echo "[$(( $(date +%s) - t0 )) s] $name"
  env OUT="$WORK" "$@" bash benchmarks/h100/checks.sh "$name"
  tar -czf "$FINAL/results-$call.tgz" -C "$WORK" .
}
if [ "$call" = 1 ]; then
  part tests WHEELS="${WHEELS:-.whl}" PYTEST_LIMIT="${PYTEST_LIMIT:-150}" TEST_PATHS="tests/engines tests/stages tests/sinks \
tests/test_orientation.py tests/test_pipeline_file.py tests/generator/test_gan_anonymizer.py"
  part timings WHEELS=none BATCHES=8,32 SIZES=1920x1088 LATENCY_LIMIT=60 BENCH_LIMIT=150 \
    SECONDS_CLIP="${SECONDS_CLIP:-6}"
  part ab WHEELS=none AB_VARIANTS="b1-t1:1:1" AB_LIMIT=80 AB_HOST_OPS=0 SECONDS_CLIP="${SECONDS_CLIP:-6}"
else
  part extra WHEELS="${WHEELS:-.whl-nvdec}" NVDEC_TEST_LIMIT=60 NVDEC_BENCH_LIMIT=150 SECONDS_CLIP="${SECONDS_CLIP:-6}"
fi
echo "[$(( $(date +%s) - t0 )) s] done"
cat "$WORK"/summary-*.txt
! grep -qE ': exit [1-9]' "$WORK"/summary-*.txt
