// MaxSim, scalar reference path (no intrinsics; compiled with -fno-tree-vectorize).
//
// Packing: lanes = 1, so a "group" is one query token and the packed buffer is the token rows copied as is.
// For each doc, each query token i: m_i = max_j dot(q_i, d_j) with the dot summed in float32 in k order;
// score = sum_i m_i in i order. Doc tokens are widened to float32 one value at a time.
#include <cstring>
#include <limits>

#include "generic/half.hpp"
#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {
namespace {

template <DocDType DT>
static inline float doc_value(const void* tokens, i64 index) {
  if constexpr (DT == DocDType::f32) {
    return static_cast<const float*>(tokens)[index];
  } else if constexpr (DT == DocDType::f16) {
    return f16_to_float(static_cast<const std::uint16_t*>(tokens)[index]);
  } else {
    return bf16_to_float(static_cast<const std::uint16_t*>(tokens)[index]);
  }
}

i64 group_elems(i64 dim) { return dim; }

void pack(const float* q_tokens, i64 n_tokens, i64 dim, void* dst) {
  if (n_tokens > 0) std::memcpy(dst, q_tokens, static_cast<std::size_t>(n_tokens * dim) * sizeof(float));
}

i64 scratch_floats(i64 dim, i64 n_groups) { return 0; }

template <DocDType DT>
bool score(const PackedQueries& q, const DocTokens& d, const ScoreJob& job, float*) {
  const float* packed = static_cast<const float*>(q.data);
  const i64 dim = q.dim;
  bool finite = true;
  for (i64 i = 0; i < job.n_docs; ++i) {
    const i64 doc = job.doc_ids ? job.doc_ids[i] : job.doc_begin + i;
    const i64 t_begin = d.offsets[doc], t_end = d.offsets[doc + 1];
    for (i64 qi = job.q_begin; qi < job.q_end; ++qi) {
      float total = 0.0f;
      for (i64 lane = q.lane_begin[qi]; lane < q.lane_begin[qi] + q.lengths[qi]; ++lane) {
        const float* q_row = packed + lane * dim;
        float best = -std::numeric_limits<float>::infinity();
        for (i64 t = t_begin; t < t_end; ++t) {
          float dot = 0.0f;
          for (i64 k = 0; k < dim; ++k) dot += q_row[k] * doc_value<DT>(d.tokens, t * dim + k);
          if (!__builtin_isfinite(dot)) finite = false;
          best = dot > best ? dot : best;
        }
        total += best;
      }
      if (!__builtin_isfinite(total) && t_end > t_begin) finite = false;
      job.out[(qi - job.q_begin) * job.out_query_stride + i] = total;
    }
  }
  return finite;
}

}  // namespace

void fill_maxsim(MaxSimKernel out[kNumDocDTypes]) {
  static const char* const names[kNumDocDTypes] = {"maxsim_f32_scalar", "maxsim_f16_scalar", "maxsim_bf16_scalar"};
  for (int t = 0; t < kNumDocDTypes; ++t) {
    out[t].name = names[t];
    out[t].lanes = 1;
    out[t].packs_bf16 = false;
    out[t].group_elems = group_elems;
    out[t].pack = pack;
    out[t].scratch_floats = scratch_floats;
  }
  out[0].score = score<DocDType::f32>;
  out[1].score = score<DocDType::f16>;
  out[2].score = score<DocDType::bf16>;
}

}  // namespace scalar
}  // namespace simkern
