// 4-bit fast scan with 256-bit vpshufb (AVX2; also compiled into the AVX-512 file, where it runs on ymm registers).
// Per subspace pair: one 32-byte load of codes (32 vectors), two nibble masks, two 16-entry table lookups with
// vpshufb (each table broadcast to both 128-bit lanes), widened to uint16 and accumulated. Included inside the ISA
// namespace like generic/maxsim-inl.hpp.
#pragma once

static void scan4_x86(const std::uint8_t* blocks, i64 n_blocks, i64 n_pairs, const std::uint8_t* luts,
                      std::uint16_t* out) {
  const __m256i low_nibbles = _mm256_set1_epi8(0x0F);
  const __m256i zero = _mm256_setzero_si256();
  for (i64 b = 0; b < n_blocks; ++b) {
    __m256i acc_a = zero, acc_b = zero;  // uint16 sums of bytes 0-7 | 16-23 (acc_a) and 8-15 | 24-31 (acc_b)
    const std::uint8_t* block = blocks + b * n_pairs * 32;
    for (i64 p = 0; p < n_pairs; ++p) {
      const __m256i codes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(block + p * 32));
      const __m256i lut_even = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts + 32 * p)));
      const __m256i lut_odd = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(luts + 32 * p + 16)));
      const __m256i lo = _mm256_and_si256(codes, low_nibbles);
      const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(codes, 4), low_nibbles);
      const __m256i v_even = _mm256_shuffle_epi8(lut_even, lo);
      const __m256i v_odd = _mm256_shuffle_epi8(lut_odd, hi);
      acc_a = _mm256_add_epi16(acc_a, _mm256_add_epi16(_mm256_unpacklo_epi8(v_even, zero), _mm256_unpacklo_epi8(v_odd, zero)));
      acc_b = _mm256_add_epi16(acc_b, _mm256_add_epi16(_mm256_unpackhi_epi8(v_even, zero), _mm256_unpackhi_epi8(v_odd, zero)));
    }
    // acc_a lanes hold vectors 0-7 and 16-23, acc_b 8-15 and 24-31: regroup to 0-15 and 16-31.
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * 32), _mm256_permute2x128_si256(acc_a, acc_b, 0x20));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + b * 32 + 16), _mm256_permute2x128_si256(acc_a, acc_b, 0x31));
  }
}
