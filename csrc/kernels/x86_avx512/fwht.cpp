// FWHT butterfly passes, avx512 path (generic/fwht-inl.hpp): lanes along the rows; bit-identical to scalar.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"
#include "generic/fwht-inl.hpp"

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_avx512";
  out->passes_f32 = fwht_detail::passes_f32;
  out->passes_f64 = fwht_detail::passes_f64;
}

}  // namespace avx512
}  // namespace simkern
