#!/usr/bin/env bash
# Build the optional CUDA module simkern._cuda alone (CMake target _cuda, SIMKERN_ENABLE_CUDA=ON) and copy it next
# to an installed simkern package:
#   tools/cuda/build.sh BUILD_DIR [PACKAGE_DIR]
# BUILD_DIR: the CMake build folder (reused: incremental). PACKAGE_DIR: where the module goes (default: the folder
# of the simkern that `python` imports). SIMKERN_CUDA_ARCHITECTURES picks the architectures (default here: 80-real,
# one SASS target, which is what CI compiles: the kernels compile and link, with every sm_80 instruction checked by
# ptxas; a full build - `SIMKERN_ENABLE_CUDA=ON pip install .` - uses cmake/cuda.cmake's list).
# On a machine without a GPU the module imports and simkern.cuda.is_available() says why not (tests/test_cuda.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ $# -lt 1 ] || [ $# -gt 2 ]; then sed -n '2,10p' "$0"; exit 2; fi
build=$1
py=${PYTHON:-python}
package=${2:-$("$py" -c 'import os, simkern; print(os.path.dirname(simkern.__file__))')}
archs=${SIMKERN_CUDA_ARCHITECTURES:-80-real}
mkdir -p "$build"

# shellcheck source=tools/lib/cmake_tools.sh
source tools/lib/cmake_tools.sh
cmake_tools "$py" "$build/tools"  # sets pybind11_dir, cmake_bin, generator
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -1)
python_exe=$("$py" -c 'import sys; print(sys.executable)')
if [ -z "${CUDACXX:-}" ] && ! command -v nvcc >/dev/null && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if [ ! -f "$build/CMakeCache.txt" ]; then
  "$cmake_bin" -S . -B "$build" "${generator[@]}" \
    -DSIMKERN_ENABLE_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES="$archs" \
    -DSKBUILD_PROJECT_NAME=simkern -DSKBUILD_PROJECT_VERSION="$version" -DSKBUILD=ON \
    -DCMAKE_BUILD_TYPE=Release \
    -Dpybind11_DIR="$pybind11_dir" -DPython_EXECUTABLE="$python_exe"
fi
"$cmake_bin" --build "$build" --target _cuda --parallel "${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}"
so=$(ls "$build"/_cuda*.so)
cp "$so" "$package/"
echo "cuda/build.sh: $(basename "$so") ($archs) copied to $package"
