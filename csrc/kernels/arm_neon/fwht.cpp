// FWHT butterfly passes, neon path (generic/fwht-inl.hpp): lanes along the rows; bit-identical to scalar.
#include <arm_neon.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
struct VD {  // float64 lanes for the FWHT passes
  using reg = float64x2_t;
  static constexpr int lanes = 2;
  static inline reg load(const double* p) { return vld1q_f64(p); }
  static inline void store(double* p, reg v) { vst1q_f64(p, v); }
  static inline reg add(reg a, reg b) { return vaddq_f64(a, b); }
  static inline reg sub(reg a, reg b) { return vsubq_f64(a, b); }
};
#include "generic/fwht-inl.hpp"

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_neon";
  out->passes_f32 = fwht_detail::passes_f32;
  out->passes_f64 = fwht_detail::passes_f64;
}

}  // namespace neon
}  // namespace simkern
