#!/usr/bin/env bash
# Build simkern._cuda for the CPU emulator (tools/cuda_emu/emu.hpp): the same csrc/cuda sources and binding, compiled
# by g++ with -DSIMKERN_CUDA_EMU, device memory = host memory, each CUDA thread a fiber. Copies the module next to
# an installed simkern package (default: the one `python` imports), where tests/test_cuda.py then runs its GPU tests
# on the emulated device (one device, compute capability 9.0; SIMKERN_CUDA_EMU_SM75=1 reports 7.5):
#   tools/cuda_emu/build.sh [PACKAGE_DIR]
# SIMKERN_EMU_CXXFLAGS adds compiler flags: "-fsanitize=address,undefined" makes the emulator a memory checker of the
# kernels (every device buffer is a host allocation; load the ASan runtime as tools/sanitize/staged.py does).
# The module it replaces (an nvcc build) is overwritten: rebuild that with tools/cuda/build.sh.
set -euo pipefail
cd "$(dirname "$0")/../.."
py=${PYTHON:-python}
package=${1:-$("$py" -c 'import os, simkern; print(os.path.dirname(simkern.__file__))')}
cuda_include=${CUDA_INCLUDE:-/usr/local/cuda/include}
[ -f "$cuda_include/cuda_runtime.h" ] || { echo "cuda_emu/build.sh: no CUDA headers in $cuda_include"; exit 1; }
# shellcheck source=tools/lib/cmake_tools.sh
source tools/lib/cmake_tools.sh
tools=${SIMKERN_EMU_TOOLS:-build/cuda-emu-tools}
cmake_tools "$py" "$tools"  # pybind11 >= 3.0: the importable one, else installed into $tools
includes=$(PYTHONPATH="$tools${PYTHONPATH:+:$PYTHONPATH}" "$py" -m pybind11 --includes)
suffix=$("$py" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
out="$package/_cuda$suffix"
# -O1: the fibers' stacks stay small and the build quick; -ffp-contract=off: every float operation rounds on its
# own, as the CUDA kernels' explicit __fadd_rn / __fmul_rn do on a GPU.
# shellcheck disable=SC2086  # $includes is a list of -I flags
"${CXX:-g++}" -std=c++17 -O2 -g1 -fPIC -shared ${SIMKERN_EMU_CXXFLAGS:-} -ffp-contract=off -Wall -Wno-attributes -Wno-unknown-pragmas \
  -DSIMKERN_CUDA_EMU -DSIMKERN_CUDA_ARCHITECTURES='"emulated"' -DSIMKERN_NVCC_VERSION='"none (CPU emulator)"' \
  -Icsrc/cuda -Icsrc/include -Itools/cuda_emu -isystem "$cuda_include" $includes \
  -x c++ csrc/cuda/runtime.cu csrc/cuda/maxsim.cu csrc/cuda/pq.cu csrc/cuda/fde.cu -x none \
  tools/cuda_emu/emu.cpp csrc/bindings/cuda_module.cpp -o "$out.tmp"
mv "$out.tmp" "$out"
echo "cuda_emu/build.sh: emulated _cuda$suffix written to $package"
