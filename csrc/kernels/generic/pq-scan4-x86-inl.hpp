// 4-bit fast scan with 256-bit vpshufb (AVX2; also compiled into the AVX-512 file, where it runs on ymm registers).
// Per subspace pair: one 32-byte load of codes (32 vectors), two nibble masks, two 16-entry table lookups with
// vpshufb (each table broadcast to both 128-bit lanes), accumulated in uint16 without unpacking. Included inside the ISA
// namespace like generic/maxsim-inl.hpp.
#pragma once

static void scan4_x86(const std::uint8_t* blocks, i64 n_blocks, i64 n_pairs, const std::uint8_t* luts,
                      std::uint16_t* out) {
  // uint16 accumulation without unpacking (FAISS's odd/even trick): adding the 32 looked-up bytes as 16 uint16
  // lanes accumulates (even byte + 256 * odd byte); a second accumulator adds the odd bytes alone (v >> 8). At the
  // end, even sums = total - (odd sums << 8) modulo 2^16, exact because every sum is below 2^16.
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  for (i64 b = 0; b < n_blocks; ++b) {
    __m256i total = _mm256_setzero_si256(), odd = _mm256_setzero_si256();
    const std::uint8_t* block = blocks + b * n_pairs * 32;
    for (i64 p = 0; p < n_pairs; ++p) {
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + p * 32));
      const __m256i lut_even = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts + 32 * p)));
      const __m256i lut_odd = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts + 32 * p + 16)));
      const __m256i v_even = _mm256_shuffle_epi8(lut_even, _mm256_and_si256(codes, low_nibbles));
      const __m256i v_odd = _mm256_shuffle_epi8(lut_odd, _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_nibbles));
      total = _mm256_add_epi16(total, _mm256_add_epi16(v_even, v_odd));  // wraps mod 2^16 per lane: fine
      odd = _mm256_add_epi16(odd, _mm256_add_epi16(_mm256_srli_epi16(v_even, 8), _mm256_srli_epi16(v_odd, 8)));
    }
    const __m256i even = _mm256_sub_epi16(total, _mm256_slli_epi16(odd, 8));  // sums of vectors 0, 2, 4, ...
    // Interleave back to vector order: per 128-bit lane, unpacklo gives vectors 0-7 (16-23), unpackhi 8-15 (24-31).
    const __m256i first = _mm256_unpacklo_epi16(even, odd), second = _mm256_unpackhi_epi16(even, odd);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * 32), _mm256_permute2x128_si256(first, second, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * 32 + 16), _mm256_permute2x128_si256(first, second, 0x31));
  }
}
