// simkern/hnsw.hpp - HNSW approximate nearest-neighbour index (Malkov & Yashunin), native part.
//
// Metrics: l2 (squared L2, ascending), ip (inner product, descending) and cosine (inner product of vectors
// normalised at insert and of normalised queries). Internally every metric is a distance to minimise: l2, or
// -ip. Storage float32, or float16 for the graph walk with float32 copies kept apart for the final re-scoring.
//
// Layout (see docs/ARCHITECTURE.md): nodes live in chunks of kChunkNodes fixed-size records, so the index grows
// without moving a record; a record holds [header: spin lock, tombstone, level, user label,
// pointer to the upper-level links][level-0 link count and 2M links (uint32)][the vector]. Upper levels (M links each) get one
// allocation per node made at insert. Levels are drawn from a counter-based hash of (seed, insertion number),
// so they do not depend on threads.
//
// Concurrency: add() inserts with per-node spin locks (any number of pool threads); searches may run at the same
// time from other threads: they read a node count published with release semantics after a record is complete,
// ignore links to nodes above it, and read link lists with relaxed atomic loads (a list being rewritten may be
// seen half old, half new: every id in it is a complete node). Mutating calls (add, remove, compact) are
// serialised by the caller (the binding holds a writer mutex).
//
// Interrupted or failed add(): the nodes whose linking had not finished are taken out again (tasks are handed out
// in order, so those linked form a prefix of the batch): the graph is exactly as if the first j vectors had been
// added (labels that they replaced are live again), and add() rethrows.
//
// Exact duplicates: a vector equal (bit for bit, after cosine normalisation) to one found by its level-0 search is
// not linked into the graph: it is put on that node's duplicate chain (next_dup, one uint32 in the record), which
// searches follow like a level-0 link. Without this, copies of one vector (say the embedding of an empty text)
// fill each other's link lists and cut themselves and the rest of the graph apart.
//
// Distances: the HNSWKernels of the active ISA (generic/hnsw-inl.hpp), bit-identical on every ISA.
#pragma once

#include <atomic>
#include <string>
#include <utility>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "simkern/common.hpp"

namespace simkern {

struct HNSWKernels {
  const char* name = nullptr;
  float (*l2_f32)(const float* q, const float* v, i64 dim) = nullptr;
  float (*ip_f32)(const float* q, const float* v, i64 dim) = nullptr;
  float (*l2_f16)(const float* q, const std::uint16_t* v, i64 dim) = nullptr;
  float (*ip_f16)(const float* q, const std::uint16_t* v, i64 dim) = nullptr;
  // Two vectors per call (out[0], out[1]), each bit-identical to the single-vector kernel.
  void (*l2_f32_x2)(const float* q, const float* v0, const float* v1, i64 dim, float* out) = nullptr;
  void (*ip_f32_x2)(const float* q, const float* v0, const float* v1, i64 dim, float* out) = nullptr;
  void (*l2_f16_x2)(const float* q, const std::uint16_t* v0, const std::uint16_t* v1, i64 dim, float* out) = nullptr;
  void (*ip_f16_x2)(const float* q, const std::uint16_t* v0, const std::uint16_t* v1, i64 dim, float* out) = nullptr;
};

const HNSWKernels& hnsw_kernels();  // for the active ISA

// Test hook: the next add() throws Interrupted (as Ctrl-C would) when it is about to link its task number `tasks`
// (counted across calls until it fires; negative: off).
void hnsw_test_interrupt_after(i64 tasks);

enum class HNSWMetric : int { l2 = 0, ip = 1, cosine = 2 };

struct HNSWConfig {
  i64 dim = 0;
  HNSWMetric metric = HNSWMetric::l2;
  int M = 16;
  int ef_construction = 200;
  bool f16 = false;
  std::uint64_t seed = 0;
};

// Allowed internal nodes for a filtered search (one byte per node; nodes past its size are not allowed).
struct HNSWFilter {
  const std::uint8_t* allowed = nullptr;
  i64 size = 0;
  i64 count = 0;  // number of allowed nodes
};

class HNSWGraph {
 public:
  static constexpr int kChunkBits = 12;
  static constexpr i64 kChunkNodes = i64{1} << kChunkBits;
  static constexpr i64 kMaxChunks = i64{1} << 15;  // 134M nodes
  static constexpr int kMaxLevel = 32;

  // external_vectors: n x dim float32 owned by the caller (a memory-mapped file) used instead of vectors in the
  // records; such a graph is read-only for add() (restore_node fills it), and float16 storage walks on them.
  explicit HNSWGraph(const HNSWConfig& config, const float* external_vectors = nullptr);
  ~HNSWGraph();
  HNSWGraph(const HNSWGraph&) = delete;
  HNSWGraph& operator=(const HNSWGraph&) = delete;

  const HNSWConfig& config() const { return config_; }
  i64 size() const { return count_.load(std::memory_order_acquire); }  // nodes, tombstones included
  i64 live() const { return size() - deleted_.load(std::memory_order_relaxed); }
  i64 deleted() const { return deleted_.load(std::memory_order_relaxed); }
  i64 memory_bytes() const;
  bool external() const { return external_ != nullptr; }

  // Inserts n vectors (n x dim float32) under `labels`. Labels already present: with replace, the old node becomes
  // a tombstone; the caller checks duplicates first (find()). Deterministic for threads == 1. When interrupted
  // (Interrupted) or failing, the graph is left as if only the first j vectors had been added (j = size() after
  // minus before) and the exception is rethrown.
  void add(const float* x, const i64* labels, i64 n, int threads);
  i64 last_add_count() const { return last_add_count_; }  // j: the vectors the last add() kept (n on success)
  void use_active_isa() const { kernels_.store(&hnsw_kernels(), std::memory_order_relaxed); }

  // k nearest live (and allowed) nodes per query: scores (metric's sign: l2 ascending, ip/cosine descending) and
  // labels, padded with -1 and +-inf. ef >= k.
  void search(const float* queries, i64 nq, i64 k, i64 ef, const HNSWFilter* filter, int threads, float* scores,
              i64* labels) const;

  // Filter translation (user labels -> internal nodes): sets allowed[node] = 1 for every live node whose label is
  // allowed - by a byte mask over labels (label < mask_len and label_mask[label] != 0) when label_mask is given,
  // else by the list `labels` (absent labels match nothing) - and returns how many nodes are allowed. `allowed`
  // is resized to size() and zeroed first. The rule for the user's arguments is the caller's (docs/API.md).
  i64 allowed_nodes(const std::uint8_t* label_mask, i64 mask_len, const i64* labels, i64 n_labels,
                    std::vector<std::uint8_t>& allowed) const;

  // Compaction: a new graph (same config) holding the live nodes' labels and float32 vectors in node order, built
  // on `threads` threads; the tombstones are dropped. This graph is only read.
  std::shared_ptr<HNSWGraph> compacted(int threads) const;

  bool remove(i64 label);                   // tombstone; false when the label is absent
  bool unremove(i64 label);                 // revive the newest tombstone of a label that is not live (O(n) scan)
  i64 find(i64 label) const;                // internal node of a live label, or -1
  void vector(i64 node, float* out) const;  // the stored float32 vector (float16: the kept float32 copy)
  i64 label(i64 node) const;
  bool is_deleted(i64 node) const;
  int level(i64 node) const;
  int max_level() const { return static_cast<int>(entry_.load(std::memory_order_acquire) >> 32) - 1; }
  i64 entry_point() const;
  // The next node on `node`'s duplicate chain (0: none; node 0 is never a duplicate).
  std::uint32_t next_dup(i64 node) const { return __atomic_load_n(&header(node)->next_dup, __ATOMIC_ACQUIRE); }

  // Links of a node at a level (tests, save): count then ids.
  std::vector<std::uint32_t> links(i64 node, int level) const;
  // Restore (load): append a node with given level/label/vector/tombstone and set links afterwards.
  void restore_node(const float* v, i64 label, int level, bool deleted);
  void restore_links(i64 node, int level, const std::uint32_t* ids, i64 count);
  void restore_entry(i64 node, int max_level);
  void restore_dup(i64 node, std::uint32_t next);  // after every node is restored

  int max_links(int level) const { return level == 0 ? 2 * config_.M : config_.M; }

  struct Scratch;  // per-thread search state (hnsw.cpp)

 private:
  struct Header {
    std::uint8_t lock;
    std::uint8_t deleted;
    std::uint16_t level;
    std::uint32_t next_dup;  // the next exact duplicate of this vector (0: none)
    std::int64_t label;
    std::uint32_t* upper;     // levels 1..level: (1 + M) uint32 each, count first
    std::uint32_t in_degree;  // level-0 links and duplicate chain pointers to this node (see connect())
    std::uint32_t unused;
  };
  std::uint32_t in_degree(std::uint32_t node) const {
    return __atomic_load_n(&header(node)->in_degree, __ATOMIC_RELAXED);
  }
  void add_in_degree(std::uint32_t node, int delta) const {
    __atomic_fetch_add(&header(node)->in_degree, static_cast<std::uint32_t>(delta), __ATOMIC_RELAXED);
  }
  void keep_reachable(std::uint32_t added, Scratch& s) const;
  void note_added(i64 count);
  void repair_reachability();
  char* record(i64 node) const {
    return chunks_[static_cast<std::size_t>(node >> kChunkBits)].load(std::memory_order_acquire) +
           (node & (kChunkNodes - 1)) * record_bytes_;
  }
  Header* header(i64 node) const { return reinterpret_cast<Header*>(record(node)); }
  const void* stored(i64 node) const {
    return external_ ? static_cast<const void*>(external_ + node * config_.dim) : record(node) + vector_offset_;
  }
  std::uint32_t* link_list(i64 node, int level) const;  // count first

  float dist(const float* q, i64 node) const;                  // on the stored vector (float16 for f16 storage)
  void dist2(const float* q, i64 a, i64 b, float* out) const;  // the same for two nodes at once
  float exact_dist(const float* q, i64 node) const;            // float32 copy
  const float* exact_vector(i64 node) const;  // float32 vector (the record's, or the f16 storage's copy)
  void lock(i64 node) const;
  void unlock(i64 node) const;
  i64 allocate_node();  // returns the new node's index (record zeroed); not yet published
  int draw_level(std::uint64_t sequence) const;
  void prepare_query(const float* q, float* out) const;  // cosine: normalise
  void insert(i64 node, const float* q, Scratch& s);
  void greedy_descent(const float* q, int from_level, int to_level, i64 limit, i64& cur, float& cur_dist) const;
  void prefetch_links(std::uint32_t node) const;
  void distances(const float* q, int count, Scratch& s) const;
  int unvisited_neighbors(std::uint32_t node, int level, int cap, i64 limit, Scratch& s) const;
  struct AnyNode {  // search_layer's predicate when nothing is excluded
    bool operator()(std::uint32_t) const { return true; }
  };
  template <class Allowed>
  void search_layer(const float* q, i64 entry, float entry_dist, i64 ef, int level, i64 limit, Scratch& s,
                    Allowed allowed) const;
  i64 new_record(i64 label, int level, bool deleted, const float* v);
  void select_neighbors(std::vector<std::pair<float, std::uint32_t>>& candidates, int m, Scratch& s) const;
  void connect(i64 node, int level, const std::vector<std::pair<float, std::uint32_t>>& chosen, Scratch& s);
  void search_one(const float* q, i64 k, i64 ef, const HNSWFilter* filter, Scratch& s, float* scores,
                  i64* labels) const;
  void exact_filtered(const float* q, i64 k, const HNSWFilter* filter, i64 limit, Scratch& s) const;
  bool is_duplicate_of(i64 node, i64 other) const;
  void take_back(i64 first, i64 count, const std::vector<i64>& replaced);  // undo new_record of the last nodes
  void give_label_back(i64 node, i64 replaced_node);
  float score(float internal) const { return config_.metric == HNSWMetric::l2 ? internal : -internal; }

  HNSWConfig config_;
  const float* external_ = nullptr;
  bool walk_f16_ = false;                            // float16 storage with its own records (not external)
  mutable std::atomic<const HNSWKernels*> kernels_;  // the active ISA's, refreshed by each add / search call
  i64 record_bytes_ = 0, vector_offset_ = 0;
  double level_mult_ = 0.0;
  static constexpr i64 kPrefetchLines = 7;  // cache lines of each new neighbour's record prefetched per expansion
  i64 prefetch_lines_ = 1, link_lines_ = 1;
  std::unique_ptr<std::atomic<char*>[]> chunks_;
  std::unique_ptr<std::atomic<float*>[]> exact_chunks_;  // f16 storage: float32 copies, chunk by chunk
  std::atomic<i64> count_{0};
  std::atomic<i64> deleted_{0};
  std::atomic<std::uint64_t> entry_{0};  // (max_level + 1) << 32 | entry node; 0 = empty
  std::mutex entry_mutex_;
  mutable std::mutex label_mutex_;
  std::unordered_map<i64, std::uint32_t> label_to_node_;
  std::uint64_t sequence_ = 0;  // insertions so far (levels)
  i64 last_add_count_ = 0;
  i64 added_since_repair_ = 0;
};

}  // namespace simkern
