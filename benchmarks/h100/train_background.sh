#!/usr/bin/env bash
# Generator training (train.sh) in the background of a warm GPU machine, so the calls that carry the
# wheels can run the CUDA tests while it trains (one call carries at most 64 MiB: the shards fill one).
#   call A, carry [".cache/gen-carry"]:  bash benchmarks/h100/train_background.sh start
#           (setsid: the device tool keeps a new process session running after the call returns;
#           waits for the first two log lines, so loss_d and d_margin can be read at once)
#   call B, within 30 s (a machine idle longer goes back, the training with it), carry the wheels:
#           ...the tests...; bash benchmarks/h100/train_background.sh collect   (waits, then copies the
#           results into $OUT; COLLECT_BY=seconds since the start of the training, default 570)
# RUN, MINUTES and EXTRA as train.sh; its files go to out/train-bg (git-ignored).
set -uo pipefail
dir=out/train-bg
case "${1:?usage: train_background.sh start|collect}" in
  start)
    rm -rf "$dir" "$dir.done" && mkdir -p "$dir" && date +%s >"$dir.started"
    setsid nohup env OUT="$dir" bash -c 'bash benchmarks/h100/train.sh; touch "$0.done"' "$dir" \
      >"$dir.console" 2>&1 </dev/null &
    for _ in $(seq "${WAIT_START:-90}"); do
      lines=$(grep -c "'step'" "$dir/train.log" 2>/dev/null)
      [ "${lines:-0}" -ge 2 ] && break
      [ -f "$dir.done" ] && break
      sleep 1
    done
    cat "$dir/machine-train.txt" 2>/dev/null; tail -n 4 "$dir/train.log" 2>/dev/null; cat "$dir.console"
    nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null ;;
  collect)
    started=$(cat "$dir.started")
    while [ ! -f "$dir.done" ] && [ $(( $(date +%s) - started )) -lt "${COLLECT_BY:-570}" ]; do sleep 2; done
    [ -f "$dir.done" ] || echo "training still running after ${COLLECT_BY:-570} s: copying what is there"
    cp "$dir"/* "${OUT:?}"/ 2>/dev/null
    cat "$dir/summary-train.txt" 2>/dev/null; ls -la "$OUT" ;;
  *) echo "usage: train_background.sh start|collect" >&2; exit 2 ;;
esac
