#!/usr/bin/env bash
# Builds tools/cross_check/maxsim_check.cpp with the kernel sources and runs it.
#   tools/cross_check/run.sh            aarch64 cross build (aarch64-linux-gnu-g++), run under qemu-aarch64:
#                                       tests the NEON kernels on an x86 machine
#   tools/cross_check/run.sh --native   host build (x86-64: scalar, AVX2, AVX-512 TUs with their own flags)
#   tools/cross_check/run.sh --emulate-avx512
#                                       host build whose AVX-512 and AVX512-BF16 files are compiled against
#                                       emu_avx512/immintrin.h (scalar emulation), so their loop logic, packing and
#                                       vdpbf16ps path are checked on a CPU without AVX-512
# Needs (Debian): g++-aarch64-linux-gnu qemu-user (.ci/run step 0 installs them). Compiles CMAKE_BUILD_PARALLEL_LEVEL
# (default: every core) files at a time.
set -euo pipefail
cd "$(dirname "$0")/../.."
mode=${1:-cross}
out=build/cross_check/${mode#--}
mkdir -p "$out"
opt=2
if [ "$mode" = "--emulate-avx512" ]; then opt=1; fi  # the emulated intrinsics check logic, not speed: -O1 compiles 1/3 faster
common=(-std=c++17 -O$opt -Wall -Wextra -Wno-unused-parameter -Icsrc/include -Icsrc/kernels)
emu="-Itools/cross_check/emu_avx512 -DSIMKERN_TEST_EMULATE_AVX512=1"
if [ "$mode" = "--emulate-avx512" ]; then
  cxx=${CXX:-g++}
  defs=(-DSIMKERN_HAVE_X86_KERNELS=1 -DSIMKERN_TEST_EMULATE_AVX512=1)
  isa_objs=(
    "csrc/kernels/x86_avx2/maxsim.cpp:-mavx2 -mfma -mf16c"
    "csrc/kernels/x86_avx2/pq.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/fde.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/hnsw.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/fwht.cpp:-mavx2 -mfma -mf16c"
    "csrc/kernels/x86_avx2/sketch.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx512/maxsim.cpp:$emu"
    "csrc/kernels/x86_avx512/pq.cpp:$emu -ffp-contract=off"
    "csrc/kernels/x86_avx512/fde.cpp:$emu -ffp-contract=off"
    "csrc/kernels/x86_avx512/hnsw.cpp:$emu -ffp-contract=off"
    "csrc/kernels/x86_avx512/fwht.cpp:$emu"
    "csrc/kernels/x86_avx512/sketch.cpp:$emu -ffp-contract=off"
    "csrc/kernels/x86_avx512_bf16/maxsim.cpp:$emu"
    "csrc/kernels/x86_avx512_vbmi/pq_scan8.cpp:$emu"
  )
  link=(-pthread)
  runner=()
elif [ "$mode" = "--native" ]; then
  cxx=${CXX:-g++}
  defs=(-DSIMKERN_HAVE_X86_KERNELS=1)
  isa_objs=(
    "csrc/kernels/x86_avx2/maxsim.cpp:-mavx2 -mfma -mf16c"
    "csrc/kernels/x86_avx2/pq.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/fde.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/hnsw.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx2/fwht.cpp:-mavx2 -mfma -mf16c"
    "csrc/kernels/x86_avx2/sketch.cpp:-mavx2 -mfma -mf16c -ffp-contract=off"
    "csrc/kernels/x86_avx512/maxsim.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl"
    "csrc/kernels/x86_avx512/pq.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -ffp-contract=off"
    "csrc/kernels/x86_avx512/fde.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -ffp-contract=off"
    "csrc/kernels/x86_avx512/hnsw.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -ffp-contract=off"
    "csrc/kernels/x86_avx512/fwht.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl"
    "csrc/kernels/x86_avx512/sketch.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -ffp-contract=off"
    "csrc/kernels/x86_avx512_bf16/maxsim.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512bf16"
    "csrc/kernels/x86_avx512_vbmi/pq_scan8.cpp:-mavx2 -mfma -mf16c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx512vbmi"
  )
  link=(-pthread)
  runner=()
else
  cxx=${CXX:-aarch64-linux-gnu-g++}
  defs=(-DSIMKERN_HAVE_NEON_KERNELS=1)
  isa_objs=("csrc/kernels/arm_neon/maxsim.cpp:" "csrc/kernels/arm_neon/pq.cpp:-ffp-contract=off"
            "csrc/kernels/arm_neon/fde.cpp:-ffp-contract=off" "csrc/kernels/arm_neon/hnsw.cpp:-ffp-contract=off"
            "csrc/kernels/arm_neon/fwht.cpp:" "csrc/kernels/arm_neon/sketch.cpp:-ffp-contract=off")
  link=(-static -pthread)
  runner=(qemu-aarch64)
fi
objs=()
parallel=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
rm -f "$out/FAILED"
compile() {  # source, extra flags: compiled in the background, $parallel at a time (a failure leaves FAILED)
  local obj="$out/$(echo "$1" | tr '/' '_').o"
  while [ "$(jobs -pr | wc -l)" -ge "$parallel" ]; do wait -n || true; done
  # shellcheck disable=SC2086
  { "$cxx" "${common[@]}" "${defs[@]}" $2 -c "$1" -o "$obj" || echo "$1" >> "$out/FAILED"; } &
  objs+=("$obj")
}
for src in csrc/runtime/isa_detect.cpp csrc/runtime/dispatch.cpp csrc/runtime/thread_pool.cpp \
           csrc/runtime/maxsim_driver.cpp tools/cross_check/maxsim_check.cpp; do
  compile "$src" ""
done
compile csrc/runtime/pq_train.cpp "-ffp-contract=off"
compile csrc/runtime/pq_scan.cpp "-ffp-contract=off"
compile csrc/runtime/fde_rng.cpp "-ffp-contract=off"
compile csrc/runtime/fde_driver.cpp "-ffp-contract=off"
compile csrc/kernels/scalar/fde.cpp "-fno-tree-vectorize -ffp-contract=off"
compile csrc/kernels/scalar/hnsw.cpp "-fno-tree-vectorize -ffp-contract=off"
compile csrc/kernels/scalar/fwht.cpp "-fno-tree-vectorize"
compile csrc/kernels/scalar/sketch.cpp "-fno-tree-vectorize -ffp-contract=off"
compile csrc/kernels/scalar/maxsim.cpp "-fno-tree-vectorize"
compile csrc/kernels/scalar/pq.cpp "-fno-tree-vectorize -ffp-contract=off"
for entry in "${isa_objs[@]}"; do compile "${entry%%:*}" "${entry#*:}"; done
wait
if [ -f "$out/FAILED" ]; then echo "cross_check: compiling failed: $(tr '\n' ' ' < "$out/FAILED")" >&2; exit 1; fi
"$cxx" "${objs[@]}" "${link[@]}" -o "$out/maxsim_check"
"${runner[@]}" "$out/maxsim_check"
