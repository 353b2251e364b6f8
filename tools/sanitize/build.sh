#!/usr/bin/env bash
# Build the extension with -fsanitize=address,undefined (CMake option SIMKERN_SANITIZE) and stage an importable copy
# of the package next to it:
#   tools/sanitize/build.sh BUILD_DIR STAGE_DIR
# BUILD_DIR: the CMake build folder (reused when it exists: an incremental build); keep it out of build/, which
# holds scikit-build-core's folder that tools/check_baseline_isa.py reads. STAGE_DIR/simkern gets python/simkern
# plus the sanitizer _core*.so. Run the suite on it with
#   python tools/sanitize/staged.py --sanitizers STAGE_DIR -m pytest ...
# Same CMakeLists.txt as the wheel (per-file ISA flags, AVX-512 files included), RelWithDebInfo at -O1 -g, no
# NDEBUG. Needs cmake >= 3.18 and pybind11 >= 3.0: the ones on PATH / importable if they are recent enough, else
# pip installs them into BUILD_DIR/tools (not into the environment).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -ne 2 ]; then sed -n '2,12p' "$0"; exit 2; fi
build=$1
stage=$2
py=${PYTHON:-python}
mkdir -p "$build"

# shellcheck source=tools/lib/cmake_tools.sh
source tools/lib/cmake_tools.sh
cmake_tools "$py" "$build/tools"  # sets pybind11_dir, cmake_bin, generator

version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
python_exe=$("$py" -c 'import sys; print(sys.executable)')
if [ ! -f "$build/CMakeCache.txt" ]; then
  "$cmake_bin" -S . -B "$build" "${generator[@]}" \
    -DSIMKERN_SANITIZE=ON \
    -DSKBUILD_PROJECT_NAME=simkern -DSKBUILD_PROJECT_VERSION="$version" \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$python_exe"
fi
"$cmake_bin" --build "$build" --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"

so=$(ls "$build"/_core*.so)
rm -rf "$stage/simkern"
mkdir -p "$stage"
cp -r python/simkern "$stage/simkern"
find "$stage/simkern" \( -name "__pycache__" -o -name "*.so" \) -prune -exec rm -rf {} +
cp "$so" "$stage/simkern/"
echo "sanitize/build.sh: $(basename "$so") staged in $stage/simkern"
