// FWHT butterfly passes, neon path (generic/fwht-inl.hpp): lanes along the rows; bit-identical to scalar.
#include <arm_neon.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
#include "generic/fwht-inl.hpp"

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_neon";
  out->passes_f32 = fwht_detail::passes_f32;
  out->passes_f64 = fwht_detail::passes_f64;
}

}  // namespace neon
}  // namespace simkern
