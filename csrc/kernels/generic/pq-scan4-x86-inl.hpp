// 4-bit fast scan with 256-bit vpshufb (AVX2; also compiled into the AVX-512 file, where it runs on ymm registers).
// Layout (simkern/pq.hpp, pq_search_quantised): per block of 32 vectors and subspace pair p, 32 bytes whose low
// nibbles are the codes of subspace 2p and high nibbles those of 2p + 1. Per pair: one 32-byte load of codes, two
// nibble masks (shared by the NQ queries of the pass), then per query two 16-entry table lookups with vpshufb (each
// table broadcast to both 128-bit lanes), added bytewise (entries <= kScan4Levels = 127) and accumulated in uint16
// without unpacking. After the block, each query's
// 32 sums are compared with its threshold in registers (unsigned min + equality); only a block holding a sum at or
// below the threshold is reordered to vector order and handed to the callback. Included inside the ISA namespace
// like generic/maxsim-inl.hpp.
#pragma once

#include "generic/scan-passes-inl.hpp"

template <int NQ>
static void scan4_pass(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs,
                       int q0) {
  // uint16 accumulation without unpacking (FAISS's odd/even trick): adding the 32 looked-up bytes as 16 uint16
  // lanes accumulates (even byte + 256 * odd byte); a second accumulator adds the odd bytes alone (v >> 8). At the
  // end, even sums = total - (odd sums << 8) modulo 2^16, exact because every sum is below 2^16.
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const std::uint8_t* luts[NQ];
  for (int j = 0; j < NQ; ++j) luts[j] = qs.luts + (q0 + j) * qs.lut_stride;
  for (i64 b = block_begin; b < block_end; ++b) {
    __m256i total[NQ], odd[NQ];
#pragma GCC unroll 4
    for (int j = 0; j < NQ; ++j) total[j] = odd[j] = _mm256_setzero_si256();
    const std::uint8_t* block = blocks + b * n_pairs * 32;
    for (i64 p = 0; p < n_pairs; ++p) {
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + p * 32));
      const __m256i lo = _mm256_and_si256(codes, low_nibbles);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_nibbles);
#pragma GCC unroll 4  // accumulators must stay in registers
      for (int j = 0; j < NQ; ++j) {
        const __m256i lut_even =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts[j] + 32 * p)));
        const __m256i lut_odd =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts[j] + 32 * p + 16)));
        // Entries <= 127: the pair's two lookups add in one byte (<= 254), then one uint16 add and one shift.
        const __m256i v = _mm256_add_epi8(_mm256_shuffle_epi8(lut_even, lo), _mm256_shuffle_epi8(lut_odd, hi));
        total[j] = _mm256_add_epi16(total[j], v);  // wraps mod 2^16 per lane: fine
        odd[j] = _mm256_add_epi16(odd[j], _mm256_srli_epi16(v, 8));
      }
    }
    for (int j = 0; j < NQ; ++j) {
      const __m256i even = _mm256_sub_epi16(total[j], _mm256_slli_epi16(odd[j], 8));  // vectors 0, 2, 4, ...
      const std::uint16_t threshold = qs.thresholds[q0 + j];
      const __m256i thr = _mm256_set1_epi16(static_cast<short>(threshold));
      const __m256i le_even = _mm256_cmpeq_epi16(_mm256_min_epu16(even, thr), even);
      const __m256i le_odd = _mm256_cmpeq_epi16(_mm256_min_epu16(odd[j], thr), odd[j]);
      if (_mm256_testz_si256(_mm256_or_si256(le_even, le_odd), _mm256_or_si256(le_even, le_odd))) continue;
      // Interleave back to vector order: per 128-bit lane, unpacklo gives vectors 0-7 (16-23), unpackhi 8-15 (24-31).
      alignas(32) std::uint16_t sums[32];
      const __m256i first = _mm256_unpacklo_epi16(even, odd[j]), second = _mm256_unpackhi_epi16(even, odd[j]);
      const __m256i s0 = _mm256_permute2x128_si256(first, second, 0x20);  // vectors 0-15
      const __m256i s1 = _mm256_permute2x128_si256(first, second, 0x31);  // vectors 16-31
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums), s0);
      _mm256_store_si256(reinterpret_cast<__m256i*>(sums + 16), s1);
      // One bit per vector: the 0 / -1 words packed to bytes (packs interleaves the 128-bit lanes; permute fixes it).
      const __m256i le0 = _mm256_cmpeq_epi16(_mm256_min_epu16(s0, thr), s0);
      const __m256i le1 = _mm256_cmpeq_epi16(_mm256_min_epu16(s1, thr), s1);
      const __m256i bytes = _mm256_permute4x64_epi64(_mm256_packs_epi16(le0, le1), 0xD8);
      const std::uint64_t mask = static_cast<std::uint32_t>(_mm256_movemask_epi8(bytes));
      qs.hit(qs.ctx, q0 + j, b * 32, mask, sums);
    }
  }
}

static void scan4_x86(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs) {
  for_each_query_pass(qs.count, [&](auto count, int q0) {
    scan4_pass<decltype(count)::value>(blocks, block_begin, block_end, n_pairs, qs, q0);
  });
}
