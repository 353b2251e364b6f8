// simkern/ivfpq.hpp - IVF-PQ: inverted lists of PQ codes per coarse cell, and their search.
//
// Shapes and layout
//   nlist cells; each cell holds `size` vectors: int64 ids, PQ codes, and optionally float32 vectors (dim each).
//   Codes of a cell are kept in the scan layout of the quantised kernels (pq.hpp): the first floor(size / group)
//   * group vectors in full blocks (group = 64 for 8-bit codes, 32 for 4-bit), the rest (< group) as a tail stored by
//   code byte (tail[p * t + i] = byte p of tail code i, t = size % group). A "code row" has code_bytes = m bytes (8-bit) or ceil(m / 2) bytes (4-bit, subspace 2p in the low
//   nibble of byte p, ProductQuantizer's packed format). Block b of a cell is code_bytes rows of `group` bytes:
//   block[p * group + i] = row(b * group + i)[p] - exactly pq.hpp's 8-bit and 4-bit block layouts. A cell's
//   storage is its own (std::vector, grown by a quarter when full) or borrowed (pointers into a mapped file, until
//   the first change to that cell copies it).
//
// Scores (the float ADC of IVF-PQ), per query q and probed cell c with base b(q, c) and float tables:
//   score = b + T[0][code_0] + T[1][code_1] + ... (float32, subspace order), T[s][j] = cell_table[c][s][j] +
//   q_table[s][j] (float32 add) when cell tables are given (L2 by residual: cell_table = |r|^2 + 2<c, r>, q_table
//   = -2<q, r>, b = |q - c|^2), else T = q_table (b = <q, c> for IP by residual, 0 without residuals).
//   Best first: ascending for L2, descending for IP; ties by id. The quantised scans select candidates with a
//   bound that provably keeps every member of the exact top-k (docs/ARCHITECTURE.md, IVF-PQ), and the result is
//   those candidates re-scored with the float formula above: exact float ADC, on every ISA and thread count.
#pragma once

#include <cstdint>
#include <shared_mutex>
#include <vector>

#include "simkern/common.hpp"

namespace simkern {

class IVFLists {
 public:
  IVFLists(i64 nlist, i64 m, int nbits, i64 vector_dim);

  i64 nlist() const { return nlist_; }
  i64 m() const { return m_; }
  int nbits() const { return nbits_; }
  i64 group() const { return group_; }
  i64 code_bytes() const { return code_bytes_; }
  i64 vector_dim() const { return vdim_; }
  i64 size() const { return total_; }
  i64 cell_size(i64 c) const { return cells_[c].size; }
  i64 memory_bytes() const;  // owned storage (capacity) of all cells

  // Append n vectors: cells[i] (< nlist), codes one per byte (n, m), ids (n,), vectors (n, vector_dim) or null.
  void add(const std::int32_t* cells, const std::uint8_t* codes, const i64* ids, const float* vectors, i64 n);
  // Remove every vector whose id is in sorted_ids (ascending); the order of the others is kept. Returns the count.
  i64 remove(const i64* sorted_ids, i64 count);
  // found[i] = 1 when sorted_ids[i] is stored (ascending ids).
  void contains(const i64* sorted_ids, i64 count, std::uint8_t* found) const;

  // Serialisation: per cell its size; concatenated over cells: full blocks, tails (by code byte), ids, vectors.
  void cell_sizes(i64* out) const;
  i64 n_full_blocks() const;
  void export_arrays(std::uint8_t* blocks, std::uint8_t* tails, i64* ids, float* vectors) const;
  // Adopt the arrays of export_arrays: copied (own = true) or borrowed (the caller keeps them alive and unchanged
  // until the cells are changed or the lists destroyed).
  void import_arrays(const i64* sizes, const std::uint8_t* blocks, const std::uint8_t* tails, const i64* ids,
                     const float* vectors, bool own);
  // Codes of one cell, one per byte (size, m); ids (size,); vectors (size, dim).
  void cell_codes(i64 c, std::uint8_t* out) const;
  const i64* cell_ids(i64 c) const;
  const float* cell_vectors(i64 c) const;

  // Readers (search, export) hold it shared, writers (add, remove, import) exclusively.
  mutable std::shared_mutex mutex;

  struct Cell {
    i64 size = 0;
    std::vector<std::uint8_t> blocks, tail;
    std::vector<i64> ids;
    std::vector<float> vectors;
    const std::uint8_t* b_blocks = nullptr;  // borrowed storage (borrowed = true)
    const std::uint8_t* b_tail = nullptr;
    const i64* b_ids = nullptr;
    const float* b_vectors = nullptr;
    bool borrowed = false;
    const std::uint8_t* blocks_ptr() const { return borrowed ? b_blocks : blocks.data(); }
    const std::uint8_t* tail_ptr() const { return borrowed ? b_tail : tail.data(); }
    const i64* ids_ptr() const { return borrowed ? b_ids : ids.data(); }
    const float* vectors_ptr() const { return borrowed ? b_vectors : vectors.data(); }
  };
  const Cell& cell(i64 c) const { return cells_[c]; }
  // Where the code of the vector at position pos of a cell lies: its byte p is code[p * stride] (a column of a
  // block, stride group, or of the tail, stride the tail's length).
  struct CodeRef {
    const std::uint8_t* code;
    i64 stride;
  };
  CodeRef code_of(const Cell& cell, i64 pos) const {
    const i64 full = (cell.size / group_) * group_;
    if (pos < full) return {cell.blocks_ptr() + (pos / group_) * code_bytes_ * group_ + pos % group_, group_};
    return {cell.tail_ptr() + (pos - full), cell.size - full};
  }

 private:
  void own(Cell& cell);  // copy borrowed storage into the cell's own vectors
  // Rewrite a cell from rows (size, code_bytes), ids and vectors.
  void rebuild(Cell& cell, const std::uint8_t* rows, const i64* ids, const float* vectors, i64 size);
  void unblock(const Cell& cell, std::uint8_t* rows) const;  // (size, code_bytes)
  // Code rows (count, code_bytes) to by-code-byte form, out[p * stride + i] = row i's byte p (a block: stride =
  // group; the tail: stride = count, a block's layout without the padding, so a scan pads it into a block with
  // code_bytes copies), and back.
  void by_byte(const std::uint8_t* rows, i64 count, i64 stride, std::uint8_t* out) const;
  void by_row(const std::uint8_t* in, i64 count, i64 stride, std::uint8_t* rows) const;
  void append_blocks(Cell& cell, const std::uint8_t* rows, i64 n_blocks) const;  // rows: n_blocks * group rows
  void set_tail(Cell& cell, const std::uint8_t* rows, i64 count) const;

  i64 nlist_, m_, code_bytes_, group_, vdim_, total_ = 0;
  int nbits_;
  std::vector<Cell> cells_;
};

// Coarse centroids for the GEMM, in column blocks of kCoarseBlock: blocked[(b * dim + k) * 16 + jj] = centroid
// 16 b + jj, coordinate k (zero past nlist), shape (ceil(nlist / 16), dim, 16). One block stays in L1 while a block
// of queries is scored against it.
constexpr i64 kCoarseBlock = 16;
void ivf_pack_centroids(const float* centroids, i64 nlist, i64 dim, float* blocked);

// Coarse search: per query the nprobe best cells by one GEMM against the blocked centroids (the PQ tables kernel's
// inner products, bit-identical on every ISA): L2 ranks |c|^2/2 - <q, c> (half_norms), IP ranks -<q, c>; ties to
// the lower cell. bases (nq, nprobe): |q - c|^2 = |q|^2 + |c|^2 - 2 <q, c> (L2, in double from the float dot
// product, rounded once) or <q, c> (IP), for the probed cells.
void ivf_coarse(const float* queries, i64 nq, i64 dim, const float* blocked, const float* half_norms, i64 nlist,
                bool l2, i64 nprobe, i64* probes, float* bases, int threads);

// Nearest cell of each vector: the best cell of ivf_coarse's ranking (nprobe = 1), so a vector added and then
// searched for probes its own cell first.
void ivf_assign(const float* x, i64 n, i64 dim, const float* blocked, const float* half_norms, i64 nlist, bool l2,
                std::int32_t* cells, int threads);

// Coarse k-means (Lloyd, assignment on the thread pool; bit-identical across ISAs and thread counts).
// init 0 = k-means++, 1 = random distinct points. Writes centroids (nlist, dim).
void ivf_train_coarse(const float* x, i64 n, i64 dim, i64 nlist, int iters, std::uint64_t seed, int init,
                      float* centroids, int threads);

struct IVFSearchArgs {
  i64 nq = 0, nprobe = 0, k = 0, width = 0;  // width: candidates kept by ADC (k, or k * rerank)
  // The query part of the tables, computed here per block of queries (so they stay in cache): q_tables =
  // table_mult * pq_tables(queries, ct, table_l2) with the PQ kernels' `tables` (bit-identical to pq_tables).
  const float* queries = nullptr;      // (nq, dim), in the quantizer's space
  const float* ct = nullptr;           // (m, dsub, ksub): the PQ codebooks transposed
  bool table_l2 = false;               // squared L2 tables (no residuals, L2) or inner products
  float table_mult = 1.0f;             // -2 for L2 by residual (exact)
  const float* cell_tables = nullptr;  // (nlist, m, ksub) or null
  const float* cell_lo = nullptr;      // (nlist, m): min / max of cell_tables per subspace (with them)
  const float* cell_hi = nullptr;
  const i64* probes = nullptr;   // (nq, nprobe), -1 = no cell
  const float* bases = nullptr;  // (nq, nprobe)
  bool smaller_is_better = true;
  const std::uint8_t* mask = nullptr;  // allowed ids: mask[id] != 0 for id < mask_len, or
  i64 mask_len = 0;
  const i64* allowed = nullptr;           // sorted allowed ids
  i64 n_allowed = -1;                     // -1: no id list
  const float* rerank_queries = nullptr;  // (nq, vector_dim): exact re-scoring of the width candidates, or null
};

// The k best (scores, ids) per query, padded with (+inf or -inf, -1).
// dim: the queries' dimension (m * dsub).
void ivfpq_search(const IVFLists& lists, const IVFSearchArgs& args, i64 dim, float* out_scores, i64* out_ids,
                  int threads);

}  // namespace simkern
