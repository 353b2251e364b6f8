// The CPU emulator of tools/cuda_emu/emu.hpp: blocks run one after another; the threads of a block are fibers
// (ucontext) switched at barriers and warp collectives; the CUDA runtime calls the kernels' host code makes are
// implemented over host memory (one emulated device of compute capability 9.0, 227 KiB of opt-in shared memory).
#include <ucontext.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "emu.hpp"

namespace emu {
namespace {

constexpr std::size_t kStackBytes = 256 * 1024;

enum class Wait { kNone, kBlock, kWarp };

struct Fiber {
  ucontext_t ctx;
  std::vector<char> stack;
  ThreadState state;
  bool done = false;
  Wait wait = Wait::kNone;
};

struct WarpSync {
  unsigned generation = 0;
  std::uint32_t value[2][32] = {};
  int lane_xor[2][32] = {};
  bool ballot[2] = {};
  int arrived = 0;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t scheduler;
  Fiber* current = nullptr;
  unsigned generation = 0;
  int arrived = 0;
  int or_value[2] = {0, 0};
  std::vector<WarpSync> warps;
  std::vector<unsigned char> smem;
  Body body = nullptr;
  void* ctx = nullptr;
};

Block* g_block = nullptr;
ThreadState g_host_state{};

void fiber_main() {
  Block& b = *g_block;
  b.body(b.ctx);
  b.current->done = true;
  swapcontext(&b.current->ctx, &b.scheduler);
}

void yield() {
  Block& b = *g_block;
  swapcontext(&b.current->ctx, &b.scheduler);
}

int live_in_warp(const Block& b, int warp) {
  int live = 0;
  for (std::size_t i = warp * 32; i < b.fibers.size() && i < static_cast<std::size_t>(warp * 32 + 32); ++i)
    live += !b.fibers[i].done;
  return live;
}

}  // namespace

void trap(const char* what) {
  std::fprintf(stderr, "cuda_emu: %s\n", what);
  std::abort();
}

const ThreadState& cur() { return g_block ? g_block->current->state : g_host_state; }

unsigned char* dynamic_smem() { return g_block->smem.data(); }

void sync_block() { sync_block_or(0); }

int sync_block_or(int pred) {
  Block& b = *g_block;
  const unsigned gen = b.generation;
  b.or_value[gen & 1] |= pred != 0;
  ++b.arrived;
  b.current->wait = Wait::kBlock;
  while (b.generation == gen) yield();
  return b.or_value[gen & 1];
}

std::uint32_t warp_exchange_u32(std::uint32_t value, int lane_xor, bool ballot) {
  Block& b = *g_block;
  const int linear = b.current->state.linear, warp = linear / 32, lane = linear % 32;
  WarpSync& w = b.warps[warp];
  const unsigned gen = w.generation;
  w.value[gen & 1][lane] = value;
  w.lane_xor[gen & 1][lane] = lane_xor;
  w.ballot[gen & 1] = ballot;
  ++w.arrived;
  b.current->wait = Wait::kWarp;
  while (w.generation == gen) yield();
  if (ballot) {
    std::uint32_t bits = 0;
    for (int l = 0; l < 32; ++l) bits |= (w.value[gen & 1][l] ? 1u : 0u) << l;
    return bits;
  }
  return w.value[gen & 1][lane ^ lane_xor];
}

namespace {

float half_bits_to_float(std::uint16_t bits, bool bf16) {
  if (bf16) {
    const std::uint32_t u = static_cast<std::uint32_t>(bits) << 16;
    float f;
    std::memcpy(&f, &u, 4);
    return f;
  }
  __half_raw raw;
  raw.x = bits;
  return __half2float(__half(raw));
}

struct MmaSlots {
  std::uint32_t a[2][32][4], b[2][32][2];
};
std::vector<MmaSlots> g_mma;

}  // namespace

// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}: the fragment layouts of the PTX ISA (groupID = lane / 4,
// tig = lane % 4): A (16 x 16, row-major) a0: (g, 2 tig + {0,1}), a1: (g + 8, 2 tig + {0,1}), a2: (g, 2 tig + 8 +
// {0,1}), a3: (g + 8, 2 tig + 8 + {0,1}); B (16 x 8, k x n) b0: (k = 2 tig + {0,1}, n = g), b1: (k = 2 tig + 8 +
// {0,1}, n = g); C (16 x 8) c0, c1: (g, 2 tig + {0,1}), c2, c3: (g + 8, 2 tig + {0,1}); the lower half of each
// 32-bit register is the lower column (A) or row (B).
void mma_m16n8k16(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1, bool bf16) {
  Block& b = *g_block;
  const int linear = b.current->state.linear, warp = linear / 32, lane = linear % 32;
  // Deposit this lane's fragments in the slot of this warp exchange's generation, then meet the warp. Two
  // generations of slots suffice: no lane can write slot g again before every lane has passed exchange g + 1,
  // which each reaches only after reading slot g.
  MmaSlots& slots = g_mma[warp];
  const unsigned gen = b.warps[warp].generation;
  for (int i = 0; i < 4; ++i) slots.a[gen & 1][lane][i] = a[i];
  slots.b[gen & 1][lane][0] = b0;
  slots.b[gen & 1][lane][1] = b1;
  (void)warp_exchange_u32(0, 0, false);
  float A[16][16], B[16][8];
  for (int l = 0; l < 32; ++l) {
    const int g = l / 4, t = l % 4;
    const auto* ra = slots.a[gen & 1][l];
    const auto* rb = slots.b[gen & 1][l];
    for (int h = 0; h < 2; ++h) {
      A[g][2 * t + h] = half_bits_to_float(static_cast<std::uint16_t>(ra[0] >> (16 * h)), bf16);
      A[g + 8][2 * t + h] = half_bits_to_float(static_cast<std::uint16_t>(ra[1] >> (16 * h)), bf16);
      A[g][2 * t + 8 + h] = half_bits_to_float(static_cast<std::uint16_t>(ra[2] >> (16 * h)), bf16);
      A[g + 8][2 * t + 8 + h] = half_bits_to_float(static_cast<std::uint16_t>(ra[3] >> (16 * h)), bf16);
      B[2 * t + h][g] = half_bits_to_float(static_cast<std::uint16_t>(rb[0] >> (16 * h)), bf16);
      B[2 * t + 8 + h][g] = half_bits_to_float(static_cast<std::uint16_t>(rb[1] >> (16 * h)), bf16);
    }
  }
  const int g = lane / 4, t = lane % 4;
  for (int e = 0; e < 4; ++e) {
    const int row = g + 8 * (e >> 1), col = 2 * t + (e & 1);
    double acc = 0.0;
    for (int k = 0; k < 16; ++k) acc += static_cast<double>(A[row][k]) * B[k][col];
    c[e] = static_cast<float>(c[e] + acc);
  }
}

void run_grid(dim3 grid, dim3 block, std::size_t smem, Body body, void* ctx) {
  const int threads = static_cast<int>(block.x * block.y * block.z);
  if (threads < 1 || threads > 1024) trap("launch with an invalid block size");
  if (smem > 227 * 1024) trap("launch with more dynamic shared memory than the emulated device has");
  // The hardware's grid limits (a launch beyond them fails on a GPU; the host code must split it).
  if (grid.x < 1 || grid.y < 1 || grid.z < 1 || grid.y > 65535 || grid.z > 65535) trap("launch with an invalid grid");
  Block b;
  b.fibers.resize(threads);
  b.warps.resize((threads + 31) / 32);
  b.body = body;
  b.ctx = ctx;
  for (auto& f : b.fibers) f.stack.resize(kStackBytes);
  Block* outer = g_block;
  g_block = &b;
  for (unsigned bz = 0; bz < grid.z; ++bz)
    for (unsigned by = 0; by < grid.y; ++by)
      for (unsigned bx = 0; bx < grid.x; ++bx) {
        b.smem.assign(smem, 0xA5);  // uninitialised shared memory reads as garbage, not zeros
        b.generation = 0;
        b.arrived = 0;
        b.or_value[0] = b.or_value[1] = 0;
        for (auto& w : b.warps) w = WarpSync{};
        g_mma.assign(b.warps.size(), MmaSlots{});
        for (int i = 0; i < threads; ++i) {
          Fiber& f = b.fibers[i];
          f.done = false;
          f.wait = Wait::kNone;
          f.state.thread_idx = make_uint3(i % block.x, (i / block.x) % block.y, i / (block.x * block.y));
          f.state.block_idx = make_uint3(bx, by, bz);
          f.state.block_dim = block;
          f.state.grid_dim = grid;
          f.state.linear = i;
          getcontext(&f.ctx);
          f.ctx.uc_stack.ss_sp = f.stack.data();
          f.ctx.uc_stack.ss_size = f.stack.size();
          f.ctx.uc_link = nullptr;
          makecontext(&f.ctx, fiber_main, 0);
        }
        for (;;) {
          bool ran = false;
          for (auto& f : b.fibers)
            if (!f.done && f.wait == Wait::kNone) {
              b.current = &f;
              swapcontext(&b.scheduler, &f.ctx);
              ran = true;
            }
          int live = 0, at_block = 0;
          for (auto& f : b.fibers) {
            live += !f.done;
            at_block += !f.done && f.wait == Wait::kBlock;
          }
          if (live == 0) break;
          bool released = false;
          if (at_block == live) {
            if (b.arrived != live) trap("__syncthreads bookkeeping");
            b.arrived = 0;
            b.or_value[(b.generation + 1) & 1] = 0;
            ++b.generation;
            for (auto& f : b.fibers) f.wait = Wait::kNone;
            released = true;
          }
          for (std::size_t w = 0; w < b.warps.size(); ++w) {
            WarpSync& ws = b.warps[w];
            if (ws.arrived == 0) continue;
            if (ws.arrived == live_in_warp(b, static_cast<int>(w))) {
              if (ws.arrived != 32) trap("a warp collective with fewer than 32 live lanes");
              ws.arrived = 0;
              ++ws.generation;
              for (std::size_t i = w * 32; i < w * 32 + 32; ++i) b.fibers[i].wait = Wait::kNone;
              released = true;
            }
          }
          if (!ran && !released) trap("deadlock: threads wait at barriers that not every live thread reaches");
        }
      }
  g_block = outer;
}

}  // namespace emu

// --- the CUDA runtime API over host memory ------------------------------------------------------------------------
namespace {
cudaError_t g_last = cudaSuccess;
int g_device = 0;
struct FakeEvent {};
}  // namespace

extern "C" {

cudaError_t CUDARTAPI cudaGetLastError(void) {
  const cudaError_t e = g_last;
  g_last = cudaSuccess;
  return e;
}
const char* CUDARTAPI cudaGetErrorString(cudaError_t error) {
  return error == cudaSuccess ? "no error" : "emulated CUDA error";
}
const char* CUDARTAPI cudaGetErrorName(cudaError_t error) {
  return error == cudaSuccess ? "cudaSuccess" : "cudaErrorEmulated";
}
cudaError_t CUDARTAPI cudaMallocAsync(void** p, size_t size, cudaStream_t) {
  *p = std::malloc(size ? size : 1);
  if (*p) std::memset(*p, 0xA5, size);  // device memory is not zeroed: neither is this
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t CUDARTAPI cudaFreeAsync(void* p, cudaStream_t) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemsetAsync(void* p, int value, size_t count, cudaStream_t) {
  std::memset(p, value, count);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void* dst, const void* src, size_t count, enum cudaMemcpyKind, cudaStream_t) {
  std::memmove(dst, src, count);
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaGetDevice(int* device) {
  *device = g_device;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaSetDevice(int device) {
  if (device != 0) return cudaErrorInvalidDevice;
  g_device = device;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int* value, enum cudaDeviceAttr attr, int) {
  switch (attr) {
    case cudaDevAttrComputeCapabilityMajor:
      *value = std::getenv("SIMKERN_CUDA_EMU_SM75") ? 7 : 9;
      break;
    case cudaDevAttrComputeCapabilityMinor:
      *value = std::getenv("SIMKERN_CUDA_EMU_SM75") ? 5 : 0;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *value = 227 * 1024;
      break;
    default:
      *value = 0;
  }
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFuncSetAttribute(const void*, enum cudaFuncAttribute, int value) {
  return value <= 227 * 1024 ? cudaSuccess : cudaErrorInvalidValue;
}
cudaError_t CUDARTAPI cudaGetDeviceCount(int* count) {
  *count = 1;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDriverGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaGetDeviceProperties(struct cudaDeviceProp* prop, int) {
  std::memset(prop, 0, sizeof(*prop));
  std::snprintf(prop->name, sizeof(prop->name), "simkern CPU emulator (tools/cuda_emu)");
  prop->major = 9;
  prop->minor = 0;
  prop->totalGlobalMem = std::size_t{1} << 30;
  prop->multiProcessorCount = 1;
  prop->sharedMemPerBlockOptin = 227 * 1024;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaPointerGetAttributes(struct cudaPointerAttributes* attr, const void*) {
  std::memset(attr, 0, sizeof(*attr));
  attr->type = cudaMemoryTypeDevice;
  attr->device = 0;
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventCreateWithFlags(cudaEvent_t* event, unsigned int) {
  *event = reinterpret_cast<cudaEvent_t>(new FakeEvent());
  return cudaSuccess;
}
cudaError_t CUDARTAPI cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaEventDestroy(cudaEvent_t event) {
  delete reinterpret_cast<FakeEvent*>(event);
  return cudaSuccess;
}

}  // extern "C"
