// simkern/fwht.hpp - fast Walsh-Hadamard transform (unnormalised, Sylvester order) along the rows of an array.
//
// y = H_n x for every column of a C-contiguous (n, d) array (n a power of two), in place: log2(n) butterfly passes,
// pass h (= 1, 2, 4, ..., n/2, always in that order) maps each row pair (i, i + h) with i mod 2h < h to
// (x_i + x_{i+h}, x_i - x_{i+h}). Every element sees the same sequence of additions on every ISA and for every
// thread count and blocking, so results are bit-identical everywhere (float32 and float64; no FMA involved).
// Blocking: passes with h below a block of rows that fits in cache run block by block; larger h stream.
// A 1-D transform (d = 1) is run as (n / m, m) rows: passes inside a row are the low bits, passes across rows the
// high bits (the same pass order per element).
#pragma once

#include "simkern/common.hpp"

namespace simkern {

struct FWHTKernels {
  const char* name = nullptr;
  // Passes h = h_begin, 2 h_begin, ... < h_end over `rows` rows of `width` contiguous values, row stride `stride`.
  void (*passes_f32)(float* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) = nullptr;
  void (*passes_f64)(double* x, i64 rows, i64 stride, i64 width, i64 h_begin, i64 h_end) = nullptr;
};

const FWHTKernels& fwht_kernels();  // for the active ISA

// In-place FWHT of each of the d columns of x (n x d, C-contiguous), n a power of two; threads split the work;
// normalize multiplies by 1 / sqrt(n) at the end.
void fwht(float* x, i64 n, i64 d, bool normalize, int threads);
void fwht(double* x, i64 n, i64 d, bool normalize, int threads);

}  // namespace simkern
