// FWHT butterfly passes over the vector primitives V of the including ISA file (see generic/maxsim-inl.hpp for the
// inclusion rule); VD is V's float64 counterpart. Lanes run along a row (width contiguous values); a row narrower
// than a register is done one value at a time. Each output is one add or one subtract: bit-identical to scalar.
#pragma once

namespace fwht_detail {

template <class W, class T>
static inline void butterfly_rows(T* a, T* b, i64 width) {
  constexpr int L = W::lanes;
  i64 j = 0;
  for (; j + 2 * L <= width; j += 2 * L) {
    const auto a0 = W::load(a + j), b0 = W::load(b + j), a1 = W::load(a + j + L), b1 = W::load(b + j + L);
    W::store(a + j, W::add(a0, b0));
    W::store(b + j, W::sub(a0, b0));
    W::store(a + j + L, W::add(a1, b1));
    W::store(b + j + L, W::sub(a1, b1));
  }
  for (; j + L <= width; j += L) {
    const auto a0 = W::load(a + j), b0 = W::load(b + j);
    W::store(a + j, W::add(a0, b0));
    W::store(b + j, W::sub(a0, b0));
  }
  for (; j < width; ++j) {
    const T u = a[j], v = b[j];
    a[j] = u + v;
    b[j] = u - v;
  }
}

template <class W, class T>
static void passes(T* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  for (i64 h = h_begin; h < h_end; h *= 2)
    for (i64 base = 0; base < rows; base += 2 * h)
      for (i64 i = base; i < base + h; ++i) butterfly_rows<W>(x + i * stride, x + (i + h) * stride, width);
}

static void passes_f32(float* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  passes<V>(x, rows, stride, width, h_begin, h_end);
}
static void passes_f64(double* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  passes<VD>(x, rows, stride, width, h_begin, h_end);
}

}  // namespace fwht_detail
