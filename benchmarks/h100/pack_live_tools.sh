#!/usr/bin/env bash
# Pack, on the development machine, what the live-latency benchmark needs and the GPU
# image lacks: the node binary and the npm RTSP server (as .ci/install-rtsp-server.sh
# installs them) -> .live/live-tools.tar.xz (~25 MB, git-ignored; carry [".live"]).
# checks.sh unpacks it under .live/root on the GPU machine, never over /.
set -euo pipefail
cd "$(dirname "$0")/../.."
node=$(command -v node) || { echo "node is absent: run .ci/install-rtsp-server.sh first" >&2; exit 1; }
modules=${RTSP_SERVER_MODULES:-/opt/rtsp-server/node_modules}
[ -d "$modules/rtsp-streaming-server" ] || { echo "no rtsp-streaming-server in $modules" >&2; exit 1; }
if ldd "$node" | grep -q libnode; then
  echo "$node links libnode (Debian's build); the packed binary must be self-contained (nodesource build)" >&2
  exit 1
fi
mkdir -p .live
tar -C / -cf - "${node#/}" "${modules#/}" | xz -6 -T0 >.live/live-tools.tar.xz
du -sh .live/live-tools.tar.xz
