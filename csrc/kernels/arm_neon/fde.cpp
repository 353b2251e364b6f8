// FDE (SimHash sketches and AMS projections), neon path: SimHash sketches with lanes over the hyperplanes of all repetitions (generic/fde-inl.hpp);
// bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <arm_neon.h>

#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace neon {
namespace {

#include "arm_neon/simd.hpp"
#include "generic/fde-inl.hpp"

}  // namespace

void fill_fde(FDEKernels* out) {
  out->name = "fde_neon";
  out->simhash = fde_detail::simhash;
  out->ams_project = fde_detail::ams_project;
  out->stream_copy = scalar::fde_stream_copy;
  out->stream_fence = scalar::fde_stream_fence;
  out->sign_words = scalar::fde_sign_words;
}

}  // namespace neon
}  // namespace simkern
