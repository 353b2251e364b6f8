// HNSW distances, neon path: 32 fixed lanes with fused multiply-adds and a fixed reduction tree
// (generic/hnsw-inl.hpp), bit-identical to the scalar path.
#include <arm_neon.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
#include "generic/hnsw-inl.hpp"

}  // namespace

void fill_hnsw(HNSWKernels* out) {
  out->name = "hnsw_neon";
  out->l2_f32 = hnsw_detail::l2_f32;
  out->ip_f32 = hnsw_detail::ip_f32;
  out->l2_f16 = hnsw_detail::l2_f16;
  out->ip_f16 = hnsw_detail::ip_f16;
  out->l2_f32_x2 = hnsw_detail::l2_f32_x2;
  out->ip_f32_x2 = hnsw_detail::ip_f32_x2;
  out->l2_f16_x2 = hnsw_detail::l2_f16_x2;
  out->ip_f16_x2 = hnsw_detail::ip_f16_x2;
}

}  // namespace neon
}  // namespace simkern
