// MaxSim for bfloat16 docs with AVX512-BF16 dot products (compiled with the avx512 flags + -mavx512bf16).
//
// vdpbf16ps acc, a, b adds a[2l]*b[2l] + a[2l+1]*b[2l+1] to float lane l. Queries are rounded to bf16
// (nearest even) and packed per group as [k/2][lane][2] (dim padded to even with a zero); a doc token's pair
// of coordinates (d[k], d[k+1]) is one 32-bit broadcast straight from the flat bf16 buffer (no widening).
// Register tiles of 24 accumulators (2 zmm x 12 doc tokens; the last block may be 3 x 8 or 1 x 24, or a half
// group, see Ops); each
// vdpbf16ps does 32 multiply-adds, twice the float32 FMA rate. Precision: the query rounding costs up to 2^-8 relative per product (see maxsim.hpp);
// the kernel name ends in "_dpbf16" so tests and show_runtime() can tell this variant apart.
#include <immintrin.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512_bf16 {
namespace {

#include "x86_avx512/simd.hpp"
#include "generic/maxsim-inl.hpp"

// The dot-product operations of one register width (W512: zmm, 16 lanes; W256: ymm with AVX512-BF16 + VL, 8 lanes;
// the float ones come from FloatOps): the same per-lane vdpbf16ps sequence, so both widths give the same bits.
struct W512 {
  using ivec = __m512i;
  using bh = __m512bh;
  static inline bh load_bh(const std::uint16_t* p) { return (__m512bh)_mm512_loadu_si512(p); }
  static inline ivec set1_i(std::uint32_t x) { return _mm512_set1_epi32(static_cast<int>(x)); }
  static inline __m512 dp(__m512 acc, bh a, ivec b) { return _mm512_dpbf16_ps(acc, a, (__m512bh)b); }
  static inline ivec blend_halves(ivec lo, ivec hi) { return _mm512_mask_blend_epi32(0xFF00, lo, hi); }
};

#if !defined(SIMKERN_TEST_EMULATE_AVX512)  // tools/cross_check's intrinsic emulation has no 256-bit ops
struct W256 {
  using ivec = __m256i;
  using bh = __m256bh;
  static inline bh load_bh(const std::uint16_t* p) {
    return (__m256bh)_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  }
  static inline ivec set1_i(std::uint32_t x) { return _mm256_set1_epi32(static_cast<int>(x)); }
  static inline __m256 dp(__m256 acc, bh a, ivec b) { return _mm256_dpbf16_ps(acc, a, (__m256bh)b); }
  static inline ivec blend_halves(ivec lo, ivec hi) { return _mm256_blend_epi32(lo, hi, 0xF0); }
};

// Shapes and float helpers of the ymm twin: the avx2 level's primitives (x86_avx2/simd.hpp), in a namespace of
// their own beside the avx512 ones.
namespace ymm {
#include "x86_avx2/simd.hpp"
}  // namespace ymm
#endif

// Shapes and vector helpers (zero, prefetch, -inf fill, NaN check) come from the float operations of the width;
// only the element types, the tile and the doc-row access differ.
template <class VV, class W>
struct DpOps : FloatOps<VV> {
  using Base = FloatOps<VV>;
  using reg = typename Base::reg;
  using Base::lanes;
  using Base::prefetch;
  using QElem = std::uint16_t;
  using TileElem = std::uint16_t;
  // Half query groups (detail::rows_per_block): a last group of <= lanes / 2 tokens is packed twice (lower and
  // upper half) and one vdpbf16ps scores it against two doc rows ([pair of d_t | pair of d_t+1]): a 22-token
  // query costs 16 + 8 lanes instead of 32 on zmm. Rows per half tile: FloatOps::half_rows.
  static constexpr bool half_groups = true;

  // Coordinates (2*k2, 2*k2 + 1) of a doc row as one 32-bit pattern; the odd tail pairs with +0.
  static inline std::uint32_t doc_pair(const std::uint16_t* row, i64 k2, i64 dim) {
    if (2 * k2 + 1 < dim) {
      std::uint32_t pair;
      std::memcpy(&pair, row + 2 * k2, sizeof pair);
      return pair;
    }
    return row[2 * k2];
  }

  template <int QR, int ND, class DimT = i64>
  static inline void tile(const std::uint16_t* q, i64 group_elems, const std::uint16_t* d, DimT dim, float* rmax,
                          reg& chk, const PrefetchRows& pf) {
    static_assert(ND <= detail::kMaxTileRows, "raise the row loops' unroll counts with kMaxTileRows");
    reg acc[ND][QR];
    Base::zero_all(acc);
    const i64 n_pairs = (dim + 1) / 2;
    const i64 pf_step = 2 * ND * pf.elem_bytes;  // two coordinates per step
    for (i64 k2 = 0; k2 < n_pairs; ++k2) {
      if (pf.base) {  // two lines per step past 16 rows (maxsim-inl.hpp, before kPrefetchAheadRows)
        prefetch(pf.base + k2 * pf_step);
        if constexpr (ND > 16) prefetch(pf.base + k2 * pf_step + 64);
      }
      typename W::bh qv[QR];
#pragma GCC unroll 4
      for (int r = 0; r < QR; ++r) qv[r] = W::load_bh(q + r * group_elems + k2 * 2 * lanes);
#pragma GCC unroll 24
      for (int t = 0; t < ND; ++t) {
        const typename W::ivec b = W::set1_i(doc_pair(d + t * dim, k2, dim));
#pragma GCC unroll 4
        for (int r = 0; r < QR; ++r) acc[t][r] = W::dp(acc[t][r], qv[r], b);
      }
    }
    Base::template fold<QR, ND>(acc, rmax, chk);
  }

  template <int QM, int ND, class DimT = i64>
  static inline void tile_half(const std::uint16_t* q, i64 group_elems, const std::uint16_t* d, DimT dim, float* rmax,
                               reg& chk, const PrefetchRows& pf) {
    static_assert(ND <= detail::kMaxTileRows, "raise the row loops' unroll counts with kMaxTileRows");
    constexpr int NH = (ND + 1) / 2;
    constexpr int QA = QM > 0 ? QM : 1;
    reg acc[ND][QA], acch[NH][1];
    Base::zero_all(acc);
    Base::zero_all(acch);
    const i64 n_pairs = (dim + 1) / 2;
    const i64 pf_step = 2 * ND * pf.elem_bytes;  // two coordinates per step
    const std::uint16_t* qh_base = q + QM * group_elems;
    for (i64 k2 = 0; k2 < n_pairs; ++k2) {
      if (pf.base) {  // two lines per step past 16 rows (maxsim-inl.hpp, before kPrefetchAheadRows)
        prefetch(pf.base + k2 * pf_step);
        if constexpr (ND > 16) prefetch(pf.base + k2 * pf_step + 64);
      }
      typename W::bh qv[QA];
#pragma GCC unroll 4
      for (int r = 0; r < QM; ++r) qv[r] = W::load_bh(q + r * group_elems + k2 * 2 * lanes);
      const typename W::bh qh = W::load_bh(qh_base + k2 * 2 * lanes);
#pragma GCC unroll 24
      for (int t = 0; t < ND; t += 2) {
        const typename W::ivec b0 = W::set1_i(doc_pair(d + t * dim, k2, dim));
        const typename W::ivec b1 = t + 1 < ND ? W::set1_i(doc_pair(d + (t + 1) * dim, k2, dim)) : b0;
#pragma GCC unroll 4
        for (int r = 0; r < QM; ++r) {
          acc[t][r] = W::dp(acc[t][r], qv[r], b0);
          if (t + 1 < ND) acc[t + 1][r] = W::dp(acc[t + 1][r], qv[r], b1);
        }
        acch[t / 2][0] = W::dp(acch[t / 2][0], qh, W::blend_halves(b0, b1));
      }
    }
    Base::template fold<QM, ND>(acc, rmax, chk);
    Base::template fold<1, NH>(acch, rmax + QM * lanes, chk);
  }

  template <DocDType DT>
  static inline const std::uint16_t* prepare(const void* tokens, i64 row, int nd, i64 dim, float*) {
    static_assert(DT == DocDType::bf16, "the dpbf16 kernel scores bf16 docs only");
    return static_cast<const std::uint16_t*>(tokens) + row * dim;
  }
};

template <class Ops>
i64 group_elems(i64 dim) {
  return ((dim + 1) / 2) * 2 * Ops::lanes;
}

template <class Ops>
void pack(const float* q_tokens, i64 n_tokens, i64 dim, void* dst) {
  std::uint16_t* out = static_cast<std::uint16_t*>(dst);
  const i64 n_groups = (n_tokens + Ops::lanes - 1) / Ops::lanes;
  const i64 n_pairs = (dim + 1) / 2;
  const bool dup_last = n_tokens - (n_groups - 1) * Ops::lanes <= Ops::lanes / 2;  // a half group (see Ops)
  for (i64 g = 0; g < n_groups; ++g)
    for (i64 k2 = 0; k2 < n_pairs; ++k2)
      for (int l = 0; l < Ops::lanes; ++l)
        for (int h = 0; h < 2; ++h) {
          const bool dup = dup_last && g == n_groups - 1 && l >= Ops::lanes / 2;
          const i64 token = g * Ops::lanes + (dup ? l - Ops::lanes / 2 : l), k = 2 * k2 + h;
          const float v = token < n_tokens && k < dim ? q_tokens[token * dim + k] : 0.0f;
          out[((g * n_pairs + k2) * Ops::lanes + l) * 2 + h] = float_to_bf16_rne(v);
        }
}

template <class Ops>
i64 scratch_floats(i64 dim, i64 n_groups) {
  return n_groups * Ops::lanes;
}

using Ops = DpOps<V, W512>;
#if !defined(SIMKERN_TEST_EMULATE_AVX512)
// AVX-512VL gives 32 ymm registers: tiles of 24 accumulators as on zmm (~3-5 % faster than avx2's 12 for a
// 16-token query here, within this VM's noise).
struct YmmV : ymm::V {
  static constexpr int acc_budget = 24;
  static constexpr int doc_tile = 24;
};
using Ops256 = DpOps<YmmV, W256>;
#endif

template <class O>
void fill(MaxSimKernel* out, const char* name) {
  out->name = name;
  out->lanes = O::lanes;
  out->packs_bf16 = true;
  out->group_elems = group_elems<O>;
  out->pack = pack<O>;
  out->scratch_floats = scratch_floats<O>;
  out->score = detail::score<O, DocDType::bf16>;
  out->half_groups = O::half_groups;
}

}  // namespace

void fill_maxsim_bf16(MaxSimKernel* out) { fill<Ops>(out, "maxsim_bf16_avx512_dpbf16"); }

void fill_maxsim_bf16_256(MaxSimKernel* out) {
#if !defined(SIMKERN_TEST_EMULATE_AVX512)
  fill<Ops256>(out, "maxsim_bf16_avx512vl_dpbf16");
#else
  fill<Ops>(out, "maxsim_bf16_avx512_dpbf16");
#endif
}

}  // namespace avx512_bf16
}  // namespace simkern
