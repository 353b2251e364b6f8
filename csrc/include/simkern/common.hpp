// simkern/common.hpp - small shared types for kernels, runtime and bindings.
//
// Kept free of inline functions with external linkage that ISA translation units could instantiate: an
// AVX-512 copy of a shared inline function may be the one the linker keeps (SIGILL on older CPUs).
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace simkern {

using i64 = std::int64_t;

// Element type of document token storage. Queries are always float32; accumulation is always float32.
enum class DocDType : int { f32 = 0, f16 = 1, bf16 = 2 };
constexpr int kNumDocDTypes = 3;

// Raised by drivers when a kernel saw a non-finite dot product (NaN/inf in the inputs, or float32
// overflow). The bindings turn it into a ValueError that names the offending argument and row.
class NonFiniteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace simkern
