// PQ, scalar reference path (no intrinsics; -fno-tree-vectorize -ffp-contract=off). Defines the arithmetic every
// SIMD path must reproduce bit for bit: acc = acc + d * d (or acc + x * c) over k in order.
#include <cmath>
#include <type_traits>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {
#include "generic/scan-passes-inl.hpp"
}  // namespace

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

// Nearest centroid by squared L2 (the sq_dists arithmetic), lowest id among equal distances; the reference for
// the SIMD nearest kernels. x: n points, x_stride floats apart; ids (and dists when not null): n values.
void nearest(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, std::int32_t* ids,
             float* dists) {
  float dist[256];
  for (i64 i = 0; i < n; ++i) {
    i64 best = 0;
    float best_dist = 0.0f;
    for (i64 j0 = 0; j0 < ksub; j0 += 256) {  // 256 centroids at a time (any ksub)
      const i64 j1 = j0 + 256 < ksub ? j0 + 256 : ksub;
      for (i64 j = j0; j < j1; ++j) {
        float acc = 0.0f;
        for (i64 k = 0; k < dsub; ++k) {
          const float diff = x[i * x_stride + k] - ct[k * ksub + j];
          acc = acc + diff * diff;
        }
        dist[j - j0] = acc;
      }
      for (i64 j = j0; j < j1; ++j)
        if (j == 0 || dist[j - j0] < best_dist) {
          best = j;
          best_dist = dist[j - j0];
        }
    }
    ids[i] = static_cast<std::int32_t>(best);
    if (dists) dists[i] = best_dist;
  }
}

float sum_squares(const float* x, i64 dsub) {
  float acc = 0.0f;
  for (i64 k = 0; k < dsub; ++k) acc = acc + x[k] * x[k];
  return acc;
}

// k-means assignment: argmin over j of score_j = half_norms[j] - x . c_j, accumulated with fused multiply-adds
// from half_norms[j] in k order (std::fma: the SIMD paths use FMA instructions, which round the same way); lowest
// id on ties. With half_norms = |c_j|^2 / 2 the score is (|x - c_j|^2 - |x|^2) / 2, so dists[i] = |x|^2 + 2 score.
void nearest_dot(const float* x, i64 n, i64 x_stride, const float* ct, const float* half_norms, i64 dsub, i64 ksub,
                 std::int32_t* ids, float* dists) {
  for (i64 i = 0; i < n; ++i) {
    i64 best = 0;
    float best_score = 0.0f;
    for (i64 j = 0; j < ksub; ++j) {
      float score = half_norms[j];
      for (i64 k = 0; k < dsub; ++k) score = std::fma(-x[i * x_stride + k], ct[k * ksub + j], score);
      if (j == 0 || score < best_score) {
        best = j;
        best_score = score;
      }
    }
    ids[i] = static_cast<std::int32_t>(best);
    if (dists) dists[i] = sum_squares(x + i * x_stride, dsub) + (best_score + best_score);
  }
}

namespace {

void tables(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, bool l2, float* out,
            i64 out_stride) {
  for (i64 q = 0; q < n; ++q) centroids_from(x + q * x_stride, ct, dsub, ksub, 0, l2, out + q * out_stride);
}
void sq_dists(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) {
  centroids_from(x, ct, dsub, ksub, 0, true, out);
}

}  // namespace

// Portable 4-bit scan (also used by levels without a SIMD version of it).
void scan4(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs) {
  std::uint16_t sums[32];
  for (i64 b = block_begin; b < block_end; ++b) {
    const std::uint8_t* block = blocks + b * n_pairs * 32;
    for (int q = 0; q < qs.count; ++q) {
      const std::uint8_t* luts = qs.luts + q * qs.lut_stride;
      for (int i = 0; i < 32; ++i) {
        unsigned acc = 0;
        for (i64 p = 0; p < n_pairs; ++p) {
          const std::uint8_t byte = block[p * 32 + i];
          acc += luts[(2 * p) * 16 + (byte & 15)] + luts[(2 * p + 1) * 16 + (byte >> 4)];
        }
        sums[i] = static_cast<std::uint16_t>(acc);
      }
      report_sums(qs, q, b * 32, sums, 32);
    }
  }
}

// 8-bit scan on uint8 tables over 64-vector blocks, four vectors at a time per query (no hardware gathers: they
// are slower than scalar loads on the AMD cores we measure on). The VBMI variant is x86_avx512_vbmi/pq_scan8.cpp.
void scan8(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs) {
  std::uint16_t sums[64];
  for (i64 b = block_begin; b < block_end; ++b) {
    const std::uint8_t* block = blocks + b * m * 64;
    for (int q = 0; q < qs.count; ++q) {
      const std::uint8_t* luts = qs.luts + q * qs.lut_stride;
      for (int i = 0; i < 64; i += 4) {
        unsigned a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        for (i64 s = 0; s < m; ++s) {
          const std::uint8_t* t = luts + s * 256;
          const std::uint8_t* c = block + s * 64 + i;
          a0 += t[c[0]];
          a1 += t[c[1]];
          a2 += t[c[2]];
          a3 += t[c[3]];
        }
        sums[i] = static_cast<std::uint16_t>(a0);
        sums[i + 1] = static_cast<std::uint16_t>(a1);
        sums[i + 2] = static_cast<std::uint16_t>(a2);
        sums[i + 3] = static_cast<std::uint16_t>(a3);
      }
      report_sums(qs, q, b * 64, sums, 64);
    }
  }
}

void quantize_lut(const float* q_tables, const float* cell_tables, const float* lows, i64 m, i64 ksub, float sign,
                  float scale, float top, std::uint8_t* out) {
  for (i64 s = 0; s < m; ++s) {
    const float* qt = q_tables + s * ksub;
    const float* ct = cell_tables ? cell_tables + s * ksub : nullptr;
    const float low = lows[s];
    for (i64 j = 0; j < ksub; ++j) {
      const float v = ct ? ct[j] + qt[j] : sign * qt[j];
      const float u = std::min((v - low) * scale + 0.5f, top);
      out[s * ksub + j] = static_cast<std::uint8_t>(static_cast<int>(u));
    }
  }
}

void table_ranges(const float* t, i64 m, i64 ksub, float* lo, float* hi) {
  for (i64 s = 0; s < m; ++s) {
    float a = t[s * ksub], b = a;
    for (i64 j = 1; j < ksub; ++j) {
      a = std::min(a, t[s * ksub + j]);
      b = std::max(b, t[s * ksub + j]);
    }
    lo[s] = a;
    hi[s] = b;
  }
}

void fill_pq(PQKernels* out) {
  out->name = "pq_scalar";
  out->table_ranges = table_ranges;
  out->quantize_lut = quantize_lut;
  out->scan8 = scan8;
  out->scan8_name = "scan8_scalar";
  out->scan4 = scan4;
  out->scan4_name = "scan4_scalar";
  out->sq_dists = sq_dists;
  out->nearest = nearest;
  out->tables = tables;
  out->nearest_dot = nearest_dot;
}

}  // namespace scalar
}  // namespace simkern
