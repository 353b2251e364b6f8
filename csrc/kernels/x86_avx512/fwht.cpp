// FWHT butterfly passes, avx512 path (generic/fwht-inl.hpp): lanes along the rows; bit-identical to scalar.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"
struct VD {  // float64 lanes for the FWHT passes
  using reg = __m512d;
  static constexpr int lanes = 8;
  static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
  static inline void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
};
#include "generic/fwht-inl.hpp"

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_avx512";
  out->passes_f32 = fwht_detail::passes_f32;
  out->passes_f64 = fwht_detail::passes_f64;
}

}  // namespace avx512
}  // namespace simkern
