// MaxSim, aarch64 Advanced SIMD (NEON) path; armv8-a baseline, no extra flags. The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 24 accumulators: 4 q-registers of query tokens (16 tokens, 4 per register) x 6 doc tokens,
// plus 4 query loads and 1 broadcast (29 of the 32 vector registers; per coordinate k: 4 loads, 6 broadcasts,
// 24 FMAs); the last block of a stack may be 3 x 8, 2 x 12 or 1 x 24. f16 docs are widened with fcvtl, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
// Tested under qemu-aarch64 by tools/cross_check (no aarch64 machine in CI).
#include <arm_neon.h>

#include <cstdint>
#include <limits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

struct V {
  using reg = float32x4_t;
  static constexpr int lanes = 4;
  static constexpr int query_regs = 4;
  static constexpr int max_query_regs = 4;
  static constexpr int acc_budget = 24;
  static constexpr int doc_tile = 24;
  static inline reg zero() { return vdupq_n_f32(0.0f); }
  static inline reg set1(float x) { return vdupq_n_f32(x); }
  static inline reg load(const float* p) { return vld1q_f32(p); }
  static inline void store(float* p, reg v) { vst1q_f32(p, v); }
  static inline reg fma(reg a, reg b, reg c) { return vfmaq_f32(c, a, b); }
  static inline reg max(reg a, reg b) { return vmaxq_f32(a, b); }
  static inline bool any_nan(reg v) { return vmaxvq_u32(vmvnq_u32(vceqq_f32(v, v))) != 0; }
  static inline void prefetch(const char* p) { __builtin_prefetch(p, 0, 2); }
  static inline void widen_f16(const std::uint16_t* src, float* dst) {
    vst1q_f32(dst, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src))));
  }
  static inline void widen_bf16(const std::uint16_t* src, float* dst) {
    vst1q_f32(dst, vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(src), 16)));
  }
};

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_neon", "maxsim_f16_neon", "maxsim_bf16_neon"};
  fill_float_kernels<V>(out, names);
}

}  // namespace neon
}  // namespace simkern
