// IVF-PQ driver: inverted lists in the quantised scan layout, coarse quantizer (k-means, assignment, GEMM probe
// selection) and the search (per (query, cell) uint8 tables on one scale per query, the pq.hpp scan kernels with
// one running threshold across the probed cells, exact float re-scoring). Contract and score formula:
// simkern/ivfpq.hpp; the bound that makes the result exact: docs/ARCHITECTURE.md, "IVF-PQ".
#include "simkern/ivfpq.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "simkern/dispatch.hpp"
#include "simkern/pq.hpp"
#include "simkern/thread_pool.hpp"
#include "topk.hpp"

namespace simkern {
namespace {

// Grow a cell's vector by at least a quarter when it is full (amortised O(1) copies per row, at most 25 % spare).
template <class T>
void reserve_for(std::vector<T>& v, std::size_t need) {
  if (need > v.capacity()) v.reserve(std::max(need, v.capacity() + v.capacity() / 4));
}

bool sorted_has(const i64* sorted, i64 count, i64 id) { return std::binary_search(sorted, sorted + count, id); }

}  // namespace

// -- inverted lists ------------------------------------------------------------------------------------------------

void IVFLists::by_byte(const std::uint8_t* rows, i64 count, i64 stride, std::uint8_t* out) const {
  for (i64 i = 0; i < count; ++i)
    for (i64 p = 0; p < code_bytes_; ++p) out[p * stride + i] = rows[i * code_bytes_ + p];
}

void IVFLists::by_row(const std::uint8_t* in, i64 count, i64 stride, std::uint8_t* rows) const {
  for (i64 i = 0; i < count; ++i)
    for (i64 p = 0; p < code_bytes_; ++p) rows[i * code_bytes_ + p] = in[p * stride + i];
}

void IVFLists::append_blocks(Cell& cell, const std::uint8_t* rows, i64 n_blocks) const {
  const i64 block_bytes = code_bytes_ * group_;
  const std::size_t at = cell.blocks.size();
  reserve_for(cell.blocks, at + static_cast<std::size_t>(n_blocks * block_bytes));
  cell.blocks.resize(at + static_cast<std::size_t>(n_blocks * block_bytes));
  for (i64 b = 0; b < n_blocks; ++b)
    by_byte(rows + b * block_bytes, group_, group_, cell.blocks.data() + at + b * block_bytes);
}

void IVFLists::set_tail(Cell& cell, const std::uint8_t* rows, i64 count) const {
  // Kept at its exact size (no spare capacity per cell): the tail is small and changes with every add.
  std::vector<std::uint8_t> tail(static_cast<std::size_t>(count * code_bytes_));
  by_byte(rows, count, count, tail.data());
  tail.swap(cell.tail);
}

IVFLists::IVFLists(i64 nlist, i64 m, int nbits, i64 vector_dim)
    : nlist_(nlist),
      m_(m),
      code_bytes_(nbits == 8 ? m : (m + 1) / 2),
      group_(nbits == 8 ? 64 : 32),
      vdim_(vector_dim),
      nbits_(nbits),
      cells_(static_cast<std::size_t>(nlist)) {}

i64 IVFLists::memory_bytes() const {
  i64 total = static_cast<i64>(sizeof(Cell)) * nlist_;
  for (const Cell& c : cells_)
    total += static_cast<i64>(c.blocks.capacity() + c.tail.capacity() + c.ids.capacity() * sizeof(i64) +
                              c.vectors.capacity() * sizeof(float));
  return total;
}

void IVFLists::own(Cell& cell) {
  if (!cell.borrowed) return;
  const i64 full = (cell.size / group_) * group_;
  if (cell.size) {
    cell.blocks.assign(cell.b_blocks, cell.b_blocks + full * code_bytes_);
    cell.tail.assign(cell.b_tail, cell.b_tail + (cell.size - full) * code_bytes_);
    cell.ids.assign(cell.b_ids, cell.b_ids + cell.size);
    if (vdim_) cell.vectors.assign(cell.b_vectors, cell.b_vectors + cell.size * vdim_);
  }
  cell.borrowed = false;
  cell.b_blocks = cell.b_tail = nullptr;
  cell.b_ids = nullptr;
  cell.b_vectors = nullptr;
}

void IVFLists::unblock(const Cell& cell, std::uint8_t* rows) const {
  const i64 n_blocks = cell.size / group_;
  const std::uint8_t* blocks = cell.blocks_ptr();
  for (i64 b = 0; b < n_blocks; ++b)
    by_row(blocks + b * code_bytes_ * group_, group_, group_, rows + b * group_ * code_bytes_);
  const i64 full = n_blocks * group_;
  by_row(cell.tail_ptr(), cell.size - full, cell.size - full, rows + full * code_bytes_);
}

void IVFLists::rebuild(Cell& cell, const std::uint8_t* rows, const i64* ids, const float* vectors, i64 size) {
  const i64 n_blocks = size / group_, full = n_blocks * group_;
  cell.blocks.clear();
  append_blocks(cell, rows, n_blocks);
  set_tail(cell, rows + full * code_bytes_, size - full);
  if (ids != cell.ids.data()) {
    reserve_for(cell.ids, static_cast<std::size_t>(size));
    cell.ids.assign(ids, ids + size);
  }
  if (vdim_ && vectors != cell.vectors.data()) {
    reserve_for(cell.vectors, static_cast<std::size_t>(size * vdim_));
    cell.vectors.assign(vectors, vectors + size * vdim_);
  }
  cell.size = size;
}

void IVFLists::add(const std::int32_t* cells, const std::uint8_t* codes, const i64* ids, const float* vectors, i64 n) {
  // Counting sort of the rows by cell (stable: a cell's new rows keep their order).
  std::vector<i64> start(static_cast<std::size_t>(nlist_ + 1), 0);
  for (i64 i = 0; i < n; ++i) ++start[cells[i] + 1];
  for (i64 c = 0; c < nlist_; ++c) start[c + 1] += start[c];
  std::vector<i64> order(static_cast<std::size_t>(n));
  {
    std::vector<i64> fill(start.begin(), start.end() - 1);
    for (i64 i = 0; i < n; ++i) order[fill[cells[i]]++] = i;
  }
  std::vector<std::uint8_t> rows;
  for (i64 c = 0; c < nlist_; ++c) {
    const i64 count = start[c + 1] - start[c];
    if (!count) continue;
    Cell& cell = cells_[c];
    own(cell);
    // The tail's rows and the new rows, in code-row form; their full groups become new blocks.
    const i64 old_full = (cell.size / group_) * group_, tail_rows = cell.size - old_full;
    rows.assign(static_cast<std::size_t>((tail_rows + count) * code_bytes_), 0);
    by_row(cell.tail.data(), tail_rows, tail_rows, rows.data());
    for (i64 r = 0; r < count; ++r) {
      const std::uint8_t* code = codes + order[start[c] + r] * m_;
      std::uint8_t* row = rows.data() + (tail_rows + r) * code_bytes_;
      if (nbits_ == 8) {
        std::memcpy(row, code, m_);
      } else {
        for (i64 s = 0; s < m_; ++s) row[s >> 1] |= static_cast<std::uint8_t>((code[s] & 15) << ((s & 1) * 4));
      }
    }
    const i64 new_size = cell.size + count, new_blocks = new_size / group_ - cell.size / group_;
    append_blocks(cell, rows.data(), new_blocks);
    set_tail(cell, rows.data() + new_blocks * group_ * code_bytes_, tail_rows + count - new_blocks * group_);
    reserve_for(cell.ids, static_cast<std::size_t>(new_size));
    for (i64 r = 0; r < count; ++r) cell.ids.push_back(ids[order[start[c] + r]]);
    if (vdim_) {
      reserve_for(cell.vectors, static_cast<std::size_t>(new_size * vdim_));
      for (i64 r = 0; r < count; ++r) {
        const float* v = vectors + order[start[c] + r] * vdim_;
        cell.vectors.insert(cell.vectors.end(), v, v + vdim_);
      }
    }
    cell.size = new_size;
  }
  total_ += n;
}

i64 IVFLists::remove(const i64* sorted_ids, i64 count) {
  i64 removed = 0;
  std::vector<std::uint8_t> rows, kept_rows, gone;
  std::vector<i64> kept_ids;
  std::vector<float> kept_vectors;
  for (Cell& cell : cells_) {
    const i64* ids = cell.ids_ptr();
    gone.resize(static_cast<std::size_t>(cell.size));
    i64 hits = 0;
    for (i64 i = 0; i < cell.size; ++i) hits += gone[i] = sorted_has(sorted_ids, count, ids[i]);
    if (!hits) continue;
    rows.resize(static_cast<std::size_t>(cell.size * code_bytes_));
    unblock(cell, rows.data());
    kept_rows.clear();
    kept_ids.clear();
    kept_vectors.clear();
    const float* vectors = cell.vectors_ptr();
    for (i64 i = 0; i < cell.size; ++i) {
      if (gone[i]) continue;
      kept_rows.insert(kept_rows.end(), rows.begin() + i * code_bytes_, rows.begin() + (i + 1) * code_bytes_);
      kept_ids.push_back(ids[i]);
      if (vdim_) kept_vectors.insert(kept_vectors.end(), vectors + i * vdim_, vectors + (i + 1) * vdim_);
    }
    own(cell);
    rebuild(cell, kept_rows.data(), kept_ids.data(), kept_vectors.data(), static_cast<i64>(kept_ids.size()));
    removed += hits;
  }
  total_ -= removed;
  return removed;
}

void IVFLists::contains(const i64* sorted_ids, i64 count, std::uint8_t* found) const {
  std::fill(found, found + count, std::uint8_t{0});
  for (const Cell& cell : cells_) {
    const i64* ids = cell.ids_ptr();
    for (i64 i = 0; i < cell.size; ++i) {
      const i64* at = std::lower_bound(sorted_ids, sorted_ids + count, ids[i]);
      if (at != sorted_ids + count && *at == ids[i]) found[at - sorted_ids] = 1;
    }
  }
}

void IVFLists::cell_sizes(i64* out) const {
  for (i64 c = 0; c < nlist_; ++c) out[c] = cells_[c].size;
}

i64 IVFLists::n_full_blocks() const {
  i64 total = 0;
  for (const Cell& c : cells_) total += c.size / group_;
  return total;
}

void IVFLists::export_arrays(std::uint8_t* blocks, std::uint8_t* tails, i64* ids, float* vectors) const {
  const i64 block_bytes = code_bytes_ * group_;
  for (const Cell& cell : cells_) {
    const i64 n_blocks = cell.size / group_, tail_rows = cell.size - n_blocks * group_;
    if (n_blocks) std::memcpy(blocks, cell.blocks_ptr(), n_blocks * block_bytes);
    if (tail_rows) std::memcpy(tails, cell.tail_ptr(), tail_rows * code_bytes_);
    if (cell.size) std::memcpy(ids, cell.ids_ptr(), cell.size * sizeof(i64));
    if (vdim_ && cell.size) std::memcpy(vectors, cell.vectors_ptr(), cell.size * vdim_ * sizeof(float));
    blocks += n_blocks * block_bytes;
    tails += tail_rows * code_bytes_;
    ids += cell.size;
    if (vdim_) vectors += cell.size * vdim_;
  }
}

void IVFLists::import_arrays(const i64* sizes, const std::uint8_t* blocks, const std::uint8_t* tails, const i64* ids,
                             const float* vectors, bool own_copy) {
  const i64 block_bytes = code_bytes_ * group_;
  total_ = 0;
  for (i64 c = 0; c < nlist_; ++c) {
    Cell& cell = cells_[c];
    cell = Cell{};
    const i64 size = sizes[c], n_blocks = size / group_, tail_rows = size - n_blocks * group_;
    cell.size = size;
    if (own_copy) {
      cell.blocks.assign(blocks, blocks + n_blocks * block_bytes);
      cell.tail.assign(tails, tails + tail_rows * code_bytes_);
      cell.ids.assign(ids, ids + size);
      if (vdim_) cell.vectors.assign(vectors, vectors + size * vdim_);
    } else {
      cell.borrowed = true;
      cell.b_blocks = blocks;
      cell.b_tail = tails;
      cell.b_ids = ids;
      cell.b_vectors = vdim_ ? vectors : nullptr;
    }
    blocks += n_blocks * block_bytes;
    tails += tail_rows * code_bytes_;
    ids += size;
    if (vdim_) vectors += size * vdim_;
    total_ += size;
  }
}

void IVFLists::cell_codes(i64 c, std::uint8_t* out) const {
  const Cell& cell = cells_[c];
  for (i64 pos = 0; pos < cell.size; ++pos) {
    const CodeRef ref = code_of(cell, pos);
    for (i64 s = 0; s < m_; ++s) {
      const std::uint8_t byte = ref.code[(nbits_ == 8 ? s : s >> 1) * ref.stride];
      out[pos * m_ + s] = nbits_ == 8 ? byte : static_cast<std::uint8_t>((byte >> ((s & 1) * 4)) & 15);
    }
  }
}

const i64* IVFLists::cell_ids(i64 c) const { return cells_[c].ids_ptr(); }
const float* IVFLists::cell_vectors(i64 c) const { return cells_[c].vectors_ptr(); }

// -- coarse quantizer ----------------------------------------------------------------------------------------------

void ivf_train_coarse(const float* x, i64 n, i64 dim, i64 nlist, int iters, std::uint64_t seed, int init,
                      float* centroids, int threads) {
  threads = resolve_threads(threads);
  kmeans(pq_kernels(), x, n, dim, nlist, iters, seed, init, centroids, threads);
}

void ivf_pack_centroids(const float* centroids, i64 nlist, i64 dim, float* blocked) {
  const i64 nb = (nlist + kCoarseBlock - 1) / kCoarseBlock;
  for (i64 b = 0; b < nb; ++b)
    for (i64 k = 0; k < dim; ++k)
      for (i64 jj = 0; jj < kCoarseBlock; ++jj) {
        const i64 c = b * kCoarseBlock + jj;
        blocked[(b * dim + k) * kCoarseBlock + jj] = c < nlist ? centroids[c * dim + k] : 0.0f;
      }
}

namespace {

// Inner products of `count` queries with every centroid: out (count, nb * kCoarseBlock), one `tables` call per
// column block (dim x 16 floats, kept in L1 while the block of queries runs over it). Each product is the PQ
// tables kernel's k-ordered sequence: the same bits on every ISA and for any blocking.
void coarse_dots(const PQKernels& kern, const float* q, i64 count, i64 dim, const float* blocked, i64 nlist,
                 float* out) {
  const i64 nb = (nlist + kCoarseBlock - 1) / kCoarseBlock;
  for (i64 b = 0; b < nb; ++b)
    kern.tables(q, count, dim, blocked + b * dim * kCoarseBlock, dim, kCoarseBlock, false, out + b * kCoarseBlock,
                nb * kCoarseBlock);
}

// The coarse score a cell is ranked by: |c|^2 / 2 - <q, c> (L2) or -<q, c> (IP); smaller is nearer.
inline float coarse_score(bool l2, float half_norm, float dot) { return l2 ? half_norm - dot : -dot; }

}  // namespace

void ivf_assign(const float* x, i64 n, i64 dim, const float* blocked, const float* half_norms, i64 nlist, bool l2,
                std::int32_t* cells, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  constexpr i64 kChunk = 16;
  const i64 width = ((nlist + kCoarseBlock - 1) / kCoarseBlock) * kCoarseBlock;
  parallel_for((n + kChunk - 1) / kChunk, threads, [&](i64 t, int) {
    const i64 begin = t * kChunk, count = std::min(n, begin + kChunk) - begin;
    std::vector<float> dots(static_cast<std::size_t>(count * width));
    coarse_dots(kern, x + begin * dim, count, dim, blocked, nlist, dots.data());
    for (i64 i = 0; i < count; ++i) {
      const float* d = dots.data() + i * width;
      float best = coarse_score(l2, half_norms[0], d[0]);
      i64 arg = 0;
      for (i64 c = 1; c < nlist; ++c) {
        const float v = coarse_score(l2, half_norms[c], d[c]);
        if (v < best) best = v, arg = c;  // strict: the lower cell on ties
      }
      cells[begin + i] = static_cast<std::int32_t>(arg);
    }
  });
}

void ivf_coarse(const float* queries, i64 nq, i64 dim, const float* blocked, const float* half_norms, i64 nlist,
                bool l2, i64 nprobe, i64* probes, float* bases, int threads) {
  threads = resolve_threads(threads);
  const PQKernels& kern = pq_kernels();
  constexpr i64 kQueryBlock = 16;  // queries per task: one GEMM block against all centroids
  const i64 width = ((nlist + kCoarseBlock - 1) / kCoarseBlock) * kCoarseBlock;
  parallel_for((nq + kQueryBlock - 1) / kQueryBlock, threads, [&](i64 t, int) {
    const i64 q0 = t * kQueryBlock, count = std::min(nq, q0 + kQueryBlock) - q0;
    std::vector<float> dots(static_cast<std::size_t>(count * width));
    coarse_dots(kern, queries + q0 * dim, count, dim, blocked, nlist, dots.data());
    std::vector<std::pair<float, i64>> ranked(static_cast<std::size_t>(nlist));
    for (i64 qi = 0; qi < count; ++qi) {
      const float* d = dots.data() + qi * width;
      for (i64 c = 0; c < nlist; ++c) ranked[c] = {coarse_score(l2, half_norms[c], d[c]), c};
      // The nprobe best by (score, cell): ties to the lower cell.
      if (nprobe < nlist) std::nth_element(ranked.begin(), ranked.begin() + nprobe, ranked.end());
      std::sort(ranked.begin(), ranked.begin() + nprobe);
      const float* q = queries + (q0 + qi) * dim;
      double q_norm = 0.0;
      if (l2)
        for (i64 j = 0; j < dim; ++j) q_norm += static_cast<double>(q[j]) * q[j];
      for (i64 p = 0; p < nprobe; ++p) {
        const i64 c = ranked[p].second;
        // |q - c|^2 = |q|^2 + |c|^2 - 2 <q, c> from the GEMM's dot product (|c|^2 = 2 half_norms[c]), in double,
        // rounded once; IP: the dot product itself.
        probes[(q0 + qi) * nprobe + p] = c;
        bases[(q0 + qi) * nprobe + p] =
            l2 ? static_cast<float>(std::max(0.0, q_norm + 2.0 * half_norms[c] - 2.0 * static_cast<double>(d[c])))
               : d[c];
      }
    }
  });
}

// -- search --------------------------------------------------------------------------------------------------------

namespace {

// A candidate of the quantised scan: global quantised value g, probe index and position in that cell.
struct IVFCand {
  i64 g;
  i64 pos;
  std::int32_t probe;
};

// The candidates of one query in one task: a max-heap of the k smallest g seen and every (g, probe, pos) offered
// while g <= threshold = heap top + slack (the same scheme as pq_scan.cpp's QuantCollector, on int64 values that
// already include the cell's offset).
struct IVFCollector {
  i64 k = 0, slack = 0, compact_at = 0;
  i64 threshold = std::numeric_limits<i64>::max();
  std::vector<i64> heap;
  std::vector<IVFCand> cand;

  void offer(i64 g, std::int32_t probe, i64 pos) {
    if (g > threshold) return;
    if (static_cast<i64>(heap.size()) < k) {
      heap.push_back(g);
      std::push_heap(heap.begin(), heap.end());
    } else if (g < heap.front()) {
      std::pop_heap(heap.begin(), heap.end());
      heap.back() = g;
      std::push_heap(heap.begin(), heap.end());
    }
    cand.push_back({g, pos, probe});
    if (static_cast<i64>(heap.size()) == k) {
      threshold = std::min(threshold, heap.front() + slack);
      if (static_cast<i64>(cand.size()) >= compact_at) {
        const i64 t = threshold;
        cand.erase(std::remove_if(cand.begin(), cand.end(), [t](const IVFCand& c) { return c.g > t; }), cand.end());
        compact_at = std::max<i64>(2 * k + 256, 2 * static_cast<i64>(cand.size()));
      }
    }
  }
};

// What the scan callback needs for one (query, cell).
struct IVFScanCell {
  IVFCollector* col;
  i64 offset;    // the cell's quantised offset (>= 0)
  i64 pos_base;  // position of the first vector of the scanned blocks in the cell
  i64 limit;     // cell size: positions past it are padding
  const i64* ids;
  std::int32_t probe;
  std::uint16_t threshold;  // the kernel's threshold: col->threshold - offset, clamped to 0..65535
  const IVFSearchArgs* args;
};

bool id_allowed(const IVFSearchArgs& a, i64 id) {
  if (a.mask) return id < a.mask_len && a.mask[id];
  if (a.n_allowed >= 0) return sorted_has(a.allowed, a.n_allowed, id);
  return true;
}

std::uint16_t local_threshold(i64 global, i64 offset) {
  if (global == std::numeric_limits<i64>::max()) return 65535;
  return static_cast<std::uint16_t>(std::clamp<i64>(global - offset, 0, 65535));
}

void on_ivf_hit(void* ctx, int, i64 first_id, std::uint64_t bits, const std::uint16_t* sums) {
  IVFScanCell& t = *static_cast<IVFScanCell*>(ctx);
  const bool filtered = t.args->mask || t.args->n_allowed >= 0;
  while (bits) {
    const int i = __builtin_ctzll(bits);
    bits &= bits - 1;
    const i64 pos = t.pos_base + first_id + i;
    if (pos >= t.limit) break;  // padding of the tail block
    if (filtered && !id_allowed(*t.args, t.ids[pos])) continue;
    t.col->offer(static_cast<i64>(sums[i]) + t.offset, t.probe, pos);
  }
  t.threshold = local_threshold(t.col->threshold, t.offset);
}

// The search of one call: shared constants and the per-query steps, run by either threading plan (below).
class IVFSearch {
 public:
  IVFSearch(const IVFLists& lists, const IVFSearchArgs& a)
      : L(lists),
        a(a),
        kern(pq_kernels()),
        m(lists.m()),
        ksub(lists.nbits() == 8 ? 256 : 16),
        four_bit(lists.nbits() == 4),
        smaller(a.smaller_is_better),
        sign(a.smaller_is_better ? 1.0f : -1.0f),
        levels(lists.nbits() == 4 ? kScan4Levels : 255.0),
        group(lists.group()),
        code_bytes(lists.code_bytes()),
        lut_bytes(lists.nbits() == 4 ? ((lists.m() + 1) / 2) * 32 : lists.m() * 256) {}

  // Per query: its tables, one scale for all its probed cells, the cells' offsets and the slack of the bound.
  struct Query {
    const float* tables = nullptr;  // (m, ksub), the query part
    float scale = 1.0f;
    i64 slack = 0;
    std::vector<i64> offsets;  // (nprobe)
    std::vector<float> lows;   // (nprobe, m): bias of subspace s in probe p's uint8 table
    std::vector<double> bias;  // (nprobe): B_p of plan()
  };

  // Query tables of queries [q0, q0 + count) into out (count, m, ksub): the kernels of pq_tables, same bits.
  void tables(i64 q0, i64 count, i64 dim_, float* out) const {
    const i64 dsub = dim_ / m;
    for (i64 s = 0; s < m; ++s)
      kern.tables(a.queries + q0 * dim_ + s * dsub, count, dim_, a.ct + s * dsub * ksub, dsub, ksub, a.table_l2,
                  out + s * ksub, m * ksub);
    if (a.table_mult != 1.0f)
      for (i64 i = 0; i < count * m * ksub; ++i) out[i] *= a.table_mult;
  }

  // The plan of query q. Entry v = sign * T[s][j] of probe p lies in [low, high], low = lo(cell part) + lo(query
  // part) (rounded: float addition is monotone, so no entry falls below it). scale = levels / the largest span
  // over (p, s), so every uint8 entry round((v - low) * scale) fits. The real-valued score (sign-adjusted) is
  // B_p + sum_s (v_s - low_s) with B_p = sign * base + sum_s low_s; offset_p = floor((B_p - min_p B_p) * scale)
  // puts every cell's uint16 sums on one scale: g = sum + offset_p is within 0.51 m + 1 of (real score - min B)
  // * scale, and the float32 score within E (rounding of m + 1 additions) of the real one, so every member of the
  // exact top-k has g <= (k-th smallest g) + 2 (0.51 m + 1 + E): the slack.
  void plan(i64 q, const float* q_tables, Query& st) const {
    const i64 nprobe = a.nprobe;
    st.tables = q_tables;
    st.offsets.assign(static_cast<std::size_t>(nprobe), 0);
    st.lows.resize(static_cast<std::size_t>(nprobe * m));
    float lo3[256], hi3[256];
    kern.table_ranges(q_tables, m, ksub, lo3, hi3);
    if (!smaller)
      for (i64 s = 0; s < m; ++s) {
        const float lo = -hi3[s];
        hi3[s] = -lo3[s];
        lo3[s] = lo;
      }
    double span = 0.0, magnitude = 0.0, ref = std::numeric_limits<double>::infinity();
    st.bias.resize(static_cast<std::size_t>(nprobe));
    double* b_of = st.bias.data();
    for (i64 p = 0; p < nprobe; ++p) {
      const i64 c = a.probes[q * nprobe + p];
      if (c < 0) continue;
      const double base = a.bases[q * nprobe + p];
      double b = sign * base, mag = std::fabs(base);
      for (i64 s = 0; s < m; ++s) {
        float lo = lo3[s], hi = hi3[s];
        if (a.cell_tables) {
          lo = a.cell_lo[c * m + s] + lo3[s];
          hi = a.cell_hi[c * m + s] + hi3[s];
        }
        st.lows[p * m + s] = lo;
        span = std::max(span, static_cast<double>(hi) - static_cast<double>(lo));
        b += lo;
        mag += std::max(std::fabs(static_cast<double>(lo)), std::fabs(static_cast<double>(hi)));
      }
      b_of[p] = b;
      ref = std::min(ref, b);
      magnitude = std::max(magnitude, mag);
    }
    const double scale = span > 0.0 ? levels / span : 1.0;
    for (i64 p = 0; p < nprobe; ++p)
      if (a.probes[q * nprobe + p] >= 0)
        st.offsets[p] = static_cast<i64>(std::min(std::floor((b_of[p] - ref) * scale), 0x1p40));
    const double u = 0x1p-24 * static_cast<double>(m + 1);
    const double float_error = magnitude * u / (1.0 - u) * scale;
    st.scale = static_cast<float>(scale);
    st.slack = static_cast<i64>(std::min(std::ceil(2.0 * (0.51 * m + 1.0 + float_error)) + 1.0, 0x1p40));
  }

  struct Scored {
    float score;  // best = largest (L2 distances negated)
    i64 id;
    std::int32_t probe;
    i64 pos;
  };
  // Per-task scratch of the scans and of finish(), reused query after query.
  struct Scratch {
    std::vector<std::uint8_t> lut, tail_block;
    i64 lut_query = -1;  // the query whose probe-independent tables `lut` holds (no cell tables)
    std::vector<i64> smallest;
    std::vector<IVFCand> kept;
    std::vector<Scored> cand;
  };
  Scratch scratch() const {
    return {std::vector<std::uint8_t>(static_cast<std::size_t>(lut_bytes), 0),
            std::vector<std::uint8_t>(static_cast<std::size_t>(code_bytes * group)),
            -1,
            {},
            {},
            {}};
  }

  // Scan probes [p0, p1) of query q (nearest cell first) into col.
  void scan(i64 q, const Query& st, i64 p0, i64 p1, IVFCollector& col, Scratch& sc) const {
    const i64 nprobe = a.nprobe;
    col.k = a.width;
    col.slack = st.slack;
    col.compact_at = 2 * a.width + 256;
    col.threshold = std::numeric_limits<i64>::max();
    col.heap.clear();  // a task's collector is reused query after query: the buffers keep their capacity
    col.cand.clear();
    const float top = static_cast<float>(levels);
    constexpr i64 kNone = std::numeric_limits<i64>::max();
    for (i64 p = p0; p < p1; ++p) {
      const i64 c = a.probes[q * nprobe + p];
      if (c < 0) continue;
      const IVFLists::Cell& cell = L.cell(c);
      const i64 offset = st.offsets[p];
      if (!cell.size || (col.threshold != kNone && col.threshold < offset)) continue;  // every g > threshold
      // uint8 tables of (q, c): entry = min(levels, trunc((v - low) * scale + 0.5)), within 0.5 + 2^-13 of the
      // exact (v - low) * scale (float arithmetic on values <= levels).
      // Without cell tables every probe of the query has the same uint8 tables (same lows): built once.
      if (a.cell_tables || sc.lut_query != q) {
        kern.quantize_lut(st.tables, a.cell_tables ? a.cell_tables + c * m * ksub : nullptr, st.lows.data() + p * m, m,
                          ksub, sign, st.scale, top, sc.lut.data());
        sc.lut_query = q;
      }
      IVFScanCell ctx{&col,
                      offset,
                      0,
                      cell.size,
                      cell.ids_ptr(),
                      static_cast<std::int32_t>(p),
                      local_threshold(col.threshold, offset),
                      &a};
      ScanQueries qs{sc.lut.data(), lut_bytes, 1, &ctx.threshold, on_ivf_hit, &ctx};
      const i64 n_blocks = cell.size / group;
      if (n_blocks) {
        if (four_bit) kern.scan4(cell.blocks_ptr(), 0, n_blocks, code_bytes, qs);
        else kern.scan8(cell.blocks_ptr(), 0, n_blocks, m, qs);
      }
      const i64 tail_rows = cell.size - n_blocks * group;
      if (tail_rows && !(col.threshold != kNone && col.threshold < offset)) {
        // The tail (< group codes, stored by code byte) as a block padded with code 0, scanned like a block.
        std::uint8_t* blk = sc.tail_block.data();
        std::memset(blk, 0, static_cast<std::size_t>(code_bytes * group));
        const std::uint8_t* tail = cell.tail_ptr();
        for (i64 pb = 0; pb < code_bytes; ++pb) std::memcpy(blk + pb * group, tail + pb * tail_rows, tail_rows);
        ctx.pos_base = n_blocks * group;
        ctx.threshold = local_threshold(col.threshold, offset);
        if (four_bit) kern.scan4(blk, 0, 1, code_bytes, qs);
        else kern.scan8(blk, 0, 1, m, qs);
      }
    }
  }

  // The exact float scores of up to kRescoreBatch candidates (ivfpq.hpp's formula, subspace order per candidate):
  // their sums are independent chains interleaved subspace by subspace, so the additions' latency overlaps.
  static constexpr int kRescoreBatch = 8;
  void rescore(i64 q, const Query& st, const IVFCand* cds, int count, float* out) const {
    const std::uint8_t* code[kRescoreBatch];
    i64 stride[kRescoreBatch];
    const float* ct[kRescoreBatch];
    float acc[kRescoreBatch];
    for (int i = 0; i < count; ++i) {
      const i64 c = a.probes[q * a.nprobe + cds[i].probe];
      const IVFLists::CodeRef ref = L.code_of(L.cell(c), cds[i].pos);
      code[i] = ref.code;
      stride[i] = ref.stride;
      ct[i] = a.cell_tables ? a.cell_tables + c * m * ksub : nullptr;
      acc[i] = a.bases[q * a.nprobe + cds[i].probe];
    }
    const float* qt = st.tables;
    for (i64 s = 0; s < m; ++s) {
      const float* qs = qt + s * ksub;
      for (int i = 0; i < count; ++i) {
        const int j = four_bit ? (code[i][(s >> 1) * stride[i]] >> ((s & 1) * 4)) & 15 : code[i][s * stride[i]];
        acc[i] += ct[i] ? ct[i][s * ksub + j] + qs[j] : qs[j];
      }
    }
    for (int i = 0; i < count; ++i) out[i] = acc[i];
  }

  // The final bound over the query's collectors, exact re-scoring of the candidates within it, top-width; then the
  // exact re-rank with stored vectors when asked; writes the query's k results.
  void finish(i64 q, const Query& st, const IVFCollector* cols, i64 n_cols, Scratch& sc, float* out_scores,
              i64* out_ids) const {
    const i64 width = a.width;
    std::vector<i64>& smallest = sc.smallest;
    smallest.clear();
    for (i64 ch = 0; ch < n_cols; ++ch) smallest.insert(smallest.end(), cols[ch].heap.begin(), cols[ch].heap.end());
    i64 bound = std::numeric_limits<i64>::max();
    if (static_cast<i64>(smallest.size()) >= width) {
      std::nth_element(smallest.begin(), smallest.begin() + (width - 1), smallest.end());
      bound = smallest[width - 1] + st.slack;
    }
    std::vector<Scored>& cand = sc.cand;
    std::vector<IVFCand>& kept = sc.kept;
    cand.clear();
    kept.clear();
    for (i64 ch = 0; ch < n_cols; ++ch)
      for (const IVFCand& cd : cols[ch].cand)
        if (cd.g <= bound) kept.push_back(cd);
    for (std::size_t i0 = 0; i0 < kept.size(); i0 += kRescoreBatch) {
      const int count = static_cast<int>(std::min<std::size_t>(kRescoreBatch, kept.size() - i0));
      float acc[kRescoreBatch];
      rescore(q, st, kept.data() + i0, count, acc);
      for (int i = 0; i < count; ++i) {
        const IVFCand& cd = kept[i0 + i];
        const i64 id = L.cell(a.probes[q * a.nprobe + cd.probe]).ids_ptr()[cd.pos];
        cand.push_back({smaller ? -acc[i] : acc[i], id, cd.probe, cd.pos});
      }
    }
    const auto before = [](const Scored& x, const Scored& y) {
      return x.score > y.score || (x.score == y.score && x.id < y.id);
    };
    i64 keep = std::min<i64>(width, static_cast<i64>(cand.size()));
    std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), before);
    cand.resize(static_cast<std::size_t>(keep));
    if (a.rerank_queries) {
      const i64 vdim = L.vector_dim();
      const float* qv = a.rerank_queries + q * vdim;
      for (Scored& sc : cand) {
        const float* v = L.cell(a.probes[q * a.nprobe + sc.probe]).vectors_ptr() + sc.pos * vdim;
        double acc = 0.0;
        if (smaller) {
          for (i64 j = 0; j < vdim; ++j) {
            const double d = static_cast<double>(v[j]) - qv[j];
            acc += d * d;
          }
        } else {
          for (i64 j = 0; j < vdim; ++j) acc += static_cast<double>(v[j]) * qv[j];
        }
        const float exact = static_cast<float>(acc);
        sc.score = smaller ? -exact : exact;
      }
      keep = std::min<i64>(a.k, keep);
      std::partial_sort(cand.begin(), cand.begin() + keep, cand.end(), before);
    }
    const float pad = smaller ? INFINITY : -INFINITY;
    for (i64 j = 0; j < a.k; ++j) {
      out_ids[q * a.k + j] = j < keep ? cand[j].id : -1;
      out_scores[q * a.k + j] = j < keep ? (smaller ? -cand[j].score : cand[j].score) : pad;
    }
  }

  const IVFLists& L;
  const IVFSearchArgs& a;
  const PQKernels& kern;
  const i64 m, ksub;
  const bool four_bit, smaller;
  const float sign;
  const double levels;
  const i64 group, code_bytes, lut_bytes;
};

}  // namespace

void ivfpq_search(const IVFLists& lists, const IVFSearchArgs& a, i64 dim, float* out_scores, i64* out_ids,
                  int threads) {
  threads = resolve_threads(threads);
  const IVFSearch S(lists, a);
  const i64 nq = a.nq, nprobe = a.nprobe, table_floats = S.m * S.ksub;
  if (nq >= threads) {
    // Tasks of a block of queries, each done start to end by one thread: the block's tables (computed
    // together, so the codebooks are read once per block) stay in its cache through the scans and re-scoring.
    // Blocks of at most 8 queries, and at least two tasks per thread where there are enough queries.
    const i64 block = std::max<i64>(1, std::min<i64>(8, nq / (2 * threads)));
    parallel_for((nq + block - 1) / block, threads, [&](i64 t, int) {
      const i64 q0 = t * block, count = std::min(nq, q0 + block) - q0;
      std::vector<float> tables(static_cast<std::size_t>(count * table_floats));
      S.tables(q0, count, dim, tables.data());
      IVFSearch::Scratch sc = S.scratch();
      IVFSearch::Query st;
      IVFCollector col;
      for (i64 i = 0; i < count; ++i) {
        S.plan(q0 + i, tables.data() + i * table_floats, st);
        S.scan(q0 + i, st, 0, nprobe, col, sc);
        S.finish(q0 + i, st, &col, 1, sc, out_scores, out_ids);
      }
    });
    return;
  }
  // Fewer queries than threads: the probes of each query split across tasks, one collector each.
  std::vector<float> tables(static_cast<std::size_t>(nq * table_floats));
  S.tables(0, nq, dim, tables.data());
  std::vector<IVFSearch::Query> states(static_cast<std::size_t>(nq));
  for (i64 q = 0; q < nq; ++q) S.plan(q, tables.data() + q * table_floats, states[q]);
  const i64 chunks = std::min<i64>(nprobe, (2 * threads + nq - 1) / nq);
  std::vector<IVFCollector> collectors(static_cast<std::size_t>(nq * chunks));
  parallel_for(nq * chunks, threads, [&](i64 task, int) {
    const i64 q = task / chunks, chunk = task % chunks;
    IVFSearch::Scratch sc = S.scratch();
    S.scan(q, states[q], chunk * nprobe / chunks, (chunk + 1) * nprobe / chunks, collectors[task], sc);
  });
  IVFSearch::Scratch sc = S.scratch();
  for (i64 q = 0; q < nq; ++q) S.finish(q, states[q], collectors.data() + q * chunks, chunks, sc, out_scores, out_ids);
}

}  // namespace simkern
