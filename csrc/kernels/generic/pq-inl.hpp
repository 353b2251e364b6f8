// Generic PQ kernels over the vector primitives V of the including ISA file (see generic/maxsim-inl.hpp for the
// inclusion rule). Lanes run over centroids: for coordinate k, V::load(ct + k * ksub + j) holds c_jk for lanes
// j..j+lanes-1. Every lane does the scalar sequence acc = acc + d * d (or acc + x * c) in k order, with separate
// multiply and add, so results equal the scalar kernel bit for bit (see simkern/pq.hpp).
#pragma once

namespace pq_detail {

constexpr int kBlockRegs = 4;  // 4 accumulators per pass: 4 * lanes centroids

template <bool L2>
static inline void centroid_pass(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  constexpr int L = V::lanes;
  i64 j = 0;
  for (; j + kBlockRegs * L <= ksub; j += kBlockRegs * L) {
    typename V::reg acc[kBlockRegs];
    for (int r = 0; r < kBlockRegs; ++r) acc[r] = V::zero();
    for (i64 k = 0; k < dsub; ++k) {
      const typename V::reg xk = V::set1(x[k]);
      for (int r = 0; r < kBlockRegs; ++r) {
        const typename V::reg c = V::load(ct + k * ksub + j + r * L);
        if constexpr (L2) {
          const typename V::reg diff = V::sub(xk, c);
          acc[r] = V::add(acc[r], V::mul(diff, diff));
        } else {
          acc[r] = V::add(acc[r], V::mul(xk, c));
        }
      }
    }
    for (int r = 0; r < kBlockRegs; ++r) V::store(out + j + r * L, acc[r]);
  }
  for (; j + L <= ksub; j += L) {
    typename V::reg acc = V::zero();
    for (i64 k = 0; k < dsub; ++k) {
      const typename V::reg c = V::load(ct + k * ksub + j);
      if constexpr (L2) {
        const typename V::reg diff = V::sub(V::set1(x[k]), c);
        acc = V::add(acc, V::mul(diff, diff));
      } else {
        acc = V::add(acc, V::mul(V::set1(x[k]), c));
      }
    }
    V::store(out + j, acc);
  }
  scalar::centroids_from(x, ct, dsub, ksub, j, L2, out);  // ksub not a multiple of the lanes
}

static void sq_dists(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroid_pass<true>(x, ct, dsub, ksub, out);
}
static void dots(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroid_pass<false>(x, ct, dsub, ksub, out);
}

}  // namespace pq_detail
