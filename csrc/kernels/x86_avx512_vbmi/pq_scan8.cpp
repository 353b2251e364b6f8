// 8-bit PQ scan with AVX-512 VBMI byte permutes (compiled with the avx512 flags + -mavx512vbmi; installed over the
// avx512 level's scan8 when the CPU has VBMI, see dispatch.cpp).
//
// Layout (simkern/pq.hpp): blocks of 64 vectors; block b = m rows of 64 bytes, row s = the subspace-s codes of the
// block's vectors. Per query the uint8 table of subspace s (256 entries) is four zmm registers t0..t3; for one row
// of 64 codes, vpermi2b(t0, codes, t1) looks up every code's low 7 bits in entries 0-127 and vpermi2b(t2, codes,
// t3) in entries 128-255; the code's top bit (vpmovb2m) picks between the two. The 64 looked-up bytes are added
// as 32 uint16 lanes (even byte + 256 * odd byte) and, shifted, as the odd bytes alone (FAISS's odd/even trick, as
// in the 4-bit scan), so no unpacking is needed; sums stay exact below 2^16 (m <= 257). Up to kScanQueries
// queries share each load of codes. After a block, each query's 64 sums are compared with its threshold in mask
// registers; only a block holding a sum at or below it is written out in vector order for the callback.
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512_vbmi {
namespace {

#include "generic/scan-passes-inl.hpp"

template <int NQ>
void scan8_pass(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs, int q0) {
  const std::uint8_t* luts[NQ];
  for (int j = 0; j < NQ; ++j) luts[j] = qs.luts + (q0 + j) * qs.lut_stride;
  for (i64 b = block_begin; b < block_end; ++b) {
    __m512i total[NQ], odd[NQ];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) total[j] = odd[j] = _mm512_setzero_si512();
    const std::uint8_t* block = blocks + b * m * 64;
    for (i64 s = 0; s < m; ++s) {
      const __m512i codes = _mm512_loadu_si512(block + s * 64);
      const __mmask64 high = _mm512_movepi8_mask(codes);  // code >= 128
#pragma GCC unroll 4  // accumulators must stay in registers
      for (int j = 0; j < NQ; ++j) {
        const std::uint8_t* t = luts[j] + s * 256;
        const __m512i lo = _mm512_permutex2var_epi8(_mm512_loadu_si512(t), codes, _mm512_loadu_si512(t + 64));
        const __m512i hi = _mm512_permutex2var_epi8(_mm512_loadu_si512(t + 128), codes, _mm512_loadu_si512(t + 192));
        const __m512i v = _mm512_mask_blend_epi8(high, lo, hi);
        total[j] = _mm512_add_epi16(total[j], v);  // wraps mod 2^16 per lane: fine
        odd[j] = _mm512_add_epi16(odd[j], _mm512_srli_epi16(v, 8));
      }
    }
    for (int j = 0; j < NQ; ++j) {
      const __m512i even = _mm512_sub_epi16(total[j], _mm512_slli_epi16(odd[j], 8));  // vectors 0, 2, 4, ...
      const std::uint16_t threshold = qs.thresholds[q0 + j];
      const __m512i thr = _mm512_set1_epi16(static_cast<short>(threshold));
      const __mmask32 le_even = _mm512_cmple_epu16_mask(even, thr), le_odd = _mm512_cmple_epu16_mask(odd[j], thr);
      if ((le_even | le_odd) == 0) continue;
      alignas(64) std::uint16_t e[32], o[32];
      _mm512_store_si512(e, even);
      _mm512_store_si512(o, odd[j]);
      std::uint16_t sums[64];
      for (int i = 0; i < 32; ++i) {
        sums[2 * i] = e[i];
        sums[2 * i + 1] = o[i];
      }
      report_sums(qs, q0 + j, b * 64, sums, 64);
    }
  }
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
