// MUVERA Fixed Dimensional Encodings on the GPU, bit-identical to the CPU scalar path (csrc/runtime/fde_driver.cpp,
// csrc/kernels/scalar/fde.cpp) for finite inputs: the same operation order everywhere, with explicit fmaf for the
// SimHash sketches and __fadd_rn / __fmul_rn / __fdiv_rn elsewhere (nvcc never contracts them into FMAs).
//
// One block per (set, repetition), tokens in chunks of kChunk, in order:
//   A. each thread sketches one token: k SimHash values acc = fmaf(x_i, g_i, acc) over i in order, the sign string
//      (hyperplane 0 = most significant bit) and its partition (the Gray decoding, as the CPU's tables);
//   B. each thread owns projected coordinates c and adds, token by token in order, the projected value
//      (identity: x_c; AMS: sum of sign_i * x_i over the inputs of c, i ascending: the plan's CSR lists) to its
//      partition's row of the output (the output row is the accumulator: no partition state in shared memory);
//      partition counts and, for documents that fill empty partitions, the nearest token per partition
//      ((Hamming distance << 40) | token: lowest token on ties) live in shared memory;
//   C. documents: averages (one correctly rounded division per value) and empty partitions filled with the
//      projection of their nearest token.
// A final CountSketch (optional) is a second kernel: output o sums sign_i * inner_i over its inner coordinates i in
// ascending order (CSR), which is the CPU's scatter order.
#include "common.cuh"
#include "simkern/fde_partition.hpp"

namespace simkern {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kChunk = kThreads;  // tokens per step

struct FdeSets {
  const void* tokens;
  int dtype;
  i64 row_stride, set_stride;
  const i64* offsets;
  i64 fixed_len;
  const void* mask;
  int mask_dtype;
  i64 mask_stride0, mask_stride1;
};

__device__ __forceinline__ float project(const FDEDevicePlan& p, const void* tokens, int dtype, i64 row, i64 r, i64 c) {
  if (!p.ams) return load_as_f32(tokens, row + c, dtype);
  const std::int32_t* start = p.ams_csr_start + r * (p.projection_dim + 1);
  const std::int32_t* index = p.ams_csr_index + r * p.dim;
  const float* sign = p.ams_csr_sign + r * p.dim;
  float acc = 0.0f;
  for (std::int32_t e = start[c]; e < start[c + 1]; ++e)
    acc = __fadd_rn(acc, __fmul_rn(sign[e], load_as_f32(tokens, row + index[e], dtype)));
  return acc;
}

__global__ void __launch_bounds__(kThreads)
    fde_kernel(FDEDevicePlan p, FdeSets sets, bool documents, bool empty_zeros, float* out, i64 out_stride, int* flags,
               unsigned long long* first_empty, i64 block_base) {
  SIMKERN_DYNAMIC_SMEM(smem_raw);
  const i64 parts = i64{1} << p.simhash_bits, dp = p.projection_dim;
  unsigned long long* best = reinterpret_cast<unsigned long long*>(smem_raw);  // [parts] (documents + fill)
  int* counts = reinterpret_cast<int*>(best + parts);                          // [parts]
  __shared__ std::uint32_t sign_s[kChunk];
  __shared__ int part_s[kChunk];
  __shared__ i64 row_s[kChunk];
  const int tid = threadIdx.x;
  const i64 block = block_base + blockIdx.x;
  const i64 set = block / p.repetitions, r = block % p.repetitions;
  const int k = static_cast<int>(p.simhash_bits);
  const i64 hyperplanes = p.repetitions * k;
  float* dst = out + set * out_stride + r * parts * dp;
  i64 first, len;
  if (sets.offsets) {
    first = sets.offsets[set] * sets.row_stride;
    len = sets.offsets[set + 1] - sets.offsets[set];
  } else {
    first = set * sets.set_stride;
    len = sets.fixed_len;
  }
  const bool fill = documents && p.fill_empty && k > 0;
  for (i64 e = tid; e < parts * dp; e += kThreads) dst[e] = 0.0f;
  for (i64 e = tid; e < parts; e += kThreads) {
    counts[e] = 0;
    best[e] = ~0ull;
  }
  bool bad = false;
  i64 kept_total = 0;
  __syncthreads();
  for (i64 c0 = 0; c0 < len; c0 += kChunk) {
    // A. sketches, sign strings and partitions of this chunk's tokens.
    const i64 t = c0 + tid;
    int part = -1;
    std::uint32_t msb = 0;
    i64 row = 0;
    if (t < len) {
      const bool kept = !sets.mask || load_as_f32(sets.mask, set * sets.mask_stride0 + t * sets.mask_stride1,
                                                  sets.mask_dtype) != 0.0f;
      if (kept) {
        row = first + t * sets.row_stride;
        for (int j = 0; j < k; ++j) {
          float acc = 0.0f;
          for (i64 i = 0; i < p.dim; ++i)
            acc = fmaf(load_as_f32(sets.tokens, row + i, sets.dtype), p.simhash[i * hyperplanes + r * k + j], acc);
          msb |= static_cast<std::uint32_t>(acc > 0.0f) << (k - 1 - j);
        }
        if (r == 0)  // the CPU refuses non-finite tokens before encoding
          for (i64 i = 0; i < p.dim; ++i) bad |= !isfinite(load_as_f32(sets.tokens, row + i, sets.dtype));
        part = static_cast<int>(gray_partition(msb));
      }
    }
    sign_s[tid] = msb;
    part_s[tid] = part;
    row_s[tid] = row;
    __syncthreads();
    const int in_chunk = len - c0 < kChunk ? static_cast<int>(len - c0) : kChunk;
    // B. partition sums, token by token in order, one projected coordinate per thread.
    for (i64 c = tid; c < dp; c += kThreads)
      for (int u = 0; u < in_chunk; ++u) {
        if (part_s[u] < 0) continue;
        float* cell = dst + part_s[u] * dp + c;
        *cell = __fadd_rn(*cell, project(p, sets.tokens, sets.dtype, row_s[u], r, c));
      }
    if (tid == 0)
      for (int u = 0; u < in_chunk; ++u)
        if (part_s[u] >= 0) {
          ++counts[part_s[u]];
          ++kept_total;
        }
    if (fill)
      for (i64 q = tid; q < parts; q += kThreads) {
        const auto pq = static_cast<std::uint32_t>(q);
        const std::uint32_t target = p.gray_decoded_target ? gray_partition(pq) : pq ^ (pq >> 1);
        unsigned long long b = best[q];
        for (int u = 0; u < in_chunk; ++u) {
          if (part_s[u] < 0) continue;
          const unsigned long long key = static_cast<unsigned long long>(__popc(sign_s[u] ^ target)) << 40 |
                                         static_cast<unsigned long long>(c0 + u);
          b = key < b ? key : b;
        }
        best[q] = b;
      }
    __syncthreads();
  }
  __shared__ i64 kept_s;
  if (tid == 0) kept_s = kept_total;
  __syncthreads();
  if (kept_s == 0) {
    if (documents && !empty_zeros && r == 0) {
      atomicOr(flags, kFlagEmptySet);
      atomicMin(first_empty, static_cast<unsigned long long>(set));
    }
  } else if (documents) {
    // C. averages and filled partitions.
    for (i64 e = tid; e < parts * dp; e += kThreads) {
      const i64 q = e / dp, c = e % dp;
      const int n = counts[q];
      if (n == 0) {
        if (fill) {
          const i64 t = static_cast<i64>(best[q] & ((1ull << 40) - 1));
          dst[e] = project(p, sets.tokens, sets.dtype, first + t * sets.row_stride, r, c);
        }
      } else if (n > 1) {
        dst[e] = __fdiv_rn(dst[e], static_cast<float>(n));
      }
    }
  }
  __syncthreads();
  for (i64 e = tid; e < parts * dp; e += kThreads) bad |= !isfinite(dst[e]);
  if (__syncthreads_or(bad) && tid == 0) atomicOr(flags, kFlagNonFinite);
}

__global__ void final_projection_kernel(FDEDevicePlan p, const float* inner, i64 inner_dim, i64 n_sets, float* out,
                                        int* flags) {
  const i64 e = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (e >= n_sets * p.final_dim) return;
  const i64 set = e / p.final_dim, o = e % p.final_dim;
  const float* x = inner + set * inner_dim;
  float acc = 0.0f;
  for (std::int32_t j = p.final_csr_start[o]; j < p.final_csr_start[o + 1]; ++j)
    acc = __fadd_rn(acc, __fmul_rn(p.final_csr_sign[j], x[p.final_csr_index[j]]));
  if (!isfinite(acc)) atomicOr(flags, kFlagNonFinite);
  out[e] = acc;
}

}  // namespace

CallReport fde_encode(const FDEDevicePlan& plan, const SetBatch& b, bool documents, bool empty_zeros, bool check_finite,
                      float* out, std::uintptr_t stream_handle) {
  const cudaStream_t stream = as_stream(stream_handle);
  CallReport report;
  report.path = "fde_cuda";
  const i64 n = b.n_sets;
  if (n == 0) return report;
  Carver c;
  const std::size_t o_flags = c.add(sizeof(int));
  const std::size_t o_first = c.add(sizeof(unsigned long long));
  const std::size_t o_off = c.add(b.ragged() ? (n + 1) * sizeof(i64) : 0);
  const std::size_t o_inner = c.add(plan.final_dim > 0 ? n * plan.inner_dim() * sizeof(float) : 0);
  Workspace ws(c.total, stream);
  unsigned char* base = ws.as<unsigned char>();
  int* flags = reinterpret_cast<int*>(base + o_flags);
  auto* first_empty = reinterpret_cast<unsigned long long*>(base + o_first);
  check(cudaMemsetAsync(flags, 0, sizeof(int), stream), "cudaMemsetAsync");
  check(cudaMemsetAsync(first_empty, 0xff, sizeof(unsigned long long), stream), "cudaMemsetAsync");
  FdeSets s{};
  s.tokens = b.tokens.data;
  s.dtype = b.tokens.dtype;
  if (b.ragged()) {
    s.row_stride = b.tokens.strides[0];
    i64* off = reinterpret_cast<i64*>(base + o_off);
    to_i64(b.offsets.data, b.offsets.dtype, n + 1, off, stream);
    s.offsets = off;
  } else {
    s.set_stride = b.tokens.strides[0];
    s.row_stride = b.tokens.strides[1];
    s.fixed_len = b.tokens.shape[1];
    if (b.mask.data) {
      s.mask = b.mask.data;
      s.mask_dtype = b.mask.dtype;
      s.mask_stride0 = b.mask.strides[0];
      s.mask_stride1 = b.mask.strides[1];
    }
  }
  const i64 parts = i64{1} << plan.simhash_bits;
  const std::size_t smem = static_cast<std::size_t>(parts) * (sizeof(unsigned long long) + sizeof(int));
  set_max_dynamic_smem(fde_kernel, smem);
  float* target = plan.final_dim > 0 ? reinterpret_cast<float*>(base + o_inner) : out;
  in_launches(n * plan.repetitions, max_blocks_per_launch(), [&](i64 first, i64 count) {
    SIMKERN_LAUNCH(fde_kernel, static_cast<unsigned>(count), kThreads, smem, stream)(
        plan, s, documents, empty_zeros, target, plan.inner_dim(), flags, first_empty, first);
    check_launch("fde_kernel");
  });
  if (plan.final_dim > 0) {
    const i64 total = n * plan.final_dim;
    SIMKERN_LAUNCH(final_projection_kernel, static_cast<unsigned>((total + 255) / 256), 256, 0, stream)(
        plan, target, plan.inner_dim(), n, out, flags);
    check_launch("final_projection_kernel");
  }
  if (check_finite || (documents && !empty_zeros)) {
    int host_flags = 0;
    unsigned long long host_first = 0;
    check(cudaMemcpyAsync(&host_flags, flags, sizeof(int), cudaMemcpyDeviceToHost, stream), "cudaMemcpyAsync");
    check(cudaMemcpyAsync(&host_first, first_empty, sizeof(host_first), cudaMemcpyDeviceToHost, stream),
          "cudaMemcpyAsync");
    check(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    report.flags = host_flags;
    report.first_empty = host_flags & kFlagEmptySet ? static_cast<i64>(host_first) : -1;
  }
  return report;
}

}  // namespace cuda
}  // namespace simkern
