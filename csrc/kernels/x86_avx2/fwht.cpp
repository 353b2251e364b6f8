// FWHT butterfly passes, avx2 path (generic/fwht-inl.hpp): lanes along the rows; bit-identical to scalar.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx2 {
namespace {

#include "x86_avx2/simd.hpp"
#include "generic/fwht-inl.hpp"

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_avx2";
  out->passes_f32 = fwht_detail::passes_f32;
  out->passes_f64 = fwht_detail::passes_f64;
}

}  // namespace avx2
}  // namespace simkern
