// The host-side interface of the CUDA kernels (csrc/cuda/*.cu), used by the bindings (csrc/bindings/cuda_module.cpp).
// Plain C++: no CUDA header, so the binding compiles with the host compiler alone. Every launcher takes device
// pointers the caller checked (dtype, shape, device), enqueues its kernels on `stream` (a cudaStream_t as an integer,
// the caller's current stream) and returns without synchronising, except where check_finite asks for the flags.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace simkern {
namespace cuda {

using i64 = std::int64_t;

// A CUDA runtime error (no device, no driver, out of memory, a failed launch): RuntimeError in Python.
struct CudaError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Element types of DeviceArray (the Python layer maps DLPack / __cuda_array_interface__ types onto these).
enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2, kU8 = 3, kI8 = 4, kI32 = 5, kI64 = 6, kBool = 7 };

// A strided array in device memory: strides in elements, up to 4 dimensions.
struct DeviceArray {
  const void* data = nullptr;
  int dtype = kF32;
  int ndim = 0;
  i64 shape[4] = {0, 0, 0, 0};
  i64 strides[4] = {0, 0, 0, 0};
};

// A batch of multi-vector sets, in one of two layouts:
// - ragged: tokens (T, dim) rows (row stride tokens.strides[0], unit column stride) and offsets (n + 1) int32 or
//   int64 on the device, set i = rows offsets[i] .. offsets[i + 1] - 1 (cu_seqlens);
// - padded: tokens (n, L, dim) (unit column stride) with an optional mask (n, L) of any dtype: nonzero = a token.
// max_len: the longest set (ragged: the binding reads the offsets; padded: L).
struct SetBatch {
  DeviceArray tokens;
  DeviceArray offsets;  // ragged: data != nullptr
  DeviceArray mask;     // padded, optional: data != nullptr
  i64 n_sets = 0;
  i64 max_len = 0;
  bool ragged() const { return offsets.data != nullptr; }
};

// How masks count (padded inputs): kRemove drops masked tokens (simkern's maxsim: an empty doc scores -inf);
// kMultiply multiplies the similarities by the mask values (PyLate's formula: a masked doc token takes part in the
// max with similarity 0).
enum class MaskMode : int { kRemove = 0, kMultiply = 1 };

// Which MaxSim kernel runs: kAuto picks the tensor-core kernel for float16 / bfloat16 docs on sm_80+ (dim <= 256),
// the SIMT float32 kernel otherwise; the others force one (tests compare them).
enum class MaxsimPath : int { kAuto = 0, kTensorCore = 1, kSimt = 2 };

struct MaxsimArgs {
  SetBatch queries, docs;
  MaskMode mask_mode = MaskMode::kRemove;
  DeviceArray candidates;  // optional (n_queries, C) int32 / int64 doc ids, -1 = padding
  MaxsimPath path = MaxsimPath::kAuto;
  bool check_finite = true;
};

// What a call found when check_finite (the launcher then synchronises the stream): kFlag* bits of common.cuh and,
// for an empty set, the lowest such index.
struct CallReport {
  int flags = 0;
  i64 first_empty = -1;
  const char* path = "";
};

// scores: float32 (n_queries, n_docs), or (n_queries, C) with candidates (-inf for padding ids).
CallReport maxsim_scores(const MaxsimArgs& args, float* scores, std::uintptr_t stream);
// The k best docs per query, best first, ties to the smaller doc id; padding: id -1, score -inf. k <= kMaxTopK.
CallReport maxsim_topk(const MaxsimArgs& args, i64 k, float* scores, i64* ids, std::uintptr_t stream);

constexpr i64 kMaxTopK = 2048;

// PQ distance tables: queries (n, dim) float32 rows, codebooks (m, ksub, dsub) float32 contiguous; out float32
// (n, m, ksub): squared L2 (l2) or inner products, acc = acc + d * d over the subvector in order (the CPU scalar
// arithmetic, bit for bit).
void pq_tables(const DeviceArray& queries, const DeviceArray& codebooks, bool l2, float* out, std::uintptr_t stream);
// Float ADC over 8-bit codes (n, m) uint8 with tables (n_queries, m, ksub) float32, fused with the top-k:
// distances summed in subspace order (the CPU adc_sum), the k smallest (l2) or largest (ip), ties to the smaller
// id; padding id -1, score +inf (l2) / -inf (ip).
void pq_adc_topk(const DeviceArray& tables, const DeviceArray& codes, i64 k, bool larger_is_better, float* scores,
                 i64* ids, std::uintptr_t stream);
// Every distance (n_queries, n), for tests and small batches.
void pq_adc(const DeviceArray& tables, const DeviceArray& codes, float* out, std::uintptr_t stream);

// An FDE encoder's matrices on the device (uploaded once per encoder by the binding), in the layouts of the CPU
// plan (simkern._core._FDEPlan.matrices()).
struct FDEDevicePlan {
  i64 dim = 0, repetitions = 0, simhash_bits = 0, projection_dim = 0, final_dim = 0;
  bool ams = false, fill_empty = true, gray_decoded_target = false;
  const float* simhash = nullptr;                 // (dim, repetitions * k)
  const std::int32_t* ams_csr_start = nullptr;    // (repetitions, projection_dim + 1): the inputs of each output
  const std::int32_t* ams_csr_index = nullptr;    // (repetitions, dim) input coordinates, ascending per output
  const float* ams_csr_sign = nullptr;            // (repetitions, dim)
  const std::int32_t* final_csr_start = nullptr;  // (final_dim + 1)
  const std::int32_t* final_csr_index = nullptr;  // (inner_dim) inner coordinates, ascending per output
  const float* final_csr_sign = nullptr;          // (inner_dim)
  i64 inner_dim() const { return repetitions * (i64{1} << simhash_bits) * projection_dim; }
  i64 output_dim() const { return final_dim > 0 ? final_dim : inner_dim(); }
};

constexpr int kFdeMaxSimhashBits = 12;  // 4096 partitions: the per-partition state lives in shared memory

// out: float32 (n_sets, output_dim). documents: averages and empty-partition filling; queries: sums. An empty
// document is an error (kFlagEmptySet) unless empty_zeros. Bit-identical to the CPU scalar path (same operation
// order; explicit fma / non-contracted arithmetic).
CallReport fde_encode(const FDEDevicePlan& plan, const SetBatch& sets, bool documents, bool empty_zeros,
                      bool check_finite, float* out, std::uintptr_t stream);

// Device and build facts for simkern.cuda.device_info().
struct DeviceFacts {
  int count = 0;
  int error = 0;  // the cudaError_t of cudaGetDeviceCount (0: none)
  std::string error_string;
  int driver_version = 0, runtime_version = 0;
};
DeviceFacts device_facts();

}  // namespace cuda
}  // namespace simkern
