// PQ, neon path: distances / dot products to all centroids of a subspace, lanes over centroids
// (generic/pq-inl.hpp); bit-identical to the scalar path (no FMA, -ffp-contract=off). The 4-bit fast scan uses
// vqtbl1q_u8 16-entry lookups (below).
#include <arm_neon.h>

#include <cstdint>
#include <type_traits>
#include <limits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
#include "generic/pq-inl.hpp"
#include "generic/scan-passes-inl.hpp"

// 4-bit fast scan (layout in simkern/pq.hpp): per block of 32 vectors and subspace pair, two 16-byte code
// registers; per query two vqtbl1q_u8 lookups per register (low nibble: even subspace, high nibble: odd), added
// bytewise (entries <= kScan4Levels = 127, so a pair's sum fits a byte), then widened into uint16 sums kept in
// vector order (vaddw_u8 / vaddw_high_u8: no odd/even trick needed). After the block each query's 32 sums are
// compared with its threshold; only a block holding a sum at or below it goes to the callback.
template <int NQ>
void scan4_pass(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs,
                int q0) {
  const uint8x16_t low_nibbles = vdupq_n_u8(0x0F);
  const std::uint8_t* luts[NQ];
  for (int j = 0; j < NQ; ++j) luts[j] = qs.luts + (q0 + j) * qs.lut_stride;
  for (i64 b = block_begin; b < block_end; ++b) {
    uint16x8_t acc[NQ][4];
    for (int j = 0; j < NQ; ++j)
      for (int a = 0; a < 4; ++a) acc[j][a] = vdupq_n_u16(0);
    const std::uint8_t* block = blocks + b * n_pairs * 32;
    for (i64 p = 0; p < n_pairs; ++p) {
      const uint8x16_t c0 = vld1q_u8(block + p * 32), c1 = vld1q_u8(block + p * 32 + 16);
      const uint8x16_t lo0 = vandq_u8(c0, low_nibbles), hi0 = vshrq_n_u8(c0, 4);
      const uint8x16_t lo1 = vandq_u8(c1, low_nibbles), hi1 = vshrq_n_u8(c1, 4);
      for (int j = 0; j < NQ; ++j) {
        const uint8x16_t lut_even = vld1q_u8(luts[j] + 32 * p), lut_odd = vld1q_u8(luts[j] + 32 * p + 16);
        const uint8x16_t v0 = vaddq_u8(vqtbl1q_u8(lut_even, lo0), vqtbl1q_u8(lut_odd, hi0));
        const uint8x16_t v1 = vaddq_u8(vqtbl1q_u8(lut_even, lo1), vqtbl1q_u8(lut_odd, hi1));
        acc[j][0] = vaddw_u8(acc[j][0], vget_low_u8(v0));
        acc[j][1] = vaddw_high_u8(acc[j][1], v0);
        acc[j][2] = vaddw_u8(acc[j][2], vget_low_u8(v1));
        acc[j][3] = vaddw_high_u8(acc[j][3], v1);
      }
    }
    for (int j = 0; j < NQ; ++j) {
      const std::uint16_t threshold = qs.thresholds[q0 + j];
      const uint16x8_t thr = vdupq_n_u16(threshold);
      uint16x8_t any = vcleq_u16(acc[j][0], thr);
      for (int a = 1; a < 4; ++a) any = vorrq_u16(any, vcleq_u16(acc[j][a], thr));
      if (vmaxvq_u16(any) == 0) continue;
      std::uint16_t sums[32];
      for (int a = 0; a < 4; ++a) vst1q_u16(sums + 8 * a, acc[j][a]);
      report_sums(qs, q0 + j, b * 32, sums, 32);
    }
  }
}

void scan4_neon(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs) {
  for_each_query_pass(qs.count, [&](auto count, int q0) {
    scan4_pass<decltype(count)::value>(blocks, block_begin, block_end, n_pairs, qs, q0);
  });
}

}  // namespace

void fill_pq(PQKernels* out) {
  out->name = "pq_neon";
  pq_detail::fill_float_kernels(out);
  out->scan8 = scalar::scan8;  // tbl instructions index at most 64 bytes: a 256-entry NEON lookup is not written
  out->scan8_name = "scan8_scalar";
  out->scan4 = scan4_neon;
  out->scan4_name = "scan4_neon";
}

}  // namespace neon
}  // namespace simkern
