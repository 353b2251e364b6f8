// Sketch and LSQR kernels over the vector primitives V (float32) / VD (float64) of the including ISA file (see
// generic/maxsim-inl.hpp for the inclusion rule). Contract in simkern/sketch.hpp. add_rows is adds/subtracts only and
// gemm_acc / rmatvec are one FMA per term in a fixed order, lane-wise along the row, with std::fma in the tails: all
// three give the same bits as the scalar path. matvec's per-row dot product uses the register's lanes (ISA rounding).
#pragma once

// (the including file includes <cmath> for std::fma)

namespace sketch_detail {

template <class W, class T>
static void add_rows(T* out, i64 out_stride, const T* src, i64 src_stride, i64 width, const std::int64_t* out_rows,
                     const std::int64_t* src_rows, const std::uint8_t* negate, i64 count) {
  constexpr int L = W::lanes;
  for (i64 t = 0; t < count; ++t) {
    T* o = out + out_rows[t] * out_stride;
    const T* s = src + src_rows[t] * src_stride;
    i64 j = 0;
    if (negate[t]) {
      for (; j + 2 * L <= width; j += 2 * L) {
        W::store(o + j, W::sub(W::load(o + j), W::load(s + j)));
        W::store(o + j + L, W::sub(W::load(o + j + L), W::load(s + j + L)));
      }
      for (; j + L <= width; j += L) W::store(o + j, W::sub(W::load(o + j), W::load(s + j)));
      for (; j < width; ++j) o[j] -= s[j];
    } else {
      for (; j + 2 * L <= width; j += 2 * L) {
        W::store(o + j, W::add(W::load(o + j), W::load(s + j)));
        W::store(o + j + L, W::add(W::load(o + j + L), W::load(s + j + L)));
      }
      for (; j + L <= width; j += L) W::store(o + j, W::add(W::load(o + j), W::load(s + j)));
      for (; j < width; ++j) o[j] += s[j];
    }
  }
}

// R output rows x C registers of columns, accumulated over all k terms in registers.
template <class W, int R, int C, class T>
static inline void gemm_tile(T* out, i64 out_stride, const T* g, i64 g_stride, const T* a, i64 a_stride, i64 k) {
  constexpr int L = W::lanes;
  typename W::reg acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = W::load(out + r * out_stride + c * L);
  for (i64 j = 0; j < k; ++j) {
    typename W::reg av[C];
    for (int c = 0; c < C; ++c) av[c] = W::load(a + j * a_stride + c * L);
    for (int r = 0; r < R; ++r) {
      const auto gr = W::set1(g[r * g_stride + j]);
      for (int c = 0; c < C; ++c) acc[r][c] = W::fma(gr, av[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) W::store(out + r * out_stride + c * L, acc[r][c]);
}

template <class W, int R, class T>
static inline void gemm_rows(T* out, i64 out_stride, const T* g, i64 g_stride, const T* a, i64 a_stride, i64 k,
                             i64 width) {
  constexpr int L = W::lanes;
  i64 c = 0;
  for (; c + 4 * L <= width; c += 4 * L) gemm_tile<W, R, 4>(out + c, out_stride, g, g_stride, a + c, a_stride, k);
  for (; c + L <= width; c += L) gemm_tile<W, R, 1>(out + c, out_stride, g, g_stride, a + c, a_stride, k);
  for (; c < width; ++c)
    for (int r = 0; r < R; ++r) {
      T acc = out[r * out_stride + c];
      for (i64 j = 0; j < k; ++j) acc = std::fma(g[r * g_stride + j], a[j * a_stride + c], acc);
      out[r * out_stride + c] = acc;
    }
}

template <class W, class T>
static void gemm_acc(T* out, i64 out_stride, const T* g, i64 g_stride, const T* a, i64 a_stride, i64 rows, i64 k,
                     i64 width) {
  i64 r = 0;
  for (; r + 2 <= rows; r += 2)
    gemm_rows<W, 2>(out + r * out_stride, out_stride, g + r * g_stride, g_stride, a, a_stride, k, width);
  for (; r < rows; ++r)
    gemm_rows<W, 1>(out + r * out_stride, out_stride, g + r * g_stride, g_stride, a, a_stride, k, width);
}

static void matvec_f64(const double* a, i64 rows, i64 stride, i64 d, const double* v, double* out) {
  constexpr int L = VD::lanes;
  for (i64 r = 0; r < rows; ++r) {
    const double* row = a + r * stride;
    auto acc0 = VD::zero(), acc1 = VD::zero();
    i64 c = 0;
    for (; c + 2 * L <= d; c += 2 * L) {
      acc0 = VD::fma(VD::load(row + c), VD::load(v + c), acc0);
      acc1 = VD::fma(VD::load(row + c + L), VD::load(v + c + L), acc1);
    }
    for (; c + L <= d; c += L) acc0 = VD::fma(VD::load(row + c), VD::load(v + c), acc0);
    alignas(64) double lanes[L];
    VD::store(lanes, VD::add(acc0, acc1));
    double s = 0.0;
    for (int l = 0; l < L; ++l) s += lanes[l];
    for (; c < d; ++c) s = std::fma(row[c], v[c], s);
    out[r] = s;
  }
}

static void rmatvec_f64(const double* a, i64 rows, i64 stride, i64 d, const double* u, double* out) {
  constexpr int L = VD::lanes;
  i64 c = 0;
  for (; c + 4 * L <= d; c += 4 * L) {
    auto acc0 = VD::load(out + c), acc1 = VD::load(out + c + L), acc2 = VD::load(out + c + 2 * L),
         acc3 = VD::load(out + c + 3 * L);
    for (i64 r = 0; r < rows; ++r) {
      const double* row = a + r * stride + c;
      const auto ur = VD::set1(u[r]);
      acc0 = VD::fma(ur, VD::load(row), acc0);
      acc1 = VD::fma(ur, VD::load(row + L), acc1);
      acc2 = VD::fma(ur, VD::load(row + 2 * L), acc2);
      acc3 = VD::fma(ur, VD::load(row + 3 * L), acc3);
    }
    VD::store(out + c, acc0);
    VD::store(out + c + L, acc1);
    VD::store(out + c + 2 * L, acc2);
    VD::store(out + c + 3 * L, acc3);
  }
  for (; c + L <= d; c += L) {
    auto acc = VD::load(out + c);
    for (i64 r = 0; r < rows; ++r) acc = VD::fma(VD::set1(u[r]), VD::load(a + r * stride + c), acc);
    VD::store(out + c, acc);
  }
  for (; c < d; ++c) {
    double acc = out[c];
    for (i64 r = 0; r < rows; ++r) acc = std::fma(u[r], a[r * stride + c], acc);
    out[c] = acc;
  }
}

static void add_rows_f32(float* out, i64 out_stride, const float* src, i64 src_stride, i64 width,
                         const std::int64_t* out_rows, const std::int64_t* src_rows, const std::uint8_t* negate,
                         i64 count) {
  add_rows<V>(out, out_stride, src, src_stride, width, out_rows, src_rows, negate, count);
}
static void add_rows_f64(double* out, i64 out_stride, const double* src, i64 src_stride, i64 width,
                         const std::int64_t* out_rows, const std::int64_t* src_rows, const std::uint8_t* negate,
                         i64 count) {
  add_rows<VD>(out, out_stride, src, src_stride, width, out_rows, src_rows, negate, count);
}
static void gemm_acc_f32(float* out, i64 out_stride, const float* g, i64 g_stride, const float* a, i64 a_stride,
                         i64 rows, i64 k, i64 width) {
  gemm_acc<V>(out, out_stride, g, g_stride, a, a_stride, rows, k, width);
}
static void gemm_acc_f64(double* out, i64 out_stride, const double* g, i64 g_stride, const double* a, i64 a_stride,
                         i64 rows, i64 k, i64 width) {
  gemm_acc<VD>(out, out_stride, g, g_stride, a, a_stride, rows, k, width);
}

}  // namespace sketch_detail
