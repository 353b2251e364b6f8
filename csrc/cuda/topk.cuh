// Exact top-k selection in one thread block (csrc/cuda/*.cu): the k smallest 64-bit keys of n (common.cuh's
// make_key: score order, then id), sorted. A radix select finds the k-th key in 8 passes of 8 bits (a 256-bin
// shared histogram per pass), the keys below it are gathered, and a bitonic sort orders them. Exact and
// deterministic: the result does not depend on thread timing (keys are unique per row: ids are).
//
// Shared memory: hist (256 x u32), sorted (kpad x u64, kpad = the power of two >= k). n may be below k: the
// missing keys read as kInvalidKey (padding).
#pragma once

#include "common.cuh"

namespace simkern {
namespace cuda {

inline int pow2_at_least(i64 k) {
  int p = 1;
  while (p < k) p <<= 1;
  return p;
}

struct SelectShared {
  std::uint64_t prefix;
  int remaining;
  int count;
};

// get(i) -> the key of entry i (0 <= i < n). Every thread of the block calls this (it synchronises).
template <class GetKey>
__device__ void block_select_sorted(const GetKey& get, i64 n, int k, int kpad, std::uint64_t* sorted, unsigned* hist,
                                    SelectShared& s) {
  const int tid = threadIdx.x, threads = blockDim.x;
  const i64 span = n > k ? n : k;
  std::uint64_t prefix = 0, mask = 0;
  int remaining = k;
  for (int shift = 56; shift >= 0; shift -= 8) {
    for (int b = tid; b < 256; b += threads) hist[b] = 0;
    __syncthreads();
    for (i64 i = tid; i < span; i += threads) {
      const std::uint64_t key = i < n ? get(i) : kInvalidKey;
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1u);
    }
    __syncthreads();
    if (tid == 0) {
      unsigned cum = 0;
      int b = 0;
      for (; b < 255; ++b) {
        if (cum + hist[b] >= static_cast<unsigned>(remaining)) break;
        cum += hist[b];
      }
      s.prefix = prefix | (static_cast<std::uint64_t>(b) << shift);
      s.remaining = remaining - static_cast<int>(cum);
    }
    __syncthreads();
    prefix = s.prefix;
    remaining = s.remaining;
    mask |= std::uint64_t{255} << shift;
    __syncthreads();  // s is rewritten by the next pass
  }
  const std::uint64_t kth = prefix;  // the k-th smallest key (kInvalidKey when fewer than k valid keys)
  if (tid == 0) s.count = 0;
  __syncthreads();
  for (i64 i = tid; i < n; i += threads) {
    const std::uint64_t key = get(i);
    if (key < kth) sorted[atomicAdd(&s.count, 1)] = key;  // fewer than k of them
  }
  __syncthreads();
  for (int p = s.count + tid; p < kpad; p += threads) sorted[p] = p < k ? kth : kInvalidKey;
  __syncthreads();
  for (int size = 2; size <= kpad; size <<= 1)
    for (int stride = size >> 1; stride > 0; stride >>= 1) {
      for (int i = tid; i < kpad / 2; i += threads) {
        const int lo = 2 * i - (i & (stride - 1)), hi = lo + stride;
        const bool ascending = (lo & size) == 0;
        const std::uint64_t a = sorted[lo], b = sorted[hi];
        if ((a > b) == ascending) {
          sorted[lo] = b;
          sorted[hi] = a;
        }
      }
      __syncthreads();
    }
}

// Writes k sorted keys as (score, id): kInvalidKey -> (pad, -1).
__device__ __forceinline__ void write_keys(const std::uint64_t* sorted, int k, bool larger_is_better, float pad,
                                           float* scores, i64* ids) {
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    const std::uint64_t key = sorted[i];
    if (key == kInvalidKey) {
      scores[i] = pad;
      ids[i] = -1;
    } else {
      scores[i] = key_score(key, larger_is_better);
      ids[i] = static_cast<i64>(key & 0xffffffffu);
    }
  }
}

}  // namespace cuda
}  // namespace simkern
