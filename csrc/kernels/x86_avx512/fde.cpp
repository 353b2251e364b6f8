// FDE (SimHash sketches and AMS projections), avx512 path: SimHash sketches with lanes over the hyperplanes of all repetitions (generic/fde-inl.hpp);
// bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <immintrin.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"
#include "generic/fde-inl.hpp"

}  // namespace

void fill_fde(FDEKernels* out) {
  out->name = "fde_avx512";
  out->simhash = fde_detail::simhash;
  out->ams_project = fde_detail::ams_project;
  out->stream_copy = avx2::fde_stream_copy;  // the output is memory-bound: 256-bit streams are enough
  out->stream_fence = avx2::fde_stream_fence;
  out->sign_words = avx2::fde_sign_words;
}

}  // namespace avx512
}  // namespace simkern
