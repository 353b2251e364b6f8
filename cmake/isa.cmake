# Per-ISA translation units (one ISA per TU, flags set per file; see docs/ARCHITECTURE.md).
#
# The baseline (runtime, drivers, bindings, scalar kernels) is compiled for plain x86-64 / armv8-a with
# -fno-tree-vectorize on the scalar kernels so they stay a genuinely scalar reference. Only files under
# csrc/kernels/x86_* get -m flags. No native-CPU tuning and no fast-math in default builds (STYLE.md rule 3).

set(SIMKERN_WARNINGS -Wall -Wextra -Wno-unused-parameter)
set(SIMKERN_ISA_SOURCES "")
set(SIMKERN_ISA_DEFINES "")
set(SIMKERN_BASELINE_FLAGS "")

if(SIMKERN_NATIVE)
  message(WARNING "SIMKERN_NATIVE=ON: baseline tuned for this CPU; the result is not portable")
  list(APPEND SIMKERN_BASELINE_FLAGS -mtune=native)
endif()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64")
  set(SIMKERN_AVX2_SOURCES
    csrc/kernels/x86_avx2/maxsim.cpp
    csrc/kernels/x86_avx2/pq.cpp
    csrc/kernels/x86_avx2/fde.cpp
    csrc/kernels/x86_avx2/hnsw.cpp
    csrc/kernels/x86_avx2/fwht.cpp
    csrc/kernels/x86_avx2/sketch.cpp)
  set(SIMKERN_AVX512_SOURCES
    csrc/kernels/x86_avx512/maxsim.cpp
    csrc/kernels/x86_avx512/pq.cpp
    csrc/kernels/x86_avx512/fde.cpp
    csrc/kernels/x86_avx512/hnsw.cpp
    csrc/kernels/x86_avx512/fwht.cpp
    csrc/kernels/x86_avx512/sketch.cpp)
  set(SIMKERN_AVX512_BF16_SOURCES
    csrc/kernels/x86_avx512_bf16/maxsim.cpp)
  set(SIMKERN_AVX512_VBMI_SOURCES
    csrc/kernels/x86_avx512_vbmi/pq_scan8.cpp)
  list(APPEND SIMKERN_ISA_SOURCES ${SIMKERN_AVX2_SOURCES} ${SIMKERN_AVX512_SOURCES} ${SIMKERN_AVX512_BF16_SOURCES}
       ${SIMKERN_AVX512_VBMI_SOURCES})
  list(APPEND SIMKERN_ISA_DEFINES SIMKERN_HAVE_X86_KERNELS=1)
endif()

if(CMAKE_SYSTEM_PROCESSOR MATCHES "aarch64|arm64|ARM64")
  # Advanced SIMD is part of the armv8-a baseline: these files need no extra flags.
  set(SIMKERN_NEON_SOURCES
    csrc/kernels/arm_neon/maxsim.cpp
    csrc/kernels/arm_neon/pq.cpp
    csrc/kernels/arm_neon/fde.cpp
    csrc/kernels/arm_neon/hnsw.cpp
    csrc/kernels/arm_neon/fwht.cpp
    csrc/kernels/arm_neon/sketch.cpp)
  list(APPEND SIMKERN_ISA_SOURCES ${SIMKERN_NEON_SOURCES})
  list(APPEND SIMKERN_ISA_DEFINES SIMKERN_HAVE_NEON_KERNELS=1)
endif()

set(SIMKERN_AVX2_FLAGS -mavx2 -mfma -mf16c)
set(SIMKERN_AVX512_FLAGS ${SIMKERN_AVX2_FLAGS} -mavx512f -mavx512bw -mavx512dq -mavx512vl)
set(SIMKERN_AVX512_BF16_FLAGS ${SIMKERN_AVX512_FLAGS} -mavx512bf16)
set(SIMKERN_AVX512_VBMI_FLAGS ${SIMKERN_AVX512_FLAGS} -mavx512vbmi)

# PQ files promise bit-identical distances on every ISA (simkern/pq.hpp): no FMA contraction anywhere in them.
set(SIMKERN_PQ_SOURCES
  csrc/kernels/scalar/pq.cpp
  csrc/kernels/x86_avx2/pq.cpp
  csrc/kernels/x86_avx512/pq.cpp
  csrc/kernels/arm_neon/pq.cpp
  csrc/runtime/pq_train.cpp
  csrc/runtime/pq_scan.cpp
  csrc/runtime/ivfpq.cpp)
# FDE files reproduce the reference's rounding (SimHash signs, the polar method's x * x + y * y): no contraction.
set(SIMKERN_FDE_SOURCES
  csrc/kernels/scalar/fde.cpp
  csrc/kernels/x86_avx2/fde.cpp
  csrc/kernels/x86_avx512/fde.cpp
  csrc/kernels/arm_neon/fde.cpp
  csrc/runtime/fde_rng.cpp
  csrc/runtime/fde_driver.cpp)
# HNSW distances are bit-identical on every ISA (generic/hnsw-inl.hpp): explicit FMAs only, no contraction.
set(SIMKERN_HNSW_SOURCES
  csrc/kernels/scalar/hnsw.cpp
  csrc/kernels/x86_avx2/hnsw.cpp
  csrc/kernels/x86_avx512/hnsw.cpp
  csrc/kernels/arm_neon/hnsw.cpp)
# Sketches are bit-identical on every ISA (simkern/sketch.hpp): explicit FMAs only, no contraction.
set(SIMKERN_SKETCH_SOURCES
  csrc/kernels/scalar/sketch.cpp
  csrc/kernels/x86_avx2/sketch.cpp
  csrc/kernels/x86_avx512/sketch.cpp
  csrc/kernels/arm_neon/sketch.cpp
  csrc/runtime/sketch_driver.cpp)

function(simkern_apply_isa_flags)
  set_source_files_properties(csrc/kernels/scalar/maxsim.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  set_source_files_properties(csrc/kernels/scalar/pq.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  set_source_files_properties(csrc/kernels/scalar/fde.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  set_source_files_properties(csrc/kernels/scalar/hnsw.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  set_source_files_properties(csrc/kernels/scalar/fwht.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  set_source_files_properties(csrc/kernels/scalar/sketch.cpp PROPERTIES COMPILE_OPTIONS "-fno-tree-vectorize")
  if(SIMKERN_AVX2_SOURCES)
    set_source_files_properties(${SIMKERN_AVX2_SOURCES} PROPERTIES COMPILE_OPTIONS "${SIMKERN_AVX2_FLAGS}")
    set_source_files_properties(${SIMKERN_AVX512_SOURCES} PROPERTIES COMPILE_OPTIONS "${SIMKERN_AVX512_FLAGS}")
    set_source_files_properties(${SIMKERN_AVX512_BF16_SOURCES} PROPERTIES COMPILE_OPTIONS "${SIMKERN_AVX512_BF16_FLAGS}")
    set_source_files_properties(${SIMKERN_AVX512_VBMI_SOURCES} PROPERTIES COMPILE_OPTIONS "${SIMKERN_AVX512_VBMI_FLAGS}")
  endif()
  # Appended after the ISA flags (COMPILE_OPTIONS is a list property).
  set_property(SOURCE ${SIMKERN_PQ_SOURCES} ${SIMKERN_FDE_SOURCES} ${SIMKERN_HNSW_SOURCES} ${SIMKERN_SKETCH_SOURCES} APPEND PROPERTY COMPILE_OPTIONS "-ffp-contract=off")
endfunction()
