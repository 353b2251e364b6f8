// MaxSim drivers: pack the queries once, split the work into tasks, run them on the pool, select top-k.
//
// Work split (see docs/ARCHITECTURE.md):
//   - Queries are packed once per call (kernel.pack) in stacks of consecutive queries, each stack densely.
//   - Dense and top-k scans stack queries while their packed bytes fit kStackBytes (each doc tile is then loaded
//     once for many queries) and split the docs into chunks of at most kChunkBytes; a task is one chunk, scored
//     against every stack in turn.
//   - Candidate / pair scoring packs one query per stack and runs it over an id list (no gather copy of the doc
//     tokens).
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
#include "topk.hpp"

namespace simkern {
namespace {

constexpr i64 kStackBytes = 96 * 1024;   // packed query bytes per stacked job: fits L2 beside the doc tiles
constexpr i64 kMaxDocChunk = 256;        // docs per task
constexpr i64 kChunkBytes = 512 * 1024;  // doc token bytes per task (L2-sized)
constexpr i64 kTasksPerThread = 4;       // load balance for ragged docs

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

// Packed queries plus the stacks they were packed in: stack s = queries [stacks[s], stacks[s+1]), packed densely
// from a group boundary (see maxsim.hpp).
struct Packed {
  AlignedPtr data;
  std::vector<i64> lane_begin, lengths, stacks;
  PackedQueries view;
  i64 max_stack_groups = 0;
};

// Stack boundaries: stack s = queries [stacks[s], stacks[s+1]). stack_queries: consecutive queries share a stack
// while its packed bytes fit kStackBytes (dense and top-k scans: each doc tile is then loaded once for many
// queries). Otherwise every query is its own stack (candidate and pair scoring run one query per job).
std::vector<i64> stack_bounds(const MaxSimKernel& kernel, const QueryTokens& q, bool stack_queries) {
  const i64 lanes = kernel.lanes;
  const i64 group_bytes = kernel.group_elems(q.dim) * (kernel.packs_bf16 ? 2 : 4);
  std::vector<i64> stacks{0};
  for (i64 qi = 0; qi < q.n_queries; ++qi) {
    const i64 first = stacks.back();
    const i64 grown = (q.offsets[qi + 1] - q.offsets[first] + lanes - 1) / lanes;
    if (qi > first && (!stack_queries || grown * group_bytes > kStackBytes)) stacks.push_back(qi);
  }
  stacks.push_back(q.n_queries);
  return stacks;
}

// Which of a kernel and its narrow alternative (MaxSimKernel::narrow) runs a call: the lower cost over the stacks
// the call packs. Cost of a stack of T tokens, in lane units: narrow kernel, its lanes (a half group counted as
// half) x kNarrowLaneCost; wide kernel, its lanes x 100, or x kWideSingleGroupCost when the stack is one group.
// Measured on Zen 4 (one thread, dim 128, one query per call over 3000 dev docs, wide and narrow interleaved,
// wide = avx512 zmm tiles, narrow = avx2 / ymm vdpbf16ps tiles): per filled lane the wide tiles are ~1.05x faster
// with two or more groups (f32 and bf16 at 32 tokens, bf16 at 22-24) and no faster with one (f32 16 tokens 1.04x,
// bf16 0.95x) -> 105 and 105; ties go narrow. So a single query runs narrow at 1-28 f32 tokens and wide at 29-32;
// bf16 narrow at 1-20 and 25-28, wide at 21-24 (16 + a half group of 8) and 29-32; batched calls (dense stacks)
// wide. Both compute the same bits.
// (A one-group wide tile once ran 0.2-0.33x the narrow one: its 24-row loop was unrolled only in part and spilled
// the accumulators; see kMaxTileRows.)
constexpr i64 kNarrowLaneCost = 105;
constexpr i64 kWideSingleGroupCost = 105;

const MaxSimKernel& choose_kernel(const MaxSimKernel& wide, const QueryTokens& q, bool stack_queries) {
  if (!wide.narrow || q.n_queries == 0) return wide;
  const MaxSimKernel& narrow = *wide.narrow;
  const auto cost = [&](const MaxSimKernel& k, bool is_wide) {
    const std::vector<i64> stacks = stack_bounds(k, q, stack_queries);
    i64 total = 0;
    for (std::size_t st = 0; st + 1 < stacks.size(); ++st) {
      const i64 tokens = q.offsets[stacks[st + 1]] - q.offsets[stacks[st]];
      const i64 groups = (tokens + k.lanes - 1) / k.lanes;
      i64 lanes = groups * k.lanes;
      if (k.half_groups && groups > 0 && tokens - (groups - 1) * k.lanes <= k.lanes / 2) lanes -= k.lanes / 2;
      total += lanes * (!is_wide ? kNarrowLaneCost : groups == 1 ? kWideSingleGroupCost : 100);
    }
    return total;
  };
  return cost(narrow, false) <= cost(wide, true) ? narrow : wide;
}

Packed pack_queries(const MaxSimKernel& kernel, const QueryTokens& q, int threads, bool stack_queries) {
  Packed p;
  const i64 lanes = kernel.lanes;
  const i64 group_elems = kernel.group_elems(q.dim);
  const i64 group_bytes = group_elems * (kernel.packs_bf16 ? 2 : 4);
  p.lane_begin.resize(static_cast<std::size_t>(q.n_queries));
  p.lengths.resize(static_cast<std::size_t>(q.n_queries));
  p.stacks = stack_bounds(kernel, q, stack_queries);
  const i64 n_stacks = static_cast<i64>(p.stacks.size()) - 1;
  std::vector<i64> stack_group{0};  // first group of each stack, then the total
  for (i64 st = 0; st < n_stacks; ++st) {
    const i64 first = p.stacks[st];
    for (i64 qi = first; qi < p.stacks[st + 1]; ++qi) {
      p.lengths[qi] = q.offsets[qi + 1] - q.offsets[qi];
      p.lane_begin[qi] = stack_group.back() * lanes + (q.offsets[qi] - q.offsets[first]);
    }
    const i64 groups = (q.offsets[p.stacks[st + 1]] - q.offsets[first] + lanes - 1) / lanes;
    p.max_stack_groups = std::max(p.max_stack_groups, groups);
    stack_group.push_back(stack_group.back() + groups);
  }

  p.data = aligned_bytes(stack_group.back() * group_bytes);
  char* base = static_cast<char*>(p.data.get());
  parallel_for(n_stacks, n_stacks >= 64 ? threads : 1, [&](i64 st, int) {
    const i64 first = p.stacks[st], end = p.stacks[st + 1];
    kernel.pack(q.tokens + q.offsets[first] * q.dim, q.offsets[end] - q.offsets[first], q.dim,
                base + stack_group[st] * group_bytes);
  });
  p.view.data = p.data.get();
  p.view.group_elems = group_elems;
  p.view.lanes = kernel.lanes;
  p.view.dim = q.dim;
  p.view.lane_begin = p.lane_begin.data();
  p.view.lengths = p.lengths.data();
  return p;
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
void score_stacks_by_chunk(const MaxSimKernel& kernel, const Packed& packed, const DocTokens& d, int threads,
                           i64 extra_floats, std::atomic<bool>& finite, Target target, Emit emit) {
  const std::vector<i64>& stacks = packed.stacks;
  const std::vector<i64> chunks = doc_chunks(d, threads);
  const i64 n_chunks = static_cast<i64>(chunks.size()) - 1;
  const i64 n_stacks = static_cast<i64>(stacks.size()) - 1;
  const i64 kernel_floats = kernel.scratch_floats(d.dim, packed.max_stack_groups);
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

void raise_nonfinite() {
  throw NonFiniteError("MaxSim saw a non-finite token dot product (NaN/inf input or float32 overflow)");
}

// Scores each query against its own doc id list ids[seg[q] .. seg[q+1]) (one query per stack), in tasks of at
// most kMaxDocChunk ids. emit(query, first, count, scores, thread) receives each task's scores
// (scores[i] belongs to ids[first + i]).
template <class Emit>
void score_id_lists(const MaxSimKernel& kernel, const Packed& packed, const DocTokens& d, const i64* ids,
                    const std::vector<i64>& seg, int threads, std::atomic<bool>& finite, Emit emit) {
  struct Task {
    i64 query, first, count;
  };
  // Split the lists finely enough that every thread gets about kTasksPerThread tasks (one query with 100
  // candidates still runs on all threads), in pieces of at most kMaxDocChunk ids.
  const i64 total = seg.back();
  const i64 piece =
      std::max<i64>(1, std::min(kMaxDocChunk, (total + threads * kTasksPerThread - 1) / (threads * kTasksPerThread)));
  std::vector<Task> tasks;
  for (i64 qi = 0; qi + 1 < static_cast<i64>(seg.size()); ++qi)
    for (i64 b = seg[qi]; b < seg[qi + 1]; b += piece) tasks.push_back({qi, b, std::min(piece, seg[qi + 1] - b)});
  const i64 kernel_floats = kernel.scratch_floats(d.dim, packed.max_stack_groups);
  Scratch scratch(threads, kernel_floats + kMaxDocChunk);
  parallel_for(static_cast<i64>(tasks.size()), threads, [&](i64 task, int thread) {
    const Task& t = tasks[task];
    float* buf = scratch.get(thread);
    ScoreJob job;
    job.q_begin = t.query;
    job.q_end = t.query + 1;
    job.doc_ids = ids + t.first;
    job.n_docs = t.count;
    job.out = buf + kernel_floats;
    job.out_query_stride = t.count;
    if (!kernel.score(packed.view, d, job, buf)) finite.store(false);
    emit(t.query, t.first, t.count, job.out, thread);
  });
}

}  // namespace

const char* maxsim_kernel_name_for(const i64* q_offsets, i64 n_queries, i64 dim, DocDType dtype, bool stack_queries) {
  QueryTokens q;
  q.offsets = q_offsets;
  q.n_queries = n_queries;
  q.dim = dim;
  return choose_kernel(maxsim_kernel(dtype), q, stack_queries).name;
}

void maxsim_dense(const QueryTokens& q, const DocTokens& d, float* out, int threads) {
  if (q.n_queries == 0 || d.n_docs == 0) return;
  threads = resolve_threads(threads);
  const MaxSimKernel& kernel = choose_kernel(maxsim_kernel(d.dtype), q, /*stack_queries=*/true);
  const Packed packed = pack_queries(kernel, q, threads, /*stack_queries=*/true);
  std::atomic<bool> finite{true};
  score_stacks_by_chunk(
      kernel, packed, d, threads, 0, finite,
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
  const MaxSimKernel& kernel = choose_kernel(maxsim_kernel(d.dtype), q, /*stack_queries=*/false);
  const Packed packed = pack_queries(kernel, q, threads, /*stack_queries=*/false);
  // Counting sort of the pairs by query; within a query the doc ids keep their input order.
  std::vector<i64> seg(static_cast<std::size_t>(q.n_queries) + 1, 0);
  for (i64 p = 0; p < n_pairs; ++p) ++seg[query_ids[p] + 1];
  for (i64 qi = 0; qi < q.n_queries; ++qi) seg[qi + 1] += seg[qi];
  std::vector<i64> order(static_cast<std::size_t>(n_pairs)), sorted_docs(static_cast<std::size_t>(n_pairs));
  std::vector<i64> fill(seg.begin(), seg.end() - 1);
  for (i64 p = 0; p < n_pairs; ++p) {
    const i64 slot = fill[query_ids[p]]++;
    order[slot] = p;
    sorted_docs[slot] = doc_ids[p];
  }
  std::atomic<bool> finite{true};
  score_id_lists(kernel, packed, d, sorted_docs.data(), seg, threads, finite,
                 [&](i64, i64 first, i64 count, const float* scores, int) {
                   for (i64 i = 0; i < count; ++i) out[order[first + i]] = scores[i];
                 });
  if (!finite.load()) raise_nonfinite();
}

void maxsim_topk(const QueryTokens& q, const DocTokens& d, i64 k, const i64* cand_ids, const i64* cand_offsets,
                 float* out_scores, i64* out_ids, int threads) {
  if (q.n_queries == 0) return;
  threads = resolve_threads(threads);
  const MaxSimKernel& kernel = choose_kernel(maxsim_kernel(d.dtype), q, /*stack_queries=*/!cand_offsets);
  std::atomic<bool> finite{true};

  if (!cand_offsets) {
    const Packed packed = pack_queries(kernel, q, threads, /*stack_queries=*/true);
    TopK heaps(threads, q.n_queries, std::min(k, d.n_docs), k);
    i64 max_stack = 0;
    for (std::size_t st = 0; st + 1 < packed.stacks.size(); ++st)
      max_stack = std::max(max_stack, packed.stacks[st + 1] - packed.stacks[st]);
    score_stacks_by_chunk(
        kernel, packed, d, threads, max_stack * kMaxDocChunk, finite,
        [](ScoreJob& job, float* spare) {
          job.out = spare;  // per-thread buffer, then into the heaps
          job.out_query_stride = job.n_docs;
        },
        [&](const ScoreJob& job, int thread) {
          for (i64 qi = job.q_begin; qi < job.q_end; ++qi)
            for (i64 i = 0; i < job.n_docs; ++i)
              heaps.push(thread, qi, job.out[(qi - job.q_begin) * job.n_docs + i], job.doc_begin + i);
        });
    if (!finite.load()) raise_nonfinite();
    heaps.merge(threads, out_scores, out_ids);
    return;
  }
  // Candidate lists: compact each (drop -1 padding); ids only, no token copies.
  const Packed packed = pack_queries(kernel, q, threads, /*stack_queries=*/false);
  std::vector<i64> seg(static_cast<std::size_t>(q.n_queries) + 1, 0), compact;
  compact.reserve(static_cast<std::size_t>(cand_offsets[q.n_queries]));
  i64 most_candidates = 0;
  for (i64 qi = 0; qi < q.n_queries; ++qi) {
    for (i64 c = cand_offsets[qi]; c < cand_offsets[qi + 1]; ++c)
      if (cand_ids[c] >= 0) compact.push_back(cand_ids[c]);
    seg[qi + 1] = static_cast<i64>(compact.size());
    most_candidates = std::max(most_candidates, seg[qi + 1] - seg[qi]);
  }
  TopK heaps(threads, q.n_queries, std::min(k, most_candidates), k);
  score_id_lists(kernel, packed, d, compact.data(), seg, threads, finite,
                 [&](i64 query, i64 first, i64 count, const float* scores, int thread) {
                   for (i64 i = 0; i < count; ++i) heaps.push(thread, query, scores[i], compact[first + i]);
                 });
  if (!finite.load()) raise_nonfinite();
  heaps.merge(threads, out_scores, out_ids);
}

}  // namespace simkern
