// MaxSim, AVX2 + FMA + F16C path (compiled with -mavx2 -mfma -mf16c). The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 12 accumulators: 2 ymm of query tokens (16 tokens, 8 per ymm) x 6 doc tokens, plus 2 query
// loads and 1 broadcast (15 of the 16 ymm registers; per coordinate k: 2 loads, 6 broadcasts, 12 FMAs); the last
// block of a stack may be 3 x 4 (16 registers) or 1 x 12, so an odd group count never leaves a block short of
// accumulators.
// f16 docs are widened with vcvtph2ps, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx2 {
namespace {

#include "x86_avx2/simd.hpp"

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_avx2", "maxsim_f16_avx2", "maxsim_bf16_avx2"};
  fill_float_kernels<V>(out, names);
}

// FMA throughput probe for the dispatcher (dispatch.cpp), 256-bit: see fma_probe in generic/maxsim-inl.hpp.
double fma_flops_per_ns() { return fma_probe<V>(); }

}  // namespace avx2
}  // namespace simkern
