// FWHT butterfly passes, scalar reference path (-fno-tree-vectorize): one value at a time, the pass order of
// simkern/fwht.hpp.
#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {

template <class T>
void passes(T* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  for (i64 h = h_begin; h < h_end; h *= 2)
    for (i64 base = 0; base < rows; base += 2 * h)
      for (i64 i = base; i < base + h; ++i) {
        T* a = x + i * stride;
        T* b = x + (i + h) * stride;
        for (i64 j = 0; j < width; ++j) {
          const T u = a[j], v = b[j];
          a[j] = u + v;
          b[j] = u - v;
        }
      }
}

void passes_f32(float* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  passes(x, rows, stride, width, h_begin, h_end);
}
void passes_f64(double* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  passes(x, rows, stride, width, h_begin, h_end);
}

}  // namespace

void fill_fwht(FWHTKernels* out) {
  out->name = "fwht_scalar";
  out->passes_f32 = passes_f32;
  out->passes_f64 = passes_f64;
}

}  // namespace scalar
}  // namespace simkern
