// HNSW distances, scalar reference path (no intrinsics; -fno-tree-vectorize -ffp-contract=off): the 32-lane
// order of generic/hnsw-inl.hpp with std::fma per lane and the same reduction tree, so every ISA matches it bit
// for bit. float16 values are widened exactly.
#include <cmath>
#include <cstdint>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {

constexpr int kLanes = 32;

inline float value(const float* v, i64 i) { return v[i]; }
inline float value(const std::uint16_t* v, i64 i) { return f16_to_float(v[i]); }

template <bool L2, class T>
float distance(const float* q, const T* v, i64 dim) {
  float acc[kLanes] = {};
  const i64 padded = (dim + kLanes - 1) / kLanes * kLanes;  // the SIMD paths zero-pad the last block: so do we
  for (i64 i = 0; i < padded; ++i) {
    float& a = acc[i % kLanes];
    const float qi = i < dim ? q[i] : 0.0f, vi = i < dim ? value(v, i) : 0.0f;
    if (L2) {
      const float d = qi - vi;
      a = std::fma(d, d, a);
    } else {
      a = std::fma(qi, vi, a);
    }
  }
  for (int w = kLanes / 2; w >= 1; w /= 2)
    for (int j = 0; j < w; ++j) acc[j] += acc[j + w];
  return acc[0];
}

float l2_f32(const float* q, const float* v, i64 dim) { return distance<true>(q, v, dim); }
float ip_f32(const float* q, const float* v, i64 dim) { return distance<false>(q, v, dim); }
float l2_f16(const float* q, const std::uint16_t* v, i64 dim) { return distance<true>(q, v, dim); }
float ip_f16(const float* q, const std::uint16_t* v, i64 dim) { return distance<false>(q, v, dim); }

template <bool L2, class T>
void distance2(const float* q, const T* v0, const T* v1, i64 dim, float* out) {
  out[0] = distance<L2>(q, v0, dim);
  out[1] = distance<L2>(q, v1, dim);
}
void l2_f32_x2(const float* q, const float* a, const float* b, i64 dim, float* out) {
  distance2<true>(q, a, b, dim, out);
}
void ip_f32_x2(const float* q, const float* a, const float* b, i64 dim, float* out) {
  distance2<false>(q, a, b, dim, out);
}
void l2_f16_x2(const float* q, const std::uint16_t* a, const std::uint16_t* b, i64 dim, float* out) {
  distance2<true>(q, a, b, dim, out);
}
void ip_f16_x2(const float* q, const std::uint16_t* a, const std::uint16_t* b, i64 dim, float* out) {
  distance2<false>(q, a, b, dim, out);
}

}  // namespace

void fill_hnsw(HNSWKernels* out) {
  out->name = "hnsw_scalar";
  out->l2_f32 = l2_f32;
  out->ip_f32 = ip_f32;
  out->l2_f16 = l2_f16;
  out->ip_f16 = ip_f16;
  out->l2_f32_x2 = l2_f32_x2;
  out->ip_f32_x2 = ip_f32_x2;
  out->l2_f16_x2 = l2_f16_x2;
  out->ip_f16_x2 = ip_f16_x2;
}

}  // namespace scalar
}  // namespace simkern
