// Exact widening of IEEE binary16 and bfloat16 bit patterns to float32, written in portable C++.
// Header-only with internal linkage (static) so every ISA TU gets its own copy (see common.hpp).
#pragma once

#include <cstdint>
#include <cstring>

namespace simkern {
namespace {

static inline float bits_to_float(std::uint32_t bits) {
  float value;
  std::memcpy(&value, &bits, sizeof value);
  return value;
}

static inline std::uint32_t float_to_bits(float value) {
  std::uint32_t bits;
  std::memcpy(&bits, &value, sizeof bits);
  return bits;
}

// bfloat16 is the top half of a float32.
static inline float bf16_to_float(std::uint16_t h) { return bits_to_float(static_cast<std::uint32_t>(h) << 16); }

// Round a float32 to bfloat16, to nearest even; NaN stays NaN (quiet).
static inline std::uint16_t float_to_bf16_rne(float value) {
  const std::uint32_t bits = float_to_bits(value);
  if ((bits & 0x7f800000u) == 0x7f800000u && (bits & 0x007fffffu)) return static_cast<std::uint16_t>((bits >> 16) | 0x40);
  const std::uint32_t rounding = 0x7fffu + ((bits >> 16) & 1u);
  return static_cast<std::uint16_t>((bits + rounding) >> 16);
}

// binary16: 1 sign, 5 exponent (bias 15), 10 mantissa bits. Handles zeros, subnormals, inf and NaN.
static inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu;
  std::uint32_t mantissa = h & 0x3ffu;
  if (exponent == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));  // inf / NaN
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);  // signed zero
  // Subnormal: value = mantissa * 2^-24; normalise.
  int shift = 0;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    ++shift;
  }
  mantissa &= 0x3ffu;
  return bits_to_float(sign | (static_cast<std::uint32_t>(113 - shift) << 23) | (mantissa << 13));
}

}  // namespace
}  // namespace simkern
