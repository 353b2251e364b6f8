// FDE (SimHash sketches and AMS projections), avx2 path: SimHash sketches with lanes over the hyperplanes of all repetitions (generic/fde-inl.hpp);
// bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <immintrin.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx2 {
namespace {

#include "x86_avx2/simd.hpp"
#include "generic/fde-inl.hpp"

}  // namespace

// Non-temporal stores (no read-for-ownership of output lines written once): 32 bytes at a time when dst is
// 32-byte aligned, 16 when 16-byte aligned, else memcpy; count must then be a multiple of the width.
void fde_stream_copy(float* dst, const float* src, i64 count) {
  const auto addr = reinterpret_cast<std::uintptr_t>(dst);
  if ((addr & 31) == 0 && count % 8 == 0) {
    for (i64 i = 0; i < count; i += 8) _mm256_stream_ps(dst + i, _mm256_loadu_ps(src + i));
  } else if ((addr & 15) == 0 && count % 4 == 0) {
    for (i64 i = 0; i < count; i += 4) _mm_stream_ps(dst + i, _mm_loadu_ps(src + i));
  } else {
    std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(float));
  }
}

void fde_stream_fence() { _mm_sfence(); }

// Eight compares and one movemask per step (8 | 64: a byte never straddles two words), the tail bit by bit.
void fde_sign_words(const float* sketch, i64 hyperplanes, std::uint64_t* words) {
  const __m256 zero = _mm256_setzero_ps();
  i64 h = 0;
  for (; h + 8 <= hyperplanes; h += 8) {
    const auto bits =
        static_cast<std::uint64_t>(_mm256_movemask_ps(_mm256_cmp_ps(_mm256_loadu_ps(sketch + h), zero, _CMP_GT_OQ)));
    words[h >> 6] |= bits << (h & 63);
  }
  for (; h < hyperplanes; ++h) words[h >> 6] |= static_cast<std::uint64_t>(sketch[h] > 0.0f ? 1 : 0) << (h & 63);
}

void fill_fde(FDEKernels* out) {
  out->name = "fde_avx2";
  out->simhash = fde_detail::simhash;
  out->ams_project = fde_detail::ams_project;
  out->stream_copy = fde_stream_copy;
  out->stream_fence = fde_stream_fence;
  out->sign_words = fde_sign_words;
}

}  // namespace avx2
}  // namespace simkern
