// MaxSim drivers: pack the queries once, split the work into tasks, run them on the pool, select top-k.
//
// Work split (see docs/ARCHITECTURE.md):
//   - Queries are packed once per call (kernel.pack), each query into its own groups of `lanes` tokens.
//   - Dense scoring stacks consecutive queries into one job while their packed bytes fit kStackBytes (each doc
//     tile is then loaded once for many queries) and splits the docs into chunks; a task = (stack, doc chunk).
//   - Candidate / pair scoring runs one query per job over an id list (no gather copy of the doc tokens).
//   - Top-k: each thread keeps a bounded heap per query; heaps are merged at the end under the total order
//     (score descending, doc id ascending), so the result is the same for any thread count.
#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "simkern/dispatch.hpp"
#include "simkern/maxsim.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

constexpr i64 kStackBytes = 96 * 1024;  // packed query bytes per stacked job: fits L2 beside the doc tiles
constexpr i64 kMaxDocChunk = 256;       // docs per task
constexpr i64 kChunkBytes = 512 * 1024;  // doc token bytes per task (L2-sized)
constexpr i64 kTasksPerThread = 4;      // load balance for ragged docs

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using AlignedPtr = std::unique_ptr<void, FreeDeleter>;

AlignedPtr aligned_bytes(i64 bytes) {
  const std::size_t size = static_cast<std::size_t>((std::max<i64>(bytes, 64) + 63) / 64 * 64);
  void* p = std::aligned_alloc(64, size);
  if (!p) throw std::bad_alloc();
  return AlignedPtr(p);
}

struct Packed {
  AlignedPtr data;
  std::vector<i64> group_begin, lengths;
  PackedQueries view;
  i64 group_bytes = 0;
};

Packed pack_queries(const MaxSimKernel& kernel, const QueryTokens& q, int threads) {
  Packed p;
  p.group_begin.resize(static_cast<std::size_t>(q.n_queries) + 1, 0);
  p.lengths.resize(static_cast<std::size_t>(q.n_queries), 0);
  for (i64 qi = 0; qi < q.n_queries; ++qi) {
    const i64 len = q.offsets[qi + 1] - q.offsets[qi];
    p.lengths[qi] = len;
    p.group_begin[qi + 1] = p.group_begin[qi] + (len + kernel.lanes - 1) / kernel.lanes;
  }
  const i64 group_elems = kernel.group_elems(q.dim);
  p.group_bytes = group_elems * (kernel.packs_bf16 ? 2 : 4);
  p.data = aligned_bytes(p.group_begin.back() * p.group_bytes);
  char* base = static_cast<char*>(p.data.get());
  parallel_for(q.n_queries, q.n_queries >= 64 ? threads : 1, [&](i64 qi, int) {
    kernel.pack(q.tokens + q.offsets[qi] * q.dim, p.lengths[qi], q.dim, base + p.group_begin[qi] * p.group_bytes);
  });
  p.view.data = p.data.get();
  p.view.group_elems = group_elems;
  p.view.lanes = kernel.lanes;
  p.view.dim = q.dim;
  p.view.group_begin = p.group_begin.data();
  p.view.lengths = p.lengths.data();
  return p;
}

// Consecutive query ranges whose packed size fits kStackBytes (at least one query each): bounds[s]..bounds[s+1].
std::vector<i64> query_stacks(const Packed& p, i64 n_queries) {
  std::vector<i64> bounds{0};
  i64 start = 0;
  for (i64 qi = 0; qi < n_queries; ++qi) {
    const i64 bytes = (p.group_begin[qi + 1] - p.group_begin[start]) * p.group_bytes;
    if (bytes > kStackBytes && qi > start) {
      bounds.push_back(qi);
      start = qi;
    }
  }
  bounds.push_back(n_queries);
  return bounds;
}

// Per-thread scratch for kernel.score, sized for the largest job.
struct Scratch {
  std::vector<AlignedPtr> buffers;
  Scratch(int threads, i64 floats) {
    for (int t = 0; t < threads; ++t) buffers.push_back(aligned_bytes(floats * 4));
  }
  float* get(int thread) { return static_cast<float*>(buffers[thread].get()); }
};

// Doc chunks for tasks: consecutive docs holding at most kChunkBytes of tokens (so a chunk stays in L2 while
// every query stack is scored against it), at most kMaxDocChunk docs, and small enough that each thread gets
// about kTasksPerThread chunks. Returns the chunk boundaries (doc indices).
std::vector<i64> doc_chunks(const DocTokens& d, int threads) {
  const i64 row_bytes = d.dim * (d.dtype == DocDType::f32 ? 4 : 2);
  const i64 balance = (d.n_docs + threads * kTasksPerThread - 1) / (threads * kTasksPerThread);
  const i64 max_docs = std::max<i64>(1, std::min(balance, kMaxDocChunk));
  std::vector<i64> bounds{0};
  i64 start = 0;
  for (i64 doc = 0; doc < d.n_docs; ++doc) {
    const i64 bytes = (d.offsets[doc + 1] - d.offsets[start]) * row_bytes;
    if (doc > start && (bytes > kChunkBytes || doc - start >= max_docs)) {
      bounds.push_back(doc);
      start = doc;
    }
  }
  if (d.n_docs > 0) bounds.push_back(d.n_docs);
  return bounds;
}

// Scores every query stack against every doc chunk. A task is one chunk: it loops over the stacks, so the
// chunk's tokens are read from memory once and then hit L2. `emit(stack, job, thread)` consumes each job's
// scores; `target(stack, chunk_begin, n_docs, thread, &job)` points job.out somewhere.
template <class Target, class Emit>
void score_stacks_by_chunk(const MaxSimKernel& kernel, const Packed& packed, const std::vector<i64>& stacks,
                           const DocTokens& d, int threads, i64 max_groups, i64 extra_floats,
                           std::atomic<bool>& finite, Target target, Emit emit) {
  const std::vector<i64> chunks = doc_chunks(d, threads);
  const i64 n_chunks = static_cast<i64>(chunks.size()) - 1;
  const i64 n_stacks = static_cast<i64>(stacks.size()) - 1;
  const i64 kernel_floats = kernel.scratch_floats(d.dim, max_groups);
  Scratch scratch(threads, kernel_floats + extra_floats);
  parallel_for(n_chunks, threads, [&](i64 c, int thread) {
    float* buf = scratch.get(thread);
    for (i64 s = 0; s < n_stacks; ++s) {
      ScoreJob job;
      job.q_begin = stacks[s];
      job.q_end = stacks[s + 1];
      job.doc_begin = chunks[c];
      job.n_docs = chunks[c + 1] - chunks[c];
      target(job, buf + kernel_floats);
      if (!kernel.score(packed.view, d, job, buf)) finite.store(false);
      emit(job, thread);
    }
  });
}

i64 max_stack_groups(const Packed& packed, const std::vector<i64>& stacks) {
  i64 most = 0;
  for (std::size_t s = 0; s + 1 < stacks.size(); ++s)
    most = std::max(most, packed.group_begin[stacks[s + 1]] - packed.group_begin[stacks[s]]);
  return most;
}

struct ScoredId {
  float score;
  i64 id;
};
// a ranks before b: higher score, then smaller id.
inline bool ranks_before(const ScoredId& a, const ScoredId& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// One bounded heap (worst retained entry on top) per query, per thread. `k_out` slots are written per query;
// the heaps hold at most k = min(k_out, most candidates any query has).
class TopK {
 public:
  TopK(int threads, i64 n_queries, i64 k, i64 k_out)
      : k_(std::max<i64>(k, 1)), k_out_(k_out), n_queries_(n_queries),
        entries_(static_cast<std::size_t>(threads * n_queries * std::max<i64>(k, 1))),
        sizes_(static_cast<std::size_t>(threads * n_queries), 0) {}

  void push(int thread, i64 query, float score, i64 id) {
    const std::size_t slot = static_cast<std::size_t>(thread * n_queries_ + query);
    ScoredId* heap = entries_.data() + slot * k_;
    i64& size = sizes_[slot];
    const ScoredId e{score, id};
    if (size < k_) {
      heap[size++] = e;
      std::push_heap(heap, heap + size, ranks_before);
    } else if (ranks_before(e, heap[0])) {
      std::pop_heap(heap, heap + size, ranks_before);
      heap[size - 1] = e;
      std::push_heap(heap, heap + size, ranks_before);
    }
  }

  void merge(int threads, float* out_scores, i64* out_ids) const {
    std::vector<ScoredId> all;
    for (i64 q = 0; q < n_queries_; ++q) {
      all.clear();
      for (int t = 0; t < threads; ++t) {
        const std::size_t slot = static_cast<std::size_t>(t * n_queries_ + q);
        all.insert(all.end(), entries_.begin() + slot * k_, entries_.begin() + slot * k_ + sizes_[slot]);
      }
      const i64 keep = std::min<i64>(k_, static_cast<i64>(all.size()));
      std::partial_sort(all.begin(), all.begin() + keep, all.end(), ranks_before);
      for (i64 j = 0; j < k_out_; ++j) {
        out_scores[q * k_out_ + j] = j < keep ? all[j].score : -std::numeric_limits<float>::infinity();
        out_ids[q * k_out_ + j] = j < keep ? all[j].id : -1;
      }
    }
  }

 private:
  i64 k_, k_out_, n_queries_;
  std::vector<ScoredId> entries_;
  std::vector<i64> sizes_;
};

void raise_nonfinite() {
  throw NonFiniteError("MaxSim saw a non-finite token dot product (NaN/inf input or float32 overflow)");
}

// A run of one query against a slice of an id list.
struct IdTask {
  i64 query, begin, count;
};

}  // namespace

void maxsim_dense(const QueryTokens& q, const DocTokens& d, float* out, int threads) {
  if (q.n_queries == 0 || d.n_docs == 0) return;
  threads = resolve_threads(threads);
  const MaxSimKernel& kernel = maxsim_kernel(d.dtype);
  Packed packed = pack_queries(kernel, q, threads);
  const std::vector<i64> stacks = query_stacks(packed, q.n_queries);
  std::atomic<bool> finite{true};
  score_stacks_by_chunk(
      kernel, packed, stacks, d, threads, max_stack_groups(packed, stacks), 0, finite,
      [&](ScoreJob& job, float*) {
        job.out = out + job.q_begin * d.n_docs + job.doc_begin;  // straight into the result matrix
        job.out_query_stride = d.n_docs;
      },
      [](const ScoreJob&, int) {});
  if (!finite.load()) raise_nonfinite();
}

void maxsim_pairs(const QueryTokens& q, const DocTokens& d, const i64* query_ids, const i64* doc_ids, i64 n_pairs,
                  float* out, int threads) {
  if (n_pairs == 0) return;
  threads = resolve_threads(threads);
  const MaxSimKernel& kernel = maxsim_kernel(d.dtype);
  Packed packed = pack_queries(kernel, q, threads);
  // Counting sort of the pairs by query; within a query the doc ids keep their input order.
  std::vector<i64> seg(static_cast<std::size_t>(q.n_queries) + 1, 0);
  for (i64 p = 0; p < n_pairs; ++p) ++seg[query_ids[p] + 1];
  for (i64 qi = 0; qi < q.n_queries; ++qi) seg[qi + 1] += seg[qi];
  std::vector<i64> order(static_cast<std::size_t>(n_pairs)), sorted_docs(static_cast<std::size_t>(n_pairs));
  {
    std::vector<i64> fill(seg.begin(), seg.end() - 1);
    for (i64 p = 0; p < n_pairs; ++p) {
      const i64 slot = fill[query_ids[p]]++;
      order[slot] = p;
      sorted_docs[slot] = doc_ids[p];
    }
  }
  std::vector<IdTask> tasks;
  i64 max_groups = 0;
  for (i64 qi = 0; qi < q.n_queries; ++qi) {
    max_groups = std::max(max_groups, packed.group_begin[qi + 1] - packed.group_begin[qi]);
    for (i64 b = seg[qi]; b < seg[qi + 1]; b += kMaxDocChunk)
      tasks.push_back({qi, b, std::min(kMaxDocChunk, seg[qi + 1] - b)});
  }
  Scratch scratch(threads, kernel.scratch_floats(q.dim, max_groups) + kMaxDocChunk);
  std::atomic<bool> finite{true};
  parallel_for(static_cast<i64>(tasks.size()), threads, [&](i64 task, int thread) {
    const IdTask& t = tasks[task];
    float* buf = scratch.get(thread);
    float* scores = buf + kernel.scratch_floats(q.dim, max_groups);
    ScoreJob job;
    job.q_begin = t.query;
    job.q_end = t.query + 1;
    job.doc_ids = sorted_docs.data() + t.begin;
    job.n_docs = t.count;
    job.out = scores;
    job.out_query_stride = t.count;
    if (!kernel.score(packed.view, d, job, buf)) finite.store(false);
    for (i64 i = 0; i < t.count; ++i) out[order[t.begin + i]] = scores[i];
  });
  if (!finite.load()) raise_nonfinite();
}

void maxsim_topk(const QueryTokens& q, const DocTokens& d, i64 k, const i64* cand_ids, const i64* cand_offsets,
                 float* out_scores, i64* out_ids, int threads) {
  if (q.n_queries == 0) return;
  threads = resolve_threads(threads);
  const MaxSimKernel& kernel = maxsim_kernel(d.dtype);
  Packed packed = pack_queries(kernel, q, threads);
  i64 most_candidates = d.n_docs;
  if (cand_offsets) {
    most_candidates = 0;
    for (i64 qi = 0; qi < q.n_queries; ++qi)
      most_candidates = std::max(most_candidates, cand_offsets[qi + 1] - cand_offsets[qi]);
  }
  TopK heaps(threads, q.n_queries, std::min(k, most_candidates), k);
  std::atomic<bool> finite{true};

  if (!cand_offsets) {
    const std::vector<i64> stacks = query_stacks(packed, q.n_queries);
    i64 max_stack = 0;
    for (std::size_t st = 0; st + 1 < stacks.size(); ++st) max_stack = std::max(max_stack, stacks[st + 1] - stacks[st]);
    score_stacks_by_chunk(
        kernel, packed, stacks, d, threads, max_stack_groups(packed, stacks), max_stack * kMaxDocChunk, finite,
        [](ScoreJob& job, float* spare) {
          job.out = spare;  // per-thread buffer, then into the heaps
          job.out_query_stride = job.n_docs;
        },
        [&](const ScoreJob& job, int thread) {
          for (i64 qi = job.q_begin; qi < job.q_end; ++qi)
            for (i64 i = 0; i < job.n_docs; ++i)
              heaps.push(thread, qi, job.out[(qi - job.q_begin) * job.n_docs + i], job.doc_begin + i);
        });
  } else {
    // Compact each query's candidate list (drop negative padding ids); ids only, no token copies.
    std::vector<i64> compact_offsets(static_cast<std::size_t>(q.n_queries) + 1, 0), compact;
    compact.reserve(static_cast<std::size_t>(cand_offsets[q.n_queries]));
    for (i64 qi = 0; qi < q.n_queries; ++qi) {
      for (i64 c = cand_offsets[qi]; c < cand_offsets[qi + 1]; ++c)
        if (cand_ids[c] >= 0) compact.push_back(cand_ids[c]);
      compact_offsets[qi + 1] = static_cast<i64>(compact.size());
    }
    std::vector<IdTask> tasks;
    i64 max_groups = 0;
    for (i64 qi = 0; qi < q.n_queries; ++qi) {
      max_groups = std::max(max_groups, packed.group_begin[qi + 1] - packed.group_begin[qi]);
      for (i64 b = compact_offsets[qi]; b < compact_offsets[qi + 1]; b += kMaxDocChunk)
        tasks.push_back({qi, b, std::min(kMaxDocChunk, compact_offsets[qi + 1] - b)});
    }
    const i64 kernel_floats = kernel.scratch_floats(q.dim, max_groups);
    Scratch scratch(threads, kernel_floats + kMaxDocChunk);
    parallel_for(static_cast<i64>(tasks.size()), threads, [&](i64 task, int thread) {
      const IdTask& t = tasks[task];
      float* buf = scratch.get(thread);
      ScoreJob job;
      job.q_begin = t.query;
      job.q_end = t.query + 1;
      job.doc_ids = compact.data() + t.begin;
      job.n_docs = t.count;
      job.out = buf + kernel_floats;
      job.out_query_stride = t.count;
      if (!kernel.score(packed.view, d, job, buf)) finite.store(false);
      for (i64 i = 0; i < t.count; ++i) heaps.push(thread, t.query, job.out[i], job.doc_ids[i]);
    });
  }
  if (!finite.load()) raise_nonfinite();
  heaps.merge(threads, out_scores, out_ids);
}

}  // namespace simkern
