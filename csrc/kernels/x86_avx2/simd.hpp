// Vector primitives of the avx2 level, shared by this folder's kernel files. Included inside
// `namespace simkern::avx2 { namespace { ... } }` (internal linkage: see common.hpp), after immintrin.h.
// Register-tile shapes (query_regs, acc_budget, doc_tile) belong to the MaxSim body; PQ uses the plain ops.
#pragma once

struct V {
  using reg = __m256;
  static constexpr int lanes = 8;
  static constexpr int query_regs = 2;
  static constexpr int max_query_regs = 3;
  static constexpr int acc_budget = 12;
  static constexpr int doc_tile = 12;
  // MaxSim half query groups (generic/maxsim-inl.hpp, FloatOps::tile_half): a last group of <= 4 tokens holds them
  // twice, and one FMA scores them against two doc rows at once: [d_t[k] x 4 | d_t+1[k] x 4] = blend_halves.
  static constexpr bool half_groups = true;
  static inline reg blend_halves(reg lo, reg hi) { return _mm256_blend_ps(lo, hi, 0xF0); }
  static inline reg zero() { return _mm256_setzero_ps(); }
  static inline reg set1(float x) { return _mm256_set1_ps(x); }
  static inline reg load(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
  static inline reg fnma(reg a, reg b, reg c) { return _mm256_fnmadd_ps(a, b, c); }  // c - a * b, fused
  static inline reg add(reg a, reg b) { return _mm256_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm256_mul_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm256_max_ps(a, b); }
  static inline reg min(reg a, reg b) { return _mm256_min_ps(a, b); }
  // Truncate each lane to int32 and store it as a byte (lanes hold 0..255): 8 bytes.
  static inline void store_trunc_u8(reg v, std::uint8_t* p) {
    const __m256i i32 = _mm256_cvttps_epi32(v);
    const __m128i i16 = _mm_packus_epi32(_mm256_castsi256_si128(i32), _mm256_extracti128_si256(i32, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(p), _mm_packus_epi16(i16, i16));
  }
  static inline reg lane_index() { return _mm256_setr_ps(0, 1, 2, 3, 4, 5, 6, 7); }
  // 8 x 8 tile transpose: dst row c (dst + c * dst_stride) = column c of the src rows (src + r * src_stride).
  static constexpr bool has_transpose = true;
  __attribute__((always_inline)) static inline void transpose(const float* src, i64 src_stride, float* dst,
                                                              i64 dst_stride) {
    __m256 r[8], t[8], u[8];
    for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + k * src_stride);
    for (int k = 0; k < 8; k += 2) {
      t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
      t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
      u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
      u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
      u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
      u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int k = 0; k < 4; ++k) {
      _mm256_storeu_ps(dst + k * dst_stride, _mm256_permute2f128_ps(u[k], u[k + 4], 0x20));
      _mm256_storeu_ps(dst + (k + 4) * dst_stride, _mm256_permute2f128_ps(u[k], u[k + 4], 0x31));
    }
  }
  // best, best_id = d, id in the lanes where d < best (strictly: the earlier id stays on ties and NaN).
  static inline void keep_smaller(reg d, reg id, reg& best, reg& best_id) {
    const reg less = _mm256_cmp_ps(d, best, _CMP_LT_OQ);
    best = _mm256_min_ps(d, best);  // MINPS returns the second operand unless d < best
    best_id = _mm256_blendv_ps(best_id, id, less);
  }
  static inline bool any_nan(reg v) { return _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q)) != 0; }
  static inline void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
  // Sum of the lanes as a tree: lane j + lane j + 4, then j + 2, then j + 1 (the pairing hnsw-inl.hpp relies on).
  static inline float hsum_tree(reg v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_shuffle_ps(x, x, 1));
    return _mm_cvtss_f32(x);
  }
  static inline reg load_f16(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    _mm256_storeu_ps(dst, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
    _mm256_storeu_ps(dst, _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16)));
  }
};

// float64 lanes (the FWHT passes run on V for float32 and on VD for float64).
struct VD {
  using reg = __m256d;
  static constexpr int lanes = 4;
  static inline reg load(const double* p) { return _mm256_loadu_pd(p); }
  static inline void store(double* p, reg v) { _mm256_storeu_pd(p, v); }
  static inline reg add(reg a, reg b) { return _mm256_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm256_sub_pd(a, b); }
  static inline reg zero() { return _mm256_setzero_pd(); }
  static inline reg set1(double x) { return _mm256_set1_pd(x); }
  static inline reg fma(reg a, reg b, reg c) { return _mm256_fmadd_pd(a, b, c); }
};
