// Sketch and LSQR kernels, avx512 path (generic/sketch-inl.hpp): adds and FMAs in the scalar order, so the sketches are
// bit-identical to scalar; matvec's dot products use this ISA's lanes.
#include <immintrin.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace avx512 {
namespace {

#include "x86_avx512/simd.hpp"
#include "generic/sketch-inl.hpp"

}  // namespace

void fill_sketch(SketchKernels* out) {
  out->name = "sketch_avx512";
  out->add_rows_f32 = sketch_detail::add_rows_f32;
  out->add_rows_f64 = sketch_detail::add_rows_f64;
  out->gemm_acc_f32 = sketch_detail::gemm_acc_f32;
  out->gemm_acc_f64 = sketch_detail::gemm_acc_f64;
  out->matvec_f64 = sketch_detail::matvec_f64;
  out->rmatvec_f64 = sketch_detail::rmatvec_f64;
}

}  // namespace avx512
}  // namespace simkern
