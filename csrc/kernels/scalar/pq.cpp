// PQ, scalar reference path (no intrinsics; -fno-tree-vectorize -ffp-contract=off). Defines the arithmetic every
// SIMD path must reproduce bit for bit: acc = acc + d * d (or acc + x * c) over k in order.
#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {

template <bool L2>
void centroid_pass(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  for (i64 j = 0; j < ksub; ++j) {
    float acc = 0.0f;
    for (i64 k = 0; k < dsub; ++k) {
      const float c = ct[k * ksub + j];
      if constexpr (L2) {
        const float diff = x[k] - c;
        acc = acc + diff * diff;
      } else {
        acc = acc + x[k] * c;
      }
    }
    out[j] = acc;
  }
}

void sq_dists(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) { centroid_pass<true>(x, ct, dsub, ksub, out); }
void dots(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) { centroid_pass<false>(x, ct, dsub, ksub, out); }

}  // namespace

void fill_pq(PQKernels* out) {
  out->name = "pq_scalar";
  out->sq_dists = sq_dists;
  out->dots = dots;
}

}  // namespace scalar
}  // namespace simkern
