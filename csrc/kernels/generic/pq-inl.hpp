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
#pragma GCC unroll 4  // accumulators must stay in registers
    for (int r = 0; r < kBlockRegs; ++r) acc[r] = V::zero();
    for (i64 k = 0; k < dsub; ++k) {
      const typename V::reg xk = V::set1(x[k]);
#pragma GCC unroll 4
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
#pragma GCC unroll 4
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

// Q queries x R registers of centroids per pass (small ksub: centroid loads shared by Q queries, Q * R independent
// accumulators); the same per-lane arithmetic as centroid_pass.
template <int Q, int R, bool L2>
static inline void tables_block(const float* x, i64 x_stride, const float* ct, i64 dsub, i64 ksub, float* out,
                                i64 out_stride) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  for (i64 j = 0; j < ksub; j += R * L) {
    reg acc[Q][R];
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q)
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[q][r] = V::zero();
    for (i64 k = 0; k < dsub; ++k) {
      reg c[R];
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) c[r] = V::load(ct + k * ksub + j + r * L);
#pragma GCC unroll 4
      for (int q = 0; q < Q; ++q) {
        const reg xk = V::set1(x[q * x_stride + k]);
#pragma GCC unroll 4
        for (int r = 0; r < R; ++r) {
          if constexpr (L2) {
            const reg diff = V::sub(xk, c[r]);
            acc[q][r] = V::add(acc[q][r], V::mul(diff, diff));
          } else {
            acc[q][r] = V::add(acc[q][r], V::mul(xk, c[r]));
          }
        }
      }
    }
#pragma GCC unroll 4
    for (int q = 0; q < Q; ++q)
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) V::store(out + q * out_stride + j + r * L, acc[q][r]);
  }
}

template <int Q, int R, bool L2>
static inline void tables_blocked(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, float* out,
                                  i64 out_stride) {
  i64 q = 0;
  for (; q + Q <= n; q += Q)
    tables_block<Q, R, L2>(x + q * x_stride, x_stride, ct, dsub, ksub, out + q * out_stride, out_stride);
  for (; q < n; ++q)
    tables_block<1, R, L2>(x + q * x_stride, x_stride, ct, dsub, ksub, out + q * out_stride, out_stride);
}

template <bool L2>
static inline void tables_any(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, float* out,
                              i64 out_stride) {
  constexpr int L = V::lanes;
  if (ksub % (4 * L) == 0) tables_blocked<2, 4, L2>(x, n, x_stride, ct, dsub, ksub, out, out_stride);
  else if (ksub % (2 * L) == 0) tables_blocked<4, 2, L2>(x, n, x_stride, ct, dsub, ksub, out, out_stride);
  else if (ksub % L == 0) tables_blocked<4, 1, L2>(x, n, x_stride, ct, dsub, ksub, out, out_stride);
  else
    for (i64 q = 0; q < n; ++q) centroid_pass<L2>(x + q * x_stride, ct, dsub, ksub, out + q * out_stride);
}

static void tables(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, bool l2, float* out,
                   i64 out_stride) {
  if (l2) tables_any<true>(x, n, x_stride, ct, dsub, ksub, out, out_stride);
  else tables_any<false>(x, n, x_stride, ct, dsub, ksub, out, out_stride);
}

static void sq_dists(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroid_pass<true>(x, ct, dsub, ksub, out);
}

// Nearest centroid for n points with a fused argmin: P points share each centroid load, R registers of centroids
// per pass, and every lane keeps its running minimum and the id where it was first reached (strict <, ids ascend
// within a lane), so the final pick - smallest value, then lowest id - equals the scalar reference's. Nothing of
// size ksub is stored. Dot = false: exact squared L2 (the sq_dists arithmetic; scalar::nearest). Dot = true
// (k-means): score_j = half_norms[j] - x.c_j, accumulated with fused multiply-subtracts from half_norms[j] in k
// order (one instruction per term instead of three); dists then holds |x|^2 + 2 score (scalar::nearest_dot).
template <int P, int R, bool Dot>
static inline void nearest_block(const float* x, i64 x_stride, const float* ct, const float* c_norms, i64 dsub,
                                 i64 ksub, std::int32_t* ids, float* dists) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  reg best[P], best_id[P];
  for (int p = 0; p < P; ++p) {
    best[p] = V::set1(std::numeric_limits<float>::infinity());
    best_id[p] = V::lane_index();  // all distances infinite: centroid 0 of each lane, so id 0 overall
  }
  for (i64 j = 0; j < ksub; j += R * L) {
    reg acc[P][R];
    for (int r = 0; r < R; ++r) {
      const reg init = Dot ? V::load(c_norms + j + r * L) : V::zero();
      for (int p = 0; p < P; ++p) acc[p][r] = init;
    }
    for (i64 k = 0; k < dsub; ++k) {
      reg c[R];
      for (int r = 0; r < R; ++r) c[r] = V::load(ct + k * ksub + j + r * L);
      for (int p = 0; p < P; ++p) {
        const reg xk = V::set1(x[p * x_stride + k]);
        for (int r = 0; r < R; ++r) {
          if constexpr (Dot) {
            acc[p][r] = V::fnma(xk, c[r], acc[p][r]);
          } else {
            const reg diff = V::sub(xk, c[r]);
            acc[p][r] = V::add(acc[p][r], V::mul(diff, diff));
          }
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const reg id = V::add(V::lane_index(), V::set1(static_cast<float>(j + r * L)));
      for (int p = 0; p < P; ++p) V::keep_smaller(acc[p][r], id, best[p], best_id[p]);
    }
  }
  for (int p = 0; p < P; ++p) {
    float v[L], id[L];
    V::store(v, best[p]);
    V::store(id, best_id[p]);
    int pick = 0;
    for (int l = 1; l < L; ++l)
      if (v[l] < v[pick] || (v[l] == v[pick] && id[l] < id[pick])) pick = l;
    ids[p] = static_cast<std::int32_t>(id[pick]);
    if (dists) dists[p] = Dot ? scalar::sum_squares(x + p * x_stride, dsub) + (v[pick] + v[pick]) : v[pick];
  }
}

template <int P, int R, bool Dot>
static inline void nearest_blocked(const float* x, i64 n, i64 x_stride, const float* ct, const float* c_norms, i64 dsub,
                                   i64 ksub, std::int32_t* ids, float* dists) {
  i64 i = 0;
  for (; i + P <= n; i += P)
    nearest_block<P, R, Dot>(x + i * x_stride, x_stride, ct, c_norms, dsub, ksub, ids + i, dists ? dists + i : nullptr);
  for (; i < n; ++i)
    nearest_block<1, R, Dot>(x + i * x_stride, x_stride, ct, c_norms, dsub, ksub, ids + i, dists ? dists + i : nullptr);
}

template <bool Dot>
static inline void nearest_any(const float* x, i64 n, i64 x_stride, const float* ct, const float* c_norms, i64 dsub,
                               i64 ksub, std::int32_t* ids, float* dists) {
  constexpr int L = V::lanes;
  if (ksub % (4 * L) == 0) nearest_blocked<2, 4, Dot>(x, n, x_stride, ct, c_norms, dsub, ksub, ids, dists);
  else if (ksub % (2 * L) == 0) nearest_blocked<4, 2, Dot>(x, n, x_stride, ct, c_norms, dsub, ksub, ids, dists);
  else if (ksub % L == 0) nearest_blocked<4, 1, Dot>(x, n, x_stride, ct, c_norms, dsub, ksub, ids, dists);
  else if (Dot) scalar::nearest_dot(x, n, x_stride, ct, c_norms, dsub, ksub, ids, dists);
  else scalar::nearest(x, n, x_stride, ct, dsub, ksub, ids, dists);
}

static void nearest(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, std::int32_t* ids,
                    float* dists) {
  nearest_any<false>(x, n, x_stride, ct, nullptr, dsub, ksub, ids, dists);
}
static void nearest_dot(const float* x, i64 n, i64 x_stride, const float* ct, const float* half_norms, i64 dsub,
                        i64 ksub, std::int32_t* ids, float* dists) {
  nearest_any<true>(x, n, x_stride, ct, half_norms, dsub, ksub, ids, dists);
}

// IVF-PQ uint8 tables (PQKernels::quantize_lut): the scalar sequence per lane (add or multiply by sign, subtract,
// multiply, add 0.5, min, truncate), so the bytes equal scalar::quantize_lut's. ksub (16 or 256) is a multiple
// of the lanes.
static void quantize_lut(const float* q_tables, const float* cell_tables, const float* lows, i64 m, i64 ksub,
                         float sign, float scale, float top, std::uint8_t* out) {
  constexpr int L = V::lanes;
  const typename V::reg vs = V::set1(scale), vh = V::set1(0.5f), vt = V::set1(top), vsign = V::set1(sign);
  for (i64 s = 0; s < m; ++s) {
    const float* qt = q_tables + s * ksub;
    const typename V::reg low = V::set1(lows[s]);
    if (cell_tables) {
      const float* ct = cell_tables + s * ksub;
      for (i64 j = 0; j < ksub; j += L) {
        const typename V::reg v = V::add(V::load(ct + j), V::load(qt + j));
        V::store_trunc_u8(V::min(V::add(V::mul(V::sub(v, low), vs), vh), vt), out + s * ksub + j);
      }
    } else {
      for (i64 j = 0; j < ksub; j += L) {
        const typename V::reg v = V::mul(vsign, V::load(qt + j));
        V::store_trunc_u8(V::min(V::add(V::mul(V::sub(v, low), vs), vh), vt), out + s * ksub + j);
      }
    }
  }
}

// Per-subspace minimum and maximum of a table (PQKernels::table_ranges): lane-wise min / max, then the lanes.
static void table_ranges(const float* t, i64 m, i64 ksub, float* lo, float* hi) {
  constexpr int L = V::lanes;
  for (i64 s = 0; s < m; ++s) {
    const float* ts = t + s * ksub;
    typename V::reg a = V::load(ts), b = a;
    for (i64 j = L; j < ksub; j += L) {
      const typename V::reg v = V::load(ts + j);
      a = V::min(a, v);
      b = V::max(b, v);
    }
    float la[L], lb[L];
    V::store(la, a);
    V::store(lb, b);
    float x = la[0], y = lb[0];
    for (int i = 1; i < L; ++i) {
      x = la[i] < x ? la[i] : x;
      y = lb[i] > y ? lb[i] : y;
    }
    lo[s] = x;
    hi[s] = y;
  }
}

// The float kernels every SIMD level takes from this file (the scans differ per level and are set by each file).
static void fill_float_kernels(PQKernels* out) {
  out->sq_dists = sq_dists;
  out->tables = tables;
  out->nearest = nearest;
  out->nearest_dot = nearest_dot;
  out->quantize_lut = quantize_lut;
  out->table_ranges = table_ranges;
}

}  // namespace pq_detail
