// HNSW bindings: _HNSW holds a shared_ptr to the graph (compact() swaps in a rebuilt one while searches that
// started on the old graph finish on it). Mutating calls take a writer mutex with the GIL released; searches
// take no lock (see simkern/hnsw.hpp for what they may see during an add). python/simkern/hnsw.py owns the
// argument policy (ids, duplicates, filters) and the file format; the graph work (filter translation to nodes,
// compaction) is HNSWGraph's (runtime/hnsw.cpp): this file converts, locks and releases the GIL.
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <vector>

#include "arrays.hpp"
#include "simkern/hnsw.hpp"
#include "simkern/mapped_file.hpp"

namespace simkern::bind {

namespace {

class HNSW {
 public:
  HNSW(i64 dim, int metric, int M, int ef_construction, bool f16, std::uint64_t seed) {
    require(dim >= 1, "dim must be >= 1");
    require(metric >= 0 && metric <= 2, "metric must be 0 (l2), 1 (ip) or 2 (cosine)");
    require(M >= 2 && M <= 1024, "M must be in 2..1024");
    require(ef_construction >= 1, "ef_construction must be >= 1");
    config_ = HNSWConfig{dim, static_cast<HNSWMetric>(metric), M, ef_construction, f16, seed};
    graph_ = std::make_shared<HNSWGraph>(config_);
  }

  std::shared_ptr<HNSWGraph> graph() const {
    check_not_forked_mid_write();
    std::lock_guard<std::mutex> guard(swap_mutex_);
    return graph_;
  }

  // A process forked while another thread was adding, removing or compacting holds a copy of the graph in the
  // middle of that change (and a writer mutex that nobody will release): refuse to use it there.
  void check_not_forked_mid_write() const {
    const pid_t writer = writer_pid_.load(std::memory_order_acquire);
    if (writer != 0 && writer != getpid())
      throw py::value_error(
          "this index was being modified by another thread when the process forked: the copy in "
          "this process is incomplete; load it again from a file in the child");
  }

  // Held by every mutating call for its whole duration (with the writer mutex), so a fork in the middle is seen.
  class WriteScope {
   public:
    explicit WriteScope(const HNSW& h) : h_(h) { h_.writer_pid_.store(getpid(), std::memory_order_release); }
    ~WriteScope() { h_.writer_pid_.store(0, std::memory_order_release); }
    WriteScope(const WriteScope&) = delete;
    WriteScope& operator=(const WriteScope&) = delete;

   private:
    const HNSW& h_;
  };

  void add(const CArray<float>& x, const CArray<i64>& labels, int threads) {
    require_ndim(x, 2, "x");
    require(x.shape(1) == config_.dim, "x must have dim " + std::to_string(config_.dim));
    require_ndim(labels, 1, "ids");
    require(labels.shape(0) == x.shape(0), "ids must have one entry per row of x");
    const float* xp = x.data();
    const i64* lp = labels.data();
    const i64 n = x.shape(0);
    check_not_forked_mid_write();
    run_without_gil([&] {
      std::lock_guard<std::mutex> writer(writer_mutex_);
      WriteScope scope(*this);
      std::shared_ptr<HNSWGraph> g = graph();
      if (g->external())
        throw py::value_error(
            "this index was loaded with mmap=True and is read-only; call "
            "compact() first to copy it into memory");
      require_capacity(*g, n);
      g->add(xp, lp, n, threads);
    });
  }

  // mask: uint8 over labels (ids past its end excluded) or ids: allowed labels (the Python side applies the
  // argument rule of docs/API.md; HNSWGraph::allowed_nodes translates to nodes).
  py::tuple search(const CArray<float>& q, i64 k, i64 ef, const py::object& mask_obj, const py::object& ids_obj,
                   int threads) {
    require_ndim(q, 2, "queries");
    require(q.shape(1) == config_.dim, "queries must have dim " + std::to_string(config_.dim));
    require(k >= 1, "k must be >= 1");
    const i64 nq = q.shape(0);
    py::array_t<float> scores({nq, k});
    py::array_t<i64> labels({nq, k});
    std::shared_ptr<HNSWGraph> g = graph();
    std::vector<std::uint8_t> allowed;
    HNSWFilter filter;
    const CArray<std::uint8_t> mask = optional_vector<std::uint8_t>(mask_obj, "filter mask");
    const CArray<i64> ids = optional_vector<i64>(ids_obj, "filter ids");
    const bool filtered = !mask_obj.is_none() || !ids_obj.is_none();
    if (filtered) {
      filter.count = mask_obj.is_none() ? g->allowed_nodes(nullptr, 0, ids.data(), ids.shape(0), allowed)
                                        : g->allowed_nodes(mask.data(), mask.shape(0), nullptr, 0, allowed);
      filter.allowed = allowed.data();
      filter.size = static_cast<i64>(allowed.size());
    }
    const float* qp = q.data();
    float* sp = scores.mutable_data();
    i64* lp = labels.mutable_data();
    const MappedFile* mapped = mapped_for(*g);
    check_mapped(mapped);
    run_without_gil([&] { g->search(qp, nq, k, ef, filtered ? &filter : nullptr, threads, sp, lp); });
    check_mapped(mapped);  // results computed from a file that changed meanwhile are not returned
    return py::make_tuple(scores, labels);
  }

  i64 remove(const CArray<i64>& labels) {
    const i64* lp = labels.data();
    const i64 n = labels.shape(0);
    i64 removed = 0;
    check_not_forked_mid_write();
    run_without_gil([&] {
      std::lock_guard<std::mutex> writer(writer_mutex_);
      WriteScope scope(*this);
      std::shared_ptr<HNSWGraph> g = graph();
      for (i64 i = 0; i < n; ++i) removed += g->remove(lp[i]) ? 1 : 0;
    });
    return removed;
  }

  bool unremove(i64 label) {
    bool ok = false;
    run_without_gil([&] {
      std::lock_guard<std::mutex> writer(writer_mutex_);
      ok = graph()->unremove(label);
    });
    return ok;
  }

  py::array_t<bool> contains(const CArray<i64>& labels) const {
    std::shared_ptr<HNSWGraph> g = graph();
    py::array_t<bool> out({labels.shape(0)});
    bool* o = out.mutable_data();
    for (i64 i = 0; i < labels.shape(0); ++i) o[i] = g->find(labels.data()[i]) >= 0;
    return out;
  }

  py::array_t<float> get_vectors(const CArray<i64>& labels) const {
    std::shared_ptr<HNSWGraph> g = graph();
    const i64 n = labels.shape(0);
    py::array_t<float> out({n, config_.dim});
    const MappedFile* mapped = mapped_for(*g);
    check_mapped(mapped);
    for (i64 i = 0; i < n; ++i) {
      const i64 node = g->find(labels.data()[i]);
      if (node < 0) throw py::value_error("id " + std::to_string(labels.data()[i]) + " is not in the index");
      g->vector(node, out.mutable_data() + i * config_.dim);
    }
    check_mapped(mapped);
    return out;
  }

  // Rebuild from the live nodes (in node order) and swap it in; searches running on the old graph finish there.
  void compact(int threads) {
    check_not_forked_mid_write();
    run_without_gil([&] {
      std::lock_guard<std::mutex> writer(writer_mutex_);
      WriteScope scope(*this);
      std::shared_ptr<HNSWGraph> old = graph();
      const MappedFile* mapped = mapped_for(*old);
      check_mapped(mapped);
      std::shared_ptr<HNSWGraph> fresh = old->compacted(threads);
      check_mapped(mapped);  // vectors read from a file that changed meanwhile are not swapped in
      std::lock_guard<std::mutex> guard(swap_mutex_);
      graph_ = std::move(fresh);
    });
  }

  // Everything save() writes: labels, levels, tombstones, float32 vectors, link counts and ids for every
  // (node, level) pair in node order, levels ascending; the entry point.
  // The writer mutex is taken with the GIL released: an add() on the main thread takes the GIL to poll for
  // Ctrl-C while it holds the writer mutex.
  std::unique_lock<std::mutex> lock_writer() const {
    check_not_forked_mid_write();
    std::unique_lock<std::mutex> writer(writer_mutex_, std::defer_lock);
    py::gil_scoped_release release;
    writer.lock();
    return writer;
  }

  // Labels and tombstone flags in node order (no vectors, no links).
  py::tuple labels() const {
    std::unique_lock<std::mutex> writer = lock_writer();
    std::shared_ptr<HNSWGraph> g = graph();
    const i64 n = g->size();
    py::array_t<i64> labels_out({n});
    py::array_t<bool> deleted({n});
    for (i64 node = 0; node < n; ++node) {
      labels_out.mutable_data()[node] = g->label(node);
      deleted.mutable_data()[node] = g->is_deleted(node);
    }
    return py::make_tuple(labels_out, deleted);
  }

  py::dict state() const {
    std::unique_lock<std::mutex> writer = lock_writer();
    std::shared_ptr<HNSWGraph> g = graph();
    const i64 n = g->size();
    py::array_t<i64> labels({n});
    py::array_t<std::uint8_t> levels({n}), deleted({n});
    py::array_t<std::uint32_t> dups({n});
    py::array_t<float> vectors({n, config_.dim});
    std::vector<std::uint32_t> counts, ids;
    check_mapped(mapped_for(*g));
    for (i64 node = 0; node < n; ++node) {
      labels.mutable_data()[node] = g->label(node);
      levels.mutable_data()[node] = static_cast<std::uint8_t>(g->level(node));
      deleted.mutable_data()[node] = g->is_deleted(node) ? 1 : 0;
      dups.mutable_data()[node] = g->next_dup(node);
      g->vector(node, vectors.mutable_data() + node * config_.dim);
      for (int lev = 0; lev <= g->level(node); ++lev) {
        const std::vector<std::uint32_t> l = g->links(node, lev);
        counts.push_back(static_cast<std::uint32_t>(l.size()));
        ids.insert(ids.end(), l.begin(), l.end());
      }
    }
    check_mapped(mapped_for(*g));
    py::dict d;
    d["labels"] = labels;
    d["levels"] = levels;
    d["deleted"] = deleted;
    d["next_dup"] = dups;
    d["vectors"] = vectors;
    d["link_counts"] = py::array_t<std::uint32_t>({static_cast<i64>(counts.size())}, counts.data());
    d["link_ids"] = py::array_t<std::uint32_t>({static_cast<i64>(ids.size())}, ids.data());
    d["entry"] = g->entry_point();
    d["max_level"] = g->max_level();
    return d;
  }

  // The inverse of state() in one call (pickles of version <= 2, tests): a Restorer fed the whole arrays.
  void restore(const CArray<i64>& labels, const CArray<std::uint8_t>& levels, const CArray<std::uint8_t>& deleted,
               const CArray<float>& vectors, const CArray<std::uint32_t>& counts, const CArray<std::uint32_t>& ids,
               i64 entry, int max_level, const py::object& dups_obj, const py::object& mapped_obj);

  // Swap in a graph built by a Restorer (with the mapped file its vectors lie in, if any).
  void adopt(std::shared_ptr<HNSWGraph> fresh, const py::object& mapped_obj, const MappedFile* mapped) {
    std::unique_lock<std::mutex> writer = lock_writer();
    std::lock_guard<std::mutex> guard(swap_mutex_);
    graph_ = std::move(fresh);
    mapped_file_ = mapped ? py::object(mapped_obj) : py::object();
    mapped_ = mapped;
    mapped_graph_ = mapped ? graph_.get() : nullptr;
  }

  const HNSWConfig& config() const { return config_; }

  i64 size() const { return graph()->size(); }
  i64 live() const { return graph()->live(); }
  i64 deleted_count() const { return graph()->deleted(); }
  i64 memory_bytes() const { return graph()->memory_bytes(); }
  py::list links(i64 node, int level) const {  // tests: the link list of an internal node
    std::shared_ptr<HNSWGraph> g = graph();
    require(node >= 0 && node < g->size() && level >= 0 && level <= g->level(node), "no such node / level");
    py::list out;
    for (std::uint32_t id : g->links(node, level)) out.append(id);
    return out;
  }
  int max_level() const { return graph()->max_level(); }

 private:
  friend class SaveSession;
  // The mapped file of a graph restored with mmap (null for the others: compact() swaps in an in-memory graph).
  const MappedFile* mapped_for(const HNSWGraph& g) const { return &g == mapped_graph_ ? mapped_ : nullptr; }
  static void check_mapped(const MappedFile* mapped) {
    if (!mapped) return;
    try {
      mapped->check();
    } catch (const std::runtime_error& e) {
      throw py::value_error(e.what());
    }
  }

  static void require_capacity(const HNSWGraph& g, i64 n) {
    if (g.size() + n > HNSWGraph::kMaxChunks * HNSWGraph::kChunkNodes)
      throw py::value_error("the index would exceed its capacity of 134M vectors");
  }

  HNSWConfig config_;
  std::shared_ptr<HNSWGraph> graph_;
  py::object mapped_file_;  // the _MappedFile an external graph's vectors lie in (kept mapped while used)
  const MappedFile* mapped_ = nullptr;
  const HNSWGraph* mapped_graph_ = nullptr;
  mutable std::mutex swap_mutex_, writer_mutex_;
  mutable std::atomic<pid_t> writer_pid_{0};  // the process whose thread is inside a mutating call (0: none)
};

// A consistent read of the graph for save(): holds the writer mutex from save_session() to close(), so no add,
// remove or compact changes the graph while its sections are exported chunk by chunk (no copy of the whole
// index: vectors and links are copied out one range of nodes at a time).
class SaveSession {
 public:
  explicit SaveSession(const HNSW& h) : h_(h), lock_(h.lock_writer()), g_(h.graph()), n_(g_->size()) {
    HNSW::check_mapped(h_.mapped_for(*g_));
  }

  // Everything but the vectors and link ids: per node label, level, tombstone, next duplicate; link counts per
  // (node, level) in node order, levels ascending; the entry point, the top level, the number of link ids.
  py::dict small() const {
    require_open();
    py::array_t<i64> labels({n_});
    py::array_t<std::uint8_t> levels({n_}), deleted({n_});
    py::array_t<std::uint32_t> dups({n_});
    std::vector<std::uint32_t> counts;
    i64 total = 0;
    for (i64 node = 0; node < n_; ++node) {
      labels.mutable_data()[node] = g_->label(node);
      levels.mutable_data()[node] = static_cast<std::uint8_t>(g_->level(node));
      deleted.mutable_data()[node] = g_->is_deleted(node) ? 1 : 0;
      dups.mutable_data()[node] = g_->next_dup(node);
      for (int lev = 0; lev <= g_->level(node); ++lev) {
        const auto c = static_cast<std::uint32_t>(g_->links(node, lev).size());
        counts.push_back(c);
        total += c;
      }
    }
    py::dict d;
    d["labels"] = labels;
    d["levels"] = levels;
    d["deleted"] = deleted;
    d["next_dup"] = dups;
    d["link_counts"] = py::array_t<std::uint32_t>({static_cast<i64>(counts.size())}, counts.data());
    d["link_total"] = total;
    d["entry"] = g_->entry_point();
    d["max_level"] = g_->max_level();
    return d;
  }

  // float32 vectors of nodes [begin, end).
  py::array_t<float> vectors(i64 begin, i64 end) const {
    require_range(begin, end);
    const i64 dim = h_.config().dim;
    py::array_t<float> out({end - begin, dim});
    for (i64 node = begin; node < end; ++node) g_->vector(node, out.mutable_data() + (node - begin) * dim);
    HNSW::check_mapped(h_.mapped_for(*g_));  // vectors read from a file that changed are not written out
    return out;
  }

  // Link ids of nodes [begin, end), node by node, levels ascending (the order of link_counts).
  py::array_t<std::uint32_t> links(i64 begin, i64 end) const {
    require_range(begin, end);
    std::vector<std::uint32_t> ids;
    for (i64 node = begin; node < end; ++node)
      for (int lev = 0; lev <= g_->level(node); ++lev) {
        const std::vector<std::uint32_t> l = g_->links(node, lev);
        ids.insert(ids.end(), l.begin(), l.end());
      }
    return py::array_t<std::uint32_t>({static_cast<i64>(ids.size())}, ids.data());
  }

  i64 size() const { return n_; }
  void close() { lock_ = std::unique_lock<std::mutex>(); }

 private:
  void require_open() const { require(lock_.owns_lock(), "the save session is closed"); }
  void require_range(i64 begin, i64 end) const {
    require_open();
    require(0 <= begin && begin <= end && end <= n_, "node range out of bounds");
  }

  const HNSW& h_;
  std::unique_lock<std::mutex> lock_;
  std::shared_ptr<HNSWGraph> g_;
  i64 n_;
};

// Builds a graph from a file's sections fed in order, chunk by chunk (so a load holds the new graph and one
// chunk, never the whole file): the per-node arrays and link counts first (validated at once), then the vectors
// (node order; skipped for a mapped file, whose vectors are used in place), then the link ids, then finish()
// checks that everything arrived and swaps the graph into the index. A corrupt file raises ValueError, and the
// index keeps its previous graph.
class Restorer {
 public:
  Restorer(HNSW& owner, const CArray<i64>& labels, const CArray<std::uint8_t>& levels,
           const CArray<std::uint8_t>& deleted, const CArray<std::uint32_t>& counts, i64 link_total,
           const py::object& mapped_obj, const py::object& mapped_vectors)
      : owner_(owner), labels_(labels), levels_(levels), deleted_(deleted), counts_(counts), link_total_(link_total) {
    const HNSWConfig& config = owner.config();
    n_ = labels.shape(0);
    require_ndim(labels, 1, "labels");
    require(levels.ndim() == 1 && deleted.ndim() == 1 && counts.ndim() == 1, "corrupt index: arrays must be 1-D");
    require(levels.shape(0) == n_ && deleted.shape(0) == n_, "corrupt index: per-node arrays differ in length");
    require(n_ < (i64{1} << 31), "corrupt index: too many nodes");
    i64 pairs = 0;
    for (i64 node = 0; node < n_; ++node) {
      require(levels.data()[node] < HNSWGraph::kMaxLevel, "corrupt index: node level out of range");
      pairs += levels.data()[node] + 1;
    }
    require(counts.shape(0) == pairs, "corrupt index: link counts do not match the levels");
    // Levels are drawn with P(level >= L) = M^-L (mean 1 / (M - 1)): a file whose levels sum far beyond that is
    // crafted, and would make us allocate (M + 1) uint32 per upper level of every node (a 426 KB file asked for
    // ~900x its size). Bounded by 4x the mean plus a margin for small indexes.
    require(pairs - n_ <= 4 * n_ / (config.M - 1) + 64,
            "corrupt index: node levels far beyond what HNSW draws (the file is corrupted or crafted)");
    i64 total = 0;
    for (i64 j = 0; j < pairs; ++j) total += counts.data()[j];
    require(total == link_total, "corrupt index: link ids do not match the counts");
    const float* external = nullptr;
    if (!mapped_obj.is_none()) {
      mapped_ = &mapped_obj.cast<MappedFile&>();
      mapped_obj_ = mapped_obj;
      require(py::isinstance<CArray<float>>(mapped_vectors), "mapped vectors must be a float32 view of the file");
      const auto v = py::reinterpret_borrow<CArray<float>>(mapped_vectors);
      require(v.ndim() == 2 && v.shape(0) == n_ && v.shape(1) == config.dim,
              "corrupt index: vectors have the wrong shape");
      const auto* p = reinterpret_cast<const std::uint8_t*>(v.data());
      require(n_ == 0 || (p >= mapped_->data() && p + n_ * config.dim * 4 <= mapped_->data() + mapped_->size()),
              "the vectors must lie in the mapped file");
      external = v.data();
    }
    fresh_ = std::make_shared<HNSWGraph>(config, external);
    if (external) {  // a memory-mapped index is not read here (that is its point): its vectors are used in place
      guarded([&] {
        for (i64 node = 0; node < n_; ++node) restore_node(node, external + node * config.dim);
      });
      next_node_ = n_;
    }
  }

  // The next rows of the vectors section (float32, (rows, dim)).
  void vectors(const CArray<float>& chunk) {
    const i64 dim = owner_.config().dim;
    require(chunk.ndim() == 2 && chunk.shape(1) == dim, "corrupt index: vectors have the wrong shape");
    require(next_node_ + chunk.shape(0) <= n_, "corrupt index: more vectors than nodes");
    const float* v = chunk.data();
    for (i64 j = 0; j < chunk.shape(0) * dim; ++j)
      require(std::isfinite(v[j]), "corrupt index: non-finite vector value");
    guarded([&] {
      for (i64 r = 0; r < chunk.shape(0); ++r) restore_node(next_node_ + r, v + r * dim);
    });
    next_node_ += chunk.shape(0);
  }

  // The next link ids (after every vector): lists in (node, level) order, a list may straddle two chunks.
  void links(const CArray<std::uint32_t>& chunk) {
    require(next_node_ == n_, "corrupt index: link ids before the last vector");
    require_ndim(chunk, 1, "link ids");
    const std::uint32_t* ids = chunk.data();
    i64 pos = 0, len = chunk.shape(0);
    require(ids_seen_ + len <= link_total_, "corrupt index: more link ids than the counts say");
    ids_seen_ += len;
    guarded([&] {
      while (pos < len) {
        advance_to_nonempty_list();
        require(pair_ < counts_.shape(0), "corrupt index: more link ids than the counts say");
        const i64 want = counts_.data()[pair_];
        const i64 take = std::min<i64>(want - static_cast<i64>(pending_.size()), len - pos);
        pending_.insert(pending_.end(), ids + pos, ids + pos + take);
        pos += take;
        if (static_cast<i64>(pending_.size()) == want) flush_list();
      }
    });
  }

  void finish(const py::object& dups_obj, i64 entry, int max_level) {
    require(next_node_ == n_, "corrupt index: fewer vectors than nodes");
    require(ids_seen_ == link_total_, "corrupt index: fewer link ids than the counts say");
    guarded([&] {
      advance_to_nonempty_list();
      require(pair_ == counts_.shape(0) && pending_.empty(), "corrupt index: link lists incomplete");
      if (!dups_obj.is_none()) {
        const auto dups = CArray<std::uint32_t>::ensure(dups_obj);
        require(dups && dups.ndim() == 1 && dups.shape(0) == n_,
                "corrupt index: duplicate chains have the wrong length");
        for (i64 node = 0; node < n_; ++node) fresh_->restore_dup(node, dups.data()[node]);
      }
      if (n_ > 0) require(max_level >= 0 && max_level < HNSWGraph::kMaxLevel, "corrupt index: max level out of range");
      fresh_->restore_entry(entry, max_level);
    });
    require(fresh_ != nullptr, "the restorer was used already");
    owner_.adopt(std::move(fresh_), mapped_obj_, mapped_);
  }

 private:
  template <class F>
  static void guarded(F&& f) {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      throw py::value_error(std::string("corrupt index: ") + e.what());
    }
  }
  void restore_node(i64 node, const float* v) {
    fresh_->restore_node(v, labels_.data()[node], levels_.data()[node], deleted_.data()[node] != 0);
  }
  // Empty lists need no ids: step over them (their nodes' levels keep count 0).
  void advance_to_nonempty_list() {
    while (pair_ < counts_.shape(0) && counts_.data()[pair_] == 0 && pending_.empty()) {
      fresh_->restore_links(node_, level_, nullptr, 0);
      next_pair();
    }
  }
  void flush_list() {
    fresh_->restore_links(node_, level_, pending_.data(), static_cast<i64>(pending_.size()));
    pending_.clear();
    next_pair();
  }
  void next_pair() {
    ++pair_;
    if (++level_ > levels_.data()[node_]) {
      level_ = 0;
      ++node_;
    }
  }

  HNSW& owner_;
  CArray<i64> labels_;
  CArray<std::uint8_t> levels_, deleted_;
  CArray<std::uint32_t> counts_;
  i64 link_total_, n_ = 0, next_node_ = 0, ids_seen_ = 0;
  i64 pair_ = 0, node_ = 0;
  int level_ = 0;
  std::vector<std::uint32_t> pending_;
  std::shared_ptr<HNSWGraph> fresh_;
  py::object mapped_obj_ = py::none();
  MappedFile* mapped_ = nullptr;
};

void HNSW::restore(const CArray<i64>& labels, const CArray<std::uint8_t>& levels, const CArray<std::uint8_t>& deleted,
                   const CArray<float>& vectors, const CArray<std::uint32_t>& counts, const CArray<std::uint32_t>& ids,
                   i64 entry, int max_level, const py::object& dups_obj, const py::object& mapped_obj) {
  require(ids.ndim() == 1, "corrupt index: link ids must be 1-D");
  Restorer r(*this, labels, levels, deleted, counts, ids.shape(0), mapped_obj,
             mapped_obj.is_none() ? py::object(py::none()) : py::object(vectors));
  if (mapped_obj.is_none()) {
    require(vectors.ndim() == 2 && vectors.shape(0) == labels.shape(0) && vectors.shape(1) == config().dim,
            "corrupt index: vectors have the wrong shape");
    r.vectors(vectors);
  }
  r.links(ids);
  r.finish(dups_obj, entry, max_level);
}

// Test hook: the active ISA's distance of one float32 query to each row of `vectors` (float32, or float16 bit
// patterns as uint16): squared L2 or inner product.
py::array_t<float> hnsw_distances(const CArray<float>& q, const py::array& vectors, bool l2) {
  require_ndim(q, 1, "q");
  require_ndim(vectors, 2, "vectors");
  const i64 dim = q.shape(0), n = vectors.shape(0);
  require(vectors.shape(1) == dim, "vectors must have the query's dim");
  require(vectors.flags() & py::array::c_style, "vectors must be C-contiguous");
  const HNSWKernels& k = hnsw_kernels();
  py::array_t<float> out({n});
  if (py::isinstance<py::array_t<float>>(vectors)) {
    const auto* v = static_cast<const float*>(vectors.data());
    for (i64 i = 0; i < n; ++i) out.mutable_data()[i] = (l2 ? k.l2_f32 : k.ip_f32)(q.data(), v + i * dim, dim);
  } else if (py::isinstance<py::array_t<std::uint16_t>>(vectors)) {
    const auto* v = static_cast<const std::uint16_t*>(vectors.data());
    for (i64 i = 0; i < n; ++i) out.mutable_data()[i] = (l2 ? k.l2_f16 : k.ip_f16)(q.data(), v + i * dim, dim);
  } else {
    throw py::type_error("vectors must be float32 or uint16 (float16 bits)");
  }
  return out;
}

}  // namespace

void bind_hnsw(py::module_& m) {
  py::class_<MappedFile>(m, "_MappedFile", py::buffer_protocol())
      .def(py::init([](const std::string& path) {
             try {
               return std::make_unique<MappedFile>(path);
             } catch (const std::system_error& e) {
               errno = e.code().value();
               PyErr_SetFromErrnoWithFilename(PyExc_OSError, path.c_str());
               throw py::error_already_set();
             }
           }),
           py::arg("path"))
      .def_property_readonly("size", &MappedFile::size)
      .def("check",
           [](const MappedFile& f) {
             try {
               f.check();
             } catch (const std::runtime_error& e) {
               throw py::value_error(e.what());
             }
           })
      .def_buffer([](MappedFile& f) {
        return py::buffer_info(const_cast<std::uint8_t*>(f.data()), 1, py::format_descriptor<std::uint8_t>::format(), 1,
                               {static_cast<py::ssize_t>(f.size())}, {py::ssize_t{1}}, /*readonly=*/true);
      });
  m.def("_hnsw_interrupt_after", &hnsw_test_interrupt_after, py::arg("tasks"),
        "Test hook: the next HNSW add raises KeyboardInterrupt before linking its task number `tasks`.");
  m.def("_hnsw_distances", &hnsw_distances, py::arg("q").noconvert(), py::arg("vectors"), py::arg("l2"));
  py::class_<SaveSession>(m, "_HNSWSaveSession")
      .def("small", &SaveSession::small)
      .def("vectors", &SaveSession::vectors, py::arg("begin"), py::arg("end"))
      .def("links", &SaveSession::links, py::arg("begin"), py::arg("end"))
      .def_property_readonly("size", &SaveSession::size)
      .def("close", &SaveSession::close);
  py::class_<Restorer>(m, "_HNSWRestorer")
      .def(py::init<HNSW&, const CArray<i64>&, const CArray<std::uint8_t>&, const CArray<std::uint8_t>&,
                    const CArray<std::uint32_t>&, i64, const py::object&, const py::object&>(),
           py::arg("index"), py::arg("labels").noconvert(), py::arg("levels").noconvert(),
           py::arg("deleted").noconvert(), py::arg("link_counts").noconvert(), py::arg("link_total"), py::arg("mapped"),
           py::arg("mapped_vectors"), py::keep_alive<1, 2>())
      .def("vectors", &Restorer::vectors, py::arg("chunk").noconvert())
      .def("links", &Restorer::links, py::arg("chunk").noconvert())
      .def("finish", &Restorer::finish, py::arg("next_dup"), py::arg("entry"), py::arg("max_level"));
  py::class_<HNSW>(m, "_HNSW")
      .def(py::init<i64, int, int, int, bool, std::uint64_t>(), py::arg("dim"), py::arg("metric"), py::arg("M"),
           py::arg("ef_construction"), py::arg("f16"), py::arg("seed"))
      .def("add", &HNSW::add, py::arg("x").noconvert(), py::arg("ids").noconvert(), py::arg("threads"))
      .def("search", &HNSW::search, py::arg("queries").noconvert(), py::arg("k"), py::arg("ef"),
           py::arg("mask") = py::none(), py::arg("ids") = py::none(), py::arg("threads") = 0)
      .def("remove", &HNSW::remove, py::arg("ids").noconvert())
      .def("unremove", &HNSW::unremove, py::arg("id"))
      .def("contains", &HNSW::contains, py::arg("ids").noconvert())
      .def("get_vectors", &HNSW::get_vectors, py::arg("ids").noconvert())
      .def("compact", &HNSW::compact, py::arg("threads"))
      .def("state", &HNSW::state)
      .def("labels", &HNSW::labels)
      .def(
          "save_session", [](const HNSW& h) { return std::make_unique<SaveSession>(h); },
          py::keep_alive<0, 1>())  // the session holds the graph by reference
      .def("restore", &HNSW::restore, py::arg("labels").noconvert(), py::arg("levels").noconvert(),
           py::arg("deleted").noconvert(), py::arg("vectors").noconvert(), py::arg("link_counts").noconvert(),
           py::arg("link_ids").noconvert(), py::arg("entry"), py::arg("max_level"), py::arg("next_dup") = py::none(),
           py::arg("mapped") = py::none())
      .def("links", &HNSW::links)
      .def_property_readonly("size", &HNSW::size)
      .def_property_readonly("last_add_count", [](const HNSW& h) { return h.graph()->last_add_count(); })
      .def_property_readonly("live", &HNSW::live)
      .def_property_readonly("deleted", &HNSW::deleted_count)
      .def_property_readonly("memory_bytes", &HNSW::memory_bytes)
      .def_property_readonly("max_level", &HNSW::max_level)
      .def_property_readonly("external", [](const HNSW& h) { return h.graph()->external(); });
}

}  // namespace simkern::bind
