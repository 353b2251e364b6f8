// Vector primitives of the neon level, shared by this folder's kernel files. Included inside
// `namespace simkern::neon { namespace { ... } }` (internal linkage: see common.hpp), after arm_neon.h.
// Register-tile shapes (query_regs, acc_budget, doc_tile) belong to the MaxSim body; PQ uses the plain ops.
#pragma once

struct V {
  using reg = float32x4_t;
  static constexpr int lanes = 4;
  static constexpr int query_regs = 4;
  static constexpr int max_query_regs = 4;
  static constexpr int acc_budget = 24;
  static constexpr int doc_tile = 24;
  static constexpr bool half_groups = false;  // MaxSim half query groups: 8-lane registers only so far
  static inline reg zero() { return vdupq_n_f32(0.0f); }
  static inline reg set1(float x) { return vdupq_n_f32(x); }
  static inline reg load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, reg v) { vst1q_f32(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static inline reg fnma(reg a, reg b, reg c) { return vfmsq_f32(c, a, b); }  // c - a * b, fused
  static inline reg add(reg a, reg b) { return vaddq_f32(a, b); }
  static inline reg sub(reg a, reg b) { return vsubq_f32(a, b); }
  static inline reg mul(reg a, reg b) { return vmulq_f32(a, b); }
  static inline reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  static inline reg min(reg a, reg b) { return vminq_f32(a, b); }
  // Truncate each lane to an integer and store it as a byte (lanes hold 0..255): 4 bytes.
  static inline void store_trunc_u8(reg v, std::uint8_t* p) {
    const uint16x4_t h = vmovn_u32(vcvtq_u32_f32(v));  // FCVTZU: toward zero
    std::uint8_t bytes[8];
    vst1_u8(bytes, vmovn_u16(vcombine_u16(h, h)));
    __builtin_memcpy(p, bytes, 4);
  }
  static constexpr bool has_transpose = false;  // tile transposes: AVX2 only so far
  static inline void transpose(const float*, i64, float*, i64) {}
  static inline reg lane_index() {
    static const float ids[4] = {0, 1, 2, 3};
    return vld1q_f32(ids);
  }
  // best, best_id = d, id in the lanes where d < best (strictly: the earlier id stays on ties and NaN).
  static inline void keep_smaller(reg d, reg id, reg& best, reg& best_id) {
    const uint32x4_t less = vcltq_f32(d, best);
    best = vbslq_f32(less, d, best);
    best_id = vbslq_f32(less, id, best_id);
  }
  static inline bool any_nan(reg v) { return vmaxvq_u32(vmvnq_u32(vceqq_f32(v, v))) != 0; }
  static inline void prefetch(const char* p) { __builtin_prefetch(p, 0, 2); }
  // Sum of the lanes as a tree: lane j + lane j + 2, then j + 1 (the pairing hnsw-inl.hpp relies on).
  static inline float hsum_tree(reg v) {
    const float32x2_t h = vadd_f32(vget_low_f32(v), vget_high_f32(v));
    return vget_lane_f32(h, 0) + vget_lane_f32(h, 1);
  }
  static inline reg load_f16(const std::uint16_t* p) { return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p))); }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    vst1q_f32(dst, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    vst1q_f32(dst, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src), 16)));
  }
};

// float64 lanes (the FWHT passes run on V for float32 and on VD for float64).
struct VD {
  using reg = float64x2_t;
  static constexpr int lanes = 2;
  static inline reg load(const double* p) { return vld1q_f64(p); }
  static inline void store(double* p, reg v) { vst1q_f64(p, v); }
  static inline reg add(reg a, reg b) { return vaddq_f64(a, b); }
  static inline reg sub(reg a, reg b) { return vsubq_f64(a, b); }
  static inline reg zero() { return vdupq_n_f64(0.0); }
  static inline reg set1(double x) { return vdupq_n_f64(x); }
  static inline reg fma(reg a, reg b, reg c) { return vfmaq_f64(c, a, b); }
};
