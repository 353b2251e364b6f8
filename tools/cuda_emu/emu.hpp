// A CPU emulator for simkern's CUDA kernels (csrc/cuda/*.cu built with g++ and -DSIMKERN_CUDA_EMU): the same
// sources run here, one thread block at a time, each CUDA thread a fiber (ucontext) of the block, so that the
// kernels' indexing, tiling, masking, barriers, warp votes / shuffles, mma.sync fragment layouts, top-k selection
// and host launch code are executed and tested on machines without a GPU (tools/cuda_emu/build.sh,
// tests/test_cuda.py). Device memory is host memory; launches run synchronously.
//
// What it does not model: real concurrency between blocks or warps (no data race can show up here), the memory
// model, timing, and the hardware's own rounding inside mma (fragments are multiplied exactly in double and added
// to the float32 accumulator). __syncthreads / warp collectives deadlock-check: a barrier that not every live thread
// of the block (or warp) reaches aborts with a message.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>

namespace emu {

struct ThreadState {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
  int linear;  // threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z)
};

const ThreadState& cur();
unsigned char* dynamic_smem();
void sync_block();
int sync_block_or(int pred);
std::uint32_t warp_exchange_u32(std::uint32_t value, int src_lane_xor, bool ballot);  // see emu.cpp
void mma_m16n8k16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1, bool bf16);
[[noreturn]] void trap(const char* what);

using Body = void (*)(void*);
void run_grid(dim3 grid, dim3 block, std::size_t smem, void (*body)(void*), void* ctx);

// kernel<<<grid, block, smem, stream>>>(args...) as Launch(grid, block, smem, stream, kernel)(args...).
template <class Kernel>
struct Launch {
  dim3 grid, block;
  std::size_t smem;
  Kernel kernel;
  Launch(dim3 g, dim3 b, std::size_t s, cudaStream_t, Kernel k) : grid(g), block(b), smem(s), kernel(k) {}
  template <class... Args>
  void operator()(Args... args) {
    auto call = [&]() { kernel(args...); };
    using Call = decltype(call);
    run_grid(grid, block, smem, [](void* p) { (*static_cast<Call*>(p))(); }, &call);
  }
};
template <class Kernel>
Launch(dim3, dim3, std::size_t, cudaStream_t, Kernel) -> Launch<Kernel>;

}  // namespace emu

// --- the device side of CUDA, for host compilation ------------------------------------------------------------------
#undef __shared__
#define __shared__ static
#undef __launch_bounds__
#define __launch_bounds__(...)
using std::isfinite;
using std::isnan;
#define threadIdx (::emu::cur().thread_idx)
#define blockIdx (::emu::cur().block_idx)
#define blockDim (::emu::cur().block_dim)
#define gridDim (::emu::cur().grid_dim)

inline void __syncthreads() { ::emu::sync_block(); }
inline int __syncthreads_or(int pred) { return ::emu::sync_block_or(pred); }
inline unsigned __ballot_sync(unsigned, int pred) { return ::emu::warp_exchange_u32(pred != 0, 0, true); }
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  std::uint32_t bits;
  std::memcpy(&bits, &v, 4);
  bits = ::emu::warp_exchange_u32(bits, lane_mask, false);
  float out;
  std::memcpy(&out, &bits, 4);
  return out;
}
inline int __popc(unsigned v) { return __builtin_popcount(v); }
inline std::uint32_t __float_as_uint(float v) {
  std::uint32_t u;
  std::memcpy(&u, &v, 4);
  return u;
}
inline float __uint_as_float(std::uint32_t u) {
  float v;
  std::memcpy(&v, &u, 4);
  return v;
}
// Each is one correctly rounded float operation (the emulator is compiled with -ffp-contract=off).
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline unsigned atomicAdd(unsigned* p, unsigned v) {
  const unsigned old = *p;
  *p = old + v;
  return old;
}
inline int atomicAdd(int* p, int v) {
  const int old = *p;
  *p = old + v;
  return old;
}
inline int atomicOr(int* p, int v) {
  const int old = *p;
  *p = old | v;
  return old;
}
inline unsigned long long atomicMin(unsigned long long* p, unsigned long long v) {
  const unsigned long long old = *p;
  *p = v < old ? v : old;
  return old;
}
[[noreturn]] inline void __trap() { ::emu::trap("__trap()"); }
