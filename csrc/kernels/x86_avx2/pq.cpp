// PQ, avx2 path: distances / dot products to all centroids of a subspace, lanes over centroids
// (generic/pq-inl.hpp); bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <immintrin.h>

#include <cstdint>
#include <type_traits>
#include <limits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx2 {
namespace {

#include "x86_avx2/simd.hpp"
#include "generic/pq-inl.hpp"
#include "generic/pq-scan4-x86-inl.hpp"

}  // namespace

void fill_pq(PQKernels* out) {
  out->name = "pq_avx2";
  pq_detail::fill_float_kernels(out);
  out->scan8 = scalar::scan8;  // scalar loads beat gathers on the AMD cores we measure on
  out->scan8_name = "scan8_scalar";
  out->scan4 = scan4_x86;
  out->scan4_name = "scan4_x86";
}

}  // namespace avx2
}  // namespace simkern
