#!/usr/bin/env bash
# Installs the RTSP server used by tests/live: the npm package rtsp-streaming-server
# (publish with ANNOUNCE/RECORD, play with DESCRIBE/SETUP/PLAY, RTP over UDP) under
# /opt/rtsp-server. Idempotent. Needs node + npm (apt-get install -y nodejs npm).
set -euo pipefail
PREFIX="${RTSP_SERVER_PREFIX:-/opt/rtsp-server}"
if [ -f "$PREFIX/node_modules/rtsp-streaming-server/package.json" ]; then
  echo "rtsp-streaming-server already installed in $PREFIX"; exit 0
fi
if ! command -v npm >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends nodejs npm
fi
mkdir -p "$PREFIX"
cd "$PREFIX"
npm install --no-audit --no-fund --no-save rtsp-streaming-server@2.1.0
echo "rtsp-streaming-server installed in $PREFIX"
