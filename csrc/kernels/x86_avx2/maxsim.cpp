// MaxSim, AVX2 + FMA + F16C path (compiled with -mavx2 -mfma -mf16c). The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 12 accumulators: 2 ymm of query tokens (16 tokens, 8 per ymm) x 6 doc tokens, plus 2 query
// loads and 1 broadcast (15 of the 16 ymm registers; per coordinate k: 2 loads, 6 broadcasts, 12 FMAs); the last
// block of a stack may be 3 x 4 (16 registers) or 1 x 12, so an odd group count never leaves a block short of
// accumulators.
// f16 docs are widened with vcvtph2ps, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
#include <immintrin.h>

#include <cstdint>
#include <limits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx2 {
namespace {

struct V {
  using reg = __m256;
  static constexpr int lanes = 8;
  static constexpr int query_regs = 2;
  static constexpr int max_query_regs = 3;
  static constexpr int acc_budget = 12;
  static constexpr int doc_tile = 12;
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg set1(float x) { return _mm256_set1_ps(x); }
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static inline bool any_nan(reg v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
  static inline void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
};

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_avx2", "maxsim_f16_avx2", "maxsim_bf16_avx2"};
  fill_float_kernels<V>(out, names);
}

}  // namespace avx2
}  // namespace simkern
