// FWHT butterfly passes over the vector primitives V of the including ISA file (see generic/maxsim-inl.hpp for the
// inclusion rule); VD is V's float64 counterpart. Lanes run along a row (width contiguous values); a row narrower
// than a register is done one value at a time. Each output is one add or one subtract: bit-identical to scalar
// (which runs radix-2 passes; the radix-8 and radix-4 steps here perform the same operations in the same order).
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

// Passes h and 2h at once on the four rows (i, i + h, i + 2h, i + 3h): the same adds and subtracts in the same
// order as two radix-2 passes (so the same values), with half the loads and stores.
template <class W, class T>
static inline void butterfly4_rows(T* a, T* b, T* c, T* d, i64 width) {
  constexpr int L = W::lanes;
  i64 j = 0;
  for (; j + L <= width; j += L) {
    const auto va = W::load(a + j), vb = W::load(b + j), vc = W::load(c + j), vd = W::load(d + j);
    const auto s0 = W::add(va, vb), d0 = W::sub(va, vb), s1 = W::add(vc, vd), d1 = W::sub(vc, vd);
    W::store(a + j, W::add(s0, s1));
    W::store(c + j, W::sub(s0, s1));
    W::store(b + j, W::add(d0, d1));
    W::store(d + j, W::sub(d0, d1));
  }
  for (; j < width; ++j) {
    const T s0 = a[j] + b[j], d0 = a[j] - b[j], s1 = c[j] + d[j], d1 = c[j] - d[j];
    a[j] = s0 + s1;
    c[j] = s0 - s1;
    b[j] = d0 + d1;
    d[j] = d0 - d1;
  }
}

// Passes h, 2h and 4h at once on the eight rows r[k] = row i + k h: the radix-2 operations of the three passes in
// their order (so the same values), with a third of the loads and stores.
template <class W, class T>
static inline void butterfly8_rows(T* const r[8], i64 width) {
  constexpr int L = W::lanes;
  i64 j = 0;
  for (; j + L <= width; j += L) {
    typename W::reg v[8], t[8];
    for (int k = 0; k < 8; ++k) v[k] = W::load(r[k] + j);
    for (int k = 0; k < 8; k += 2) t[k] = W::add(v[k], v[k + 1]), t[k + 1] = W::sub(v[k], v[k + 1]);
    for (int k = 0; k < 8; k += 4)
      for (int q = 0; q < 2; ++q)
        v[k + q] = W::add(t[k + q], t[k + q + 2]), v[k + q + 2] = W::sub(t[k + q], t[k + q + 2]);
    for (int q = 0; q < 4; ++q)
      W::store(r[q] + j, W::add(v[q], v[q + 4])), W::store(r[q + 4] + j, W::sub(v[q], v[q + 4]));
  }
  for (; j < width; ++j) {
    T v[8], t[8];
    for (int k = 0; k < 8; ++k) v[k] = r[k][j];
    for (int k = 0; k < 8; k += 2) t[k] = v[k] + v[k + 1], t[k + 1] = v[k] - v[k + 1];
    for (int k = 0; k < 8; k += 4)
      for (int q = 0; q < 2; ++q) v[k + q] = t[k + q] + t[k + q + 2], v[k + q + 2] = t[k + q] - t[k + q + 2];
    for (int q = 0; q < 4; ++q) r[q][j] = v[q] + v[q + 4], r[q + 4][j] = v[q] - v[q + 4];
  }
}

template <class W, class T>
static void passes(T* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) {
  i64 h = h_begin;
  for (; 4 * h < h_end; h *= 8)  // radix 8: passes h, 2h and 4h together
    for (i64 base = 0; base < rows; base += 8 * h)
      for (i64 i = base; i < base + h; ++i) {
        T* const r[8] = {x + i * stride,           x + (i + h) * stride,     x + (i + 2 * h) * stride,
                         x + (i + 3 * h) * stride, x + (i + 4 * h) * stride, x + (i + 5 * h) * stride,
                         x + (i + 6 * h) * stride, x + (i + 7 * h) * stride};
        butterfly8_rows<W>(r, width);
      }
  for (; 2 * h < h_end; h *= 4)  // radix 4: passes h and 2h together
    for (i64 base = 0; base < rows; base += 4 * h)
      for (i64 i = base; i < base + h; ++i)
        butterfly4_rows<W>(x + i * stride, x + (i + h) * stride, x + (i + 2 * h) * stride, x + (i + 3 * h) * stride,
                           width);
  for (; h < h_end; h *= 2)
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
