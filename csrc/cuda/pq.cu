// Product quantization on the GPU: distance tables and the float ADC scan over 8-bit codes with a fused exact top-k.
//
// Arithmetic is the CPU scalar path's, bit for bit (csrc/kernels/scalar/pq.cpp, csrc/runtime/pq_scan.cpp):
// tables acc = acc + d * d (l2) or acc + x * c (ip) over the subvector in order, ADC sums t[s][code[s]] in subspace
// order s = 0 .. m-1, with explicit round-to-nearest intrinsics (__fadd_rn / __fmul_rn) so that nvcc never fuses
// them into FMAs. So distances, and the top-k with its ties to the smaller id, equal simkern.PQIndex's float ADC.
//
// Scan: one block per (query, chunk of 4096 codes): the query's table (m x ksub float32) in shared memory when it
// fits, one thread per code, the chunk's keys (common.cuh make_key) in shared memory, their top-k selected in the
// block (topk.cuh) and written out; a second kernel selects the top-k of each query's chunk winners.
#include "common.cuh"
#include "topk.cuh"

namespace simkern {
namespace cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kChunk = 4096;  // codes per block of the scan (>= kMaxTopK)

__global__ void tables_kernel(DeviceArray queries, const float* codebooks, i64 m, i64 ksub, i64 dsub, bool l2,
                              float* out, i64 q_base) {
  const i64 q = q_base + blockIdx.y;
  const i64 e = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;  // s * ksub + j
  if (e >= m * ksub) return;
  const i64 s = e / ksub;
  const float* c = codebooks + e * dsub;
  const float* x = static_cast<const float*>(queries.data) + q * queries.strides[0] + s * dsub;
  float acc = 0.0f;
  for (i64 k = 0; k < dsub; ++k) {
    if (l2) {
      const float d = __fsub_rn(x[k], c[k]);
      acc = __fadd_rn(acc, __fmul_rn(d, d));
    } else {
      acc = __fadd_rn(acc, __fmul_rn(x[k], c[k]));
    }
  }
  out[q * m * ksub + e] = acc;
}

__device__ __forceinline__ float adc_sum(const float* t, const std::uint8_t* code, i64 m, i64 ksub) {
  float acc = 0.0f;
  for (i64 s = 0; s < m; ++s) acc = __fadd_rn(acc, t[s * ksub + code[s]]);
  return acc;
}

__global__ void adc_kernel(const float* tables, const std::uint8_t* codes, i64 code_stride, i64 n, i64 m, i64 ksub,
                           float* out, i64 q_base) {
  const i64 q = q_base + blockIdx.y;
  const i64 i = blockIdx.x * static_cast<i64>(blockDim.x) + threadIdx.x;
  if (i < n) out[q * n + i] = adc_sum(tables + q * m * ksub, codes + i * code_stride, m, ksub);
}

__global__ void __launch_bounds__(kThreads)
    scan_chunk_kernel(const float* tables, const std::uint8_t* codes, i64 code_stride, i64 n, i64 m, i64 ksub,
                      bool table_in_smem, bool larger_is_better, int k, int kpad, std::uint64_t* winners, i64 q_base) {
  SIMKERN_DYNAMIC_SMEM(smem_raw);
  std::uint64_t* keys = reinterpret_cast<std::uint64_t*>(smem_raw);  // [kChunk]
  std::uint64_t* sorted = keys + kChunk;                             // [kpad]
  unsigned* hist = reinterpret_cast<unsigned*>(sorted + kpad);       // [256]
  float* table_s = reinterpret_cast<float*>(hist + 256);             // [m * ksub] when table_in_smem
  __shared__ SelectShared sel;
  const i64 q = q_base + blockIdx.y, chunk = blockIdx.x, n_chunks = gridDim.x;
  const float* tq = tables + q * m * ksub;
  if (table_in_smem) {
    for (i64 e = threadIdx.x; e < m * ksub; e += kThreads) table_s[e] = tq[e];
    __syncthreads();
    tq = table_s;
  }
  const i64 c0 = chunk * kChunk;
  const i64 count = n - c0 < kChunk ? n - c0 : kChunk;
  for (i64 i = threadIdx.x; i < count; i += kThreads) {
    const float d = adc_sum(tq, codes + (c0 + i) * code_stride, m, ksub);
    keys[i] = make_key(d, static_cast<std::uint32_t>(c0 + i), larger_is_better);
  }
  __syncthreads();
  const auto get = [&](i64 i) { return keys[i]; };
  block_select_sorted(get, count, k, kpad, sorted, hist, sel);
  std::uint64_t* dst = winners + (q * n_chunks + chunk) * k;
  for (int i = threadIdx.x; i < k; i += kThreads) dst[i] = sorted[i];
}

__global__ void __launch_bounds__(kThreads) merge_kernel(const std::uint64_t* winners, i64 per_query, int k, int kpad,
                                                         bool larger_is_better, float pad, float* scores, i64* ids) {
  SIMKERN_DYNAMIC_SMEM(smem_raw);
  std::uint64_t* sorted = reinterpret_cast<std::uint64_t*>(smem_raw);
  unsigned* hist = reinterpret_cast<unsigned*>(sorted + kpad);
  __shared__ SelectShared sel;
  const i64 q = blockIdx.x;
  const std::uint64_t* row = winners + q * per_query;
  const auto get = [&](i64 i) { return row[i]; };
  block_select_sorted(get, per_query, k, kpad, sorted, hist, sel);
  write_keys(sorted, k, larger_is_better, pad, scores + q * k, ids + q * k);
}

int max_optin_smem() {
  int dev = 0, v = 0;
  check(cudaGetDevice(&dev), "cudaGetDevice");
  check(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), "cudaDeviceGetAttribute");
  return v;
}

}  // namespace

void pq_tables(const DeviceArray& queries, const DeviceArray& codebooks, bool l2, float* out, std::uintptr_t s) {
  const i64 n = queries.shape[0], m = codebooks.shape[0], ksub = codebooks.shape[1], dsub = codebooks.shape[2];
  if (n == 0) return;
  in_launches(n, max_grid_y(), [&](i64 first, i64 count) {  // queries along gridDim.y
    const dim3 grid(static_cast<unsigned>((m * ksub + kThreads - 1) / kThreads), static_cast<unsigned>(count));
    SIMKERN_LAUNCH(tables_kernel, grid, kThreads, 0, as_stream(s))(queries, static_cast<const float*>(codebooks.data),
                                                                   m, ksub, dsub, l2, out, first);
    check_launch("tables_kernel");
  });
}

void pq_adc(const DeviceArray& tables, const DeviceArray& codes, float* out, std::uintptr_t s) {
  const i64 nq = tables.shape[0], m = tables.shape[1], ksub = tables.shape[2], n = codes.shape[0];
  if (nq == 0 || n == 0) return;
  in_launches(nq, max_grid_y(), [&](i64 first, i64 count) {
    const dim3 grid(static_cast<unsigned>((n + kThreads - 1) / kThreads), static_cast<unsigned>(count));
    SIMKERN_LAUNCH(adc_kernel, grid, kThreads, 0, as_stream(s))(static_cast<const float*>(tables.data),
                                                                static_cast<const std::uint8_t*>(codes.data),
                                                                codes.strides[0], n, m, ksub, out, first);
    check_launch("adc_kernel");
  });
}

void pq_adc_topk(const DeviceArray& tables, const DeviceArray& codes, i64 k, bool larger_is_better, float* scores,
                 i64* ids, std::uintptr_t s) {
  const cudaStream_t stream = as_stream(s);
  const i64 nq = tables.shape[0], m = tables.shape[1], ksub = tables.shape[2], n = codes.shape[0];
  if (nq == 0) return;
  const int kpad = pow2_at_least(k);
  const float pad = larger_is_better ? -INFINITY : INFINITY;
  const i64 n_chunks = n > 0 ? (n + kChunk - 1) / kChunk : 1;
  const std::size_t select_bytes = kpad * sizeof(std::uint64_t) + 256 * sizeof(unsigned);
  const std::size_t scan_base = kChunk * sizeof(std::uint64_t) + select_bytes;
  const std::size_t table_bytes = static_cast<std::size_t>(m * ksub) * sizeof(float);
  const bool table_in_smem = scan_base + table_bytes <= static_cast<std::size_t>(max_optin_smem());
  const std::size_t scan_smem = scan_base + (table_in_smem ? table_bytes : 0);
  Workspace winners(static_cast<std::size_t>(nq * n_chunks * k) * sizeof(std::uint64_t), stream);
  if (n > 0) {
    set_max_dynamic_smem(scan_chunk_kernel, scan_smem);
    in_launches(nq, max_grid_y(), [&](i64 first, i64 count) {
      SIMKERN_LAUNCH(scan_chunk_kernel, dim3(static_cast<unsigned>(n_chunks), static_cast<unsigned>(count)), kThreads,
                     scan_smem, stream)(
          static_cast<const float*>(tables.data), static_cast<const std::uint8_t*>(codes.data), codes.strides[0], n, m,
          ksub, table_in_smem, larger_is_better, static_cast<int>(k), kpad, winners.as<std::uint64_t>(), first);
      check_launch("scan_chunk_kernel");
    });
  } else {
    check(cudaMemsetAsync(winners.as<void>(), 0xff, static_cast<std::size_t>(nq * k) * sizeof(std::uint64_t), stream),
          "cudaMemsetAsync");
  }
  set_max_dynamic_smem(merge_kernel, select_bytes);
  SIMKERN_LAUNCH(merge_kernel, static_cast<unsigned>(nq), kThreads, select_bytes, stream)(
      winners.as<std::uint64_t>(), n_chunks * k, static_cast<int>(k), kpad, larger_is_better, pad, scores, ids);
  check_launch("merge_kernel");
}

}  // namespace cuda
}  // namespace simkern
