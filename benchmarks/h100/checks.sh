#!/usr/bin/env bash
# GPU checks and timings in one device call (issues #4 and #5), from the repo root:
#   bash benchmarks/h100/checks.sh core    # carry [".whl"]: CUDA tests, engine latency, bench (PyAV decode)
#   bash benchmarks/h100/checks.sh nvdec   # carry [".whl-nvdec"] on the same warm machine: NVDEC tests + bench
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
mkdir -p "$OUT"
wheels=$([ "$part" = nvdec ] && echo .whl-nvdec || echo .whl)
if ls "$wheels"/*.whl >/dev/null 2>&1; then
  # .site is git-ignored, so it stays on a warm machine between the two calls
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site \
    "$wheels"/*.whl || exit 1
fi
export PYTHONPATH=$PWD/.site:$PWD PYTHONUNBUFFERED=1
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
  python3 -c "import sys, torch, av; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'av', av.__version__)"
  date -u +%Y-%m-%dT%H:%MZ; } | tee "$OUT/machine-$part.txt"

step() {  # step NAME SECONDS COMMAND...: run with a time limit, log to $OUT/NAME.log, record the status
  local name=$1 limit=$2; shift 2
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  echo "$name: exit $?" | tee -a "$OUT/summary-$part.txt"
}

if [ "$part" = core ]; then
  step pytest-gpu 200 python3 -m pytest -q -p no:cacheprovider tests/engines tests/stages tests/sinks
  step engines-latency 200 python3 benchmarks/engines_latency.py --device "$DEVICE" --batches "$BATCHES" \
    --sizes "$SIZES" --out "$OUT/engines-$DEVICE.md"
  step bench 240 python3 -m streamer.cli bench --device "$DEVICE" --modes blur --streams "$STREAMS" \
    --seconds "$SECONDS_CLIP" --json "$OUT/bench-$DEVICE.json" --png "$OUT/bench-$DEVICE.png"
else
  step pytest-nvdec 120 python3 -m pytest -q -p no:cacheprovider tests/sources
  # pipeline.decoder auto picks NVDEC now that PyNvVideoCodec is installed; the log names the path
  step bench-nvdec 240 python3 -m streamer.cli bench --device "$DEVICE" --modes blur \
    --streams "$STREAMS" --seconds "$SECONDS_CLIP" --json "$OUT/bench-nvdec.json"
fi
echo "== $part summary"; cat "$OUT/summary-$part.txt"
tail -n 3 "$OUT"/pytest-*.log 2>/dev/null
grep -h '^|' "$OUT"/engines-*.md "$OUT"/bench*.log 2>/dev/null | head -40
grep -h 'decode:' "$OUT"/bench*.log 2>/dev/null | sort -u
