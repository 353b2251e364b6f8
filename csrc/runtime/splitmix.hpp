// splitmix64 as a hash: the finaliser of Vigna's SplitMix64 applied to x + golden ratio. Portable (the same values on
// every platform and compiler); used for HNSW levels and the sketches' counter-based randomness. Baseline code only
// (drivers), like topk.hpp.
#pragma once

#include <cstdint>

namespace simkern {

inline std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

}  // namespace simkern
