// Sketch and LSQR kernels, scalar reference path (-fno-tree-vectorize): one value at a time, explicit std::fma, the
// orders of simkern/sketch.hpp.
#include <cmath>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {

template <class T>
void add_rows(T* out, i64 out_stride, const T* src, i64 src_stride, i64 width, const std::int64_t* out_rows,
              const std::int64_t* src_rows, const std::uint8_t* negate, i64 count) {
  for (i64 t = 0; t < count; ++t) {
    T* o = out + out_rows[t] * out_stride;
    const T* s = src + src_rows[t] * src_stride;
    if (negate[t]) {
      for (i64 j = 0; j < width; ++j) o[j] -= s[j];
    } else {
      for (i64 j = 0; j < width; ++j) o[j] += s[j];
    }
  }
}

template <class T>
void gemm_acc(T* out, i64 out_stride, const T* g, i64 g_stride, const T* a, i64 a_stride, i64 rows, i64 k, i64 width) {
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < width; ++c) {
      T acc = out[r * out_stride + c];
      for (i64 j = 0; j < k; ++j) acc = std::fma(g[r * g_stride + j], a[j * a_stride + c], acc);
      out[r * out_stride + c] = acc;
    }
}

void matvec_f64(const double* a, i64 rows, i64 stride, i64 d, const double* v, double* out) {
  for (i64 r = 0; r < rows; ++r) {
    double s = 0.0;
    for (i64 c = 0; c < d; ++c) s = std::fma(a[r * stride + c], v[c], s);
    out[r] = s;
  }
}

void rmatvec_f64(const double* a, i64 rows, i64 stride, i64 d, const double* u, double* out) {
  for (i64 r = 0; r < rows; ++r)
    for (i64 c = 0; c < d; ++c) out[c] = std::fma(u[r], a[r * stride + c], out[c]);
}

}  // namespace

void fill_sketch(SketchKernels* out) {
  out->name = "sketch_scalar";
  out->add_rows_f32 = add_rows<float>;
  out->add_rows_f64 = add_rows<double>;
  out->gemm_acc_f32 = gemm_acc<float>;
  out->gemm_acc_f64 = gemm_acc<double>;
  out->matvec_f64 = matvec_f64;
  out->rmatvec_f64 = rmatvec_f64;
}

}  // namespace scalar
}  // namespace simkern
