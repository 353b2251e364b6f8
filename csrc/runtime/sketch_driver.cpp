// Sketch driver (contract in simkern/sketch.hpp): randomness, blocking and threading around the kernels of
// generic/sketch-inl.hpp and the FWHT passes. Every output value is produced by the same operations in the same order
// whatever the thread count: srht and the sparse kinds split the columns (each thread owns a strip of every output
// row), gaussian splits the output rows, and block sizes depend on the shape only.
#include <algorithm>
#include <cmath>
#include <unordered_set>
#include <vector>

#include "simkern/dispatch.hpp"
#include "splitmix.hpp"
#include "simkern/fwht.hpp"
#include "simkern/sketch.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

using u64 = std::uint64_t;

// Random streams: value(seed, stream, counter) is a splitmix64 hash, so any entry of S can be computed on its own.
enum : u64 { kStreamSigns = 1, kStreamRows = 2, kStreamGaussian = 3, kStreamSparse = 4 };

inline u64 stream_key(u64 seed, u64 stream) { return splitmix64(seed ^ splitmix64(stream * 0xd1b54a32d192ed03ULL)); }
inline u64 hash_at(u64 key, u64 counter) { return splitmix64(key + counter * 0x9e3779b97f4a7c15ULL); }
// floor(h * range / 2^64): a value in [0, range) from the high bits of h.
inline u64 scale_below(u64 h, u64 range) { return static_cast<u64>((static_cast<unsigned __int128>(h) * range) >> 64); }

i64 next_pow2(i64 n) {
  i64 p = 1;
  while (p < n) p *= 2;
  return p;
}

template <class T>
constexpr i64 pad_values() {
  return 64 / static_cast<i64>(sizeof(T));  // strips and buffers in whole cache lines
}

i64 round_up(i64 x, i64 to) { return (x + to - 1) / to * to; }

// Rows [r0, r1) of [A | B], columns [c0, c1), into buf (row stride ld), each row times sign (when signs != null:
// sign = -1 where the row's D bit is set). Rows past n are zero.
template <class T>
void load_block(const SketchInput<T>& in, i64 r0, i64 r1, i64 c0, i64 c1, const u64* sign_words, T* buf, i64 ld) {
  const i64 d = in.d;
  for (i64 r = r0; r < r1; ++r) {
    T* dst = buf + (r - r0) * ld;
    if (r >= in.n) {
      std::fill(dst, dst + (c1 - c0), T(0));
      continue;
    }
    const T s = (sign_words != nullptr && ((sign_words[(r >> 6)] >> (r & 63)) & 1)) ? T(-1) : T(1);
    // A's columns of the strip, then B's
    const i64 a_end = std::min(c1, d);
    if (c0 < a_end) {
      const T* src = in.a + r * in.a_rs;
      if (in.a_cs == 1) {
        for (i64 c = c0; c < a_end; ++c) dst[c - c0] = s * src[c];
      } else {
        for (i64 c = c0; c < a_end; ++c) dst[c - c0] = s * src[c * in.a_cs];
      }
    }
    const i64 b_begin = std::max(c0, d);
    if (b_begin < c1) {
      const T* src = in.b + r * in.b_rs;
      for (i64 c = b_begin; c < c1; ++c) dst[c - c0] = s * src[(c - d) * in.b_cs];
    }
  }
}

// Sign words of D: bit (i & 63) of word i >> 6 is set when D_i = -1.
std::vector<u64> sign_words(i64 n, u64 seed) {
  const u64 key = stream_key(seed, kStreamSigns);
  std::vector<u64> words(static_cast<std::size_t>((n + 63) / 64));
  for (std::size_t w = 0; w < words.size(); ++w) words[w] = hash_at(key, w);
  return words;
}

// m distinct rows of [0, big_n), uniformly (Floyd), increasing.
std::vector<std::int64_t> sampled_rows(i64 big_n, i64 m, u64 seed) {
  u64 state = stream_key(seed, kStreamRows);
  const auto next = [&state] { return splitmix64(state++); };
  const auto below = [&next](u64 range) {  // exactly uniform in [0, range) (Lemire's rejection)
    const u64 threshold = (0 - range) % range;
    for (;;) {
      const unsigned __int128 product = static_cast<unsigned __int128>(next()) * range;
      if (static_cast<u64>(product) >= threshold) return static_cast<u64>(product >> 64);
    }
  };
  std::unordered_set<std::int64_t> chosen;
  chosen.reserve(static_cast<std::size_t>(m) * 2);
  for (i64 j = big_n - m; j < big_n; ++j) {
    const auto t = static_cast<std::int64_t>(below(static_cast<u64>(j) + 1));
    if (!chosen.insert(t).second) chosen.insert(j);
  }
  std::vector<std::int64_t> rows(chosen.begin(), chosen.end());
  std::sort(rows.begin(), rows.end());
  return rows;
}

// Column strips: whole cache lines of columns, as many strips as threads (at most one per line of columns).
std::vector<i64> column_strips(i64 width, i64 line, int threads) {
  const i64 lines = (width + line - 1) / line;
  const i64 strips = std::max<i64>(1, std::min<i64>(threads, lines));
  std::vector<i64> bounds;
  for (i64 s = 0; s <= strips; ++s) bounds.push_back(std::min(width, (lines * s / strips) * line));
  return bounds;
}

// Block of rows for srht: 2^b >= max(2048, 2 m) - at least two blocks' worth of sampled rows per block, so the adds
// into the m sampled rows cost at most half a pass per block - with the buffer within 4 MiB (the fwht passes run on
// it in 256 KiB levels) and at most N. Measured on 2^20 x 65 float64 (m = 256 ... 2048): 2048-4096 rows beat 256-1024
// by 10-40 %. Depends on the shape only (never on threads).
template <class T>
i64 srht_block_rows(i64 big_n, i64 m, i64 width) {
  const i64 row_bytes = round_up(width, pad_values<T>()) * static_cast<i64>(sizeof(T));
  i64 bk = 1;
  while (bk < big_n && (bk < 2048 || bk < 2 * m) && 2 * bk * row_bytes <= (i64{4} << 20)) bk *= 2;
  return bk;
}

template <class T>
void scale_output(T* out, i64 count, double scale, int threads) {
  if (scale == 1.0) return;
  const T s = static_cast<T>(scale);
  const i64 chunk = i64{1} << 16;
  parallel_for((count + chunk - 1) / chunk, threads, [&](i64 t, int) {
    for (i64 i = t * chunk; i < std::min(count, (t + 1) * chunk); ++i) out[i] *= s;
  });
}

template <class T>
using AddRowsFn = void (*)(T*, i64, const T*, i64, i64, const std::int64_t*, const std::int64_t*, const std::uint8_t*,
                           i64);
template <class T>
using GemmFn = void (*)(T*, i64, const T*, i64, const T*, i64, i64, i64, i64);

template <class T>
void srht(const SketchInput<T>& in, i64 m, u64 seed, T* out, int threads, AddRowsFn<T> add_rows) {
  const i64 width = in.d + in.k, big_n = next_pow2(in.n);
  const i64 bk = srht_block_rows<T>(big_n, m, width);
  int log_bk = 0;
  while ((i64{1} << log_bk) < bk) ++log_bk;
  const std::vector<u64> signs = sign_words(in.n, seed);
  const std::vector<std::int64_t> rows = sampled_rows(big_n, m, seed);
  std::vector<std::int64_t> out_rows(static_cast<std::size_t>(m)), in_block(static_cast<std::size_t>(m));
  std::vector<u64> high(static_cast<std::size_t>(m));
  for (i64 t = 0; t < m; ++t) {
    out_rows[t] = t;
    in_block[t] = rows[t] & (bk - 1);
    high[t] = static_cast<u64>(rows[t]) >> log_bk;
  }
  const i64 blocks = (in.n + bk - 1) / bk;  // blocks wholly past n are zero: skipped
  const std::vector<i64> strips = column_strips(width, pad_values<T>(), threads);
  parallel_for(static_cast<i64>(strips.size()) - 1, threads, [&](i64 s, int) {
    const i64 c0 = strips[s], c1 = strips[s + 1], ld = round_up(c1 - c0, pad_values<T>());
    std::vector<T> buf(static_cast<std::size_t>(bk * ld), T(0));
    std::vector<std::uint8_t> negate(static_cast<std::size_t>(m));
    for (i64 block = 0; block < blocks; ++block) {
      load_block(in, block * bk, (block + 1) * bk, c0, c1, signs.data(), buf.data(), ld);
      fwht(buf.data(), bk, ld, false, 1);
      for (i64 t = 0; t < m; ++t) negate[t] = static_cast<std::uint8_t>(__builtin_popcountll(high[t] & block) & 1);
      add_rows(out + c0, width, buf.data(), ld, c1 - c0, out_rows.data(), in_block.data(), negate.data(), m);
    }
  });
  scale_output(out, m * width, 1.0 / std::sqrt(static_cast<double>(m)), threads);
}

template <class T>
void sparse(const SketchInput<T>& in, i64 m, i64 nnz, u64 seed, T* out, int threads, AddRowsFn<T> add_rows) {
  constexpr i64 kRows = 256;  // rows of A per step
  const i64 width = in.d + in.k;
  const u64 key = stream_key(seed, kStreamSparse);
  const std::vector<i64> strips = column_strips(width, pad_values<T>(), threads);
  parallel_for(static_cast<i64>(strips.size()) - 1, threads, [&](i64 s, int) {
    const i64 c0 = strips[s], c1 = strips[s + 1], ld = round_up(c1 - c0, pad_values<T>());
    std::vector<T> buf(static_cast<std::size_t>(kRows * ld), T(0));
    std::vector<std::int64_t> buckets(static_cast<std::size_t>(kRows * nnz)), src(buckets.size());
    std::vector<std::uint8_t> negate(buckets.size());
    for (i64 r0 = 0; r0 < in.n; r0 += kRows) {
      const i64 r1 = std::min(in.n, r0 + kRows);
      load_block<T>(in, r0, r1, c0, c1, nullptr, buf.data(), ld);
      i64 count = 0;
      for (i64 r = r0; r < r1; ++r)
        for (i64 t = 0; t < nnz; ++t, ++count) {
          const u64 h = hash_at(key, static_cast<u64>(r) * static_cast<u64>(nnz) + static_cast<u64>(t));
          const i64 lo = t * m / nnz, hi = (t + 1) * m / nnz;
          buckets[count] = lo + static_cast<i64>(scale_below(h, static_cast<u64>(hi - lo)));
          src[count] = r - r0;
          negate[count] = static_cast<std::uint8_t>(h & 1);
        }
      add_rows(out + c0, width, buf.data(), ld, c1 - c0, buckets.data(), src.data(), negate.data(), count);
    }
  });
  scale_output(out, m * width, 1.0 / std::sqrt(static_cast<double>(nnz)), threads);
}

// g[r][j] for output rows [i0, i0 + rows), A rows [j0, j0 + cols) (j0 even): N(0, 1) by Box-Muller from the hashes
// of (row, pair); a pair (2p, 2p + 1) of one row shares a radius and angle (cos, sin).
template <class T>
void gaussian_tile(u64 key, i64 i0, i64 rows, i64 j0, i64 cols, T* g, i64 ld) {
  constexpr double kTwoPi = 6.283185307179586476925286766559;
  for (i64 r = 0; r < rows; ++r) {
    const u64 base = static_cast<u64>(i0 + r) << 33;
    for (i64 j = 0; j < cols; j += 2) {
      const u64 p = static_cast<u64>(j0 + j) >> 1;
      const u64 h1 = hash_at(key, base + 2 * p), h2 = hash_at(key, base + 2 * p + 1);
      const double u1 = static_cast<double>((h1 >> 11) + 1) * 0x1.0p-53;  // (0, 1]
      const double u2 = static_cast<double>(h2 >> 11) * 0x1.0p-53;        // [0, 1)
      const double radius = std::sqrt(-2.0 * std::log(u1)), angle = kTwoPi * u2;
      g[r * ld + j] = static_cast<T>(radius * std::cos(angle));
      if (j + 1 < cols) g[r * ld + j + 1] = static_cast<T>(radius * std::sin(angle));
    }
  }
}

template <class T>
void gaussian(const SketchInput<T>& in, i64 m, u64 seed, T* out, int threads, GemmFn<T> gemm) {
  constexpr i64 kRows = 256, kOutRows = 32;  // A rows per step (even), output rows per generated tile
  const i64 width = in.d + in.k, ld = round_up(width, pad_values<T>());
  const u64 key = stream_key(seed, kStreamGaussian);
  // Each task owns whole output rows (so the FMA order per value is fixed) and reads A once.
  const i64 tasks = std::max<i64>(1, std::min<i64>(resolve_threads(threads), (m + kOutRows - 1) / kOutRows));
  parallel_for(tasks, threads, [&](i64 task, int) {
    const i64 i_begin = m * task / tasks, i_end = m * (task + 1) / tasks;
    std::vector<T> buf(static_cast<std::size_t>(kRows * ld), T(0)), g(static_cast<std::size_t>(kOutRows * kRows));
    for (i64 r0 = 0; r0 < in.n; r0 += kRows) {
      const i64 r1 = std::min(in.n, r0 + kRows);
      load_block<T>(in, r0, r1, 0, width, nullptr, buf.data(), ld);
      for (i64 i0 = i_begin; i0 < i_end; i0 += kOutRows) {
        const i64 rows = std::min(kOutRows, i_end - i0);
        gaussian_tile<T>(key, i0, rows, r0, r1 - r0, g.data(), kRows);
        gemm(out + i0 * width, width, g.data(), kRows, buf.data(), ld, rows, r1 - r0, width);
      }
    }
  });
  scale_output(out, m * width, 1.0 / std::sqrt(static_cast<double>(m)), threads);
}

template <class T>
void run_sketch(const SketchInput<T>& in, i64 m, SketchKind kind, u64 seed, i64 nnz, T* out, int threads,
                AddRowsFn<T> add_rows, GemmFn<T> gemm) {
  threads = resolve_threads(threads);
  const i64 width = in.d + in.k;
  std::fill(out, out + m * width, T(0));
  if (m == 0 || width == 0 || in.n == 0) return;
  switch (kind) {
    case SketchKind::srht:
      srht(in, m, seed, out, threads, add_rows);
      break;
    case SketchKind::gaussian:
      gaussian(in, m, seed, out, threads, gemm);
      break;
    case SketchKind::countsketch:
      sparse(in, m, 1, seed, out, threads, add_rows);
      break;
    case SketchKind::sparse_sign:
      sparse(in, m, nnz, seed, out, threads, add_rows);
      break;
  }
}

}  // namespace

void sketch(const SketchInput<float>& in, i64 m, SketchKind kind, std::uint64_t seed, i64 nnz, float* out,
            int threads) {
  const SketchKernels& k = sketch_kernels();
  run_sketch<float>(in, m, kind, seed, nnz, out, threads, k.add_rows_f32, k.gemm_acc_f32);
}
void sketch(const SketchInput<double>& in, i64 m, SketchKind kind, std::uint64_t seed, i64 nnz, double* out,
            int threads) {
  const SketchKernels& k = sketch_kernels();
  run_sketch<double>(in, m, kind, seed, nnz, out, threads, k.add_rows_f64, k.gemm_acc_f64);
}

void srht_rows(i64 n, i64 m, std::uint64_t seed, std::int64_t* out) {
  const std::vector<std::int64_t> rows = sampled_rows(next_pow2(n), m, seed);
  std::copy(rows.begin(), rows.end(), out);
}

void srht_signs(i64 n, std::uint64_t seed, std::int8_t* out) {
  const std::vector<u64> words = sign_words(n, seed);
  for (i64 i = 0; i < n; ++i) out[i] = ((words[i >> 6] >> (i & 63)) & 1) ? -1 : 1;
}

void matvec(const double* a, i64 n, i64 d, i64 stride, const double* v, double* out, int threads) {
  constexpr i64 kChunk = 4096;
  const auto kernel = sketch_kernels().matvec_f64;
  parallel_for((n + kChunk - 1) / kChunk, resolve_threads(threads), [&](i64 t, int) {
    const i64 r0 = t * kChunk, r1 = std::min(n, r0 + kChunk);
    kernel(a + r0 * stride, r1 - r0, stride, d, v, out + r0);
  });
}

void rmatvec(const double* a, i64 n, i64 d, i64 stride, const double* u, double* out, int threads) {
  constexpr i64 kChunk = 16384, kStep = 64;  // fixed chunks summed in order; rows per kernel call stay in L1
  const auto kernel = sketch_kernels().rmatvec_f64;
  const i64 chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(static_cast<std::size_t>(std::max<i64>(chunks, 1) * d), 0.0);
  parallel_for(chunks, resolve_threads(threads), [&](i64 t, int) {
    const i64 r_end = std::min(n, (t + 1) * kChunk);
    for (i64 r0 = t * kChunk; r0 < r_end; r0 += kStep)
      kernel(a + r0 * stride, std::min(kStep, r_end - r0), stride, d, u + r0, partial.data() + t * d);
  });
  std::fill(out, out + d, 0.0);
  for (i64 t = 0; t < chunks; ++t)
    for (i64 c = 0; c < d; ++c) out[c] += partial[t * d + c];
}

}  // namespace simkern
