// HNSW distances over the vector primitives V of the including ISA file (see generic/maxsim-inl.hpp for the
// inclusion rule): one query (float32) against one stored vector (float32, or float16 widened exactly).
//
// Summation order, the same on every ISA: 32 lanes, lane j accumulates the coordinates i = j (mod 32) in i order
// with fused multiply-adds (L2: d = q_i - v_i, acc = fma(d, d, acc); inner product: acc = fma(q_i, v_i, acc)); a
// ragged tail is zero-padded to a full block; then a fixed tree adds lane j + 16, j + 8, j + 4, j + 2, j + 1. The
// scalar file runs the same 32 accumulators with std::fma over the same padding, so distances - and the graph
// built from them, and the ids a search returns - are bit-identical on every ISA.
#pragma once

namespace hnsw_detail {

constexpr int kLanes = 32;
constexpr int kRegs = kLanes / V::lanes;
static_assert(kLanes % V::lanes == 0, "32 distance lanes must be whole registers");

template <class T>
static inline typename V::reg load_value(const T* p) {
  if constexpr (std::is_same_v<T, float>) {
    return V::load(p);
  } else {
    return V::load_f16(p);
  }
}

template <bool L2>
static inline void step(typename V::reg q, typename V::reg v, typename V::reg& acc) {
  if constexpr (L2) {
    const typename V::reg d = V::sub(q, v);
    acc = V::fma(d, d, acc);
  } else {
    acc = V::fma(q, v, acc);
  }
}

// The tree: lane j += lane j + w for w = 16, 8, ...: whole registers first, then inside one register.
static inline float reduce_tree(typename V::reg* acc) {
#pragma GCC unroll 8
  for (int w = kRegs / 2; w >= 1; w /= 2)
#pragma GCC unroll 8
    for (int r = 0; r < w; ++r) acc[r] = V::add(acc[r], acc[r + w]);
  return V::hsum_tree(acc[0]);
}

template <bool L2, class T>
static float distance(const float* q, const T* v, i64 dim) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  reg acc[kRegs];
#pragma GCC unroll 8
  for (int r = 0; r < kRegs; ++r) acc[r] = V::zero();
  i64 i = 0;
  for (; i + kLanes <= dim; i += kLanes) {
#pragma GCC unroll 8
    for (int r = 0; r < kRegs; ++r) step<L2>(V::load(q + i + r * L), load_value(v + i + r * L), acc[r]);
  }
  if (i < dim) {  // zero-padded last block
    float qt[kLanes] = {};
    T vt[kLanes] = {};
    for (i64 j = i; j < dim; ++j) {
      qt[j - i] = q[j];
      vt[j - i] = v[j];
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRegs; ++r) step<L2>(V::load(qt + r * L), load_value(vt + r * L), acc[r]);
  }
  return reduce_tree(acc);
}

// Two stored vectors against one query, their loads interleaved (twice the memory-level parallelism of two
// calls); each vector keeps its own 32 lanes, so both results equal distance()'s bit for bit.
template <bool L2, class T>
static void distance2(const float* q, const T* v0, const T* v1, i64 dim, float* out) {
  constexpr int L = V::lanes;
  using reg = typename V::reg;
  reg a0[kRegs], a1[kRegs];
#pragma GCC unroll 8
  for (int r = 0; r < kRegs; ++r) a0[r] = a1[r] = V::zero();
  i64 i = 0;
  for (; i + kLanes <= dim; i += kLanes) {
#pragma GCC unroll 8
    for (int r = 0; r < kRegs; ++r) {
      const reg qr = V::load(q + i + r * L);
      step<L2>(qr, load_value(v0 + i + r * L), a0[r]);
      step<L2>(qr, load_value(v1 + i + r * L), a1[r]);
    }
  }
  if (i < dim) {
    float qt[kLanes] = {};
    T t0[kLanes] = {}, t1[kLanes] = {};
    for (i64 j = i; j < dim; ++j) {
      qt[j - i] = q[j];
      t0[j - i] = v0[j];
      t1[j - i] = v1[j];
    }
#pragma GCC unroll 8
    for (int r = 0; r < kRegs; ++r) {
      const reg qr = V::load(qt + r * L);
      step<L2>(qr, load_value(t0 + r * L), a0[r]);
      step<L2>(qr, load_value(t1 + r * L), a1[r]);
    }
  }
  out[0] = reduce_tree(a0);
  out[1] = reduce_tree(a1);
}

static float l2_f32(const float* q, const float* v, i64 dim) { return distance<true>(q, v, dim); }
static void l2_f32_x2(const float* q, const float* v0, const float* v1, i64 dim, float* out) {
  distance2<true>(q, v0, v1, dim, out);
}
static void ip_f32_x2(const float* q, const float* v0, const float* v1, i64 dim, float* out) {
  distance2<false>(q, v0, v1, dim, out);
}
static void l2_f16_x2(const float* q, const std::uint16_t* v0, const std::uint16_t* v1, i64 dim, float* out) {
  distance2<true>(q, v0, v1, dim, out);
}
static void ip_f16_x2(const float* q, const std::uint16_t* v0, const std::uint16_t* v1, i64 dim, float* out) {
  distance2<false>(q, v0, v1, dim, out);
}
static float ip_f32(const float* q, const float* v, i64 dim) { return distance<false>(q, v, dim); }
static float l2_f16(const float* q, const std::uint16_t* v, i64 dim) { return distance<true>(q, v, dim); }
static float ip_f16(const float* q, const std::uint16_t* v, i64 dim) { return distance<false>(q, v, dim); }

}  // namespace hnsw_detail
