// Thread-local bounded top-k heaps merged under a total order (score descending, then id ascending), so that the
// selected set and its order do not depend on how work was split across threads. Baseline code only (drivers).
// Callers that want the smallest values (squared L2) push negated scores and negate the output back (exact).
#pragma once

#include <algorithm>
#include <limits>
#include <vector>

#include "simkern/common.hpp"

namespace simkern {

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
      : k_(std::max<i64>(k, 1)),
        k_out_(k_out),
        n_queries_(n_queries),
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

}  // namespace simkern
