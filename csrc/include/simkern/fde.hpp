// simkern/fde.hpp - MUVERA Fixed Dimensional Encodings (FDE), reproducing Google's reference
// (google/graph-mining sketching/point_cloud/fixed_dimensional_encoding.cc) for the same configuration and seed.
//
// Per point cloud X (n tokens x dim), for each repetition r < R:
//   SimHash: s_tj = sum_i x_ti * G_r[i][j] (j < k, i in order, one fused multiply-add per term), bit j = s_tj > 0; the
//     partition is the Gray-code accumulation of the bits with hyperplane 0 first: g = (g << 1) + (b ^ (g & 1)).
//   Projection: identity (d_p = dim) or the reference's "AMS" matrix, one +-1 per input coordinate:
//     y_t[h_r(i)] += sign_r(i) * x_ti for i in order (d_p = projection_dimension).
//   Aggregation in token order: out[r][p][:] += y_t. Queries keep sums; documents divide each non-empty block by its
//     count (float division) and, when fill_empty is set and k > 0, give an empty block p a copy of y_t for the token
//     whose sign string (hyperplane 0 = most significant bit) is nearest in Hamming distance to p ^ (p >> 1) (the
//     sign string of partition p), lowest token index on ties; with fill off an empty block stays 0. (With
//     FDEFillTarget::kGrayDecoded the target is muvera-python's instead, see there.)
//   Optional final CountSketch over the R * 2^k * d_p vector: y[idx(i)] += sign(i) * out[i], i in order.
// Output layout: repetition, partition, coordinate (float32).
//
// Random matrices (fde_rng.cpp, compiled without FP contraction) are drawn by hand from raw std::mt19937 words
// exactly as libstdc++ draws them for the reference: G_r from seed + r with normal_distribution<float> (Marsaglia
// polar, pair returned y first), column-major fill (all dim rows of hyperplane 0 first); AMS from seed + r:
// per coordinate Lemire uniform index then Bernoulli(0.5) sign (53-bit canonical double, two words); the final
// sketch from seed. Only logf comes from the C library (glibc's equals the reference's).
//
// Kernels: `simhash` computes all R * k sketches of a block of tokens at once, lanes over the R * k hyperplanes,
// each lane summing x_ti * G[i][h] over i in order with fused multiply-adds (std::fma in the scalar path):
// bit-identical on every ISA, and independent of batch size and threads. The reference's own rounding of the
// sketches depends on how Eigen was built (its GEMM uses FMA when compiled for it); the two can differ only in the
// sign of a sketch within a few float roundings of zero, which the fixtures never hit.
//
// Matrices given by the caller (FDE.from_matrices: muvera-python's NumPy draws, say) replace the drawn ones:
// fde_build_gather_lists derives the AMS gather lists from ams_index, the rest of the pipeline is the same.
#pragma once

#include <cstdint>
#include <vector>

#include "simkern/common.hpp"

namespace simkern {

// The sign string an empty document partition p is filled from (the token whose sign string is nearest to it):
// kReference: p ^ (p >> 1), the sign string whose partition is p (Google's reference). kGrayDecoded: the Gray
// decoding of p, i.e. the prefix XOR of p's bits from the top (muvera-python 0.2's gray_code_to_binary); the two
// agree for k <= 2 and differ for some partitions from k = 3 on.
enum class FDEFillTarget : std::uint8_t { kReference = 0, kGrayDecoded = 1 };

struct FDEConfig {
  i64 dim = 0;
  i64 repetitions = 20;
  int simhash_bits = 5;     // k, 0..30
  bool ams = true;          // false: identity projection
  i64 projection_dim = 16;  // d_p (dim for identity)
  bool fill_empty = true;   // documents only
  i64 final_dim = 0;        // 0: no final projection
  std::uint32_t seed = 1;   // int32 seed modulo 2^32, as the reference takes it (unused for given matrices)
  FDEFillTarget fill_target = FDEFillTarget::kReference;
  i64 partitions() const { return i64{1} << simhash_bits; }
  i64 inner_dim() const { return repetitions * partitions() * projection_dim; }
  i64 output_dim() const { return final_dim > 0 ? final_dim : inner_dim(); }
};

struct FDEMatrices {
  // simhash[i * (R * k) + r * k + j] = G_r[i][j]: every repetition's hyperplanes side by side per coordinate.
  std::vector<float> simhash;
  // AMS (empty for identity): ams_index[r * dim + i] in [0, d_p), ams_sign[r * dim + i] = +-1.
  std::vector<std::int32_t> ams_index;
  std::vector<float> ams_sign;
  // The same matrix as gather lists: for repetition r and output coordinate c, the input coordinates i with
  // ams_index == c in increasing order are ams_order[r * dim + ams_start[r * (d_p + 1) + c] ...] (end at c + 1).
  std::vector<std::int32_t> ams_order, ams_start;
  // Final CountSketch (empty when final_dim == 0): one (index, sign) per inner coordinate.
  std::vector<std::int32_t> final_index;
  std::vector<float> final_sign;
};

FDEMatrices fde_build_matrices(const FDEConfig& config);  // fde_rng.cpp

// ams_order / ams_start from ams_index (a counting sort per repetition, stable in i); empty for identity. Every
// ams_index value must be in [0, projection_dim) (the caller checks given matrices). fde_rng.cpp.
void fde_build_gather_lists(const FDEConfig& config, FDEMatrices& matrices);

struct FDEKernels {
  const char* name = nullptr;
  // out[t * hyperplanes + h] = sum_i x[t * dim + i] * g[i * hyperplanes + h], i in order, for t < n.
  void (*simhash)(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, float* out) = nullptr;
  // AMS projections of n tokens for all repetitions: y[(r * n + t) * dp + c] = sum over i with ams_index ==
  // c of ams_sign * x[t * dim + i], i in increasing order (the scalar scatter's sequence), read from the gather
  // lists of `m`. Scratch: xt holds dim * kFDELanes floats, yt dp * kFDELanes.
  void (*ams_project)(const float* x, i64 n, i64 dim, const FDEMatrices& m, i64 repetitions, i64 dp, float* xt,
                      float* yt, float* y) = nullptr;
  // dst[0 .. count) = src[0 .. count): the encodings are written once and not read back by the driver, so the x86
  // kernels use non-temporal stores when dst is aligned (no read-for-ownership), the others memcpy; stream_fence()
  // orders those stores before the task reports completion.
  void (*stream_copy)(float* dst, const float* src, i64 count) = nullptr;
  // Sign bits of one token's sketches: bit h % 64 of words[h / 64] = (sketch[h] > 0) for h < hyperplanes (words
  // are OR-ed into: the caller zeroes them).
  void (*sign_words)(const float* sketch, i64 hyperplanes, std::uint64_t* words) = nullptr;
  void (*stream_fence)() = nullptr;
};

constexpr i64 kFDELanes = 32;  // tokens per AMS pass at most (scratch sizing): 4 blocks of 8 (AVX2), 2 of 16 (AVX-512)

const FDEKernels& fde_kernels();  // for the active ISA

// Encodes `n_clouds` point clouds (cloud i: rows[i] tokens, flat (rows[i], dim) float32 at clouds[i]) into out
// (n_clouds x config.output_dim()). documents: average + fill; else query sums. Empty clouds give zero rows (the
// Python layer raises before unless asked for zeros). Threads split clouds; results do not depend on them. Each
// cloud's values are checked to be finite just before it is encoded: returns -1, or the lowest index of a cloud
// holding a NaN or infinity (then the contents of `out` are unspecified). Each encoding is checked too, in cache
// as it is written (the float32 sums of finite tokens can overflow): *first_overflow gets -1 or the lowest index of
// a cloud whose encoding is not finite.
i64 fde_encode(const FDEConfig& config, const FDEMatrices& matrices, const float* const* clouds, const i64* rows,
               i64 n_clouds, bool documents, float* out, int threads, i64* first_overflow);

}  // namespace simkern
