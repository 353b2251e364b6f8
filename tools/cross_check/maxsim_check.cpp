// Stand-alone check of the MaxSim and PQ kernels and drivers at every ISA level the CPU has, without Python.
// PQ distance and dot-product kernels must equal the scalar kernel bit for bit (simkern/pq.hpp).
//
// Built and run by tools/cross_check/run.sh, mainly to test the NEON kernels under qemu-aarch64 (no aarch64
// machine here); it also runs natively. For seeded random ragged cases (dims and token counts at SIMD edges,
// value kinds that make all similarities negative) it compares maxsim_dense at each level with a float64
// reference written here (same tolerance rule as tests/reference.py), checks that threads 1 and 3 give identical
// bits, that top-k equals the sorted dense scores, and that pairs equal dense entries. Exit status 0 = all passed.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"
#include "simkern/isa.hpp"
#include "simkern/maxsim.hpp"
#include "simkern/pq.hpp"

using simkern::i64;

namespace {

const int kDims[] = {1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 65, 96, 127, 128, 129};
const int kCounts[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15, 16, 17, 23, 24, 25, 31, 32, 33, 47, 49};

struct Ragged {
  std::vector<float> tokens;
  std::vector<i64> offsets{0};
  i64 size() const { return static_cast<i64>(offsets.size()) - 1; }
};

std::uint16_t to_half_bits(float value, int kind) {  // kind 1: binary16 (RNE via the compiler), 2: bfloat16
  if (kind == 2) {
    std::uint32_t bits;
    std::memcpy(&bits, &value, 4);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
  }
  // binary16 by hand for values in range (the generator stays well inside): round to nearest even.
  std::uint32_t bits;
  std::memcpy(&bits, &value, 4);
  const std::uint32_t sign = (bits >> 16) & 0x8000u;
  const int exponent = static_cast<int>((bits >> 23) & 0xff) - 127 + 15;
  std::uint32_t mantissa = bits & 0x7fffffu;
  if (exponent <= 0) {  // subnormal or zero in binary16
    if (exponent < -10) return static_cast<std::uint16_t>(sign);
    mantissa |= 0x800000u;
    const int shift = 14 - exponent;
    std::uint32_t half = mantissa >> shift;
    const std::uint32_t rest = mantissa & ((1u << shift) - 1), halfway = 1u << (shift - 1);
    if (rest > halfway || (rest == halfway && (half & 1u))) ++half;
    return static_cast<std::uint16_t>(sign | half);
  }
  std::uint32_t half = (static_cast<std::uint32_t>(exponent) << 10) | (mantissa >> 13);
  const std::uint32_t rest = mantissa & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (half & 1u))) ++half;
  return static_cast<std::uint16_t>(sign | half);
}

float from_half_bits(std::uint16_t h, int kind) {
  if (kind == 2) {
    const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16;
    float v;
    std::memcpy(&v, &bits, 4);
    return v;
  }
  const int exponent = (h >> 10) & 0x1f;
  const int mantissa = h & 0x3ff;
  const float sign = (h & 0x8000u) ? -1.0f : 1.0f;
  if (exponent == 0) return sign * std::ldexp(static_cast<float>(mantissa), -24);
  return sign * std::ldexp(static_cast<float>(mantissa | 0x400), exponent - 25);
}

Ragged make_sets(std::mt19937_64& rng, int n_sets, int dim, int kind, bool negate) {
  Ragged r;
  std::uniform_int_distribution<int> pick(0, static_cast<int>(sizeof kCounts / sizeof kCounts[0]) - 1);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> positive(0.1f, 1.0f);
  for (int s = 0; s < n_sets; ++s) {
    const int n = kCounts[pick(rng)];
    for (int t = 0; t < n * dim; ++t) {
      float v = kind == 0 ? normal(rng) : positive(rng);
      r.tokens.push_back(negate ? -v : v);
    }
    r.offsets.push_back(r.offsets.back() + n);
  }
  return r;
}

// Float64 reference and the tolerance of tests/reference.py (2 (dim + Lq + 4) 2^-24 * magnitude).
void reference(const Ragged& q, const std::vector<float>& doc_values, const Ragged& d, int dim,
               std::vector<double>& want, std::vector<double>& tol, std::vector<double>& mag) {
  want.assign(q.size() * d.size(), 0.0);
  tol.assign(q.size() * d.size(), 0.0);
  mag.assign(q.size() * d.size(), 0.0);
  for (i64 a = 0; a < q.size(); ++a) {
    const i64 lq = q.offsets[a + 1] - q.offsets[a];
    for (i64 b = 0; b < d.size(); ++b) {
      double total = 0.0, magnitude = 0.0;
      for (i64 i = q.offsets[a]; i < q.offsets[a + 1]; ++i) {
        double best = -std::numeric_limits<double>::infinity(), best_mag = 0.0;
        for (i64 j = d.offsets[b]; j < d.offsets[b + 1]; ++j) {
          double dot = 0.0, mag = 0.0;
          for (int k = 0; k < dim; ++k) {
            dot += static_cast<double>(q.tokens[i * dim + k]) * doc_values[j * dim + k];
            mag += std::fabs(static_cast<double>(q.tokens[i * dim + k]) * doc_values[j * dim + k]);
          }
          best = std::max(best, dot);
          best_mag = std::max(best_mag, mag);
        }
        total += best;
        magnitude += best_mag;
      }
      want[a * d.size() + b] = lq == 0 ? 0.0 : total;
      tol[a * d.size() + b] = 2.0 * (dim + lq + 4) * std::ldexp(1.0, -24) * magnitude + 1e-30;
      mag[a * d.size() + b] = magnitude;
    }
  }
}

int g_failures = 0;
void fail(const char* what, const char* isa, int dim, int dtype) {
  if (++g_failures <= 20) std::printf("FAIL %s isa=%s dim=%d dtype=%d\n", what, isa, dim, dtype);
}

// PQ: every level's sq_dists / tables (L2 and IP) / nearest / nearest_dot equal the scalar kernel bit for bit, for dsub and ksub
// at SIMD edges.
int pq_check(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const simkern::PQKernels& ref = simkern::kernels_for(simkern::Isa::scalar).pq;
  int runs = 0;
  for (int dsub : {1, 2, 3, 4, 7, 8, 9, 16, 17, 32}) {
    for (int ksub : {1, 5, 8, 15, 16, 17, 63, 64, 65, 256}) {
      std::vector<float> x(dsub), ct(static_cast<std::size_t>(dsub * ksub)), want(ksub), got(ksub);
      for (float& v : x) v = normal(rng);
      for (float& v : ct) v = normal(rng);
      for (int level = 1; level < simkern::kNumIsas; ++level) {
        const simkern::Isa isa = static_cast<simkern::Isa>(level);
        if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
        const simkern::PQKernels& k = simkern::kernels_for(isa).pq;
        ref.sq_dists(x.data(), ct.data(), dsub, ksub, want.data());
        k.sq_dists(x.data(), ct.data(), dsub, ksub, got.data());
        ++runs;
        if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0)
          fail("pq sq_dists not bit-identical to scalar", simkern::isa_name(isa), dsub, ksub);
        // tables over n queries (strided rows, n at the query-block edges), both metrics.
        for (int n : {1, 3, 4, 5, 9}) {
          std::vector<float> qs(static_cast<std::size_t>(n * (dsub + 2)));
          for (float& v : qs) v = normal(rng);
          for (int l2 = 0; l2 < 2; ++l2) {
            std::vector<float> want_t(static_cast<std::size_t>(n * (ksub + 1)), 0.0f), got_t(want_t);
            ref.tables(qs.data(), n, dsub + 2, ct.data(), dsub, ksub, l2, want_t.data(), ksub + 1);
            k.tables(qs.data(), n, dsub + 2, ct.data(), dsub, ksub, l2, got_t.data(), ksub + 1);
            ++runs;
            if (std::memcmp(want_t.data(), got_t.data(), want_t.size() * sizeof(float)) != 0)
              fail(l2 ? "pq tables (l2) differ from scalar" : "pq tables (ip) differ from scalar",
                   simkern::isa_name(isa), dsub, ksub);
          }
        }
        // nearest / nearest_dot over n points (strided, n at the point-block edges), with ties forced by duplicated
        // centroids: ids and distances equal the scalar kernels'.
        for (int n : {1, 2, 3, 4, 5, 9}) {
          std::vector<float> pts(static_cast<std::size_t>(n * (dsub + 1))), half(ksub), ctd(ct);
          for (float& v : pts) v = normal(rng);
          // Centroid 1 repeated at every id = 1 mod 16 (the same lane for 4, 8 and 16 lanes) and even points placed
          // on it: the minimum is a tie inside one lane and across lanes, and the lowest id (1) must win.
          for (int j = 17; j < ksub; j += 16)
            for (int kk = 0; kk < dsub; ++kk) ctd[kk * ksub + j] = ctd[kk * ksub + 1];
          if (ksub > 1)
            for (int p = 0; p < n; p += 2)
              for (int kk = 0; kk < dsub; ++kk) pts[p * (dsub + 1) + kk] = ctd[kk * ksub + 1];
          for (int j = 0; j < ksub; ++j) {
            float acc = 0.0f;
            for (int kk = 0; kk < dsub; ++kk) acc += ctd[kk * ksub + j] * ctd[kk * ksub + j];
            half[j] = 0.5f * acc;
          }
          for (int op = 0; op < 2; ++op) {
            std::vector<std::int32_t> want_id(n), got_id(n);
            std::vector<float> want_d(n), got_d(n);
            if (op) {
              ref.nearest_dot(pts.data(), n, dsub + 1, ctd.data(), half.data(), dsub, ksub, want_id.data(),
                              want_d.data());
              k.nearest_dot(pts.data(), n, dsub + 1, ctd.data(), half.data(), dsub, ksub, got_id.data(), got_d.data());
            } else {
              ref.nearest(pts.data(), n, dsub + 1, ctd.data(), dsub, ksub, want_id.data(), want_d.data());
              k.nearest(pts.data(), n, dsub + 1, ctd.data(), dsub, ksub, got_id.data(), got_d.data());
            }
            ++runs;
            if (want_id != got_id || std::memcmp(want_d.data(), got_d.data(), n * sizeof(float)) != 0)
              fail(op ? "pq nearest_dot differs from scalar" : "pq nearest differs from scalar", simkern::isa_name(isa),
                   dsub, ksub);
          }
        }
      }
    }
  }
  return runs;
}

// IVF-PQ table kernels: every level's quantize_lut bytes (with and without cell tables, both signs) and
// table_ranges equal the scalar kernel's, for ksub 16 and 256 and m at odd sizes.
int lut_check(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const simkern::PQKernels& ref = simkern::kernels_for(simkern::Isa::scalar).pq;
  int runs = 0;
  for (int ksub : {16, 256}) {
    for (int m : {1, 2, 3, 7, 16}) {
      std::vector<float> qt(static_cast<std::size_t>(m * ksub)), ct(qt.size()), lows(m), want_lo(m), want_hi(m),
          got_lo(m), got_hi(m);
      for (float& v : qt) v = normal(rng);
      for (float& v : ct) v = normal(rng);
      ref.table_ranges(qt.data(), m, ksub, want_lo.data(), want_hi.data());
      for (int level = 1; level < simkern::kNumIsas; ++level) {
        const simkern::Isa isa = static_cast<simkern::Isa>(level);
        if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
        const simkern::PQKernels& k = simkern::kernels_for(isa).pq;
        k.table_ranges(qt.data(), m, ksub, got_lo.data(), got_hi.data());
        ++runs;
        if (want_lo != got_lo || want_hi != got_hi)
          fail("pq table_ranges differ from scalar", simkern::isa_name(isa), m, ksub);
        for (int with_cells = 0; with_cells < 2; ++with_cells)
          for (float sign : {1.0f, -1.0f}) {
            // lows: a lower bound of each subspace's entries, scale: levels / a span (entries land in 0..top)
            float span = 0.0f;
            for (int s = 0; s < m; ++s) {
              float lo = 1e30f, hi = -1e30f;
              for (int j = 0; j < ksub; ++j) {
                const float v = with_cells ? ct[s * ksub + j] + qt[s * ksub + j] : sign * qt[s * ksub + j];
                lo = std::min(lo, v);
                hi = std::max(hi, v);
              }
              lows[s] = lo;
              span = std::max(span, hi - lo);
            }
            const float top = ksub == 16 ? 127.0f : 255.0f, scale = top / span;
            std::vector<std::uint8_t> want(qt.size()), got(qt.size());
            const float* cells = with_cells ? ct.data() : nullptr;
            ref.quantize_lut(qt.data(), cells, lows.data(), m, ksub, sign, scale, top, want.data());
            k.quantize_lut(qt.data(), cells, lows.data(), m, ksub, sign, scale, top, got.data());
            ++runs;
            if (want != got) fail("pq quantize_lut differs from scalar", simkern::isa_name(isa), m, ksub);
          }
      }
    }
  }
  return runs;
}

// Quantised scans: every level's scan4 / scan8 reports exactly the scalar kernel's (id, sum) pairs for 1-4 queries
// and several thresholds (4-bit tables <= 127 as the contract says, 8-bit tables 0-255).
struct ScanOut {
  std::vector<std::uint16_t> sums;
  std::vector<char> reported;
  i64 width;
};

void record_hit(void* ctx, int q, i64 first_id, std::uint64_t mask, const std::uint16_t* sums) {
  ScanOut& o = *static_cast<ScanOut*>(ctx);
  for (int i = 0; i < 64; ++i)
    if (mask >> i & 1) {
      o.sums[q * o.width + first_id + i] = sums[i];
      o.reported[q * o.width + first_id + i] = 1;
    }
}

ScanOut run_scan(const simkern::PQKernels& k, bool four_bit, const std::vector<std::uint8_t>& blocks, i64 n_blocks,
                 i64 rows, const std::vector<std::uint8_t>& luts, int nq, std::uint16_t threshold) {
  const i64 group = four_bit ? 32 : 64;
  ScanOut o{std::vector<std::uint16_t>(nq * n_blocks * group), std::vector<char>(nq * n_blocks * group),
            n_blocks * group};
  std::uint16_t thresholds[simkern::kScanQueries];
  for (auto& t : thresholds) t = threshold;
  const i64 lut_stride = static_cast<i64>(luts.size()) / nq;
  simkern::ScanQueries qs{luts.data(), lut_stride, nq, thresholds, record_hit, &o};
  if (four_bit) k.scan4(blocks.data(), 0, n_blocks, rows, qs);
  else k.scan8(blocks.data(), 0, n_blocks, rows, qs);
  return o;
}

int scan_check(std::mt19937_64& rng) {
  const simkern::PQKernels& ref = simkern::kernels_for(simkern::Isa::scalar).pq;
  int runs = 0;
  for (int four_bit = 0; four_bit < 2; ++four_bit)
    for (int rows : {1, 2, 7, 16, 48}) {
      const i64 n_blocks = 3, group = four_bit ? 32 : 64, entries = four_bit ? 2 * rows * 16 : rows * 256;
      std::vector<std::uint8_t> blocks(static_cast<std::size_t>(n_blocks * rows * group));
      for (auto& v : blocks) v = static_cast<std::uint8_t>(rng());
      for (int nq = 1; nq <= simkern::kScanQueries; ++nq) {
        std::vector<std::uint8_t> luts(static_cast<std::size_t>(nq * entries));
        for (auto& v : luts) v = static_cast<std::uint8_t>(rng() % (four_bit ? simkern::kScan4Levels + 1 : 256));
        for (std::uint16_t threshold : {0, 900, 2500, 65535}) {
          const ScanOut want = run_scan(ref, four_bit, blocks, n_blocks, rows, luts, nq, threshold);
          for (int level = 1; level < simkern::kNumIsas; ++level) {
            const simkern::Isa isa = static_cast<simkern::Isa>(level);
            if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
            const simkern::PQKernels& k = simkern::kernels_for(isa).pq;
            const ScanOut got = run_scan(k, four_bit, blocks, n_blocks, rows, luts, nq, threshold);
            ++runs;
            if (got.sums != want.sums || got.reported != want.reported)
              fail(four_bit ? "pq scan4 differs from scalar" : "pq scan8 differs from scalar", k.scan8_name, rows, nq);
          }
        }
      }
    }
  return runs;
}

// FDE: every level's SimHash sketches and AMS projections equal the scalar kernels' bit for bit (token counts and
// hyperplane counts at the lane edges, d_p values that leave some outputs without inputs).
int fde_check(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const simkern::FDEKernels& ref = simkern::kernels_for(simkern::Isa::scalar).fde;
  int runs = 0;
  for (int dim : {1, 3, 8, 17, 64})
    for (int reps : {1, 3, 20})
      for (int n : {1, 4, 5, 9, 17}) {
        simkern::FDEConfig c;
        c.dim = dim;
        c.repetitions = reps;
        c.simhash_bits = 3 + static_cast<int>(rng() % 4);
        c.ams = true;
        c.projection_dim = 1 + static_cast<int>(rng() % 20);
        c.seed = static_cast<std::uint32_t>(rng());
        const simkern::FDEMatrices m = simkern::fde_build_matrices(c);
        const i64 hyper = reps * c.simhash_bits, dp = c.projection_dim;
        std::vector<float> x(static_cast<std::size_t>(n * dim));
        for (float& v : x) v = normal(rng);
        std::vector<float> want(static_cast<std::size_t>(n * hyper)), got(want.size());
        std::vector<float> want_y(static_cast<std::size_t>(reps * n * dp)), got_y(want_y.size());
        std::vector<float> xt(static_cast<std::size_t>(dim * simkern::kFDELanes)),
            yt(static_cast<std::size_t>(dp * simkern::kFDELanes));
        ref.simhash(x.data(), n, dim, m.simhash.data(), hyper, want.data());
        ref.ams_project(x.data(), n, dim, m, reps, dp, xt.data(), yt.data(), want_y.data());
        for (int level = 1; level < simkern::kNumIsas; ++level) {
          const simkern::Isa isa = static_cast<simkern::Isa>(level);
          if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
          const simkern::FDEKernels& k = simkern::kernels_for(isa).fde;
          k.simhash(x.data(), n, dim, m.simhash.data(), hyper, got.data());
          k.ams_project(x.data(), n, dim, m, reps, dp, xt.data(), yt.data(), got_y.data());
          runs += 2;
          if (std::memcmp(want.data(), got.data(), want.size() * sizeof(float)) != 0)
            fail("fde simhash differs from scalar", simkern::isa_name(isa), dim, n);
          if (std::memcmp(want_y.data(), got_y.data(), want_y.size() * sizeof(float)) != 0)
            fail("fde ams_project differs from scalar", simkern::isa_name(isa), dim, n);
        }
      }
  return runs;
}

// HNSW: every level's distances (squared L2 and inner product, float32 and float16 storage) equal the scalar
// kernel's bit for bit: the 32-lane order, the zero-padded tail and the reduction tree are the same everywhere.
int hnsw_check(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const simkern::HNSWKernels& ref = simkern::kernels_for(simkern::Isa::scalar).hnsw;
  int runs = 0;
  for (int dim : {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 384})
    for (int trial = 0; trial < 4; ++trial) {
      std::vector<float> q(static_cast<std::size_t>(dim)), v(q.size());
      std::vector<std::uint16_t> h(q.size()), hq(q.size());
      for (float& x : q) x = normal(rng);
      for (float& x : v) x = normal(rng);
      for (std::uint16_t& x : h) {  // any finite half, subnormals included
        x = static_cast<std::uint16_t>(rng() & 0xffff);
        if (((x >> 10) & 0x1f) == 0x1f) x = static_cast<std::uint16_t>(x & ~0x4000);
      }
      for (std::uint16_t& x : hq) x = static_cast<std::uint16_t>(0x3c00 | (rng() & 0x3ff));  // halves in [1, 2)
      const float want[4] = {ref.l2_f32(q.data(), v.data(), dim), ref.ip_f32(q.data(), v.data(), dim),
                             ref.l2_f16(q.data(), h.data(), dim), ref.ip_f16(q.data(), h.data(), dim)};
      for (int level = 1; level < simkern::kNumIsas; ++level) {
        const simkern::Isa isa = static_cast<simkern::Isa>(level);
        if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
        const simkern::HNSWKernels& k = simkern::kernels_for(isa).hnsw;
        const float got[4] = {k.l2_f32(q.data(), v.data(), dim), k.ip_f32(q.data(), v.data(), dim),
                              k.l2_f16(q.data(), h.data(), dim), k.ip_f16(q.data(), h.data(), dim)};
        // Two-vector kernels: (v, q) and (q, v) as the pair (the query doubles as a stored vector).
        float pair[8];
        k.l2_f32_x2(q.data(), v.data(), q.data(), dim, pair);
        k.ip_f32_x2(q.data(), q.data(), v.data(), dim, pair + 2);
        k.l2_f16_x2(q.data(), h.data(), hq.data(), dim, pair + 4);
        k.ip_f16_x2(q.data(), hq.data(), h.data(), dim, pair + 6);
        const float want_pairs[8] = {
            want[0], ref.l2_f32(q.data(), q.data(), dim),  ref.ip_f32(q.data(), q.data(), dim),  want[1],
            want[2], ref.l2_f16(q.data(), hq.data(), dim), ref.ip_f16(q.data(), hq.data(), dim), want[3]};
        runs += 8;
        if (std::memcmp(want, got, sizeof want) != 0)
          fail("hnsw distance differs from scalar", simkern::isa_name(isa), dim, trial);
        if (std::memcmp(want_pairs, pair, sizeof pair) != 0)
          fail("hnsw two-vector distance differs from scalar", simkern::isa_name(isa), dim, trial);
      }
    }
  return runs;
}

// FWHT: every level's butterfly passes equal the scalar kernel's bit for bit (float32 and float64, widths at the
// lane edges, strides wider than the width, several pass ranges).
int fwht_check(std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const simkern::FWHTKernels& ref = simkern::kernels_for(simkern::Isa::scalar).fwht;
  int runs = 0;
  for (int rows : {2, 8, 64})
    for (int width : {1, 3, 4, 7, 8, 9, 16, 17, 33})
      for (int h_begin : {1, 2}) {
        const int stride = width + 3;
        std::vector<float> xf(static_cast<std::size_t>(rows * stride));
        std::vector<double> xd(xf.size());
        for (std::size_t i = 0; i < xf.size(); ++i) xd[i] = normal(rng), xf[i] = static_cast<float>(xd[i]);
        std::vector<float> wf = xf;
        std::vector<double> wd = xd;
        ref.passes_f32(wf.data(), rows, stride, width, h_begin, rows);
        ref.passes_f64(wd.data(), rows, stride, width, h_begin, rows);
        for (int level = 1; level < simkern::kNumIsas; ++level) {
          const simkern::Isa isa = static_cast<simkern::Isa>(level);
          if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
          const simkern::FWHTKernels& k = simkern::kernels_for(isa).fwht;
          std::vector<float> gf = xf;
          std::vector<double> gd = xd;
          k.passes_f32(gf.data(), rows, stride, width, h_begin, rows);
          k.passes_f64(gd.data(), rows, stride, width, h_begin, rows);
          runs += 2;
          if (std::memcmp(gf.data(), wf.data(), wf.size() * sizeof(float)) != 0)
            fail("fwht float32 passes differ from scalar", simkern::isa_name(isa), width, rows);
          if (std::memcmp(gd.data(), wd.data(), wd.size() * sizeof(double)) != 0)
            fail("fwht float64 passes differ from scalar", simkern::isa_name(isa), width, rows);
        }
      }
  return runs;
}

// Sketch kernels: add_rows, gemm_acc and rmatvec equal the scalar kernel's bit for bit (adds in order, one FMA per
// term); matvec (lane-wise dot products) agrees to rounding. Widths and row counts at the lane edges.
template <class T>
void sketch_case(std::mt19937_64& rng, const simkern::SketchKernels& ref, const simkern::SketchKernels& k,
                 const char* isa, int width, int rows, int& runs) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const int ld = width + 5, out_rows = 7, count = 3 * rows;
  std::vector<T> src(static_cast<std::size_t>(rows * ld)), g(static_cast<std::size_t>(out_rows * rows)),
      out0(static_cast<std::size_t>(out_rows * ld));
  for (auto& v : src) v = static_cast<T>(normal(rng));
  for (auto& v : g) v = static_cast<T>(normal(rng));
  for (auto& v : out0) v = static_cast<T>(normal(rng));
  std::vector<std::int64_t> orow(static_cast<std::size_t>(count)), srow(orow.size());
  std::vector<std::uint8_t> neg(orow.size());
  for (int t = 0; t < count; ++t) orow[t] = rng() % out_rows, srow[t] = rng() % rows, neg[t] = rng() & 1;
  auto want = out0, got = out0;
  if constexpr (std::is_same_v<T, float>) {
    ref.add_rows_f32(want.data(), ld, src.data(), ld, width, orow.data(), srow.data(), neg.data(), count);
    k.add_rows_f32(got.data(), ld, src.data(), ld, width, orow.data(), srow.data(), neg.data(), count);
  } else {
    ref.add_rows_f64(want.data(), ld, src.data(), ld, width, orow.data(), srow.data(), neg.data(), count);
    k.add_rows_f64(got.data(), ld, src.data(), ld, width, orow.data(), srow.data(), neg.data(), count);
  }
  ++runs;
  if (std::memcmp(want.data(), got.data(), want.size() * sizeof(T)) != 0)
    fail("sketch add_rows differs", isa, width, rows);
  want = out0, got = out0;
  if constexpr (std::is_same_v<T, float>) {
    ref.gemm_acc_f32(want.data(), ld, g.data(), rows, src.data(), ld, out_rows, rows, width);
    k.gemm_acc_f32(got.data(), ld, g.data(), rows, src.data(), ld, out_rows, rows, width);
  } else {
    ref.gemm_acc_f64(want.data(), ld, g.data(), rows, src.data(), ld, out_rows, rows, width);
    k.gemm_acc_f64(got.data(), ld, g.data(), rows, src.data(), ld, out_rows, rows, width);
  }
  ++runs;
  if (std::memcmp(want.data(), got.data(), want.size() * sizeof(T)) != 0)
    fail("sketch gemm_acc differs", isa, width, rows);
}

int sketch_check(std::mt19937_64& rng) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const simkern::SketchKernels& ref = simkern::kernels_for(simkern::Isa::scalar).sketch;
  int runs = 0;
  for (int level = 1; level < simkern::kNumIsas; ++level) {
    const simkern::Isa isa = static_cast<simkern::Isa>(level);
    if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
    const simkern::SketchKernels& k = simkern::kernels_for(isa).sketch;
    for (int width : {1, 2, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 65})
      for (int rows : {1, 2, 3, 5, 17}) {
        sketch_case<float>(rng, ref, k, simkern::isa_name(isa), width, rows, runs);
        sketch_case<double>(rng, ref, k, simkern::isa_name(isa), width, rows, runs);
        const int stride = width + 3;
        std::vector<double> a(static_cast<std::size_t>(rows * stride)), u(static_cast<std::size_t>(rows)),
            v(static_cast<std::size_t>(width));
        for (auto& x : a) x = normal(rng);
        for (auto& x : u) x = normal(rng);
        for (auto& x : v) x = normal(rng);
        std::vector<double> want(static_cast<std::size_t>(width), 0.5), got = want;
        ref.rmatvec_f64(a.data(), rows, stride, width, u.data(), want.data());
        k.rmatvec_f64(a.data(), rows, stride, width, u.data(), got.data());
        ++runs;
        if (std::memcmp(want.data(), got.data(), want.size() * sizeof(double)) != 0)
          fail("sketch rmatvec differs", simkern::isa_name(isa), width, rows);
        std::vector<double> mv_want(static_cast<std::size_t>(rows)), mv_got(mv_want.size());
        ref.matvec_f64(a.data(), rows, stride, width, v.data(), mv_want.data());
        k.matvec_f64(a.data(), rows, stride, width, v.data(), mv_got.data());
        ++runs;
        for (int r = 0; r < rows; ++r) {
          double mag = 0.0;
          for (int c = 0; c < width; ++c) mag += std::fabs(a[r * stride + c] * v[c]);
          if (std::fabs(mv_want[r] - mv_got[r]) > 1e-14 * mag + 1e-300)
            fail("sketch matvec beyond rounding", simkern::isa_name(isa), width, rows);
        }
      }
  }
  return runs;
}

// float_to_f16_rne (HNSW float16 storage): the nearest binary16, ties to the even one, for random finite floats
// of every magnitude and the edges (checked against its neighbours through the exact widening f16_to_float).
int f16_rounding_check(std::mt19937_64& rng) {
  int runs = 0;
  std::vector<float> values = {0.0f,  -0.0f,          65504.0f,       65519.0f,       65520.0f,
                               1e-8f, 2.9802322e-08f, 5.9604645e-08f, 6.1035156e-05f, 6.0975552e-05f,
                               1.0f,  1.00048828125f, -2.5f,          3e38f};
  for (int i = 0; i < 200000; ++i) {
    std::uint32_t bits = static_cast<std::uint32_t>(rng());
    bits = (bits & 0x807fffffu) | ((100u + (bits >> 23) % 50u) << 23);  // exponents 2^-27 .. 2^22
    float v;
    std::memcpy(&v, &bits, sizeof v);
    values.push_back(v);
  }
  for (float v : values) {
    const std::uint16_t h = simkern::float_to_f16_rne(v);
    ++runs;
    const double x = v, got = simkern::f16_to_float(h);
    if (std::fabs(x) >= 65520.0) {
      if ((h & 0x7fffu) != 0x7c00u) fail("float_to_f16_rne: not inf above the half range", "scalar", 0, 0);
      continue;
    }
    for (int step : {-1, 1}) {  // no neighbouring half (same sign side) is nearer, and ties go to even
      const int mag = (h & 0x7fff) + step;
      if (mag < 0 || mag > 0x7bff) continue;
      const double other = simkern::f16_to_float(static_cast<std::uint16_t>((h & 0x8000) | mag));
      const double e_got = std::fabs(got - x), e_other = std::fabs(other - x);
      if (e_other < e_got || (e_other == e_got && (h & 1)))
        fail("float_to_f16_rne: a nearer (or even) half exists", "scalar", mag, 0);
    }
  }
  return runs;
}

}  // namespace

int main() {
  std::mt19937_64 rng(20261128);
  int cases = 0;
  for (int level = 0; level < simkern::kNumIsas; ++level) {
    const simkern::Isa isa = static_cast<simkern::Isa>(level);
    if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
    const simkern::KernelTable& t = simkern::kernels_for(isa);
    std::printf("level %-6s kernels: %s %s %s\n", simkern::isa_name(isa), t.maxsim[0].name, t.maxsim[1].name,
                t.maxsim[2].name);
  }
  for (int round = 0; round < 3; ++round) {
    for (int dim : kDims) {
      const int kind = (round + dim) % 2;  // 0: normal values, 1: positive (negated queries -> all sims negative)
      Ragged q = make_sets(rng, 1 + static_cast<int>(rng() % 5), dim, kind, kind == 1);
      Ragged d = make_sets(rng, static_cast<int>(rng() % 11), dim, kind, false);
      for (int dtype = 0; dtype < simkern::kNumDocDTypes; ++dtype) {
        std::vector<std::uint16_t> bits(d.tokens.size());
        std::vector<float> values(d.tokens);
        if (dtype != 0)
          for (std::size_t t = 0; t < bits.size(); ++t)
            values[t] = from_half_bits(bits[t] = to_half_bits(d.tokens[t], dtype), dtype);
        std::vector<double> want, tol, mag;
        reference(q, values, d, dim, want, tol, mag);
        simkern::QueryTokens qt{q.tokens.data(), q.offsets.data(), q.size(), dim};
        simkern::DocTokens dt;
        dt.tokens = dtype == 0 ? static_cast<const void*>(d.tokens.data()) : static_cast<const void*>(bits.data());
        dt.dtype = static_cast<simkern::DocDType>(dtype);
        dt.dim = dim;
        dt.offsets = d.offsets.data();
        dt.n_docs = d.size();
        for (int level = 0; level < simkern::kNumIsas; ++level) {
          const simkern::Isa isa = static_cast<simkern::Isa>(level);
          if (!simkern::isa_compiled(isa) || !simkern::isa_supported(isa)) continue;
          simkern::set_max_isa(isa);
          if (simkern::active_isa() != isa) continue;
          const char* name = simkern::isa_name(isa);
          const bool rounds_query = std::strstr(simkern::maxsim_kernel(dt.dtype).name, "_dpbf16") != nullptr;
          std::vector<float> one(want.size()), three(want.size());
          ++cases;
          try {
            simkern::maxsim_dense(qt, dt, one.data(), 1);
            simkern::maxsim_dense(qt, dt, three.data(), 3);
          } catch (const std::exception& e) {
            fail(e.what(), name, dim, dtype);
            continue;
          }
          if (std::memcmp(one.data(), three.data(), one.size() * sizeof(float)) != 0)
            fail("threads 1 vs 3", name, dim, dtype);
          for (std::size_t x = 0; x < want.size(); ++x) {
            // The bf16 dot-product kernel rounds the query to bf16: up to 2^-9 relative per product, 2^-8 allowed.
            const double limit = tol[x] + (rounds_query ? std::ldexp(mag[x], -8) : 0.0);
            const bool both_neg_inf = std::isinf(want[x]) && want[x] < 0 && std::isinf(one[x]) && one[x] < 0;
            if (!both_neg_inf && !(std::fabs(one[x] - want[x]) <= limit)) {
              fail("dense vs float64 reference", name, dim, dtype);
              break;
            }
          }
          const i64 k = 4;
          std::vector<float> top_s(q.size() * k);
          std::vector<i64> top_i(q.size() * k);
          simkern::maxsim_topk(qt, dt, k, nullptr, nullptr, top_s.data(), top_i.data(), 3);
          for (i64 a = 0; a < q.size(); ++a) {
            std::vector<i64> order(d.size());
            for (i64 b = 0; b < d.size(); ++b) order[b] = b;
            std::sort(order.begin(), order.end(), [&](i64 x, i64 y) {
              const float sx = one[a * d.size() + x], sy = one[a * d.size() + y];
              return sx > sy || (sx == sy && x < y);
            });
            for (i64 j = 0; j < k; ++j) {
              const i64 expect = j < d.size() ? order[j] : -1;
              if (top_i[a * k + j] != expect) fail("top-k vs sorted dense", name, dim, dtype);
            }
          }
          if (q.size() > 0 && d.size() > 0) {
            std::vector<i64> qi, di;
            for (int p = 0; p < 12; ++p) {
              qi.push_back(static_cast<i64>(rng() % q.size()));
              di.push_back(static_cast<i64>(rng() % d.size()));
            }
            std::vector<float> pairs(qi.size());
            simkern::maxsim_pairs(qt, dt, qi.data(), di.data(), static_cast<i64>(qi.size()), pairs.data(), 2);
            for (std::size_t p = 0; p < qi.size(); ++p)
              if (std::memcmp(&pairs[p], &one[qi[p] * d.size() + di[p]], sizeof(float)) != 0)
                fail("pairs vs dense", name, dim, dtype);
          }
        }
      }
    }
  }
  const int pq_runs = pq_check(rng) + scan_check(rng) + lut_check(rng);
  const int fde_runs = fde_check(rng);
  const int hnsw_runs = hnsw_check(rng);
  const int fwht_runs = fwht_check(rng);
  const int sketch_runs = sketch_check(rng);
  const int f16_runs = f16_rounding_check(rng);
  std::printf(
      "maxsim_check: best isa %s, %d MaxSim kernel runs, %d PQ, %d FDE, %d HNSW, %d FWHT and %d sketch kernel "
      "comparisons, %d float16 roundings, %d failures\n",
      simkern::isa_name(simkern::best_isa()), cases, pq_runs, fde_runs, hnsw_runs, fwht_runs, sketch_runs, f16_runs,
      g_failures);
  return g_failures == 0 ? 0 : 1;
}
