// FDE, scalar reference path (no intrinsics; -fno-tree-vectorize -ffp-contract=off): SimHash sketches as the
// sequence acc = fma(x_i, g_ih, acc) over i in order, which every SIMD path reproduces bit for bit.
#include <cmath>
#include <cstring>

#include "simkern/dispatch.hpp"

namespace simkern {
namespace scalar {

// Hyperplanes h_begin .. hyperplanes - 1 of n tokens; the SIMD files call it for their tails.
void simhash_from(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, i64 h_begin, float* out) {
  for (i64 t = 0; t < n; ++t)
    for (i64 h = h_begin; h < hyperplanes; ++h) {
      float acc = 0.0f;
      for (i64 i = 0; i < dim; ++i) acc = std::fma(x[t * dim + i], g[i * hyperplanes + h], acc);
      out[t * hyperplanes + h] = acc;
    }
}

void fde_stream_copy(float* dst, const float* src, i64 count) {
  std::memcpy(dst, src, static_cast<std::size_t>(count) * sizeof(float));
}

void fde_stream_fence() {}

void fde_sign_words(const float* sketch, i64 hyperplanes, std::uint64_t* words) {
  for (i64 h = 0; h < hyperplanes; ++h)
    words[h >> 6] |= static_cast<std::uint64_t>(sketch[h] > 0.0f ? 1 : 0) << (h & 63);
}

namespace {
void simhash(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, float* out) {
  simhash_from(x, n, dim, g, hyperplanes, 0, out);
}

// The reference's projection, one token at a time: y[c] += sign[i] * x[i] for i in order.
void ams_project(const float* x, i64 n, i64 dim, const FDEMatrices& m, i64 repetitions, i64 dp, float*, float*,
                 float* y) {
  for (i64 r = 0; r < repetitions; ++r) {
    const std::int32_t* index = m.ams_index.data() + r * dim;
    const float* sign = m.ams_sign.data() + r * dim;
    for (i64 t = 0; t < n; ++t) {
      float* dst = y + (r * n + t) * dp;
      for (i64 c = 0; c < dp; ++c) dst[c] = 0.0f;
      for (i64 i = 0; i < dim; ++i) dst[index[i]] += sign[i] * x[t * dim + i];
    }
  }
}
}  // namespace

void fill_fde(FDEKernels* out) {
  out->name = "fde_scalar";
  out->simhash = simhash;
  out->ams_project = ams_project;
  out->stream_copy = fde_stream_copy;
  out->stream_fence = fde_stream_fence;
  out->sign_words = fde_sign_words;
}

}  // namespace scalar
}  // namespace simkern
