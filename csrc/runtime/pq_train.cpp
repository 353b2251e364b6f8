// PQ training: per-subspace k-means on the thread pool (one subspace per task, so the codebooks do not depend on
// the thread count), and the codebook layout the scans read (pq_transpose_codebooks). Scanning is pq_scan.cpp.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "simkern/dispatch.hpp"
#include "simkern/pq.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

// splitmix64: a small, portable, seedable generator (the same stream on every platform and compiler).
struct SplitMix64 {
  std::uint64_t state;
  std::uint64_t next() {
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)
  i64 below(i64 n) { return static_cast<i64>(uniform() * static_cast<double>(n)); }
};

}  // namespace

// k-means of n points (xs: n x dsub, contiguous), centroids out: ksub x dsub. `threads` > 1 splits the assignment
// step into fixed chunks of points (each point's assignment is independent of the split, every other step is
// sequential): the result does not depend on the thread count. PQ training calls it from its own tasks (threads
// = 1 there: the subspaces are the parallel work); the IVF coarse quantizer with the whole pool.
void kmeans(const PQKernels& kern, const float* xs, i64 n, i64 dsub, i64 ksub, int iters, std::uint64_t seed, int init,
            float* centroids, int threads) {
  SplitMix64 rng{seed};
  std::vector<float> ct(static_cast<std::size_t>(dsub * ksub));
  const auto transpose = [&] {
    for (i64 j = 0; j < ksub; ++j)
      for (i64 k = 0; k < dsub; ++k) ct[k * ksub + j] = centroids[j * dsub + k];
  };

  // Initialisation.
  if (init == 1) {  // ksub distinct points chosen uniformly (partial Fisher-Yates on an index array)
    std::vector<i64> idx(static_cast<std::size_t>(n));
    for (i64 i = 0; i < n; ++i) idx[i] = i;
    for (i64 j = 0; j < ksub; ++j) {
      std::swap(idx[j], idx[j + rng.below(n - j)]);
      std::memcpy(centroids + j * dsub, xs + idx[j] * dsub, dsub * sizeof(float));
    }
  } else {  // k-means++: D^2 sampling (distances in double for the cumulative sum)
    // Seeding runs on a uniform sample of at most kSeedSample points per centroid (drawn from the same stream):
    // D^2 sampling makes ksub passes over its points, so on the full training set it would cost a few Lloyd
    // iterations; the sample keeps it to a small fraction of the training time.
    constexpr i64 kSeedSample = 32;
    std::vector<float> sample;
    const float* pts = xs;
    i64 count = n;
    if (n > kSeedSample * ksub) {
      count = kSeedSample * ksub;
      std::vector<i64> idx(static_cast<std::size_t>(n));
      for (i64 i = 0; i < n; ++i) idx[i] = i;
      sample.resize(static_cast<std::size_t>(count * dsub));
      for (i64 j = 0; j < count; ++j) {
        std::swap(idx[j], idx[j + rng.below(n - j)]);
        std::memcpy(sample.data() + j * dsub, xs + idx[j] * dsub, dsub * sizeof(float));
      }
      pts = sample.data();
    }
    // Distances from the newest centroid to every point with the SIMD sq_dists kernel, lanes over points: the
    // points transposed (dsub x count) play the role of the centroids. (c - x)^2 rounds like (x - c)^2.
    std::vector<float> xt(static_cast<std::size_t>(dsub * count)), d_new(static_cast<std::size_t>(count));
    for (i64 i = 0; i < count; ++i)
      for (i64 k = 0; k < dsub; ++k) xt[k * count + i] = pts[i * dsub + k];
    // D^2 sampling over blocks: per block a total of its point weights (four interleaved double partial sums, so
    // the adds do not form one serial chain), the target is located among the block totals first, then inside
    // its block; every sum has a fixed order, so the pick is deterministic.
    constexpr i64 kBlock = 1024;
    const i64 n_blocks = (count + kBlock - 1) / kBlock;
    std::vector<float> d2(static_cast<std::size_t>(count), std::numeric_limits<float>::infinity());
    std::vector<double> block_total(static_cast<std::size_t>(n_blocks));
    i64 first = rng.below(count);
    std::memcpy(centroids, pts + first * dsub, dsub * sizeof(float));
    for (i64 j = 1; j < ksub; ++j) {
      kern.sq_dists(centroids + (j - 1) * dsub, xt.data(), dsub, count, d_new.data());
      double total = 0.0;
      for (i64 b = 0; b < n_blocks; ++b) {
        const i64 end = std::min(count, (b + 1) * kBlock);
        double part[4] = {0.0, 0.0, 0.0, 0.0};
        for (i64 i = b * kBlock; i < end; ++i) {
          d2[i] = std::min(d2[i], d_new[i]);
          part[i & 3] += static_cast<double>(d2[i]);
        }
        block_total[b] = (part[0] + part[1]) + (part[2] + part[3]);
        total += block_total[b];
      }
      i64 pick = count - 1;
      if (total > 0.0) {
        double target = rng.uniform() * total;
        i64 b = 0;
        while (b + 1 < n_blocks && target >= block_total[b]) target -= block_total[b++];
        for (i64 i = b * kBlock, end = std::min(count, (b + 1) * kBlock); i < end; ++i) {
          target -= static_cast<double>(d2[i]);
          if (target < 0.0) {
            pick = i;
            break;
          }
        }
        if (target >= 0.0) {  // rounding left the target past its block: its last point of positive weight
          for (i64 i = std::min(count, (b + 1) * kBlock) - 1; i >= b * kBlock; --i)
            if (d2[i] > 0.0f) {
              pick = i;
              break;
            }
        }
      } else {
        pick = rng.below(count);  // all points coincide with chosen centroids: any point will do
      }
      std::memcpy(centroids + j * dsub, pts + pick * dsub, dsub * sizeof(float));
    }
  }

  // Lloyd iterations.
  std::vector<std::int32_t> assign(static_cast<std::size_t>(n));
  std::vector<i64> count(static_cast<std::size_t>(ksub));
  std::vector<float> best_dist(static_cast<std::size_t>(n)), half_norms(static_cast<std::size_t>(ksub));
  std::vector<double> sums(static_cast<std::size_t>(ksub * dsub));
  std::vector<char> taken(static_cast<std::size_t>(n));
  for (int it = 0; it < iters; ++it) {
    transpose();
    for (i64 j = 0; j < ksub; ++j) half_norms[j] = 0.5f * scalar::sum_squares(centroids + j * dsub, dsub);
    constexpr i64 kAssignChunk = 1024;  // points per task of the assignment step
    const i64 chunks = threads > 1 ? (n + kAssignChunk - 1) / kAssignChunk : 1;
    parallel_for(chunks, threads, [&](i64 c, int) {
      const i64 begin = chunks == 1 ? 0 : c * kAssignChunk, end = chunks == 1 ? n : std::min(n, begin + kAssignChunk);
      kern.nearest_dot(xs + begin * dsub, end - begin, dsub, ct.data(), half_norms.data(), dsub, ksub,
                       assign.data() + begin, best_dist.data() + begin);
    });
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(count.begin(), count.end(), 0);
    for (i64 i = 0; i < n; ++i) {
      ++count[assign[i]];
      for (i64 k = 0; k < dsub; ++k) sums[assign[i] * dsub + k] += xs[i * dsub + k];
    }
    std::fill(taken.begin(), taken.end(), 0);
    for (i64 j = 0; j < ksub; ++j) {
      if (count[j] > 0) {
        for (i64 k = 0; k < dsub; ++k) centroids[j * dsub + k] = static_cast<float>(sums[j * dsub + k] / count[j]);
        continue;
      }
      // Empty cluster: re-seed with the point farthest from its centroid (lowest index on ties), once per point.
      i64 far = -1;
      for (i64 i = 0; i < n; ++i)
        if (!taken[i] && (far < 0 || best_dist[i] > best_dist[far])) far = i;
      taken[far] = 1;
      best_dist[far] = 0.0f;
      std::memcpy(centroids + j * dsub, xs + far * dsub, dsub * sizeof(float));
    }
  }
}

void pq_transpose_codebooks(const float* codebooks, i64 m, i64 ksub, i64 dsub, float* ct) {
  for (i64 s = 0; s < m; ++s)
    for (i64 j = 0; j < ksub; ++j)
      for (i64 k = 0; k < dsub; ++k) ct[(s * dsub + k) * ksub + j] = codebooks[(s * ksub + j) * dsub + k];
}

void pq_train(const float* x, i64 n, i64 dim, i64 m, i64 ksub, int iters, std::uint64_t seed, int init,
              float* codebooks, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  const i64 dsub = dim / m;
  parallel_for(m, threads, [&](i64 s, int) {
    std::vector<float> xs(static_cast<std::size_t>(n * dsub));
    for (i64 i = 0; i < n; ++i) std::memcpy(&xs[i * dsub], x + i * dim + s * dsub, dsub * sizeof(float));
    const std::uint64_t sub_seed = seed * 0x100000001b3ull + static_cast<std::uint64_t>(s) * 0x9e3779b97f4a7c15ull;
    kmeans(kern, xs.data(), n, dsub, ksub, iters, sub_seed, init, codebooks + s * ksub * dsub, 1);
  });
}

}  // namespace simkern
