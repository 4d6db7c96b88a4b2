#!/usr/bin/env bash
# Installs the RTSP-over-TCP test server of tests/live (tests/live/gst_rtsp_server.py, run by the
# system /usr/bin/python3): GStreamer's RTSP server and its Python bindings from Debian, plus the
# plugins for qtdemux/rtph264pay/rtph264depay (good) and h264parse (bad). Idempotent.
set -euo pipefail
PY=/usr/bin/python3
PACKAGES="gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad python3-gi"
if [ -x "$PY" ] && "$PY" "$(dirname "$0")/../tests/live/gst_rtsp_server.py" --check >/dev/null 2>&1; then
  echo "GStreamer RTSP server already installed"; exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq || echo "apt-get update failed; installing from the cached package lists"
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $PACKAGES python3 >/dev/null
"$PY" "$(dirname "$0")/../tests/live/gst_rtsp_server.py" --check
echo "GStreamer RTSP server installed"
