// Vector primitives of the avx512 level, shared by this folder's kernel files. Included inside
// `namespace simkern::avx512 { namespace { ... } }` (internal linkage: see common.hpp), after immintrin.h.
// Register-tile shapes (query_regs, acc_budget, doc_tile) belong to the MaxSim body; PQ uses the plain ops.
#pragma once

// GCC 12's _mm512_undefined_ps() (used inside _mm512_max_ps) self-initialises a variable, which -Wuninitialized
// reports at every use; the value is never read (the mask is all ones). Silenced for the files that include this.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

struct V {
  using reg = __m512;
  static constexpr int lanes = 16;
  static constexpr int query_regs = 2;
  static constexpr int max_query_regs = 3;
  static constexpr int acc_budget = 24;
  static constexpr int doc_tile = 24;
  static constexpr bool half_groups = false;  // MaxSim half query groups: 8-lane registers only so far
  static inline reg zero() { return _mm512_setzero_ps(); }
  static inline reg set1(float x) { return _mm512_set1_ps(x); }
  static inline reg load(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
  static inline reg fnma(reg a, reg b, reg c) { return _mm512_fnmadd_ps(a, b, c); }  // c - a * b, fused
  static inline reg add(reg a, reg b) { return _mm512_add_ps(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_ps(a, b); }
  static inline reg mul(reg a, reg b) { return _mm512_mul_ps(a, b); }
  static inline reg max(reg a, reg b) { return _mm512_max_ps(a, b); }
  static inline reg min(reg a, reg b) { return _mm512_min_ps(a, b); }
  // Truncate each lane to int32 and store its low byte (lanes hold 0..255): 16 bytes.
  static inline void store_trunc_u8(reg v, std::uint8_t* p) {
    _mm512_mask_cvtepi32_storeu_epi8(p, 0xFFFF, _mm512_cvttps_epi32(v));
  }
  static constexpr bool has_transpose = false;  // tile transposes: AVX2 only so far
  static inline void transpose(const float*, i64, float*, i64) {}
  static inline reg lane_index() { return _mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15); }
  // best, best_id = d, id in the lanes where d < best (strictly: the earlier id stays on ties and NaN).
  static inline void keep_smaller(reg d, reg id, reg& best, reg& best_id) {
    const __mmask16 less = _mm512_cmp_ps_mask(d, best, _CMP_LT_OQ);
    best = _mm512_min_ps(d, best);  // MINPS returns the second operand unless d < best
    best_id = _mm512_mask_blend_ps(less, best_id, id);
  }
  static inline bool any_nan(reg v) { return _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q) != 0; }
  static inline void prefetch(const char* p) { _mm_prefetch(p, _MM_HINT_T1); }
  // Sum of the lanes as a tree: lane j + lane j + 8, then j + 4, j + 2, j + 1 (the pairing hnsw-inl.hpp relies
  // on); every lane ends with the total, lane 0 is returned.
  static inline float hsum_tree(reg v) {
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0x4E));  // 128-bit blocks (2, 3, 0, 1)
    v = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, 0xB1));  // blocks (1, 0, 3, 2)
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0x4E));        // in each block: lanes (2, 3, 0, 1)
    v = _mm512_add_ps(v, _mm512_permute_ps(v, 0xB1));        // lanes (1, 0, 3, 2)
    return _mm512_cvtss_f32(v);
  }
  static inline reg load_f16(const std::uint16_t* p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    _mm512_storeu_ps(dst, _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    const __m512i wide = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(src)));
    _mm512_storeu_ps(dst, _mm512_castsi512_ps(_mm512_slli_epi32(wide, 16)));
  }
};

// float64 lanes (the FWHT passes run on V for float32 and on VD for float64).
struct VD {
  using reg = __m512d;
  static constexpr int lanes = 8;
  static inline reg load(const double* p) { return _mm512_loadu_pd(p); }
  static inline void store(double* p, reg v) { _mm512_storeu_pd(p, v); }
  static inline reg add(reg a, reg b) { return _mm512_add_pd(a, b); }
  static inline reg sub(reg a, reg b) { return _mm512_sub_pd(a, b); }
  static inline reg zero() { return _mm512_setzero_pd(); }
  static inline reg set1(double x) { return _mm512_set1_pd(x); }
  static inline reg fma(reg a, reg b, reg c) { return _mm512_fmadd_pd(a, b, c); }
};
