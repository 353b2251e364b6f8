// MaxSim, aarch64 Advanced SIMD (NEON) path; armv8-a baseline, no extra flags. The loop lives in
// generic/maxsim-inl.hpp; this file only supplies the vector primitives.
//
// Register tiles of 24 accumulators: 4 q-registers of query tokens (16 tokens, 4 per register) x 6 doc tokens,
// plus 4 query loads and 1 broadcast (29 of the 32 vector registers; per coordinate k: 4 loads, 6 broadcasts,
// 24 FMAs); the last block of a stack may be 3 x 8, 2 x 12 or 1 x 24. f16 docs are widened with fcvtl, bf16 docs with a 16-bit shift, into an L1 tile buffer (both exact).
// Tested under qemu-aarch64 by tools/cross_check (no aarch64 machine in CI).
#include <arm_neon.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"

#include "generic/maxsim-inl.hpp"

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_neon", "maxsim_f16_neon", "maxsim_bf16_neon"};
  fill_float_kernels<V>(out, names);
}

}  // namespace neon
}  // namespace simkern
