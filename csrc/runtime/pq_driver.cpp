// PQ drivers: encode, distance tables, exact float ADC and per-subspace k-means, on the thread pool.
// Work is split so that each output element is computed by one task with a fixed operation order: results are
// the same for any thread count (k-means runs one subspace per task).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "simkern/dispatch.hpp"
#include "simkern/pq.hpp"
#include "simkern/thread_pool.hpp"
#include "topk.hpp"

namespace simkern {
namespace {

constexpr i64 kEncodeChunk = 256;  // vectors per task
constexpr i64 kAdcChunk = 4096;    // codes per task

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

// k-means for one subspace. xs: n x dsub (contiguous copy of the subspace), centroids out: ksub x dsub.
void kmeans_subspace(const PQKernels& kern, const float* xs, i64 n, i64 dsub, i64 ksub, int iters,
                     std::uint64_t seed, int init, float* centroids) {
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
    kern.nearest_dot(xs, n, dsub, ct.data(), half_norms.data(), dsub, ksub, assign.data(), best_dist.data());
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

}  // namespace

void pq_transpose_codebooks(const float* codebooks, i64 m, i64 ksub, i64 dsub, float* ct) {
  for (i64 s = 0; s < m; ++s)
    for (i64 j = 0; j < ksub; ++j)
      for (i64 k = 0; k < dsub; ++k) ct[(s * dsub + k) * ksub + j] = codebooks[(s * ksub + j) * dsub + k];
}

void pq_encode(const float* x, i64 n, i64 dim, const float* ct, i64 m, i64 ksub, std::uint8_t* codes, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  const i64 dsub = dim / m;
  const i64 n_tasks = (n + kEncodeChunk - 1) / kEncodeChunk;
  parallel_for(n_tasks, threads, [&](i64 task, int) {
    std::int32_t ids[kEncodeChunk];
    const i64 begin = task * kEncodeChunk, count = std::min(n, begin + kEncodeChunk) - begin;
    for (i64 s = 0; s < m; ++s) {
      kern.nearest(x + begin * dim + s * dsub, count, dim, ct + s * dsub * ksub, dsub, ksub, ids, nullptr);
      for (i64 i = 0; i < count; ++i) codes[(begin + i) * m + s] = static_cast<std::uint8_t>(ids[i]);
    }
  });
}

void pq_tables(const float* queries, i64 n_queries, i64 dim, const float* ct, i64 m, i64 ksub, PQMetric metric,
               float* tables, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  const i64 dsub = dim / m;
  // Tasks: (block of queries) x subspace, so one subspace's centroids (dsub x ksub floats) stay in L1 while a
  // block of queries uses them. Every entry is computed once, with the same arithmetic: any split gives equal bits.
  constexpr i64 kQueryBlock = 64;
  const i64 q_blocks = (n_queries + kQueryBlock - 1) / kQueryBlock;
  parallel_for(q_blocks * m, threads, [&](i64 task, int) {
    const i64 qb = task / m, s = task % m;
    const i64 q0 = qb * kQueryBlock, nq = std::min(kQueryBlock, n_queries - q0);
    kern.tables(queries + q0 * dim + s * dsub, nq, dim, ct + s * dsub * ksub, dsub, ksub, metric == PQMetric::l2,
                tables + (q0 * m + s) * ksub, m * ksub);
  });
}

void pq_adc(const float* tables, i64 n_queries, const std::uint8_t* codes, i64 n, i64 m, i64 ksub, float* out,
            int threads) {
  threads = resolve_threads(threads);
  const i64 chunks = (n + kAdcChunk - 1) / kAdcChunk;
  parallel_for(n_queries * chunks, threads, [&](i64 task, int) {
    const i64 q = task / chunks, c = task % chunks;
    const float* t = tables + q * m * ksub;
    const i64 end = std::min(n, (c + 1) * kAdcChunk);
    for (i64 i = c * kAdcChunk; i < end; ++i) {
      const std::uint8_t* code = codes + i * m;
      float acc = 0.0f;
      for (i64 s = 0; s < m; ++s) acc += t[s * ksub + code[s]];
      out[q * n + i] = acc;
    }
  });
}

void pq_search(const float* tables, i64 n_queries, const std::uint8_t* codes, i64 n, i64 m, i64 ksub,
               const std::uint8_t* mask, i64 k, bool smaller_is_better, float* out_scores, i64* out_ids,
               int threads) {
  threads = resolve_threads(threads);
  // Split the codes of one query too (FAISS threads over queries only): about kTasksPerThread tasks per thread.
  constexpr i64 kTasksPerThread = 4;
  const i64 chunk = std::max<i64>(1024, (n + threads * kTasksPerThread - 1) / (threads * kTasksPerThread));
  const i64 chunks = (n + chunk - 1) / chunk;
  TopK heaps(threads, n_queries, std::min(k, n), k);
  const float sign = smaller_is_better ? -1.0f : 1.0f;  // heaps keep the largest: negate distances (exact)
  parallel_for(n_queries * chunks, threads, [&](i64 task, int thread) {
    const i64 q = task / chunks, c = task % chunks;
    const float* t = tables + q * m * ksub;
    const i64 begin = c * chunk, end = std::min(n, begin + chunk);
    const auto emit = [&](i64 i, float score) {
      if (!mask || mask[i]) heaps.push(thread, q, sign * score, i);
    };
    i64 i = begin;
    for (; i + 4 <= end; i += 4) {  // four codes at a time for instruction-level parallelism; m order per code
      const std::uint8_t* c0 = codes + i * m;
      float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
      for (i64 s = 0; s < m; ++s) {
        const float* ts = t + s * ksub;
        a0 += ts[c0[s]];
        a1 += ts[c0[m + s]];
        a2 += ts[c0[2 * m + s]];
        a3 += ts[c0[3 * m + s]];
      }
      emit(i, a0);
      emit(i + 1, a1);
      emit(i + 2, a2);
      emit(i + 3, a3);
    }
    for (; i < end; ++i) {
      float acc = 0.0f;
      for (i64 s = 0; s < m; ++s) acc += t[s * ksub + codes[i * m + s]];
      emit(i, acc);
    }
  });
  heaps.merge(threads, out_scores, out_ids);
  if (smaller_is_better)
    for (i64 j = 0; j < n_queries * k; ++j) out_scores[j] = -out_scores[j];
}

namespace {

// The candidates of one query in one task of a quantised scan: a max-heap of the k smallest allowed quantised
// sums seen so far and every (sum, id) offered while sum <= bound = heap top + slack. The bound is published to
// the kernel as the query's threshold, so after the first k ids almost nothing is reported.
struct QuantCollector {
  i64 k = 0, slack = 0, compact_at = 0;
  std::vector<std::uint16_t> heap;
  std::vector<std::pair<std::uint16_t, i64>> cand;

  void offer(std::uint16_t v, i64 id, std::uint16_t& threshold) {
    if (v > threshold) return;  // the bound fell since the kernel compared (same group)
    if (static_cast<i64>(heap.size()) < k) {
      heap.push_back(v);
      std::push_heap(heap.begin(), heap.end());
    } else if (v < heap.front()) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = v;
      std::push_heap(heap.begin(), heap.end());
    }
    cand.emplace_back(v, id);
    if (static_cast<i64>(heap.size()) == k) {
      threshold = static_cast<std::uint16_t>(std::min<i64>(threshold, heap.front() + slack));
      if (static_cast<i64>(cand.size()) >= compact_at) {  // drop what the bound has excluded since
        const std::uint16_t t = threshold;
        cand.erase(std::remove_if(cand.begin(), cand.end(), [t](const auto& c) { return c.first > t; }), cand.end());
        compact_at = std::max<i64>(2 * k + 256, 2 * static_cast<i64>(cand.size()));  // amortised O(1) per offer
      }
    }
  }
};

constexpr i64 kMaxGroupPasses = 8;  // query passes a scan task runs over each slice of its codes

struct ScanTask {
  QuantCollector* collectors[kScanQueries];
  std::uint16_t thresholds[kScanQueries];
  i64 n;
  const std::uint8_t* mask;
};

void on_scan_hit(void* ctx, int q, i64 first_id, std::uint64_t bits, const std::uint16_t* sums) {
  ScanTask& task = *static_cast<ScanTask*>(ctx);
  while (bits) {
    const int i = __builtin_ctzll(bits);
    bits &= bits - 1;
    const i64 id = first_id + i;
    if (id >= task.n) break;  // padding vectors of the last block
    if (task.mask && !task.mask[id]) continue;
    task.collectors[q]->offer(sums[i], id, task.thresholds[q]);
  }
}

// uint8 tables of one query: per subspace bias = min entry, one scale per query = levels / largest span (double),
// entries rounded half up to 0 .. levels (a conversion instead of a nearbyint call: this file is built for the
// baseline ISA). Rounding error <= 1/2 unit per entry, as the re-scoring bound assumes.
void quantise_tables(const float* t, i64 m, i64 ksub, float sign, double levels, std::uint8_t* lut, i64 lut_bytes) {
  double lows[256];
  double span = 0.0;
  for (i64 s = 0; s < m; ++s) {
    float lo = sign * t[s * ksub], hi = lo;
    for (i64 j = 1; j < ksub; ++j) {
      const float v = sign * t[s * ksub + j];
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    lows[s] = lo;
    span = std::max(span, static_cast<double>(hi) - static_cast<double>(lo));
  }
  const double scale = span > 0.0 ? levels / span : 1.0;
  std::fill(lut, lut + lut_bytes, std::uint8_t{0});  // odd m (4-bit): the padding table stays zero
  for (i64 s = 0; s < m; ++s)
    for (i64 j = 0; j < ksub; ++j) {
      const double v = (static_cast<double>(sign * t[s * ksub + j]) - lows[s]) * scale + 0.5;  // in [0.5, levels + 0.5]
      lut[s * ksub + j] = static_cast<std::uint8_t>(std::min(levels, static_cast<double>(static_cast<int>(v))));
    }
}

}  // namespace

void pq_search_quantised(const float* tables, i64 n_queries, i64 ksub, const std::uint8_t* codes,
                         const std::uint8_t* blocks, i64 n, i64 m, const std::uint8_t* mask, i64 k,
                         bool smaller_is_better, float* out_scores, i64* out_ids, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  const bool four_bit = ksub == 16;
  const i64 group = four_bit ? 32 : 64;  // vectors per block
  const i64 n_blocks = (n + group - 1) / group;
  const i64 lut_bytes = four_bit ? ((m + 1) / 2) * 32 : m * 256;
  const float sign = smaller_is_better ? 1.0f : -1.0f;  // quantise "smaller is better" values
  // 4-bit tables use 0..127 so that the two lookups of a subspace pair add in one byte (pq-scan4-x86-inl.hpp).
  const double levels = four_bit ? kScan4Levels : 255.0;
  const i64 slack = m + 2;  // each of m table entries is off by at most half a unit (proof in ARCHITECTURE.md)
  // Tasks: (pass of up to kScanQueries queries) x (chunk of blocks); a query's codes are split across threads too.
  // Queries go in batches of at most 256 (the uint8 tables of a batch stay small).
  // Codes are split only as far as the query passes leave threads idle: every extra chunk pays its own warm-up
  // (all ids are reported until its heap holds k sums).
  const i64 passes_total = (std::min<i64>(n_queries, 256) + kScanQueries - 1) / kScanQueries;
  const i64 want_chunks = std::max<i64>(1, (threads * 2 + passes_total - 1) / passes_total);
  const i64 min_blocks = four_bit ? 64 : 32;
  const i64 chunk_blocks = std::max<i64>(min_blocks, (n_blocks + want_chunks - 1) / want_chunks);
  const i64 chunks = std::max<i64>(1, (n_blocks + chunk_blocks - 1) / chunk_blocks);
  const i64 batch = std::min<i64>(n_queries, 256);
  std::vector<std::uint8_t> luts(static_cast<std::size_t>(batch * lut_bytes));
  std::vector<QuantCollector> collectors(static_cast<std::size_t>(batch * chunks));
  for (i64 q0 = 0; q0 < n_queries; q0 += batch) {
    const i64 nb = std::min(batch, n_queries - q0);
    parallel_for(nb, threads, [&](i64 qb, int) {
      quantise_tables(tables + (q0 + qb) * m * ksub, m, ksub, sign, levels, luts.data() + qb * lut_bytes, lut_bytes);
      for (i64 c = 0; c < chunks; ++c) {
        QuantCollector& col = collectors[qb * chunks + c];
        col.k = k;
        col.slack = slack;
        col.compact_at = 2 * k + 256;
        col.heap.clear();
        col.cand.clear();
      }
    });
    // A task runs a group of passes over its chunk in L2-sized slices of blocks (all passes of the group per
    // slice), so the codes are read from memory once per group rather than once per pass.
    const i64 passes = (nb + kScanQueries - 1) / kScanQueries;
    const i64 group_passes = std::min<i64>(kMaxGroupPasses, std::max<i64>(1, passes / (threads * 2)));
    const i64 groups = (passes + group_passes - 1) / group_passes;
    const i64 block_bytes = four_bit ? ((m + 1) / 2) * 32 : m * 64;
    const i64 slice_blocks = std::max<i64>(1, (128 << 10) / block_bytes);
    parallel_for(groups * chunks, threads, [&](i64 task_id, int) {
      const i64 g = task_id / chunks, c = task_id % chunks;
      const i64 p0 = g * group_passes, p1 = std::min(passes, p0 + group_passes);
      ScanTask tasks[kMaxGroupPasses];
      ScanQueries qs[kMaxGroupPasses];
      for (i64 p = p0; p < p1; ++p) {
        ScanTask& task = tasks[p - p0];
        const i64 qb0 = p * kScanQueries;
        const int count = static_cast<int>(std::min<i64>(kScanQueries, nb - qb0));
        task.n = n;
        task.mask = mask;
        for (int j = 0; j < count; ++j) {
          task.collectors[j] = &collectors[(qb0 + j) * chunks + c];
          task.thresholds[j] = 65535;
        }
        qs[p - p0] = ScanQueries{luts.data() + qb0 * lut_bytes, lut_bytes, count, task.thresholds, on_scan_hit, &task};
      }
      const i64 b0 = c * chunk_blocks, b1 = std::min(n_blocks, b0 + chunk_blocks);
      for (i64 s0 = b0; s0 < b1; s0 += slice_blocks) {
        const i64 s1 = std::min(b1, s0 + slice_blocks);
        for (i64 p = p0; p < p1; ++p) {
          if (four_bit) kern.scan4(blocks, s0, s1, (m + 1) / 2, qs[p - p0]);
          else kern.scan8(blocks, s0, s1, m, qs[p - p0]);
        }
      }
    });
    parallel_for(nb, threads, [&](i64 qb, int) {
      const i64 q = q0 + qb;
      // Final bound: the k-th smallest quantised sum over all chunks (each chunk's heap holds its k smallest).
      std::vector<std::uint16_t> smallest;
      for (i64 c = 0; c < chunks; ++c) {
        const auto& h = collectors[qb * chunks + c].heap;
        smallest.insert(smallest.end(), h.begin(), h.end());
      }
      i64 bound = 65535;
      if (static_cast<i64>(smallest.size()) >= k) {
        std::nth_element(smallest.begin(), smallest.begin() + (k - 1), smallest.end());
        bound = std::min<i64>(65535, smallest[k - 1] + slack);
      }
      // Exact float re-scoring of the candidates (same m-order sums as pq_adc / pq_search), then top-k.
      std::vector<ScoredId> cand;
      const float* t = tables + q * m * ksub;
      for (i64 c = 0; c < chunks; ++c)
        for (const auto& [v, i] : collectors[qb * chunks + c].cand) {
          if (v > bound) continue;
          float acc = 0.0f;
          for (i64 s = 0; s < m; ++s) acc += t[s * ksub + codes[i * m + s]];
          cand.push_back({smaller_is_better ? -acc : acc, i});
        }
      const i64 keep = std::min<i64>(k, static_cast<i64>(cand.size()));
      std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), ranks_before);
      const float pad = smaller_is_better ? INFINITY : -INFINITY;
      for (i64 j = 0; j < k; ++j) {
        out_ids[q * k + j] = j < keep ? cand[j].id : -1;
        out_scores[q * k + j] = j < keep ? (smaller_is_better ? -cand[j].score : cand[j].score) : pad;
      }
    });
  }
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
    kmeans_subspace(kern, xs.data(), n, dsub, ksub, iters, sub_seed, init, codebooks + s * ksub * dsub);
  });
}

}  // namespace simkern
