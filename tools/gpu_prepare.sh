#!/usr/bin/env bash
# Prepare what tools/gpu_check.sh needs and a GPU machine may lack, on a machine that reaches PyPI: wheels in
# tools/gpu_wheels/ (git-ignored; pass it to the device tool's `carry`, 64 MiB at most), for CPython 3.10-3.13 on
# x86_64 manylinux:
#   - the test dependencies of tests/test_cuda.py: hypothesis (and what it needs), ml_dtypes (NumPy: the image's);
#   - the build backend for an isolated offline build: scikit-build-core (+ packaging, pathspec), pybind11;
#   - the peer measured by bench/bench_cuda.py: flash-maxsim (Triton; its own dependencies are the image's).
#   tools/gpu_prepare.sh            then: tools/gpu_check.sh OUT_DIR on the GPU machine
set -euo pipefail
cd "$(dirname "$0")/.."
dest=tools/gpu_wheels
mkdir -p "$dest"
py=${PYTHON:-python}
for version in 3.10 3.11 3.12 3.13; do
  "$py" -m pip download -q --dest "$dest" --only-binary=:all: --python-version "$version" \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    "hypothesis>=6.100" "scikit-build-core>=0.11" "pybind11>=3.0" || {
    echo "gpu_prepare: downloading for Python $version failed" >&2; exit 1; }
  # ml_dtypes without NumPy (the image's torch brings NumPy; four NumPy wheels would not fit the 64 MiB carry)
  "$py" -m pip download -q --dest "$dest" --only-binary=:all: --no-deps --python-version "$version" \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 "ml_dtypes>=0.3"
done
# flash-maxsim without its dependencies (torch / triton come with the GPU image); optional.
"$py" -m pip download -q --dest "$dest" --no-deps flash-maxsim \
  || echo "gpu_prepare: flash-maxsim could not be downloaded (bench_cuda.py then reports it unavailable)" >&2
du -sh "$dest"
ls "$dest"
