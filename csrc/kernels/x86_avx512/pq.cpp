// PQ, avx512 path: distances / dot products to all centroids of a subspace, lanes over centroids
// (generic/pq-inl.hpp); bit-identical to the scalar path (no FMA, -ffp-contract=off).
#include <immintrin.h>

#include <cstdint>
#include <type_traits>
#include <limits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"
#include "generic/pq-inl.hpp"
#if !defined(SIMKERN_TEST_EMULATE_AVX512)  // tools/cross_check's intrinsic emulation has no 256-bit integer ops
#include "generic/pq-scan4-x86-inl.hpp"
#endif

}  // namespace

void fill_pq(PQKernels* out) {
  out->name = "pq_avx512";
  pq_detail::fill_float_kernels(out);
  out->scan8 = scalar::scan8;        // scalar loads beat gathers on the AMD cores we measure on
  out->scan8_name = "scan8_scalar";  // replaced by the VBMI variant when the CPU has it (dispatch.cpp)
#if !defined(SIMKERN_TEST_EMULATE_AVX512)
  out->scan4 = scan4_x86;
  out->scan4_name = "scan4_x86";
#else
  out->scan4 = scalar::scan4;
  out->scan4_name = "scan4_scalar";
#endif
}

}  // namespace avx512
}  // namespace simkern
