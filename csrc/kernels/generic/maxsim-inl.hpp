// Generic MaxSim body, compiled once per ISA: each x86_* TU includes this inside its own
// `namespace simkern::<isa> { namespace { ... } }` after defining a vector-primitive struct `V`
// (see x86_avx2/maxsim.cpp); FloatOps<V> below turns it into the tile operations, and
// fill_float_kernels<V>() into the three MaxSimKernel entries (f32 / f16 / bf16 docs).
// A TU with a different inner product (the AVX512-BF16 one) derives its Ops from FloatOps<V>, replaces the element
// types, tile and prepare, and reuses detail::score. What an Ops provides:
//
//   Ops::lanes, Ops::acc_budget                              query tokens per register, accumulators per tile
//   Ops::query_regs, Ops::max_query_regs                     preferred / largest block of query groups (QR)
//   Ops::doc_tile                                            doc rows prepared at once (multiple of each ND(QR))
//   Ops::reg, Ops::QElem, Ops::TileElem                     vector type, packed-query element, doc-tile element
//   Ops::tile<QR, ND>(q, group_elems, d, dim, rmax, chk, pf) dot products of one tile, folded into rmax;
//                                                            prefetches pf's window spread over its k loop (dim is
//                                                            an i64 or std::integral_constant<i64, 128>)
//   Ops::half_groups, Ops::half_rows<QM>(),                  the half-group tile (detail::rows_per_block), when
//   Ops::tile_half<QM, ND>(...)                              half_groups
//   Ops::prepare<DT>(tokens, row, nd, dim, buf)              pointer to nd doc rows as TileElem (widened into buf
//                                                            when the storage type differs)
//   Ops::prefetch(p), Ops::zero(), Ops::store_neg_inf(p, n), Ops::any_nonfinite(chk)
//
// Loop order, per doc: rmax[all stacked query lanes] = -inf; for each tile of ND doc rows: prepare it once
// (float32 rows are read in place, 16-bit rows widened into an L1 buffer), prefetch rows further ahead, then run
// every block of QR query groups over it (the doc tile stays in L1 while the
// packed queries stream from L1/L2). The horizontal step happens once per doc: each query's score is the sum of
// its rmax entries in token order, so the result does not depend on the tiling, the thread count or the batch.
#pragma once

// Needs <chrono>, <cstdint>, <limits>, <type_traits>, generic/half.hpp and simkern/maxsim.hpp included at file scope first.

namespace detail {

// The most doc rows one register tile holds (acc_budget of a one-group block); the tiles' row loops are unrolled
// this far (FloatOps::tile).
constexpr int kMaxTileRows = 24;

// The tiles' spread prefetch (see kPrefetchAheadRows): the window of a tile's ND rows advances pf_step = ND x
// (bytes per row per k step, at most 4) bytes per k step, and [k * pf_step, (k + 1) * pf_step) must be covered. A
// tile of more than 16 rows may step past one 64-byte line (24 rows: 96 bytes) and takes a second prefetch at
// + 64; with one, every third line was left to the hardware prefetcher and bf16 docs streamed from DRAM at ~8 GB/s
// instead of ~20 (one thread, Zen 4). Written out in each tile, decided on ND at compile time: as a helper, or
// with a run-time test, it changed GCC's register allocation of the 3 x 4 AVX2 tile (the query loads folded into
// the FMAs: -25 % for 22-24-token queries).

// A block of QR query groups; Half: its last group is a half group (see below), so QR - 1 full groups plus it.
template <class Ops, bool Half, int QR, int ND, class DimT = i64>
static inline void run_tile(const typename Ops::QElem* q, i64 group_elems, const typename Ops::TileElem* d, DimT dim,
                            float* rmax, typename Ops::reg& chk, PrefetchRows pf) {
  if constexpr (Half) Ops::template tile_half<QR - 1, ND>(q, group_elems, d, dim, rmax, chk, pf);
  else Ops::template tile<QR, ND>(q, group_elems, d, dim, rmax, chk, pf);
}

// Register blocking. A block of QR query groups keeps QR x ND(QR) accumulators, ND(QR) = Ops::acc_budget / QR
// doc rows at a time, so every block shape fills the same register budget (12 ymm on AVX2, 24 on AVX-512 and
// NEON) and no tail block runs latency-bound on a few accumulators. Ops::doc_tile (rows prepared at once) is a
// multiple of every ND(QR). Half blocks take Ops::half_rows (QR - 1 full groups and ceil(ND / 2) half
// accumulators within the same budget).
//
// Half query groups (Ops::half_groups: AVX2 floats, vdpbf16ps): when the job's last group holds 1 .. L/2 tokens,
// the packing stores them twice (lanes [0, L/2) and [L/2, L)) and the last block runs Ops::tile_half: the full
// groups plus the half group, whose FMA pairs doc rows t and t + 1 (one vector = [d_t[k] x L/2 | d_t+1[k] x L/2]).
// Per pair of doc rows the half group costs 1 FMA + 1 blend instead of 2 FMAs: 12 tokens need 3 FMAs per 2 rows
// instead of 4, 18 or 20 tokens 5 instead of 6, 1..4 tokens 1 instead of 2. Each lane still computes its dot by
// the same FMA sequence over k from zero, so scores are bit-identical to the full-group tiles. The upper half's
// running maxima (odd rows) are folded into the lower half once per doc (score()).
template <class Ops, bool Half, int QR>
constexpr int rows_per_block() {
  if constexpr (Half) return Ops::template half_rows<QR - 1>();
  else return Ops::acc_budget / QR;
}

// Runtime nd in [1, ND(QR)] -> compile-time tile.
template <class Ops, bool Half, int QR, int ND = 1, class DimT = i64>
static inline void run_tile_nd(int nd, const typename Ops::QElem* q, i64 group_elems, const typename Ops::TileElem* d,
                               DimT dim, float* rmax, typename Ops::reg& chk, PrefetchRows pf) {
  if constexpr (ND <= rows_per_block<Ops, Half, QR>()) {
    if (nd == ND) {
      run_tile<Ops, Half, QR, ND>(q, group_elems, d, dim, rmax, chk, pf);
      return;
    }
    run_tile_nd<Ops, Half, QR, ND + 1>(nd, q, group_elems, d, dim, rmax, chk, pf);
  }
}

// One block of QR groups over nd prepared rows (row stride dim): full ND(QR)-row tiles, then the remainder.
template <class Ops, bool Half, int QR, class DimT = i64>
static inline void run_block(int nd, const typename Ops::QElem* q, i64 group_elems, const typename Ops::TileElem* d,
                             DimT dim, float* rmax, typename Ops::reg& chk, PrefetchRows pf) {
  constexpr int NDQ = rows_per_block<Ops, Half, QR>();
  const auto rows_ahead = [&](int r) {
    return PrefetchRows{pf.base ? pf.base + r * pf.row_bytes : nullptr, pf.row_bytes, pf.elem_bytes};
  };
  int r = 0;
  for (; r + NDQ <= nd; r += NDQ)
    run_tile<Ops, Half, QR, NDQ>(q, group_elems, d + r * dim, dim, rmax, chk, rows_ahead(r));
  if (r < nd) run_tile_nd<Ops, Half, QR>(nd - r, q, group_elems, d + r * dim, dim, rmax, chk, rows_ahead(r));
}

// Runtime qr in [1, Ops::max_query_regs] -> compile-time block.
template <class Ops, bool Half, int QR = 1, class DimT = i64>
static inline void run_block_qr(i64 qr, int nd, const typename Ops::QElem* q, i64 group_elems,
                                const typename Ops::TileElem* d, DimT dim, float* rmax, typename Ops::reg& chk,
                                PrefetchRows pf) {
  if constexpr (QR <= Ops::max_query_regs) {
    if (qr == QR) {
      run_block<Ops, Half, QR>(nd, q, group_elems, d, dim, rmax, chk, pf);
      return;
    }
    run_block_qr<Ops, Half, QR + 1>(qr, nd, q, group_elems, d, dim, rmax, chk, pf);
  }
}

// Software prefetch of the doc rows kPrefetchAheadRows ahead (continuing into the next doc), into L2 (T1),
// spread over the first block's k loops. Measured on a Zen 4 (AVX2 exposed): 1 query x 1000 docs x 180 tokens,
// f32, one thread, 92 MB of docs: no prefetch ~48 GF/s; T0 one or two tiles ahead ~50-55; a T1 burst of the
// whole window per tile ~67-77; T1 spread one per k step ~78-82 (sgemm peak ~85). Bursts of 48-96 prefetches
// overflow the miss queues (prefetches get dropped); T0 competes with the tile's own loads for L1.
constexpr i64 kPrefetchAheadRows = 36;

template <class Ops, DocDType DT, class DimT>
static bool score_impl(const PackedQueries& q, const DocTokens& d, const ScoreJob& job, float* scratch, DimT dim) {
  constexpr int L = Ops::lanes;
  constexpr int QR = Ops::query_regs;  // preferred block; the last block takes the 1..max_query_regs left
  constexpr int ND = Ops::doc_tile;
  constexpr i64 doc_elem_bytes = DT == DocDType::f32 ? 4 : 2;
  const i64 group_elems = q.group_elems;
  const i64 g_first = q.lane_begin[job.q_begin] / L;
  const i64 lane_end = q.lane_begin[job.q_end - 1] + q.lengths[job.q_end - 1];
  const i64 n_groups = (lane_end + L - 1) / L - g_first;
  const typename Ops::QElem* packed = static_cast<const typename Ops::QElem*>(q.data) + g_first * group_elems;
  float* rmax = scratch;                     // n_groups * L running maxima
  float* tile_buf = scratch + n_groups * L;  // ND * dim widened doc rows
  const char* doc_bytes = static_cast<const char*>(d.tokens);
  typename Ops::reg chk = Ops::zero();
  bool sums_finite = true;
  const i64 last_count = lane_end - g_first * L - (n_groups - 1) * L;  // tokens in the last group
  const bool half = Ops::half_groups && n_groups > 0 && last_count <= L / 2;

  for (i64 i = 0; i < job.n_docs; ++i) {
    const i64 doc = job.doc_ids ? job.doc_ids[i] : job.doc_begin + i;
    const i64 row_begin = d.offsets[doc], row_end = d.offsets[doc + 1];
    i64 next_doc_row = -1;  // where the tile after this doc's last one starts (for the prefetch)
    if (i + 1 < job.n_docs) next_doc_row = d.offsets[job.doc_ids ? job.doc_ids[i + 1] : doc + 1];
    Ops::store_neg_inf(rmax, n_groups * L);
    if (n_groups > 0) {
      for (i64 row = row_begin; row < row_end; row += ND) {
        const int nd = static_cast<int>(row_end - row < ND ? row_end - row : ND);
        const typename Ops::TileElem* tile = Ops::template prepare<DT>(d.tokens, row, nd, dim, tile_buf);
        // The first block of query groups prefetches the rows kPrefetchAheadRows ahead (continuing into the next
        // doc), spread over its k loops; the other blocks re-read this tile from L1.
        i64 next_row = row + kPrefetchAheadRows;
        if (next_row >= row_end) next_row = next_doc_row >= 0 ? next_doc_row + (next_row - row_end) : -1;
        PrefetchRows pf{next_row >= 0 ? doc_bytes + next_row * dim * doc_elem_bytes : nullptr, dim * doc_elem_bytes,
                        doc_elem_bytes};
        i64 g = 0;
        for (; n_groups - g > Ops::max_query_regs; g += QR) {
          run_block<Ops, false, QR>(nd, packed + g * group_elems, group_elems, tile, dim, rmax + g * L, chk, pf);
          pf.base = nullptr;
        }
        if constexpr (Ops::half_groups) {
          if (half) {
            run_block_qr<Ops, true>(n_groups - g, nd, packed + g * group_elems, group_elems, tile, dim, rmax + g * L,
                                    chk, pf);
            continue;
          }
        }
        run_block_qr<Ops, false>(n_groups - g, nd, packed + g * group_elems, group_elems, tile, dim, rmax + g * L, chk,
                                 pf);
      }
      if (half) {  // the half group's odd-row maxima join the even-row ones
        float* m = rmax + (n_groups - 1) * L;
        for (int l = 0; l < L / 2; ++l) m[l] = m[l + L / 2] > m[l] ? m[l + L / 2] : m[l];
      }
    }
    for (i64 qi = job.q_begin; qi < job.q_end; ++qi) {
      const float* m = rmax + (q.lane_begin[qi] - g_first * L);
      float total = 0.0f;
      for (i64 t = 0; t < q.lengths[qi]; ++t) total += m[t];
      if (!__builtin_isfinite(total) && row_end > row_begin) sums_finite = false;
      job.out[(qi - job.q_begin) * job.out_query_stride + i] = total;
    }
  }
  return sums_finite && !Ops::any_nonfinite(chk);
}

// dim 128 (ColBERT's) is compiled with the row stride as a constant: a tile then addresses its doc rows from one
// register with displacements (a runtime stride needs one register per row: with 12 rows the loop spilled and ran
// at ~60 % of the FMA rate for 8-token queries). Other dims take the runtime-stride instantiation.
template <class Ops, DocDType DT>
static bool score(const PackedQueries& q, const DocTokens& d, const ScoreJob& job, float* scratch) {
  if (q.dim == 128) return score_impl<Ops, DT>(q, d, job, scratch, std::integral_constant<i64, 128>{});
  return score_impl<Ops, DT>(q, d, job, scratch, q.dim);
}

}  // namespace detail

// Tile operations over float32 packed queries and float32 doc tiles, from the primitives of V:
//   V::reg, V::lanes, V::query_regs, V::max_query_regs, V::acc_budget, V::doc_tile, zero, set1, load, store,
//   fma(a, b, c) = a*b + c, max,
//   any_nan, widen_f16 / widen_bf16 (V::lanes values, exact), prefetch.
template <class V>
struct FloatOps {
  using reg = typename V::reg;
  using QElem = float;
  using TileElem = float;
  static constexpr int lanes = V::lanes;
  static constexpr int query_regs = V::query_regs;
  static constexpr int max_query_regs = V::max_query_regs;
  static constexpr int acc_budget = V::acc_budget;
  static constexpr int doc_tile = V::doc_tile;
  static constexpr bool half_groups = V::half_groups;

  // Doc rows per tile_half with QM full groups: the most rows ND dividing doc_tile with QM x ND + ceil(ND / 2)
  // accumulators within acc_budget (AVX2, 12 of 12: 12, 6, 4 rows for QM = 0, 1, 2; 24 of 24: 24, 12, 8).
  template <int QM>
  static constexpr int half_rows() {
    for (int nd = doc_tile; nd > 1; --nd)
      if (doc_tile % nd == 0 && QM * nd + (nd + 1) / 2 <= acc_budget) return nd;
    return 1;
  }

  static inline reg zero() { return V::zero(); }
  static inline void prefetch(const char* p) { V::prefetch(p); }
  static inline bool any_nonfinite(reg chk) { return V::any_nan(chk); }
  static inline void store_neg_inf(float* p, i64 n) {  // n is a multiple of lanes
    const reg v = V::set1(-std::numeric_limits<float>::infinity());
    for (i64 i = 0; i < n; i += lanes) V::store(p + i, v);
  }

  // The unroll counts of the row loops (24, 12 pairs) cover every tile (kMaxTileRows): a row loop unrolled only in
  // part indexes acc[] at run time, which spills the accumulators to the stack (a one-group 24-row tile ran at
  // 37 GF/s instead of ~200 with unroll 16 on Zen 4).
  template <int QR, int ND, class DimT = i64>
  static inline void tile(const float* q, i64 group_elems, const float* d, DimT dim, float* rmax, reg& chk,
                          PrefetchRows pf) {
    static_assert(ND <= detail::kMaxTileRows, "raise the row loops' unroll counts with kMaxTileRows");
    reg acc[ND][QR];
    zero_all(acc);
    const i64 pf_step = ND * pf.elem_bytes;
    for (i64 k = 0; k < dim; ++k) {
      if (pf.base) {
        V::prefetch(pf.base + k * pf_step);
        if constexpr (ND > 16) V::prefetch(pf.base + k * pf_step + 64);
      }
      reg qv[QR];
#pragma GCC unroll 4
      for (int r = 0; r < QR; ++r) qv[r] = V::load(q + r * group_elems + k * lanes);
#pragma GCC unroll 24
      for (int t = 0; t < ND; ++t) {
        const reg b = V::set1(d[t * dim + k]);
#pragma GCC unroll 4
        for (int r = 0; r < QR; ++r) acc[t][r] = V::fma(qv[r], b, acc[t][r]);
      }
    }
    fold<QR, ND>(acc, rmax, chk);
  }

  // Accumulators start at zero (every tile shape).
  template <int N, int M>
  static inline void zero_all(reg (&acc)[N][M]) {
#pragma GCC unroll 24
    for (int i = 0; i < N; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < M; ++j) acc[i][j] = V::zero();
  }

  // A tile's epilogue: the running max per query lane of groups r < QR (rmax + r * lanes) over the tile's ND rows,
  // and the finiteness check (acc * 0 is 0 for finite acc, NaN otherwise) accumulated in two independent chains so
  // the epilogue stays short. Shared by every tile shape (and the bf16 dot-product tiles, which derive from here).
  template <int QR, int ND, int QA>
  static inline void fold(const reg (&acc)[ND][QA], float* rmax, reg& chk) {
    const reg zero_v = V::zero();
    reg chk_even = chk, chk_odd = V::zero();
#pragma GCC unroll 4
    for (int r = 0; r < QR; ++r) {
      reg m = V::load(rmax + r * lanes);
#pragma GCC unroll 24
      for (int t = 0; t < ND; ++t) {
        if (t % 2 == 0) chk_even = V::fma(acc[t][r], zero_v, chk_even);
        else chk_odd = V::fma(acc[t][r], zero_v, chk_odd);
        m = V::max(m, acc[t][r]);
      }
      V::store(rmax + r * lanes, m);
    }
    chk = V::fma(chk_odd, zero_v, chk_even);
  }

  // QM full groups (as tile) plus the half group at q + QM * group_elems (see detail::rows_per_block).
  template <int QM, int ND, class DimT = i64>
  static inline void tile_half(const float* q, i64 group_elems, const float* d, DimT dim, float* rmax, reg& chk,
                               PrefetchRows pf) {
    if constexpr (V::half_groups) {
      static_assert(ND <= detail::kMaxTileRows, "raise the row loops' unroll counts with kMaxTileRows");
      constexpr int NH = (ND + 1) / 2;
      constexpr int QA = QM > 0 ? QM : 1;
      reg acc[ND][QA], acch[NH][1];
      zero_all(acc);
      zero_all(acch);
      const float* qh_base = q + QM * group_elems;
      const i64 pf_step = ND * pf.elem_bytes;
      for (i64 k = 0; k < dim; ++k) {
        if (pf.base) {
          V::prefetch(pf.base + k * pf_step);
          if constexpr (ND > 16) V::prefetch(pf.base + k * pf_step + 64);
        }
        reg qv[QA];
#pragma GCC unroll 4
        for (int r = 0; r < QM; ++r) qv[r] = V::load(q + r * group_elems + k * lanes);
        const reg qh = V::load(qh_base + k * lanes);
#pragma GCC unroll 12
        for (int t = 0; t < ND; t += 2) {
          const reg b0 = V::set1(d[t * dim + k]);
          const reg b1 = t + 1 < ND ? V::set1(d[(t + 1) * dim + k]) : b0;
#pragma GCC unroll 4
          for (int r = 0; r < QM; ++r) {
            acc[t][r] = V::fma(qv[r], b0, acc[t][r]);
            if (t + 1 < ND) acc[t + 1][r] = V::fma(qv[r], b1, acc[t + 1][r]);
          }
          acch[t / 2][0] = V::fma(qh, V::blend_halves(b0, b1), acch[t / 2][0]);
        }
      }
      fold<QM, ND>(acc, rmax, chk);
      fold<1, NH>(acch, rmax + QM * lanes, chk);
    }
  }

  template <DocDType DT>
  static inline const float* prepare(const void* tokens, i64 row, int nd, i64 dim, float* buf) {
    const i64 first = row * dim, n = nd * dim;
    if constexpr (DT == DocDType::f32) {
      return static_cast<const float*>(tokens) + first;
    } else {
      const std::uint16_t* src = static_cast<const std::uint16_t*>(tokens) + first;
      i64 i = 0;
      for (; i + lanes <= n; i += lanes) {
        if constexpr (DT == DocDType::f16) V::widen_f16(src + i, buf + i);
        else V::widen_bf16(src + i, buf + i);
      }
      for (; i < n; ++i) buf[i] = DT == DocDType::f16 ? f16_to_float(src[i]) : bf16_to_float(src[i]);
      return buf;
    }
  }
};

// Groups are padded by one cache line: dim * lanes * 4 bytes is a multiple of 4 KB for common dims (128 x 8 or
// 64 x 16), and groups 4 KB apart would all fall into the same L1 sets (and alias with the doc tile buffer).
template <int Lanes>
static i64 float_group_elems(i64 dim) {
  return dim * Lanes + 16;
}

// Packing for FloatOps: group g of a query holds dim x lanes floats as [k][lane]; missing tokens are zero. With
// half groups (DupHalf), a last group of at most Lanes / 2 tokens holds them twice: lanes [0, Lanes/2) and
// [Lanes/2, Lanes) (detail::rows_per_block).

template <int Lanes, bool DupHalf>
static void pack_float_groups(const float* q_tokens, i64 n_tokens, i64 dim, void* dst) {
  float* out = static_cast<float*>(dst);
  const i64 n_groups = (n_tokens + Lanes - 1) / Lanes;
  const i64 stride = float_group_elems<Lanes>(dim);
  const bool dup_last = DupHalf && n_tokens - (n_groups - 1) * Lanes <= Lanes / 2;
  for (i64 g = 0; g < n_groups; ++g) {
    float* group = out + g * stride;
    const bool dup = dup_last && g == n_groups - 1;
    for (i64 k = 0; k < dim; ++k)
      for (int l = 0; l < Lanes; ++l) {
        const i64 token = g * Lanes + (dup && l >= Lanes / 2 ? l - Lanes / 2 : l);
        group[k * Lanes + l] = token < n_tokens ? q_tokens[token * dim + k] : 0.0f;
      }
    for (i64 pad = dim * Lanes; pad < stride; ++pad) group[pad] = 0.0f;
  }
}

template <int Lanes, int DocTile>
static i64 float_scratch_floats(i64 dim, i64 n_groups) {
  return n_groups * Lanes + DocTile * dim;
}

template <class V>
static void fill_float_kernels(MaxSimKernel out[kNumDocDTypes], const char* const names[kNumDocDTypes]) {
  using O = FloatOps<V>;
  for (int t = 0; t < kNumDocDTypes; ++t) {
    out[t].name = names[t];
    out[t].lanes = V::lanes;
    out[t].packs_bf16 = false;
    out[t].group_elems = float_group_elems<V::lanes>;
    out[t].pack = pack_float_groups<V::lanes, V::half_groups>;
    out[t].scratch_floats = float_scratch_floats<V::lanes, V::doc_tile>;
    out[t].half_groups = V::half_groups;
  }
  out[static_cast<int>(DocDType::f32)].score = detail::score<O, DocDType::f32>;
  out[static_cast<int>(DocDType::f16)].score = detail::score<O, DocDType::f16>;
  out[static_cast<int>(DocDType::bf16)].score = detail::score<O, DocDType::bf16>;
}

// FMA throughput probe for the dispatcher (dispatch.cpp): float32 flops per ns of V's FMAs, best of 5 runs of 12
// independent chains x 16384 steps (~30-100 us each). It decides whether the avx512 level's float kernels beat the
// avx2 ones on this CPU (Zen 4 runs a 512-bit FMA as two 256-bit halves: the same flop rate).
template <class V>
static double fma_probe() {
  using reg = typename V::reg;
  reg acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = V::set1(1e-3f * static_cast<float>(j + 1));
  const reg a = V::set1(0.999f), b = V::set1(1e-4f);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    for (int it = 0; it < 16384; ++it) {
#pragma GCC unroll 12
      for (int j = 0; j < 12; ++j) acc[j] = V::fma(acc[j], a, b);
    }
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    if (ns < best) best = ns;
  }
  reg sum = acc[0];
  for (int j = 1; j < 12; ++j) sum = V::max(sum, acc[j]);
  alignas(64) float lanes[V::lanes];
  V::store(lanes, sum);
  volatile float sink = lanes[0];
  (void)sink;
  return 12.0 * 16384 * V::lanes * 2 / (best > 1.0 ? best : 1.0);
}
