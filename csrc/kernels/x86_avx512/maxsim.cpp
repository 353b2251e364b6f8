// MaxSim, AVX-512 path (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl). The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 24 accumulators: 2 zmm of query tokens (32 tokens, 16 per zmm) x 12 doc tokens, plus 2 query
// loads and 1 broadcast (27 of the 32 zmm registers; per coordinate k: 2 loads, 12 broadcasts, 24 FMAs); the
// last block of a stack may be 3 x 8 or 1 x 24.
// f16 docs are widened with vcvtph2ps, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_avx512", "maxsim_f16_avx512", "maxsim_bf16_avx512"};
  fill_float_kernels<V>(out, names);
}

// FMA throughput probe for the dispatcher (dispatch.cpp), 512-bit: see fma_probe in generic/maxsim-inl.hpp.
double fma_flops_per_ns() { return fma_probe<V>(); }

}  // namespace avx512
}  // namespace simkern
