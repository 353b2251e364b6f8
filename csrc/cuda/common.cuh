// Shared pieces of the CUDA kernels (csrc/cuda/*.cu): error checks, stream-ordered workspaces, the order-preserving
// float keys of the top-k selection, and small device helpers. Compiled by nvcc only (SIMKERN_ENABLE_CUDA).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

// Kernel launches and dynamic shared memory go through these two macros, so that the same sources also build for
// the CPU emulator of tools/cuda_emu (g++, threads as fibers, SIMKERN_CUDA_EMU), which runs tests/test_cuda.py's
// GPU tests on machines without a GPU.
#if defined(SIMKERN_CUDA_EMU)
#include "emu.hpp"
#define SIMKERN_LAUNCH(kernel, grid, block, smem, stream) ::emu::Launch(grid, block, smem, stream, kernel)
#define SIMKERN_DYNAMIC_SMEM(name) unsigned char* name = ::emu::dynamic_smem()
#else
#define SIMKERN_LAUNCH(kernel, grid, block, smem, stream) kernel<<<grid, block, smem, stream>>>
#define SIMKERN_DYNAMIC_SMEM(name) extern __shared__ __align__(16) unsigned char name[]
#endif

#include <cstdint>
#include <cstdlib>
#include <string>

#include "api.hpp"

namespace simkern {
namespace cuda {

// Throws CudaError ("simkern.cuda: <what>: <CUDA's message>") on a failed runtime call, after clearing the
// (non-sticky) error so that the next call starts clean.
inline void check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    throw CudaError(std::string("simkern.cuda: ") + what + ": " + cudaGetErrorString(e));
  }
}
inline void check_launch(const char* kernel) { check(cudaGetLastError(), kernel); }

inline cudaStream_t as_stream(std::uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

// Device memory for one call, allocated and freed in stream order on the caller's stream (the device's default
// memory pool: no device-wide synchronisation, reused across calls).
class Workspace {
 public:
  Workspace(std::size_t bytes, cudaStream_t stream) : stream_(stream) {
    if (bytes) check(cudaMallocAsync(&ptr_, bytes, stream), "cudaMallocAsync (workspace)");
  }
  ~Workspace() {
    if (ptr_) (void)cudaFreeAsync(ptr_, stream_);
  }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  template <class T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }

 private:
  void* ptr_ = nullptr;
  cudaStream_t stream_;
};

// Lets `kernel` use `bytes` of dynamic shared memory (above the default 48 KiB needs this opt-in).
template <class Kernel>
void set_max_dynamic_smem(Kernel kernel, std::size_t bytes) {
  check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                             static_cast<int>(bytes)),
        "cudaFuncSetAttribute");
}

// Grid limits: gridDim.x <= 2**31 - 1 blocks, gridDim.y <= 65535. Launches over more items are split into
// several, each kernel taking the index of its first item (block_base / q_base). SIMKERN_CUDA_MAX_BLOCKS and
// SIMKERN_CUDA_MAX_GRID_Y lower the limits, so that tests exercise the split on small inputs.
inline i64 env_limit(const char* name, i64 hardware) {
  const char* v = std::getenv(name);
  if (!v || !*v) return hardware;
  const long long x = std::strtoll(v, nullptr, 10);
  return x >= 1 && x < hardware ? static_cast<i64>(x) : hardware;
}
inline i64 max_blocks_per_launch() { return env_limit("SIMKERN_CUDA_MAX_BLOCKS", (i64{1} << 31) - 1); }
inline i64 max_grid_y() { return env_limit("SIMKERN_CUDA_MAX_GRID_Y", 65535); }

// Calls launch(first, count) for consecutive ranges of `total` items, each count <= limit.
template <class Launch>
void in_launches(i64 total, i64 limit, const Launch& launch) {
  for (i64 first = 0; first < total; first += limit) launch(first, total - first < limit ? total - first : limit);
}

inline std::size_t align_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

// Carves several arrays out of one workspace (256-byte aligned each).
struct Carver {
  std::size_t total = 0;
  std::size_t add(std::size_t bytes) {
    const std::size_t at = total;
    total = align_up(total + bytes, 256);
    return at;
  }
};

// Copies count int32 or int64 values (dtype kI32 / kI64) into int64 dst, in stream order (maxsim.cu).
void to_i64(const void* src, int dtype, i64 count, i64* dst, cudaStream_t stream);

// Flags a kernel raises for the host to turn into a ValueError after the call (check_finite=True).
enum : int { kFlagNonFinite = 1, kFlagEmptySet = 2 };

// A float as a uint32 whose unsigned order is the float order (-inf < ... < -0 < +0 < ... < +inf; NaN above).
__device__ __forceinline__ std::uint32_t ordered_bits(float v) {
  const std::uint32_t u = __float_as_uint(v);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float from_ordered_bits(std::uint32_t o) {
  return __uint_as_float((o & 0x80000000u) ? (o & 0x7fffffffu) : ~o);
}

// Selection key: smaller is better. (score order, then the id), so ties go to the smaller id; kInvalidKey sorts
// last and marks padding / skipped entries.
constexpr std::uint64_t kInvalidKey = ~std::uint64_t{0};
__device__ __forceinline__ std::uint64_t make_key(float score, std::uint32_t id, bool larger_is_better) {
  const std::uint32_t o = ordered_bits(score);
  return static_cast<std::uint64_t>(larger_is_better ? ~o : o) << 32 | id;
}
__device__ __forceinline__ float key_score(std::uint64_t key, bool larger_is_better) {
  const auto o = static_cast<std::uint32_t>(key >> 32);
  return from_ordered_bits(larger_is_better ? ~o : o);
}

template <class T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// The inverse: float to T, rounded to nearest.
template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ float from_f32<float>(float v) {
  return v;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// One element of a tensor of any supported dtype, widened to float (exact for every dtype but int64 beyond 2**24).
__device__ __forceinline__ float load_as_f32(const void* base, std::int64_t index, int dtype) {
  switch (dtype) {
    case kF32:
      return static_cast<const float*>(base)[index];
    case kF16:
      return __half2float(static_cast<const __half*>(base)[index]);
    case kBF16:
      return __bfloat162float(static_cast<const __nv_bfloat16*>(base)[index]);
    case kU8:
    case kBool:
      return static_cast<float>(static_cast<const std::uint8_t*>(base)[index]);
    case kI8:
      return static_cast<float>(static_cast<const std::int8_t*>(base)[index]);
    case kI32:
      return static_cast<float>(static_cast<const std::int32_t*>(base)[index]);
    case kI64:
      return static_cast<float>(static_cast<const std::int64_t*>(base)[index]);
    default:
      return 0.0f;
  }
}

}  // namespace cuda
}  // namespace simkern
