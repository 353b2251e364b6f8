// MaxSim, AVX-512 path (compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl). The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 24 accumulators: 2 zmm of query tokens (32 tokens, 16 per zmm) x 12 doc tokens, plus 2 query
// loads and 1 broadcast (27 of the 32 zmm registers; per coordinate k: 2 loads, 12 broadcasts, 24 FMAs); the
// last block of a stack may be 3 x 8 or 1 x 24.
// f16 docs are widened with vcvtph2ps, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
#include <immintrin.h>

// GCC 12's _mm512_undefined_ps() (used inside _mm512_max_ps) self-initialises a variable, which -Wuninitialized
// reports at every use; the value is never read (the mask is all ones).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <cstdint>
#include <limits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

struct V {
  using reg = __m512;
  static constexpr int lanes = 16;
  static constexpr int query_regs = 2;
  static constexpr int max_query_regs = 3;
  static constexpr int acc_budget = 24;
  static constexpr int doc_tile = 24;
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg set1(float x) { return _mm512_set1_ps(x); }
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static inline bool any_nan(reg v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0; }
  static inline void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    _mm512_storeu_ps(dst, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    _mm512_storeu_ps(dst, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
};

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_avx512", "maxsim_f16_avx512", "maxsim_bf16_avx512"};
  fill_float_kernels<V>(out, names);
}

}  // namespace avx512
}  // namespace simkern
