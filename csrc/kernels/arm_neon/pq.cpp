// PQ, neon path: distances / dot products to all centroids of a subspace, lanes over centroids
// (generic/pq-inl.hpp); bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <arm_neon.h>


#include <cstdint>
#include <limits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
#include "generic/pq-inl.hpp"

}  // namespace

void fill_pq(PQKernels* out) {
  out->name = "pq_neon";
  out->sq_dists = pq_detail::sq_dists;
  out->dots = pq_detail::dots;
  out->nearest = pq_detail::nearest;
  out->tables = pq_detail::tables;
  out->nearest_dot = pq_detail::nearest_dot;
  out->scan8 = scalar::scan8;  // scalar loads beat gathers on the AMD cores we measure on
  out->scan8_name = "scan8_scalar";
  out->scan4 = scalar::scan4;  // a vqtbl1q_u8 version is still to write
}

}  // namespace neon
}  // namespace simkern
