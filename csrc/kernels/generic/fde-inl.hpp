// FDE SimHash sketches over the vector primitives V of the including ISA file (see generic/maxsim-inl.hpp for the
// inclusion rule). Lanes run over the R * k hyperplanes of all repetitions; T tokens x RB registers per pass share
// each load of G. Every lane computes acc = fma(x_i, g_ih, acc) over i in order, the scalar kernel's sequence
// (std::fma there), so sketches - and partitions - are bit-identical on every ISA. (FMA: 1.5x the rate of separate
// multiply and add on the Zen 4 we measure on.)
#pragma once

namespace fde_detail {

template <int T, int RB>
static inline void simhash_block(const float* x, i64 dim, const float* g, i64 hyperplanes, i64 h0, float* out) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  reg acc[T][RB];
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) acc[t][r] = V::zero();
  for (i64 i = 0; i < dim; ++i) {
    reg gv[RB];
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) gv[r] = V::load(g + i * hyperplanes + h0 + r * L);
#pragma GCC unroll 4
    for (int t = 0; t < T; ++t) {
      const reg xi = V::set1(x[t * dim + i]);
#pragma GCC unroll 4
      for (int r = 0; r < RB; ++r) acc[t][r] = V::fma(xi, gv[r], acc[t][r]);
    }
  }
#pragma GCC unroll 4
  for (int t = 0; t < T; ++t)
#pragma GCC unroll 4
    for (int r = 0; r < RB; ++r) V::store(out + t * hyperplanes + h0 + r * L, acc[t][r]);
}

// Hyperplane blocks outermost: one block's slice of G (dim x 3L floats, 12 KB for dim 128 on AVX2) stays in L1
// while every token passes over it; tokens go 4 at a time.
static void simhash(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, float* out) {
  constexpr int L = V::lanes;
  const auto pass = [&](auto rb, i64 h) {
    constexpr int RB = decltype(rb)::value;
    i64 t = 0;
    for (; t + 4 <= n; t += 4) simhash_block<4, RB>(x + t * dim, dim, g, hyperplanes, h, out + t * hyperplanes);
    for (; t < n; ++t) simhash_block<1, RB>(x + t * dim, dim, g, hyperplanes, h, out + t * hyperplanes);
  };
  i64 h = 0;
  for (; h + 3 * L <= hyperplanes; h += 3 * L) pass(std::integral_constant<int, 3>{}, h);
  for (; h + L <= hyperplanes; h += L) pass(std::integral_constant<int, 1>{}, h);
  if (h < hyperplanes) scalar::simhash_from(x, n, dim, g, hyperplanes, h, out);
}

// One AMS gather list summed for TB blocks: acc[b] += sign[i] * xt_b[i] for the list's entries in order.
template <int TB>
static inline void ams_list(const float* xt, i64 dim, const std::int32_t* order, std::int32_t e, std::int32_t end,
                            const float* sign, typename V::reg* acc) {
  constexpr int L = V::lanes;
  for (; e < end; ++e) {
    const i64 i = order[e];
    const typename V::reg s = V::set1(sign[i]);
#pragma GCC unroll 4
    for (int b = 0; b < TB; ++b) acc[b] = V::add(acc[b], V::mul(s, V::load(xt + b * dim * L + i * L)));
  }
}

template <int TB>
static inline void ams_pass(const float* x, i64 n, i64 dim, const FDEMatrices& m, i64 repetitions, i64 dp, i64 t0,
                            float* xt, float* yt, float* y) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  // xt: TB transposed blocks, block b at xt + b * dim * L (row i = coordinate i of its L tokens).
  for (int b = 0; b < TB; ++b) {
    const i64 tb = t0 + b * L, count = n - tb < L ? n - tb : L;
    float* xb = xt + b * dim * L;
    i64 i0 = 0;
    if (V::has_transpose && count == L)  // full blocks move by L x L tile transposes
      for (; i0 + L <= dim; i0 += L) V::transpose(x + tb * dim + i0, dim, xb + i0 * L, L);
    for (i64 i = i0; i < dim; ++i)
      for (int l = 0; l < L; ++l) xb[i * L + l] = l < count ? x[(tb + l) * dim + i] : 0.0f;
  }
  for (i64 r = 0; r < repetitions; ++r) {
    const std::int32_t* order = m.ams_order.data() + r * dim;
    const std::int32_t* start = m.ams_start.data() + r * (dp + 1);
    const float* sign = m.ams_sign.data() + r * dim;
    // Two output coordinates at a time: their lists advance side by side while both have entries (2 * TB
    // independent add chains hide the add latency), then each finishes alone.
    i64 c = 0;
    for (; c + 2 <= dp; c += 2) {
      reg a0[TB], a1[TB];
#pragma GCC unroll 4
      for (int b = 0; b < TB; ++b) a0[b] = a1[b] = V::zero();
      std::int32_t e0 = start[c], e1 = start[c + 1];
      const std::int32_t end0 = start[c + 1], end1 = start[c + 2];
      for (; e0 < end0 && e1 < end1; ++e0, ++e1) {
        const i64 i0 = order[e0], i1 = order[e1];
        const reg s0 = V::set1(sign[i0]), s1 = V::set1(sign[i1]);
#pragma GCC unroll 4
        for (int b = 0; b < TB; ++b) {
          a0[b] = V::add(a0[b], V::mul(s0, V::load(xt + b * dim * L + i0 * L)));
          a1[b] = V::add(a1[b], V::mul(s1, V::load(xt + b * dim * L + i1 * L)));
        }
      }
      ams_list<TB>(xt, dim, order, e0, end0, sign, a0);
      ams_list<TB>(xt, dim, order, e1, end1, sign, a1);
#pragma GCC unroll 4
      for (int b = 0; b < TB; ++b) {
        V::store(yt + (b * dp + c) * L, a0[b]);
        V::store(yt + (b * dp + c + 1) * L, a1[b]);
      }
    }
    if (c < dp) {
      reg a0[TB];
      for (int b = 0; b < TB; ++b) a0[b] = V::zero();
      ams_list<TB>(xt, dim, order, start[c], start[c + 1], sign, a0);
      for (int b = 0; b < TB; ++b) V::store(yt + (b * dp + c) * L, a0[b]);
    }
    for (int b = 0; b < TB; ++b) {
      const i64 tb = t0 + b * L, count = n - tb < L ? n - tb : L;
      const float* yb = yt + b * dp * L;
      i64 c0 = 0;
      if (V::has_transpose && count == L)
        for (; c0 + L <= dp; c0 += L) V::transpose(yb + c0 * L, L, y + (r * n + tb) * dp + c0, dp);
      for (i64 l = 0; l < count; ++l) {
        float* dst = y + (r * n + tb + l) * dp;
        for (i64 cc = c0; cc < dp; ++cc) dst[cc] = yb[cc * L + l];
      }
    }
  }
}

// AMS projection of n tokens for every repetition (contract in simkern/fde.hpp). Lanes run over tokens: up to
// four blocks of L tokens (kFDELanes in all) are transposed once (dim x L each, in `xt`) and reused by all
// repetitions; each output coordinate c is one register per block summed over its gather list (multiply by the
// +-1 sign, then add), the list read once for all blocks, two coordinates interleaved; then the dp x L results
// (`yt`) are written back per token. Each lane adds in i order, as the scalar scatter does, so the values are
// bit-identical to it.
static void ams_project(const float* x, i64 n, i64 dim, const FDEMatrices& m, i64 repetitions, i64 dp, float* xt,
                        float* yt, float* y) {
  constexpr int L = V::lanes;
  constexpr int kMaxBlocks = kFDELanes / L < 4 ? kFDELanes / L : 4;
  static_assert(kMaxBlocks >= 2, "scratch sized for at least two blocks");
  i64 t0 = 0;
  while (t0 < n) {
    const i64 blocks = (n - t0 + L - 1) / L;
    if (kMaxBlocks >= 4 && blocks >= 4) {
      ams_pass<kMaxBlocks >= 4 ? 4 : 1>(x, n, dim, m, repetitions, dp, t0, xt, yt, y);
      t0 += (kMaxBlocks >= 4 ? 4 : 1) * L;
    } else if (kMaxBlocks >= 3 && blocks == 3) {
      ams_pass<kMaxBlocks >= 3 ? 3 : 1>(x, n, dim, m, repetitions, dp, t0, xt, yt, y);
      t0 += (kMaxBlocks >= 3 ? 3 : 1) * L;
    } else if (blocks >= 2) {
      ams_pass<2>(x, n, dim, m, repetitions, dp, t0, xt, yt, y);
      t0 += 2 * L;
    } else {
      ams_pass<1>(x, n, dim, m, repetitions, dp, t0, xt, yt, y);
      t0 += L;
    }
  }
}

}  // namespace fde_detail
