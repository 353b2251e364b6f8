// PQ, scalar reference path (no intrinsics; -fno-tree-vectorize -ffp-contract=off). Defines the arithmetic every
// SIMD path must reproduce bit for bit: acc = acc + d * d (or acc + x * c) over k in order.
#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {

// The reference arithmetic for centroids j_begin .. ksub - 1; the SIMD files call it for their tails.
void centroids_from(const float* x, const float* ct, i64 dsub, i64 ksub, i64 j_begin, bool l2, float* out) {
  for (i64 j = j_begin; j < ksub; ++j) {
    float acc = 0.0f;
    for (i64 k = 0; k < dsub; ++k) {
      const float c = ct[k * ksub + j];
      if (l2) {
        const float diff = x[k] - c;
        acc = acc + diff * diff;
      } else {
        acc = acc + x[k] * c;
      }
    }
    out[j] = acc;
  }
}

namespace {

void sq_dists(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroids_from(x, ct, dsub, ksub, 0, true, out);
}
void dots(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroids_from(x, ct, dsub, ksub, 0, false, out);
}

}  // namespace

// Portable 4-bit scan (also used by levels without a SIMD version of it).
void scan4(const std::uint8_t* blocks, i64 n_blocks, i64 n_pairs, const std::uint8_t* luts, std::uint16_t* out) {
  for (i64 b = 0; b < n_blocks; ++b) {
    for (int i = 0; i < 32; ++i) {
      unsigned acc = 0;
      for (i64 p = 0; p < n_pairs; ++p) {
        const std::uint8_t byte = blocks[(b * n_pairs + p) * 32 + i];
        acc += luts[(2 * p) * 16 + (byte & 15)] + luts[(2 * p + 1) * 16 + (byte >> 4)];
      }
      out[b * 32 + i] = static_cast<std::uint16_t>(acc);
    }
  }
}

// 8-bit scan on uint8 tables, four codes at a time (no hardware gathers: they are slower than scalar loads on the
// AMD cores we measure on). Sums stay below 2^16 for m <= 257.
void scan8(const std::uint8_t* codes, i64 n, i64 m, const std::uint8_t* luts, std::uint16_t* out) {
  i64 i = 0;
  for (; i + 4 <= n; i += 4) {
    const std::uint8_t* c = codes + i * m;
    unsigned a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    for (i64 s = 0; s < m; ++s) {
      const std::uint8_t* t = luts + s * 256;
      a0 += t[c[s]];
      a1 += t[c[m + s]];
      a2 += t[c[2 * m + s]];
      a3 += t[c[3 * m + s]];
    }
    out[i] = static_cast<std::uint16_t>(a0);
    out[i + 1] = static_cast<std::uint16_t>(a1);
    out[i + 2] = static_cast<std::uint16_t>(a2);
    out[i + 3] = static_cast<std::uint16_t>(a3);
  }
  for (; i < n; ++i) {
    unsigned acc = 0;
    for (i64 s = 0; s < m; ++s) acc += luts[s * 256 + codes[i * m + s]];
    out[i] = static_cast<std::uint16_t>(acc);
  }
}

void fill_pq(PQKernels* out) {
  out->name = "pq_scalar";
  out->scan8 = scan8;
  out->scan4 = scan4;
  out->sq_dists = sq_dists;
  out->dots = dots;
}

}  // namespace scalar
}  // namespace simkern
