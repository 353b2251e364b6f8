// simkern/maxsim.hpp - ColBERT late-interaction (MaxSim) scoring.
//
//   score(Q, D) = sum_i max_j <q_i, d_j>         q_i: query tokens, d_j: document tokens, both `dim` wide
//
// Shapes and layout
//   Queries: float32, flat (total_query_tokens, dim) row-major + int64 offsets (n_queries + 1), CSR style.
//   Docs:    float32 | float16 | bfloat16, flat (total_doc_tokens, dim) row-major + int64 offsets (n_docs + 1).
//   Packed queries (built once per call by the kernel's `pack`): the driver cuts the queries into stacks of
//   consecutive queries and packs each stack's token rows (contiguous in the flat buffer) densely into groups
//   of `lanes` tokens; group g stores dim x lanes floats as [k][lane] (coordinate k of every token of the group
//   is one SIMD vector), padding lanes are zero. The bf16 dot-product variant stores [k/2][lane][2] bfloat16
//   pairs, dim padded to even. Token i of query q sits at global lane lane_begin[q] + i (lane = group * lanes +
//   lane in group); a stack starts at a group boundary, so queries of one stack may share a group (no padding
//   between them) and a job covering whole stacks never computes lanes it does not use.
//
// Semantics (tested in tests/test_maxsim.py)
//   empty doc (no tokens) and non-empty query -> -inf; empty query -> 0 (for any doc).
//   A non-finite dot product (NaN/inf input or float32 overflow) makes `score` return false; the driver then
//   throws NonFiniteError. Detection is fused into the kernel: every accumulator is folded into a check
//   register as acc * 0 (0 for finite, NaN otherwise), ~1/dim extra work.
//
// Precision policy
//   float32 accumulation; float16/bfloat16 doc tokens are widened exactly to float32 before the FMA, so
//   f16/bf16 results equal float32 scoring of the widened values. The AVX512-BF16 variant is the exception:
//   it rounds the query to bfloat16 (round to nearest even) and uses vdpbf16ps, so each token dot has a
//   relative error up to 2^-8 of sum_k |q_k d_k|; its kernel name ends in "_dpbf16".
#pragma once

#include "simkern/common.hpp"

namespace simkern {

struct PackedQueries {
  const void* data = nullptr;  // groups, each `group_elems` elements (float or uint16)
  i64 group_elems = 0;
  int lanes = 0;
  i64 dim = 0;
  const i64* lane_begin = nullptr;  // n_queries: global lane of each query's first token
  const i64* lengths = nullptr;     // n_queries: tokens per query
};

struct DocTokens {
  const void* tokens = nullptr;  // (total_tokens, dim) elements of `dtype`
  DocDType dtype = DocDType::f32;
  i64 dim = 0;
  const i64* offsets = nullptr;  // n_docs + 1
  i64 n_docs = 0;
};

// Score queries [q_begin, q_end) (one or more whole stacks) against a list of docs:
//   out[(q - q_begin) * out_query_stride + i] = score(query q, doc doc_at(i)),  i in [0, n_docs)
// with doc_at(i) = doc_ids ? doc_ids[i] : doc_begin + i.
struct ScoreJob {
  i64 q_begin = 0, q_end = 0;
  const i64* doc_ids = nullptr;
  i64 doc_begin = 0;
  i64 n_docs = 0;
  float* out = nullptr;
  i64 out_query_stride = 0;
};

// Used inside the kernels: software prefetch spread over a register tile's k loop. The tile prefetches
// base + k * ND * elem_bytes at step k, which covers its ND rows of the window ahead (base == nullptr: none).
struct PrefetchRows {
  const char* base;
  i64 row_bytes;
  i64 elem_bytes;
};

// One kernel variant: (ISA, doc dtype). Filled by the ISA translation units, chosen in dispatch.cpp.
struct MaxSimKernel {
  const char* name = nullptr;
  int lanes = 0;                                                                    // query tokens per packed group
  bool packs_bf16 = false;                                                          // packed groups hold bf16 pairs
  i64 (*group_elems)(i64 dim) = nullptr;                                            // elements per packed group
  void (*pack)(const float* q_tokens, i64 n_tokens, i64 dim, void* dst) = nullptr;  // token rows -> groups
  i64 (*scratch_floats)(i64 dim, i64 n_groups) = nullptr;                           // per-thread scratch `score` needs
  bool (*score)(const PackedQueries& q, const DocTokens& d, const ScoreJob& job, float* scratch) = nullptr;
  bool half_groups = false;  // a stack's last group of <= lanes/2 tokens costs half
  // A kernel with fewer lanes that the drivers run instead when it costs less for the call's packing (the avx512
  // level's float kernels on CPUs whose 512-bit FMAs are no faster than 256-bit ones point at the avx2 ones; see
  // choose_kernel in maxsim_driver.cpp). Both compute the same bits. nullptr: none.
  const MaxSimKernel* narrow = nullptr;
};

struct QueryTokens {
  const float* tokens = nullptr;  // (total_tokens, dim)
  const i64* offsets = nullptr;   // n_queries + 1
  i64 n_queries = 0;
  i64 dim = 0;
};

// Drivers (csrc/runtime/maxsim_driver.cpp): pack, split into tasks, run on the pool, select top-k.
// Inputs are assumed validated (offsets monotone and in range, ids in range); they throw NonFiniteError.
void maxsim_dense(const QueryTokens& q, const DocTokens& d, float* out /* n_queries x n_docs */, int threads);
void maxsim_pairs(const QueryTokens& q, const DocTokens& d, const i64* query_ids, const i64* doc_ids, i64 n_pairs,
                  float* out /* n_pairs */, int threads);
// Top-k, best first; ties broken by smaller doc id; missing slots get id -1 and score -inf.
// cand_offsets == nullptr: every doc is a candidate. Otherwise query q's candidates are
// cand_ids[cand_offsets[q] .. cand_offsets[q+1]) (entries < 0 are skipped).
void maxsim_topk(const QueryTokens& q, const DocTokens& d, i64 k, const i64* cand_ids, const i64* cand_offsets,
                 float* out_scores /* n_queries x k */, i64* out_ids /* n_queries x k */, int threads);

const MaxSimKernel& maxsim_kernel(DocDType dtype);  // for the active ISA
// The kernel a dense / top-k scan (stack_queries) or a candidate / pair call would run for these query lengths
// (offsets of n_queries + 1), at the active ISA: maxsim_kernel(dtype) or its narrow alternative (tests, probes).
const char* maxsim_kernel_name_for(const i64* q_offsets, i64 n_queries, i64 dim, DocDType dtype, bool stack_queries);

}  // namespace simkern
