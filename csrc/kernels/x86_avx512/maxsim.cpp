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


// FMA throughput probe for the dispatcher (dispatch.cpp): float32 flops per ns of 512-bit FMAs, best of 5 runs of
// 12 independent chains x 16384 steps (~100 us each). It decides whether the avx512 level's float kernels beat the
// avx2 ones on this CPU (Zen 4 runs a 512-bit FMA as two 256-bit halves: the same flop rate).
double fma_flops_per_ns() {
  __m512 acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = _mm512_set1_ps(1e-3f * static_cast<float>(j + 1));
  const __m512 a = _mm512_set1_ps(0.999f), b = _mm512_set1_ps(1e-4f);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 16384; ++it) {
#pragma GCC unroll 12
      for (int j = 0; j < 12; ++j) acc[j] = _mm512_fmadd_ps(acc[j], a, b);
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    if (ns < best) best = ns;
  }
  __m512 sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = _mm512_add_ps(sum, acc[j]);
  alignas(64) float lanes[16];
  _mm512_storeu_ps(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 12.0 * 16384 * 16 * 2 / (best > 1.0 ? best : 1.0);
}

}  // namespace avx512
}  // namespace simkern
