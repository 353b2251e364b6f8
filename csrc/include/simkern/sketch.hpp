// simkern/sketch.hpp - row sketches S [A | B] of tall matrices and the matrix-vector products of LSQR.
//
// S is m x n; A is n x d and B is n x k (optional), read through arbitrary element strides; the result SA | SB is a
// C-contiguous m x (d + k) array of A's type (float32 or float64; computed in that type). Kinds:
// - srht:        S = (1/sqrt(m)) P H_N D. D: n Rademacher signs; H_N: the unnormalised Sylvester Hadamard transform on
//                N = next power of two >= n (rows n..N-1 are zeros, never stored); P: m distinct rows of N drawn
//                uniformly (Floyd's algorithm), returned in increasing order. Only the m sampled rows are computed:
//                H_N = H_{N/Bk} (x) H_Bk, so each block of Bk rows is sign-flipped into a cache-resident buffer,
//                transformed there (fwht passes), and its row i_lo is added to, or subtracted from, every sampled row
//                (i_hi, i_lo) with the sign (-1)^popcount(i_hi & block). A is read once.
// - gaussian:    S_ij = g_ij / sqrt(m), g_ij ~ N(0, 1) from a counter hash of (seed, i, j) (Box-Muller).
// - countsketch: column j of S has one +-1 at a hashed row.
// - sparse_sign: column j has s = nnz nonzeros +-1/sqrt(s), one in each of s row blocks [t m / s, (t + 1) m / s).
// Randomness: counter hashes of (seed, stream, index), so S depends on the seed only. Work is split over column
// strips (srht, sparse kinds) or output rows (gaussian); every output value is the same sequence of additions (or
// FMAs) whatever the split, thread count or ISA: results are bit-identical everywhere.
#pragma once

#include <cstdint>

#include "simkern/common.hpp"

namespace simkern {

enum class SketchKind : int { srht = 0, gaussian = 1, countsketch = 2, sparse_sign = 3 };

struct SketchKernels {
  const char* name = nullptr;
  // For t < count: out row out_rows[t] += src row src_rows[t] (or -= when negate[t]); rows of `width` values.
  void (*add_rows_f32)(float* out, i64 out_stride, const float* src, i64 src_stride, i64 width,
                       const std::int64_t* out_rows, const std::int64_t* src_rows, const std::uint8_t* negate,
                       i64 count) = nullptr;
  void (*add_rows_f64)(double* out, i64 out_stride, const double* src, i64 src_stride, i64 width,
                       const std::int64_t* out_rows, const std::int64_t* src_rows, const std::uint8_t* negate,
                       i64 count) = nullptr;
  // out (rows x width) += g (rows x k) @ a (k x width), each output value one FMA per j, j increasing.
  void (*gemm_acc_f32)(float* out, i64 out_stride, const float* g, i64 g_stride, const float* a, i64 a_stride, i64 rows,
                       i64 k, i64 width) = nullptr;
  void (*gemm_acc_f64)(double* out, i64 out_stride, const double* g, i64 g_stride, const double* a, i64 a_stride,
                       i64 rows, i64 k, i64 width) = nullptr;
  // LSQR products on float64 rows (row stride `stride`, d contiguous values):
  // out[r] = a_r . v (lane-wise partial sums: rounding differs between ISAs), and
  // out[c] += sum_r a[r, c] u[r] (one FMA per row, r increasing: bit-identical on every ISA).
  void (*matvec_f64)(const double* a, i64 rows, i64 stride, i64 d, const double* v, double* out) = nullptr;
  void (*rmatvec_f64)(const double* a, i64 rows, i64 stride, i64 d, const double* u, double* out) = nullptr;
};

const SketchKernels& sketch_kernels();  // for the active ISA

template <class T>
struct SketchInput {
  const T* a = nullptr;  // a[i * a_rs + j * a_cs], i < n, j < d
  i64 a_rs = 0, a_cs = 1, d = 0;
  const T* b = nullptr;  // optional second block of columns, b[i * b_rs + j * b_cs], j < k
  i64 b_rs = 0, b_cs = 1, k = 0;
  i64 n = 0;
};

// out: C-contiguous m x (d + k). nnz: nonzeros per column (sparse_sign; countsketch uses 1). Requires 1 <= m and,
// for srht, m <= next power of two of n; for sparse_sign nnz <= m.
void sketch(const SketchInput<float>& in, i64 m, SketchKind kind, std::uint64_t seed, i64 nnz, float* out, int threads);
void sketch(const SketchInput<double>& in, i64 m, SketchKind kind, std::uint64_t seed, i64 nnz, double* out,
            int threads);

// The rows of S chosen by srht (increasing, in [0, N)), for tests and diagnostics.
void srht_rows(i64 n, i64 m, std::uint64_t seed, std::int64_t* out);
// The sign D_i (+1 / -1) of rows [0, n).
void srht_signs(i64 n, std::uint64_t seed, std::int8_t* out);

// LSQR products over a float64 (n, d) array with row stride `stride` (unit column stride), threaded over row chunks;
// rmatvec sums fixed chunks in a fixed order, so both are independent of the thread count.
void matvec(const double* a, i64 n, i64 d, i64 stride, const double* v, double* out, int threads);
void rmatvec(const double* a, i64 n, i64 d, i64 stride, const double* u, double* out, int threads);

}  // namespace simkern
