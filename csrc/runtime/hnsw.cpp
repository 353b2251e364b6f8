// HNSW graph: records in chunks, insert with the neighbour-selection heuristic and per-node spin locks, layered
// search with an epoch-tagged visited list, filters and tombstones (contract in simkern/hnsw.hpp).
#include "simkern/hnsw.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <new>
#include <stdexcept>
#include <thread>
#include <utility>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"
#include "simkern/thread_pool.hpp"
#include "splitmix.hpp"

namespace simkern {

namespace {

using Pair = std::pair<float, std::uint32_t>;  // (internal distance, node)

inline std::uint32_t load_relaxed(const std::uint32_t* p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
inline void store_relaxed(std::uint32_t* p, std::uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }

// Chunks are 2 MiB aligned and, on Linux, advised to use transparent huge pages: a search touches records all
// over the index, and with 4 KiB pages nearly every record costs a TLB miss. Not zeroed here (each record is
// cleared when its node is allocated), so the pages of a chunk's unused tail are never touched.
constexpr std::size_t kAlign = std::size_t{1} << 21;

char* alloc_chunk(std::size_t bytes) {
  char* p = static_cast<char*>(::operator new[](bytes, std::align_val_t{kAlign}));
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  madvise(p, bytes, MADV_HUGEPAGE);  // advice only: ignored where THP is off
#endif
  return p;
}
void free_aligned(char* p) { ::operator delete[](p, std::align_val_t{kAlign}); }

std::atomic<i64> g_interrupt_after{-1};

}  // namespace

void hnsw_test_interrupt_after(i64 tasks) { g_interrupt_after.store(tasks < 0 ? -1 : tasks); }

// Per-thread search state: visited tags (epochs; cleared on wrap-around), heaps, a query buffer.
struct HNSWGraph::Scratch {
  std::vector<std::uint16_t> visited;
  std::uint16_t epoch = 0;
  std::vector<Pair> top, candidates, chosen, pruned, found, mine, pruned_kept;
  std::vector<std::vector<Pair>> per_level;  // insert: the neighbours chosen at each level
  std::vector<float> query;
  std::vector<std::uint32_t> batch;  // unvisited neighbours of one expansion
  std::vector<float> batch_dist;     // their distances

  void new_epoch(i64 nodes) {
    if (static_cast<i64>(visited.size()) < nodes) visited.resize(static_cast<std::size_t>(nodes + nodes / 4 + 64), 0);
    if (++epoch == 0) {
      std::fill(visited.begin(), visited.end(), std::uint16_t{0});
      epoch = 1;
    }
  }
  bool visit(std::uint32_t node) {  // true the first time in this epoch
    if (visited[node] == epoch) return false;
    visited[node] = epoch;
    return true;
  }
};

namespace {
HNSWGraph::Scratch& thread_scratch() {
  thread_local HNSWGraph::Scratch scratch;
  return scratch;
}
// Max-heap by distance (the worst on top) and min-heap through negated distances.
inline void push_max(std::vector<Pair>& h, Pair p) {
  h.push_back(p);
  std::push_heap(h.begin(), h.end());
}
inline void pop_max(std::vector<Pair>& h) {
  std::pop_heap(h.begin(), h.end());
  h.pop_back();
}
}  // namespace

HNSWGraph::HNSWGraph(const HNSWConfig& config, const float* external_vectors)
    : config_(config),
      external_(external_vectors),
      walk_f16_(config.f16 && !external_vectors),
      kernels_(&hnsw_kernels()) {
  if (config_.dim < 1) throw std::invalid_argument("dim must be >= 1");
  if (config_.M < 2) throw std::invalid_argument("M must be >= 2");
  if (config_.ef_construction < 1) throw std::invalid_argument("ef_construction must be >= 1");
  const i64 links_bytes = static_cast<i64>(sizeof(Header)) + 4 * (1 + max_links(0));
  vector_offset_ = (links_bytes + 15) / 16 * 16;
  const i64 vector_bytes = external_ ? 0 : config_.dim * (walk_f16_ ? 2 : 4);
  record_bytes_ = (vector_offset_ + vector_bytes + 7) / 8 * 8;
  level_mult_ = 1.0 / std::log(static_cast<double>(config_.M));
  prefetch_lines_ = std::min<i64>((record_bytes_ + 63) / 64, kPrefetchLines);
  link_lines_ = (links_bytes + 63) / 64;
  chunks_.reset(new std::atomic<char*>[kMaxChunks]);
  for (i64 c = 0; c < kMaxChunks; ++c) chunks_[c].store(nullptr, std::memory_order_relaxed);
  if (walk_f16_) {
    exact_chunks_.reset(new std::atomic<float*>[kMaxChunks]);
    for (i64 c = 0; c < kMaxChunks; ++c) exact_chunks_[c].store(nullptr, std::memory_order_relaxed);
  }
}

HNSWGraph::~HNSWGraph() {
  const i64 n = count_.load();
  for (i64 node = 0; node < n; ++node) delete[] header(node)->upper;
  for (i64 c = 0; c < kMaxChunks; ++c) {
    if (char* p = chunks_[c].load()) free_aligned(p);
    if (walk_f16_)
      if (float* p = exact_chunks_[c].load()) free_aligned(reinterpret_cast<char*>(p));
  }
}

i64 HNSWGraph::memory_bytes() const {
  // What is resident: the records written so far (a chunk's tail is never touched), the float32 copies of
  // float16 storage, the chunk directories, upper-level links and the label map.
  const i64 n = size();
  i64 bytes = n * record_bytes_ + kMaxChunks * static_cast<i64>(sizeof(char*)) * (walk_f16_ ? 2 : 1);
  if (walk_f16_) bytes += n * config_.dim * 4;
  for (i64 node = 0; node < n; ++node) bytes += 4 * header(node)->level * (1 + max_links(1));
  std::lock_guard<std::mutex> guard(label_mutex_);
  bytes += static_cast<i64>(label_to_node_.size()) * 32 + static_cast<i64>(label_to_node_.bucket_count()) * 8;
  return bytes;
}

std::uint32_t* HNSWGraph::link_list(i64 node, int level) const {
  if (level == 0) return reinterpret_cast<std::uint32_t*>(record(node) + sizeof(Header));
  return header(node)->upper + static_cast<i64>(level - 1) * (1 + max_links(1));
}

const float* HNSWGraph::exact_vector(i64 node) const {
  if (!walk_f16_) return static_cast<const float*>(stored(node));
  return exact_chunks_[static_cast<std::size_t>(node >> kChunkBits)].load(std::memory_order_acquire) +
         (node & (kChunkNodes - 1)) * config_.dim;
}

float HNSWGraph::dist(const float* q, i64 node) const {
  const bool l2 = config_.metric == HNSWMetric::l2;
  const HNSWKernels* kernels = kernels_.load(std::memory_order_relaxed);
  if (walk_f16_) {
    const auto* v = static_cast<const std::uint16_t*>(stored(node));
    return l2 ? kernels->l2_f16(q, v, config_.dim) : -kernels->ip_f16(q, v, config_.dim);
  }
  const auto* v = static_cast<const float*>(stored(node));
  return l2 ? kernels->l2_f32(q, v, config_.dim) : -kernels->ip_f32(q, v, config_.dim);
}

void HNSWGraph::dist2(const float* q, i64 a, i64 b, float* out) const {
  const bool l2 = config_.metric == HNSWMetric::l2;
  const HNSWKernels* kernels = kernels_.load(std::memory_order_relaxed);
  if (walk_f16_) {
    (l2 ? kernels->l2_f16_x2 : kernels->ip_f16_x2)(q, static_cast<const std::uint16_t*>(stored(a)),
                                                   static_cast<const std::uint16_t*>(stored(b)), config_.dim, out);
  } else {
    (l2 ? kernels->l2_f32_x2 : kernels->ip_f32_x2)(q, static_cast<const float*>(stored(a)),
                                                   static_cast<const float*>(stored(b)), config_.dim, out);
  }
  if (!l2) {
    out[0] = -out[0];
    out[1] = -out[1];
  }
}

float HNSWGraph::exact_dist(const float* q, i64 node) const {
  const float* v = exact_vector(node);
  const HNSWKernels* kernels = kernels_.load(std::memory_order_relaxed);
  return config_.metric == HNSWMetric::l2 ? kernels->l2_f32(q, v, config_.dim) : -kernels->ip_f32(q, v, config_.dim);
}

void HNSWGraph::lock(i64 node) const {
  std::uint8_t* l = &header(node)->lock;
  for (int spins = 0; __atomic_exchange_n(l, std::uint8_t{1}, __ATOMIC_ACQUIRE); ++spins) {
    while (__atomic_load_n(l, __ATOMIC_RELAXED)) {
      if (++spins > 64) std::this_thread::yield();
      else cpu_relax();
    }
  }
}
void HNSWGraph::unlock(i64 node) const { __atomic_store_n(&header(node)->lock, std::uint8_t{0}, __ATOMIC_RELEASE); }

int HNSWGraph::draw_level(std::uint64_t sequence) const {
  const std::uint64_t bits = splitmix64(config_.seed * 0x9e3779b97f4a7c15ULL ^ splitmix64(sequence));
  const double u = (static_cast<double>(bits >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
  const double level = std::floor(-std::log(u) * level_mult_);
  return static_cast<int>(std::min<double>(level, kMaxLevel - 1));
}

void HNSWGraph::prepare_query(const float* q, float* out) const {
  if (config_.metric != HNSWMetric::cosine) {
    std::memcpy(out, q, static_cast<std::size_t>(config_.dim) * sizeof(float));
    return;
  }
  double norm = 0.0;
  for (i64 i = 0; i < config_.dim; ++i) norm += static_cast<double>(q[i]) * q[i];
  const double scale = norm > 0.0 ? 1.0 / std::sqrt(norm) : 0.0;
  for (i64 i = 0; i < config_.dim; ++i) out[i] = static_cast<float>(q[i] * scale);
}

i64 HNSWGraph::allocate_node() {
  const i64 node = count_.load(std::memory_order_relaxed);  // writers are serialised: no race on the count
  const i64 chunk = node >> kChunkBits;
  if (chunk >= kMaxChunks) throw std::length_error("HNSW index is full (134M nodes)");
  if (!chunks_[chunk].load(std::memory_order_relaxed)) {
    chunks_[chunk].store(alloc_chunk(static_cast<std::size_t>(kChunkNodes * record_bytes_)), std::memory_order_release);
    if (walk_f16_)
      exact_chunks_[chunk].store(
          reinterpret_cast<float*>(alloc_chunk(static_cast<std::size_t>(kChunkNodes * config_.dim) * sizeof(float))),
          std::memory_order_release);
  }
  std::memset(record(node), 0, static_cast<std::size_t>(record_bytes_));
  return node;
}

// A complete record for a new node (not yet published): header, empty links, upper-level lists, the vector
// (float16 storage: the half copy in the record and the float32 one beside it; external: read where it lies).
i64 HNSWGraph::new_record(i64 label_value, int lev, bool deleted_flag, const float* v) {
  const i64 node = allocate_node();
  Header* h = header(node);
  h->level = static_cast<std::uint16_t>(lev);
  h->label = label_value;
  h->deleted = deleted_flag ? 1 : 0;
  h->upper = lev > 0 ? new std::uint32_t[static_cast<std::size_t>(lev * (1 + max_links(1)))]() : nullptr;
  const auto bytes = static_cast<std::size_t>(config_.dim) * sizeof(float);
  if (walk_f16_) {
    auto* hv = reinterpret_cast<std::uint16_t*>(record(node) + vector_offset_);
    for (i64 j = 0; j < config_.dim; ++j) hv[j] = float_to_f16_rne(v[j]);
    std::memcpy(const_cast<float*>(exact_vector(node)), v, bytes);
  } else if (!external_) {
    std::memcpy(record(node) + vector_offset_, v, bytes);
  }
  return node;
}

void HNSWGraph::add(const float* x, const i64* labels, i64 n, int threads) {
  if (n <= 0) return;
  if (external_) throw std::logic_error("this index reads memory-mapped vectors: it is read-only");
  use_active_isa();
  last_add_count_ = 0;
  const i64 first = count_.load(std::memory_order_relaxed);
  std::vector<i64> replaced(static_cast<std::size_t>(n), -1);  // the node each label had before (-1: none)
  std::unique_ptr<std::atomic<std::uint8_t>[]> linked(new std::atomic<std::uint8_t>[static_cast<std::size_t>(n)]);
  for (i64 i = 0; i < n; ++i) linked[i].store(0, std::memory_order_relaxed);
  i64 published = 0;
  try {
    // Phase 1 (this thread): complete records for every new node, labels mapped (the old node of a replaced label
    // becomes a tombstone), each published with a release store of the count.
    std::vector<float> buffer(static_cast<std::size_t>(config_.dim));
    for (i64 i = 0; i < n; ++i) {
      prepare_query(x + i * config_.dim, buffer.data());
      const i64 node = new_record(labels[i], draw_level(sequence_), false, buffer.data());
      ++sequence_;
      {
        std::lock_guard<std::mutex> guard(label_mutex_);
        auto it = label_to_node_.find(labels[i]);
        if (it != label_to_node_.end()) {
          replaced[static_cast<std::size_t>(i)] = it->second;
          __atomic_store_n(&header(it->second)->deleted, std::uint8_t{1}, __ATOMIC_RELAXED);
          deleted_.fetch_add(1, std::memory_order_relaxed);
          it->second = static_cast<std::uint32_t>(node);
        } else {
          label_to_node_.emplace(labels[i], static_cast<std::uint32_t>(node));
        }
      }
      count_.store(node + 1, std::memory_order_release);
      published = i + 1;
    }
    // Phase 2: link them, in order on one thread (deterministic), in parallel otherwise.
    parallel_for(n, threads, [&](i64 i, int) {
      if (g_interrupt_after.load(std::memory_order_relaxed) >= 0 && g_interrupt_after.fetch_sub(1) == 0) {
        g_interrupt_after.store(-1);
        throw Interrupted();  // the test hook (hnsw_test_interrupt_after)
      }
      Scratch& s = thread_scratch();
      insert(first + i, exact_vector(first + i), s);
      linked[i].store(1, std::memory_order_release);
    });
    last_add_count_ = n;
    note_added(n);
  } catch (...) {
    // Tasks start in index order and every started task finishes before parallel_for throws, so after an
    // interrupt the linked nodes are a prefix [0, j). Nodes past the last linked one are unreachable (nothing links
    // to a node before its own insert): they are taken back. When a task failed (an exception inside an insert)
    // while later ones finished on other threads, the nodes from the first unlinked one to the last linked one
    // lose their labels and stay as tombstones (they may be linked, or half linked: tombstones route, never
    // come back). Either way the live labels are exactly those of the first j vectors.
    i64 j = 0;
    while (j < published && linked[j].load(std::memory_order_acquire)) ++j;
    i64 last = published;
    while (last > j && !linked[last - 1].load(std::memory_order_acquire)) --last;
    for (i64 i = j; i < last; ++i) {
      give_label_back(first + i, replaced[static_cast<std::size_t>(i)]);
      __atomic_store_n(&header(first + i)->deleted, std::uint8_t{1}, __ATOMIC_RELAXED);
      deleted_.fetch_add(1, std::memory_order_relaxed);
    }
    take_back(first + last, published - last, std::vector<i64>(replaced.begin() + last, replaced.begin() + published));
    last_add_count_ = j;
    note_added(j);  // as an add of those j would have (the same graph)
    throw;
  }
}

// Reachability is checked (and repaired) once the nodes added since the last check reach 1/16 of the index: a
// graph walk per node added in bulk, amortised.
void HNSWGraph::note_added(i64 count) {
  added_since_repair_ += count;
  if (added_since_repair_ * 16 >= size()) {
    repair_reachability();
    added_since_repair_ = 0;
  }
}

// Every node reachable from the entry point at level 0 (links and duplicate chains). A node found unreachable
// (its incoming links were all pruned, or come only from other unreachable nodes) is linked from the nearest
// reachable node that a search for it finds - into a free slot, or in place of the farthest link whose target
// has another incoming one - and its component is then reachable too.
void HNSWGraph::repair_reachability() {
  const i64 n = size();
  const std::uint64_t entry = entry_.load(std::memory_order_acquire);
  if (n < 2 || entry == 0) return;
  std::vector<std::uint8_t> seen(static_cast<std::size_t>(n), 0);
  std::vector<std::uint32_t> stack;
  auto walk = [&](std::uint32_t from) {
    if (seen[from]) return;
    seen[from] = 1;
    stack.push_back(from);
    while (!stack.empty()) {
      const std::uint32_t v = stack.back();
      stack.pop_back();
      const std::uint32_t* list = link_list(v, 0);
      const int count = std::min<int>(static_cast<int>(load_relaxed(list)), max_links(0));
      for (int j = 0; j <= count; ++j) {
        const std::uint32_t nb = j < count ? load_relaxed(list + 1 + j) : next_dup(v);
        if ((j == count && nb == 0) || nb >= n || seen[nb]) continue;
        seen[nb] = 1;
        stack.push_back(nb);
      }
    }
  };
  const auto entry_node = static_cast<std::uint32_t>(entry & 0xffffffffu);
  const int top = static_cast<int>(entry >> 32) - 1;
  walk(entry_node);
  Scratch& s = thread_scratch();
  const int cap = max_links(0);
  for (i64 u = 0; u < n; ++u) {
    if (seen[static_cast<std::size_t>(u)]) continue;
    const float* q = exact_vector(u);
    i64 cur = entry_node;
    float cur_dist = dist(q, cur);
    greedy_descent(q, top, 0, n, cur, cur_dist);
    search_layer(q, cur, cur_dist, config_.ef_construction, 0, n, s, AnyNode{});
    std::sort(s.top.begin(), s.top.end());
    for (const Pair& r : s.top) {  // nearest reachable first
      if (r.second == static_cast<std::uint32_t>(u) || !seen[r.second]) continue;
      std::uint32_t* list = link_list(r.second, 0);
      const int count = static_cast<int>(load_relaxed(list));
      int slot = count < cap ? count : -1;
      if (slot < 0) {
        const float* base = exact_vector(r.second);
        float worst = -std::numeric_limits<float>::infinity();
        for (int j = 0; j < count; ++j) {
          const std::uint32_t e = load_relaxed(list + 1 + j);
          const float d = dist(base, e);
          if (in_degree(e) >= 2 && d > worst) {
            worst = d;
            slot = j;
          }
        }
        if (slot < 0) continue;
        add_in_degree(load_relaxed(list + 1 + slot), -1);
      }
      store_relaxed(list + 1 + slot, static_cast<std::uint32_t>(u));
      if (slot == count) __atomic_store_n(list, static_cast<std::uint32_t>(count + 1), __ATOMIC_RELEASE);
      add_in_degree(static_cast<std::uint32_t>(u), 1);
      walk(static_cast<std::uint32_t>(u));
      break;
    }
  }
}

// The label of `node` goes back to the node it replaced (revived), or is forgotten when it replaced none.
void HNSWGraph::give_label_back(i64 node, i64 replaced_node) {
  std::lock_guard<std::mutex> guard(label_mutex_);
  auto it = label_to_node_.find(header(node)->label);
  if (it == label_to_node_.end() || it->second != static_cast<std::uint32_t>(node)) return;
  if (replaced_node >= 0) {
    it->second = static_cast<std::uint32_t>(replaced_node);
    __atomic_store_n(&header(replaced_node)->deleted, std::uint8_t{0}, __ATOMIC_RELAXED);
    deleted_.fetch_sub(1, std::memory_order_relaxed);
  } else {
    label_to_node_.erase(it);
  }
}

// Removes the last `count` nodes (first .. first + count - 1), none of which is linked from anywhere: their labels
// go back to the nodes they replaced (revived) or are forgotten, and the level sequence is rewound.
void HNSWGraph::take_back(i64 first, i64 count, const std::vector<i64>& replaced) {
  if (count <= 0) return;
  for (i64 node = first + count - 1; node >= first; --node) {
    Header* h = header(node);
    give_label_back(node, replaced[static_cast<std::size_t>(node - first)]);
    count_.store(node, std::memory_order_release);
    delete[] h->upper;
    h->upper = nullptr;
    h->level = 0;
  }
  sequence_ -= static_cast<std::uint64_t>(count);
}

// Beam search at one level from `entry` (ef results in s.top, a max-heap). Nodes for which `allowed` is false
// (tombstones, filtered out) route - they enter the candidate queue - but never enter the results; with an
// always-true predicate (construction and the lean search path) the checks compile away.
template <class Allowed>
void HNSWGraph::search_layer(const float* q, i64 entry, float entry_dist, i64 ef, int level, i64 limit, Scratch& s,
                             Allowed allowed) const {
  s.new_epoch(limit);
  s.top.clear();
  s.candidates.clear();
  s.visit(static_cast<std::uint32_t>(entry));
  float bound = std::numeric_limits<float>::infinity();  // the worst result kept, once ef are kept
  if (allowed(static_cast<std::uint32_t>(entry))) {
    s.top.push_back({entry_dist, static_cast<std::uint32_t>(entry)});
    bound = entry_dist;
  }
  s.candidates.push_back({-entry_dist, static_cast<std::uint32_t>(entry)});
  const int cap = max_links(level);
  while (!s.candidates.empty()) {
    const Pair c = s.candidates.front();
    if (-c.first > bound && static_cast<i64>(s.top.size()) >= ef) break;
    pop_max(s.candidates);
    if (!s.candidates.empty()) prefetch_links(s.candidates.front().second);  // likely the next one expanded
    const int fresh = unvisited_neighbors(c.second, level, cap, limit, s);
    distances(q, fresh, s);
    for (int j = 0; j < fresh; ++j) {
      const std::uint32_t nb = s.batch[static_cast<std::size_t>(j)];
      const float d = s.batch_dist[static_cast<std::size_t>(j)];
      if (static_cast<i64>(s.top.size()) < ef || d < bound) {
        push_max(s.candidates, {-d, nb});
        if (allowed(nb)) {
          push_max(s.top, {d, nb});
          if (static_cast<i64>(s.top.size()) > ef) pop_max(s.top);
          bound = s.top.front().first;
        }
      }
    }
  }
}

// Distances of the s.batch nodes, two at a time, into s.batch_dist.
void HNSWGraph::distances(const float* q, int count, Scratch& s) const {
  if (static_cast<int>(s.batch_dist.size()) < count) s.batch_dist.resize(s.batch.size());
  int j = 0;
  for (; j + 2 <= count; j += 2)
    dist2(q, s.batch[static_cast<std::size_t>(j)], s.batch[static_cast<std::size_t>(j + 1)], s.batch_dist.data() + j);
  if (j < count) s.batch_dist[static_cast<std::size_t>(j)] = dist(q, s.batch[static_cast<std::size_t>(j)]);
}

void HNSWGraph::prefetch_links(std::uint32_t node) const {
  const char* r = record(node);
  for (i64 line = 0; line < link_lines_; ++line) prefetch(r + line * 64);
}

// The neighbours of `node` at `level` not visited yet (now marked), into s.batch, with their vectors prefetched
// before any distance is computed: all the cache misses of one expansion are in flight together.
int HNSWGraph::unvisited_neighbors(std::uint32_t node, int level, int cap, i64 limit, Scratch& s) const {
  const std::uint32_t* list = link_list(node, level);
  const int count = std::min<int>(static_cast<int>(__atomic_load_n(list, __ATOMIC_ACQUIRE)), cap);
  if (static_cast<int>(s.batch.size()) < cap + 1) s.batch.resize(static_cast<std::size_t>(cap + 1));
  int fresh = 0;
  auto take = [&](std::uint32_t nb) {
    if (nb >= limit || !s.visit(nb)) return;
    s.batch[static_cast<std::size_t>(fresh++)] = nb;
    const char* r = record(nb);  // its links (read if it is expanded later) and the start of its vector
    for (i64 line = 0; line < prefetch_lines_; ++line) prefetch(r + line * 64);
    if (external_)
      for (i64 line = 0; line < kPrefetchLines - link_lines_; ++line)
        prefetch(static_cast<const char*>(stored(nb)) + line * 64);
  };
  for (int j = 0; j < count; ++j) take(load_relaxed(list + 1 + j));
  if (level == 0) {  // an exact duplicate of this node: as good as a link
    const std::uint32_t dup = next_dup(node);
    if (dup != 0) take(dup);
  }
  return fresh;
}

// The paper's heuristic (Algorithm 4): candidates nearest first; keep one only if it is closer to the base point
// than to every neighbour kept so far. `candidates` holds (distance to base, node); on return `s.chosen`.
void HNSWGraph::select_neighbors(std::vector<Pair>& candidates, int m, Scratch& s) const {
  s.chosen.clear();
  std::sort(candidates.begin(), candidates.end());
  if (static_cast<int>(candidates.size()) <= m) {
    s.chosen = candidates;
    return;
  }
  for (const Pair& c : candidates) {
    bool keep = true;
    const float* cv = exact_vector(c.second);
    for (const Pair& r : s.chosen) {
      if (dist(cv, r.second) < c.first) {
        keep = false;
        break;
      }
    }
    if (keep) {
      s.chosen.push_back(c);
      if (static_cast<int>(s.chosen.size()) >= m) break;
    }
  }
}

// Level 0 keeps every node reachable: each record counts the level-0 links (and duplicate chain pointers) that
// point to it (in_degree). A neighbour's full list is re-selected with the heuristic, but a link that would leave
// its target with no other incoming link is kept, in place of the farthest kept link whose target has another one;
// and a new node that no neighbour kept is put into the list of its nearest neighbour the same way. Upper levels
// only route: plain heuristic there.
void HNSWGraph::connect(i64 node, int level, const std::vector<Pair>& chosen, Scratch& s) {
  const int cap = max_links(level);
  const bool track = level == 0;
  {
    lock(node);
    std::uint32_t* list = link_list(node, level);
    const int count = std::min<int>(static_cast<int>(chosen.size()), cap);
    for (int j = 0; j < count; ++j) {
      store_relaxed(list + 1 + j, chosen[static_cast<std::size_t>(j)].second);
      if (track) add_in_degree(chosen[static_cast<std::size_t>(j)].second, 1);
    }
    __atomic_store_n(list, static_cast<std::uint32_t>(count), __ATOMIC_RELEASE);
    unlock(node);
  }
  s.mine.assign(chosen.begin(), chosen.end());  // s.chosen is reused by the pruning below
  for (const Pair& p : s.mine) {
    const i64 nb = p.second;
    lock(nb);
    std::uint32_t* list = link_list(nb, level);
    const int count = static_cast<int>(load_relaxed(list));
    bool present = false;
    for (int j = 0; j < count && !present; ++j)
      present = load_relaxed(list + 1 + j) == static_cast<std::uint32_t>(node);
    if (!present) {
      if (count < cap) {
        store_relaxed(list + 1 + count, static_cast<std::uint32_t>(node));
        __atomic_store_n(list, static_cast<std::uint32_t>(count + 1), __ATOMIC_RELEASE);
        if (track) add_in_degree(static_cast<std::uint32_t>(node), 1);
      } else {  // full: re-select among its links and the new node
        const float* base = exact_vector(nb);
        s.pruned.clear();
        s.pruned.push_back({dist(base, node), static_cast<std::uint32_t>(node)});
        for (int j = 0; j < count; ++j) {
          const std::uint32_t other = load_relaxed(list + 1 + j);
          s.pruned.push_back({dist(base, other), other});
        }
        select_neighbors(s.pruned, cap, s);
        if (track) keep_reachable(static_cast<std::uint32_t>(node), s);
        const int kept = static_cast<int>(s.chosen.size());
        for (int j = 0; j < kept; ++j) store_relaxed(list + 1 + j, s.chosen[static_cast<std::size_t>(j)].second);
        __atomic_store_n(list, static_cast<std::uint32_t>(kept), __ATOMIC_RELEASE);
      }
    }
    unlock(nb);
  }
  if (track && in_degree(static_cast<std::uint32_t>(node)) == 0) {
    for (const Pair& p : s.mine) {  // nearest first: the first list with a link to spare takes the new node
      const i64 nb = p.second;
      lock(nb);
      std::uint32_t* list = link_list(nb, level);
      const int count = static_cast<int>(load_relaxed(list));
      int spare = -1;
      for (int j = count - 1; j >= 0 && spare < 0; --j)
        if (in_degree(load_relaxed(list + 1 + j)) >= 2) spare = j;
      if (spare >= 0) {
        add_in_degree(load_relaxed(list + 1 + spare), -1);
        store_relaxed(list + 1 + spare, static_cast<std::uint32_t>(node));
        add_in_degree(static_cast<std::uint32_t>(node), 1);
      }
      unlock(nb);
      if (spare >= 0) break;
    }
  }
}

// After select_neighbors re-selected a full list (s.pruned: the old links and `added`, s.chosen: those kept):
// dropped old links whose target has no other incoming link replace the farthest kept links whose targets have
// one; then the in-degrees follow the new list.
void HNSWGraph::keep_reachable(std::uint32_t added, Scratch& s) const {
  auto in_list = [&](const std::vector<Pair>& v, std::uint32_t id) {
    for (const Pair& q : v)
      if (q.second == id) return true;
    return false;
  };
  // Other incoming links of a node once this list changes: an old link's count includes this list's link.
  auto others = [&](std::uint32_t id) { return in_degree(id) - (id == added ? 0 : 1); };
  int replace_from = static_cast<int>(s.chosen.size()) - 1;
  for (const Pair& d : s.pruned) {
    if (d.second == added || in_list(s.chosen, d.second) || others(d.second) > 0) continue;
    while (replace_from >= 0) {  // the farthest kept link whose target stays reachable without it
      const std::uint32_t e = s.chosen[static_cast<std::size_t>(replace_from)].second;
      if ((e == added ? in_degree(e) >= 1 : others(e) >= 1) && !in_list(s.pruned_kept, e)) break;
      --replace_from;
    }
    if (replace_from < 0) break;
    s.chosen[static_cast<std::size_t>(replace_from)] = d;
    s.pruned_kept.push_back(d);
    --replace_from;
  }
  s.pruned_kept.clear();
  for (const Pair& d : s.pruned) {
    const bool now = in_list(s.chosen, d.second);
    if (d.second == added) {
      if (now) add_in_degree(added, 1);
    } else if (!now) {
      add_in_degree(d.second, -1);
    }
  }
}

// Greedy walk on levels from_level down to above to_level: move to the nearest neighbour while it improves.
void HNSWGraph::greedy_descent(const float* q, int from_level, int to_level, i64 limit, i64& cur,
                               float& cur_dist) const {
  for (int lev = from_level; lev > to_level; --lev) {
    for (bool changed = true; changed;) {
      changed = false;
      const std::uint32_t* list = link_list(cur, lev);
      const int count = std::min<int>(static_cast<int>(__atomic_load_n(list, __ATOMIC_ACQUIRE)), max_links(lev));
      for (int j = 0; j < count; ++j) {
        const std::uint32_t nb = load_relaxed(list + 1 + j);
        if (nb >= limit) continue;
        const float d = dist(q, nb);
        if (d < cur_dist) {
          cur_dist = d;
          cur = nb;
          changed = true;
        }
      }
    }
  }
}

void HNSWGraph::insert(i64 node, const float* q, Scratch& s) {
  const int level = header(node)->level;
  std::unique_lock<std::mutex> top_lock(entry_mutex_, std::defer_lock);
  std::uint64_t entry = entry_.load(std::memory_order_acquire);
  if (entry == 0 || level > static_cast<int>(entry >> 32) - 1) {
    top_lock.lock();  // this node may become the entry point: hold the lock for the whole insert
    entry = entry_.load(std::memory_order_acquire);
    if (entry == 0) {
      entry_.store((static_cast<std::uint64_t>(level + 1) << 32) | static_cast<std::uint64_t>(node),
                   std::memory_order_release);
      return;
    }
    if (level <= static_cast<int>(entry >> 32) - 1) top_lock.unlock();
  }
  const int top = static_cast<int>(entry >> 32) - 1;
  i64 cur = static_cast<i64>(entry & 0xffffffffu);
  const i64 limit = size();
  float cur_dist = dist(q, cur);
  greedy_descent(q, top, level, limit, cur, cur_dist);
  // Neighbours are chosen top-down (each level's search starts from the previous level's nearest), but linked
  // bottom-up: by the time a concurrent search can reach this node through an upper level, its level-0 links exist.
  const int start = std::min(level, top);
  if (static_cast<int>(s.per_level.size()) <= start) s.per_level.resize(static_cast<std::size_t>(start + 1));
  for (int lev = start; lev >= 0; --lev) {
    search_layer(q, cur, cur_dist, config_.ef_construction, lev, limit, s, AnyNode{});
    // Another thread may already have linked this node (it found it through an upper level): never to itself.
    s.found.clear();
    for (const Pair& p : s.top)
      if (p.second != static_cast<std::uint32_t>(node)) s.found.push_back(p);
    std::vector<Pair>& chosen = s.per_level[static_cast<std::size_t>(lev)];
    chosen.clear();
    if (s.found.empty()) continue;
    if (lev == 0) {  // an exact duplicate of a node already reachable: chain it there instead of linking it
      // A copy's distance is the node's distance to itself (0 for l2; for inner products not always the best).
      const float self = dist(q, node);
      for (const Pair& p : s.found) {
        if (p.first != self || !is_duplicate_of(node, p.second)) continue;
        lock(p.second);
        add_in_degree(static_cast<std::uint32_t>(node), 1);
        header(node)->next_dup = header(p.second)->next_dup;
        __atomic_store_n(&header(p.second)->next_dup, static_cast<std::uint32_t>(node), __ATOMIC_RELEASE);
        unlock(p.second);
        return;  // no links at any level; never the entry point
      }
    }
    select_neighbors(s.found, config_.M, s);
    chosen = s.chosen;
    const Pair nearest = s.found.front();  // sorted by select_neighbors
    cur = nearest.second;
    cur_dist = nearest.first;
  }
  for (int lev = 0; lev <= start; ++lev) connect(node, lev, s.per_level[static_cast<std::size_t>(lev)], s);
  if (top_lock.owns_lock() && level > top)
    entry_.store((static_cast<std::uint64_t>(level + 1) << 32) | static_cast<std::uint64_t>(node),
                 std::memory_order_release);
}

bool HNSWGraph::is_duplicate_of(i64 node, i64 other) const {
  return std::memcmp(exact_vector(node), exact_vector(other), static_cast<std::size_t>(config_.dim) * sizeof(float)) ==
         0;
}

// The k nearest of every live node (allowed by `filter`, when given) by a scan over all of them.
void HNSWGraph::exact_filtered(const float* q, i64 k, const HNSWFilter* filter, i64 limit, Scratch& s) const {
  s.top.clear();
  const i64 n = filter ? std::min(limit, filter->size) : limit;
  for (i64 node = 0; node < n; ++node) {
    if ((filter && !filter->allowed[node]) || __atomic_load_n(&header(node)->deleted, __ATOMIC_RELAXED)) continue;
    const float d = exact_dist(q, node);
    if (static_cast<i64>(s.top.size()) < k || d < s.top.front().first) {
      push_max(s.top, {d, static_cast<std::uint32_t>(node)});
      if (static_cast<i64>(s.top.size()) > k) pop_max(s.top);
    }
  }
  std::sort(s.top.begin(), s.top.end());
}

void HNSWGraph::search_one(const float* q_in, i64 k, i64 ef, const HNSWFilter* filter, Scratch& s, float* scores,
                           i64* labels) const {
  s.query.resize(static_cast<std::size_t>(config_.dim));
  prepare_query(q_in, s.query.data());
  const float* q = s.query.data();
  const i64 limit = size();
  const std::uint64_t entry = entry_.load(std::memory_order_acquire);
  const float pad = config_.metric == HNSWMetric::l2 ? std::numeric_limits<float>::infinity()
                                                     : -std::numeric_limits<float>::infinity();
  for (i64 j = 0; j < k; ++j) {
    scores[j] = pad;
    labels[j] = -1;
  }
  if (entry == 0 || limit == 0) return;
  const bool tombstones = deleted_.load(std::memory_order_relaxed) > 0;
  // A small allowed set, or a beam as wide as the index: exact search (a walk would visit everything anyway).
  const i64 live_nodes = limit - deleted_.load(std::memory_order_relaxed);
  if ((filter && (filter->count < 2048 || filter->count * 50 < limit || ef >= filter->count)) ||
      (!filter && ef >= live_nodes)) {
    exact_filtered(q, k, filter, limit, s);
  } else {
    i64 cur = static_cast<i64>(entry & 0xffffffffu);
    float cur_dist = dist(q, cur);
    greedy_descent(q, static_cast<int>(entry >> 32) - 1, 0, limit, cur, cur_dist);
    if (!tombstones && !filter) {
      search_layer(q, cur, cur_dist, ef, 0, limit, s, AnyNode{});  // the lean path
    } else {
      search_layer(q, cur, cur_dist, ef, 0, limit, s, [&](std::uint32_t node) {
        if (__atomic_load_n(&header(node)->deleted, __ATOMIC_RELAXED)) return false;
        return !filter || (node < filter->size && filter->allowed[node]);
      });
    }
    if (walk_f16_)  // re-score the candidates on the float32 vectors
      for (Pair& p : s.top) p.first = exact_dist(q, p.second);
    std::sort(s.top.begin(), s.top.end());
  }
  // Never fewer results than exist: a walk that found fewer than min(k, live) (a graph cut apart, most of the index
  // tombstoned) is redone as an exact scan.
  const i64 expected = std::min<i64>(k, filter ? filter->count : limit - deleted_.load(std::memory_order_relaxed));
  if (static_cast<i64>(s.top.size()) < expected) exact_filtered(q, k, filter, limit, s);
  const i64 found = std::min<i64>(k, static_cast<i64>(s.top.size()));
  for (i64 j = 0; j < found; ++j) {
    const Pair& p = s.top[static_cast<std::size_t>(j)];
    scores[j] = score(p.first);
    labels[j] = header(p.second)->label;
  }
}

void HNSWGraph::search(const float* queries, i64 nq, i64 k, i64 ef, const HNSWFilter* filter, int threads,
                       float* scores, i64* labels) const {
  ef = std::max(ef, k);
  use_active_isa();
  parallel_for(nq, threads, [&](i64 i, int) {
    search_one(queries + i * config_.dim, k, ef, filter, thread_scratch(), scores + i * k, labels + i * k);
  });
}

i64 HNSWGraph::allowed_nodes(const std::uint8_t* label_mask, i64 mask_len, const i64* labels, i64 n_labels,
                             std::vector<std::uint8_t>& allowed) const {
  const i64 n = size();
  allowed.assign(static_cast<std::size_t>(n), 0);
  i64 count = 0;
  if (label_mask) {
    for (i64 node = 0; node < n; ++node) {
      const i64 lab = label(node);
      if (lab >= 0 && lab < mask_len && label_mask[lab] && !is_deleted(node)) {
        allowed[static_cast<std::size_t>(node)] = 1;
        ++count;
      }
    }
    return count;
  }
  for (i64 j = 0; j < n_labels; ++j) {
    const i64 node = find(labels[j]);
    if (node >= 0 && node < n && !allowed[static_cast<std::size_t>(node)]) {
      allowed[static_cast<std::size_t>(node)] = 1;
      ++count;
    }
  }
  return count;
}

std::shared_ptr<HNSWGraph> HNSWGraph::compacted(int threads) const {
  auto fresh = std::make_shared<HNSWGraph>(config_);
  const i64 n = size();
  const auto dim = static_cast<std::size_t>(config_.dim);
  std::vector<float> vectors;
  std::vector<i64> labels;
  for (i64 node = 0; node < n; ++node) {
    if (is_deleted(node)) continue;
    labels.push_back(label(node));
    vectors.resize(vectors.size() + dim);
    vector(node, vectors.data() + vectors.size() - dim);
  }
  fresh->add(vectors.data(), labels.data(), static_cast<i64>(labels.size()), threads);
  return fresh;
}

bool HNSWGraph::remove(i64 label) {
  std::lock_guard<std::mutex> guard(label_mutex_);
  auto it = label_to_node_.find(label);
  if (it == label_to_node_.end()) return false;
  __atomic_store_n(&header(it->second)->deleted, std::uint8_t{1}, __ATOMIC_RELAXED);
  deleted_.fetch_add(1, std::memory_order_relaxed);
  label_to_node_.erase(it);
  return true;
}

bool HNSWGraph::unremove(i64 label) {
  std::lock_guard<std::mutex> guard(label_mutex_);
  if (label_to_node_.count(label)) return false;
  for (i64 node = size() - 1; node >= 0; --node) {
    Header* h = header(node);
    if (h->label != label || !__atomic_load_n(&h->deleted, __ATOMIC_RELAXED)) continue;
    __atomic_store_n(&h->deleted, std::uint8_t{0}, __ATOMIC_RELAXED);
    deleted_.fetch_sub(1, std::memory_order_relaxed);
    label_to_node_.emplace(label, static_cast<std::uint32_t>(node));
    return true;
  }
  return false;
}

i64 HNSWGraph::find(i64 label) const {
  std::lock_guard<std::mutex> guard(label_mutex_);
  auto it = label_to_node_.find(label);
  return it == label_to_node_.end() ? -1 : static_cast<i64>(it->second);
}

void HNSWGraph::vector(i64 node, float* out) const {
  std::memcpy(out, exact_vector(node), static_cast<std::size_t>(config_.dim) * sizeof(float));
}
i64 HNSWGraph::label(i64 node) const { return header(node)->label; }
bool HNSWGraph::is_deleted(i64 node) const { return __atomic_load_n(&header(node)->deleted, __ATOMIC_RELAXED) != 0; }
int HNSWGraph::level(i64 node) const { return header(node)->level; }
i64 HNSWGraph::entry_point() const {
  const std::uint64_t e = entry_.load(std::memory_order_acquire);
  return e == 0 ? -1 : static_cast<i64>(e & 0xffffffffu);
}

std::vector<std::uint32_t> HNSWGraph::links(i64 node, int lev) const {
  const std::uint32_t* list = link_list(node, lev);
  const std::uint32_t count =
      std::min<std::uint32_t>(__atomic_load_n(list, __ATOMIC_ACQUIRE), static_cast<std::uint32_t>(max_links(lev)));
  return std::vector<std::uint32_t>(list + 1, list + 1 + count);
}

void HNSWGraph::restore_node(const float* v, i64 label_value, int lev, bool deleted_flag) {
  if (lev < 0 || lev >= kMaxLevel) throw std::invalid_argument("node level out of range");
  const i64 node = new_record(label_value, lev, deleted_flag, v);
  if (deleted_flag) {
    deleted_.fetch_add(1, std::memory_order_relaxed);
  } else {
    std::lock_guard<std::mutex> guard(label_mutex_);
    if (!label_to_node_.emplace(label_value, static_cast<std::uint32_t>(node)).second)
      throw std::invalid_argument("duplicate live label " + std::to_string(label_value));
  }
  ++sequence_;
  count_.store(node + 1, std::memory_order_release);
}

void HNSWGraph::restore_links(i64 node, int lev, const std::uint32_t* ids, i64 count) {
  const i64 n = size();
  if (node < 0 || node >= n) throw std::invalid_argument("link list of a node out of range");
  if (lev < 0 || lev > header(node)->level) throw std::invalid_argument("link list above the node's level");
  if (count < 0 || count > max_links(lev)) throw std::invalid_argument("link list longer than the level allows");
  for (i64 j = 0; j < count; ++j) {
    if (static_cast<i64>(ids[j]) >= n || ids[j] == node) throw std::invalid_argument("link to a node out of range");
    if (header(ids[j])->level < lev) throw std::invalid_argument("link to a node below the level");
  }
  std::uint32_t* list = link_list(node, lev);
  for (i64 j = 0; j < count; ++j) {
    list[1 + j] = ids[j];
    if (lev == 0) add_in_degree(ids[j], 1);
  }
  list[0] = static_cast<std::uint32_t>(count);
}

void HNSWGraph::restore_dup(i64 node, std::uint32_t next) {
  const i64 n = size();
  if (node < 0 || node >= n) throw std::invalid_argument("duplicate chain of a node out of range");
  if (next == 0) return;
  if (static_cast<i64>(next) >= n || next == node)
    throw std::invalid_argument("duplicate chain to a node out of range");
  header(node)->next_dup = next;
  add_in_degree(next, 1);
}

void HNSWGraph::restore_entry(i64 node, int top) {
  if (size() == 0) {
    if (node != -1) throw std::invalid_argument("entry point in an empty index");
    return;
  }
  if (node < 0 || node >= size() || header(node)->level != top)
    throw std::invalid_argument("entry point is not a node of the top level");
  entry_.store((static_cast<std::uint64_t>(top + 1) << 32) | static_cast<std::uint64_t>(node),
               std::memory_order_release);
}

}  // namespace simkern
