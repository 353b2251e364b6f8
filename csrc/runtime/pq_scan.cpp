// PQ scanning: encode, distance tables, exact float ADC, the float top-k scan and the quantised (uint8-table)
// scan with exact re-scoring, on the thread pool. Work is split so that each output element is computed by one
// task with a fixed operation order: results are the same for any thread count. Every float ADC sum is adc_sum
// (subspaces in order), so adc(), search() and the quantised scan's re-scoring agree bit for bit. Training is
// pq_train.cpp.
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

// The exact ADC distance of one code: t[s * ksub + code[s]] summed in subspace order s = 0 .. m-1 (float32).
inline float adc_sum(const float* t, const std::uint8_t* code, i64 m, i64 ksub) {
  float acc = 0.0f;
  for (i64 s = 0; s < m; ++s) acc += t[s * ksub + code[s]];
  return acc;
}

// adc_sum of four consecutive codes (rows of m bytes) at once, for instruction-level parallelism; each sum keeps
// the subspace order, so the values equal adc_sum's.
inline void adc_sum4(const float* t, const std::uint8_t* codes, i64 m, i64 ksub, float out[4]) {
  float a0 = 0.0f, a1 = 0.0f, a2 = 0.0f, a3 = 0.0f;
  for (i64 s = 0; s < m; ++s) {
    const float* ts = t + s * ksub;
    a0 += ts[codes[s]];
    a1 += ts[codes[m + s]];
    a2 += ts[codes[2 * m + s]];
    a3 += ts[codes[3 * m + s]];
  }
  out[0] = a0;
  out[1] = a1;
  out[2] = a2;
  out[3] = a3;
}

}  // namespace

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
    for (i64 i = c * kAdcChunk; i < end; ++i) out[q * n + i] = adc_sum(t, codes + i * m, m, ksub);
  });
}

void pq_search(const float* tables, i64 n_queries, const std::uint8_t* codes, i64 n, i64 m, i64 ksub,
               const std::uint8_t* mask, i64 k, bool smaller_is_better, float* out_scores, i64* out_ids, int threads) {
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
    for (; i + 4 <= end; i += 4) {
      float sums[4];
      adc_sum4(t, codes + i * m, m, ksub, sums);
      for (int j = 0; j < 4; ++j) emit(i + j, sums[j]);
    }
    for (; i < end; ++i) emit(i, adc_sum(t, codes + i * m, m, ksub));
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
                         const std::uint8_t* blocks, i64 n_blocks, i64 n, i64 m, const std::uint8_t* mask, i64 k,
                         bool smaller_is_better, float* out_scores, i64* out_ids, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  const bool four_bit = ksub == 16;
  const i64 group = four_bit ? 32 : 64;                 // vectors per block
  const i64 n_scanned = std::min(n, n_blocks * group);  // ids past it (the unblocked tail): re-scored directly
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
        task.n = n_scanned;
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
      // Exact float re-scoring of the candidates (adc_sum, as pq_adc / pq_search), then top-k.
      std::vector<ScoredId> cand;
      const float* t = tables + q * m * ksub;
      for (i64 c = 0; c < chunks; ++c)
        for (const auto& [v, i] : collectors[qb * chunks + c].cand) {
          if (v > bound) continue;
          const float acc = adc_sum(t, codes + i * m, m, ksub);
          cand.push_back({smaller_is_better ? -acc : acc, i});
        }
      for (i64 i = n_scanned; i < n; ++i) {  // the unblocked tail: every id is a candidate
        if (mask && !mask[i]) continue;
        const float acc = adc_sum(t, codes + i * m, m, ksub);
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

}  // namespace simkern
