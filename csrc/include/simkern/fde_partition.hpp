// The FDE partition arithmetic shared by the CPU driver (csrc/runtime/fde_driver.cpp) and the CUDA kernel
// (csrc/cuda/fde.cu), so that both encoders send a token to the same partition by construction.
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define SIMKERN_HOST_DEVICE __host__ __device__
#else
#define SIMKERN_HOST_DEVICE
#endif

namespace simkern {

// The partition of a sign string (hyperplane 0 = most significant bit): the Gray-code accumulation
// g = (g << 1) + (b ^ (g & 1)) over the bits leaves in each bit of g the XOR of the sign bits down to it, i.e. the
// prefix XOR from the top (the reference's SimHashPartitionIndex), computed here with shifts (k <= 30).
SIMKERN_HOST_DEVICE inline std::uint32_t gray_partition(std::uint32_t bits) {
  bits ^= bits >> 1;
  bits ^= bits >> 2;
  bits ^= bits >> 4;
  bits ^= bits >> 8;
  bits ^= bits >> 16;
  return bits;
}

}  // namespace simkern
