// 8-bit PQ scan with AVX-512 VBMI byte permutes (compiled with the avx512 flags + -mavx512vbmi; installed over the
// avx512 level's scan8 when the CPU has VBMI, see dispatch.cpp).
//
// Layout (simkern/pq.hpp): blocks of 64 vectors; block b = m rows of 64 bytes, row s = the subspace-s codes of the
// block's vectors. Per query the uint8 table of subspace s (256 entries) is four zmm registers t0..t3; for one row
// of 64 codes, vpermi2b(t0, codes, t1) looks up every code's low 7 bits in entries 0-127 and vpermi2b(t2, codes,
// t3) in entries 128-255; the code's top bit (vpmovb2m) picks between the two. The 64 looked-up bytes are added
// as 32 uint16 lanes (even byte + 256 * odd byte) and, shifted, as the odd bytes alone (FAISS's odd/even trick, as
// in the 4-bit scan), so no unpacking is needed; sums stay exact below 2^16 (m <= 257). Up to kScanQueries
// queries share each load of codes, and 2-4 blocks each load of a table (scan8_blocks). After a block, each query's 64 sums are compared with its threshold in mask
// registers; only a block holding a sum at or below it is written out in vector order for the callback.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512_vbmi {
namespace {

#include "generic/scan-passes-inl.hpp"

// G consecutive blocks x NQ queries at a time: each query's four table registers are loaded once per row s for the G
// blocks (not once per block), and each row of codes once for the NQ queries. On Zen 4 the one-block loop was bound
// by those loads (4 + 1/NQ zmm loads per row and query, one zmm load per cycle), worst at M = 48 whose 48 KB of
// tables per query do not stay in L1. Accumulators: 2 x G x NQ zmm (16), plus G code rows and 4 table registers.
template <int NQ, int G>
inline void scan8_blocks(const std::uint8_t* blocks, i64 b, i64 m, const std::uint8_t* const* luts,
                         const ScanQueries& qs, int q0) {
  __m512i total[G][NQ], odd[G][NQ];
#pragma GCC unroll 4
  for (int g = 0; g < G; ++g)
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) total[g][j] = odd[g][j] = _mm512_setzero_si512();
  const std::uint8_t* block[G];
  for (int g = 0; g < G; ++g) block[g] = blocks + (b + g) * m * 64;
  for (i64 s = 0; s < m; ++s) {
    __m512i codes[G];
    __mmask64 high[G];
#pragma GCC unroll 4
    for (int g = 0; g < G; ++g) {
      codes[g] = _mm512_loadu_si512(block[g] + s * 64);
      high[g] = _mm512_movepi8_mask(codes[g]);  // code >= 128
    }
#pragma GCC unroll 4  // accumulators must stay in registers
    for (int j = 0; j < NQ; ++j) {
      const std::uint8_t* t = luts[j] + s * 256;
      const __m512i t0 = _mm512_loadu_si512(t), t1 = _mm512_loadu_si512(t + 64);
      const __m512i t2 = _mm512_loadu_si512(t + 128), t3 = _mm512_loadu_si512(t + 192);
#pragma GCC unroll 4
      for (int g = 0; g < G; ++g) {
        const __m512i lo = _mm512_permutex2var_epi8(t0, codes[g], t1);
        const __m512i hi = _mm512_permutex2var_epi8(t2, codes[g], t3);
        const __m512i v = _mm512_mask_blend_epi8(high[g], lo, hi);
        total[g][j] = _mm512_add_epi16(total[g][j], v);  // wraps mod 2^16 per lane: fine
        odd[g][j] = _mm512_add_epi16(odd[g][j], _mm512_srli_epi16(v, 8));
      }
    }
  }
  for (int g = 0; g < G; ++g)
    for (int j = 0; j < NQ; ++j) {
      const __m512i even = _mm512_sub_epi16(total[g][j], _mm512_slli_epi16(odd[g][j], 8));  // vectors 0, 2, 4, ...
      const std::uint16_t threshold = qs.thresholds[q0 + j];
      const __m512i thr = _mm512_set1_epi16(static_cast<short>(threshold));
      const __mmask32 le_even = _mm512_cmple_epu16_mask(even, thr), le_odd = _mm512_cmple_epu16_mask(odd[g][j], thr);
      if ((le_even | le_odd) == 0) continue;
      alignas(64) std::uint16_t e[32], o[32];
      _mm512_store_si512(e, even);
      _mm512_store_si512(o, odd[g][j]);
      std::uint16_t sums[64];
      for (int i = 0; i < 32; ++i) {
        sums[2 * i] = e[i];
        sums[2 * i + 1] = o[i];
      }
      report_sums(qs, q0 + j, (b + g) * 64, sums, 64);
    }
}

template <int NQ>
void scan8_pass(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs, int q0) {
  constexpr int G = NQ >= 3 ? 2 : 4;
  const std::uint8_t* luts[NQ];
  for (int j = 0; j < NQ; ++j) luts[j] = qs.luts + (q0 + j) * qs.lut_stride;
  i64 b = block_begin;
  for (; b + G <= block_end; b += G) scan8_blocks<NQ, G>(blocks, b, m, luts, qs, q0);
  for (; b < block_end; ++b) scan8_blocks<NQ, 1>(blocks, b, m, luts, qs, q0);
}

void scan8_vbmi(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs) {
  for_each_query_pass(qs.count, [&](auto count, int q0) {
    scan8_pass<decltype(count)::value>(blocks, block_begin, block_end, m, qs, q0);
  });
}

}  // namespace

void fill_pq_scan8(PQKernels* out) {
  out->scan8 = scan8_vbmi;
  out->scan8_name = "scan8_vbmi";
}

}  // namespace avx512_vbmi
}  // namespace simkern
