// simkern/pq.hpp - product quantization: training, codes, distance tables, exact float ADC.
//
// Shapes and layout
//   dim = m * dsub; ksub = 2^nbits (256 or 16). Codebooks: float32 (m, ksub, dsub), FAISS's layout.
//   The kernels read them transposed per subspace, "ct": float32 (m, dsub, ksub), so that coordinate k of all
//   ksub centroids is contiguous and SIMD lanes run over centroids.
//   Codes in the kernels: uint8 (n, m), one code per byte (the Python layer packs 4-bit codes two per byte).
//   Tables: float32 (n_queries, m, ksub).
//
// Precision policy (why codes are identical on every ISA)
//   sq_dists / tables: out[j] = sum_k (x_k - c_jk)^2 (L2) or sum_k x_k * c_jk (IP), summed in k order with a
//   rounding after every multiply and every add (no FMA; the PQ files are compiled with -ffp-contract=off).
//   Each SIMD lane performs exactly the scalar sequence of operations, so distances and therefore argmin codes
//   are bit-identical across scalar, AVX2, AVX-512 and NEON. k-means assigns with nearest_dot instead (half norm
//   minus the dot product, fused multiply-adds in k order; std::fma in the scalar path), also lane-for-lane equal
//   to its scalar reference, so trained codebooks are bit-identical across ISAs and thread counts as well.
//   Argmin ties go to the lowest centroid index. ADC sums table entries in subspace order (float).
#pragma once

#include <cstdint>

#include "simkern/common.hpp"

namespace simkern {

enum class PQMetric : int { l2 = 0, ip = 1 };

// Queries of one pass of a quantised scan (at most kScanQueries; the kernels keep their sums in registers).
constexpr int kScanQueries = 4;
// Largest uint8 table entry the 4-bit scan accepts: two entries must add without overflowing a byte.
constexpr int kScan4Levels = 127;
using ScanHit = void (*)(void* ctx, int q, i64 first_id, std::uint64_t mask, const std::uint16_t* sums);
struct ScanQueries {
  const std::uint8_t* luts;  // query q's uint8 tables at luts + q * lut_stride
  i64 lut_stride;
  int count;                  // 1 .. kScanQueries
  std::uint16_t* thresholds;  // per query; lowered by the callback
  ScanHit hit;
  void* ctx;
};

struct PQKernels {
  const char* name = nullptr;
  // x: dsub floats; ct: dsub x ksub (one subspace of the transposed codebooks); out: ksub floats.
  void (*sq_dists)(const float* x, const float* ct, i64 dsub, i64 ksub, float* out) = nullptr;
  // Tables of one subspace for n queries: out[q * out_stride + j] = squared L2 (the sq_dists arithmetic) or dot
  // product of query q (x + q * x_stride) and centroid j. One call per subspace keeps its ct slice in L1.
  void (*tables)(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, bool l2, float* out,
                 i64 out_stride) = nullptr;
  // Nearest centroid by squared L2 for n points (x_stride floats apart; ct: one subspace, dsub x ksub): ids[i] =
  // the argmin of sq_dists (lowest id on ties), dists[i] its distance (dists may be null). Fused: no distance array.
  void (*nearest)(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, std::int32_t* ids,
                  float* dists) = nullptr;
  // k-means assignment: argmin of half_norms[j] - x.c_j, the dot subtracted term by term with fused multiply-adds
  // (std::fma in the scalar path; lowest id on ties); dists[i] = |x|^2 + 2 * that minimum, or null. About twice
  // as fast as `nearest` (one instruction per term instead of three); bit-identical across ISAs too.
  void (*nearest_dot)(const float* x, i64 n, i64 x_stride, const float* ct, const float* half_norms, i64 dsub, i64 ksub,
                      std::int32_t* ids, float* dists) = nullptr;
  // Quantised scans with a running threshold (the drivers' pq_search_quantised). For each group of consecutive
  // vectors (32 for scan4, 64 for scan8) and each query q < qs.count, the kernel computes the uint16 sums
  //   sum(i) = sum over subspaces s of lut_q[s][code(i, s)]
  // and calls qs.hit(qs.ctx, q, first_id, mask, sums) when some sum(i) <= qs.thresholds[q]: bit i of mask set <=>
  // sum(first_id + i) <= that threshold; sums[i] = sum(first_id + i) for every i of the group. The callback may
  // lower thresholds[q]; the kernel reads it again after each call. Padding vectors past the end of the data
  // (codes 0) are reported like the others: the callback drops them.
  //   scan4: blocks (4-bit layout, see pq_search_quantised) b in [block_begin, block_end), n_pairs = ceil(m / 2);
  //          lut_q = qs.luts + q * qs.lut_stride, (2 * n_pairs) x 16 bytes, every entry <= kScan4Levels.
  //   scan8: blocks of 64 vectors, block b = m rows of 64 bytes (row s: code(64 b + i, s) for i < 64);
  //          lut_q: m x 256 bytes.
  // Sums must stay below 2^16: the driver keeps (number of tables) * 255 <= 65535 (m <= 257).
  void (*scan4)(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs,
                const ScanQueries& qs) = nullptr;
  void (*scan8)(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs) = nullptr;
  // uint8 tables of one (query, cell) of an IVF-PQ search: for s < m, j < ksub,
  //   v = cell_tables ? cell_tables[s * ksub + j] + q_tables[s * ksub + j] : sign * q_tables[s * ksub + j]
  //   out[s * ksub + j] = (uint8) trunc(min((v - lows[s]) * scale + 0.5f, top))
  // in float32, each operation rounded (no FMA): the bytes are identical on every ISA. ksub is 16 or 256.
  void (*quantize_lut)(const float* q_tables, const float* cell_tables, const float* lows, i64 m, i64 ksub, float sign,
                       float scale, float top, std::uint8_t* out) = nullptr;
  // Per subspace s < m the minimum and maximum of t[s * ksub + j] over j (ksub 16 or 256; exact).
  void (*table_ranges)(const float* t, i64 m, i64 ksub, float* lo, float* hi) = nullptr;
  const char* scan8_name = nullptr;  // "scan8_scalar" or "scan8_vbmi" (a sub-feature variant of the avx512 level)
  const char* scan4_name = nullptr;  // "scan4_scalar", "scan4_x86" (vpshufb, 256-bit) or "scan4_neon"
};

const PQKernels& pq_kernels();  // for the active ISA

// Drivers (csrc/runtime/pq_train.cpp: k-means, codebook layout; pq_scan.cpp: encode, tables, ADC, scans). Inputs are assumed validated (shapes, finite values, codes < ksub).
void pq_transpose_codebooks(const float* codebooks, i64 m, i64 ksub, i64 dsub, float* ct);
void pq_encode(const float* x, i64 n, i64 dim, const float* ct, i64 m, i64 ksub, std::uint8_t* codes, int threads);
void pq_tables(const float* queries, i64 n_queries, i64 dim, const float* ct, i64 m, i64 ksub, PQMetric metric,
               float* tables, int threads);
void pq_adc(const float* tables, i64 n_queries, const std::uint8_t* codes, i64 n, i64 m, i64 ksub, float* out,
            int threads);
// Exact float ADC scan with fused top-k (scores equal pq_adc's bit for bit). codes (n, m); mask: n bytes or
// nullptr (0 = skip that id). Best first: ascending when smaller_is_better (L2), else descending; ties by id.
// Missing slots: id -1 and +inf (L2) / -inf (IP). Tasks split the codes of each query across threads.
void pq_search(const float* tables, i64 n_queries, const std::uint8_t* codes, i64 n, i64 m, i64 ksub,
               const std::uint8_t* mask, i64 k, bool smaller_is_better, float* out_scores, i64* out_ids, int threads);
// Quantised scans with an exact result. ksub 16: 4-bit fast scan over `blocks`, n_blocks = ceil(n / 32) blocks of
// 32 vectors; block b holds, per subspace pair p (subspaces 2p, 2p+1; odd m is padded with an all-zero table),
// 32 bytes: byte i = code(32 b + i, 2p) | code(32 b + i, 2p + 1) << 4. ksub 256: `blocks` = ceil(n / 64) blocks
// of 64 vectors, block b = m rows of 64 bytes, row s byte i = code(64 b + i, s). Padding vectors: code 0.
// Per query the float tables are quantised to uint8 (one scale per query, a bias per subspace, FAISS-style); the
// scan kernels sum them in uint16 for up to kScanQueries queries per pass and report every id within m + 2 units
// of the running k-th best quantised sum; each task keeps those candidates, and at the end every candidate within
// m + 2 units of the final k-th best is re-scored with the float tables (codes: the unpacked (n, m) codes), so
// the result equals pq_search's exactly (proof in docs/ARCHITECTURE.md). `n_blocks` may also be floor(n / group)
// (only full blocks blocked, as PQIndex keeps them while it grows): the vectors past the blocks, fewer than one
// block, are then all re-scored as candidates of every query - the same exact result.
void pq_search_quantised(const float* tables, i64 n_queries, i64 ksub, const std::uint8_t* codes,
                         const std::uint8_t* blocks, i64 n_blocks, i64 n, i64 m, const std::uint8_t* mask, i64 k,
                         bool smaller_is_better, float* out_scores, i64* out_ids, int threads);
// One k-means per subspace (subspaces run in parallel; each is sequential, so the result does not depend on the
// thread count). init: 0 = k-means++ (D^2 sampling), 1 = ksub distinct random points. Empty clusters are
// re-seeded with the point farthest from its centroid. Writes codebooks (m, ksub, dsub).
void pq_train(const float* x, i64 n, i64 dim, i64 m, i64 ksub, int iters, std::uint64_t seed, int init,
              float* codebooks, int threads);
// The k-means behind pq_train (one subspace) and the IVF coarse quantizer: xs (n, dsub) contiguous, centroids out
// (ksub, dsub). threads > 1 splits the assignment step into fixed chunks of points; the result does not depend on
// the thread count or the ISA.
void kmeans(const PQKernels& kern, const float* xs, i64 n, i64 dsub, i64 ksub, int iters, std::uint64_t seed, int init,
            float* centroids, int threads);

}  // namespace simkern
