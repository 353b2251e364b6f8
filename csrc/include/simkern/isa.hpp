// simkern/isa.hpp - CPU feature detection and the active instruction-set level.
//
// Levels: scalar; on x86-64 avx2 (AVX2 + FMA + F16C) and avx512 (F + BW + DQ + VL, the Skylake-X / Zen 4
// baseline); on aarch64 neon (Advanced SIMD, part of armv8-a). Caps compare ranks, which hold across
// architectures: scalar 0 < avx2 = neon 1 < avx512 2. Sub-features (bf16, vbmi, vnni) are not levels: kernels of
// the avx512 level pick a variant when the CPU has them (see dispatch.cpp).
// The active level is the highest available level whose rank is <= the cap (SIMKERN_MAX_ISA, or set_max_isa());
// it is an atomic so tests can lower it while other threads read it.
#pragma once

#include <string>

namespace simkern {

enum class Isa : int { scalar = 0, avx2 = 1, avx512 = 2, neon = 3 };
constexpr int kNumIsas = 4;
int isa_rank(Isa isa);  // scalar 0, avx2 / neon 1, avx512 2

struct CpuFeatures {
  bool x86_64 = false, aarch64 = false;
  bool sse42 = false, avx = false, avx2 = false, fma = false, f16c = false;
  bool avx512f = false, avx512bw = false, avx512dq = false, avx512vl = false, avx512cd = false;
  bool avx512_bf16 = false, avx512_vbmi = false, avx512_vnni = false, avx512_fp16 = false;
  bool os_avx = false, os_avx512 = false;  // the OS saves the ymm / zmm+k state (XCR0)
  bool neon = false;
};

const CpuFeatures& cpu_features();  // detected once, thread-safe
bool isa_supported(Isa isa);        // CPU and OS both support the level
bool isa_compiled(Isa isa);         // this build contains kernels for the level
Isa best_isa();                     // highest level that is compiled and supported
Isa active_isa();                   // highest available level within the cap
// Caps the active level (the highest available level of rank <= rank(cap)); returns the level now active.
Isa set_max_isa(Isa cap);
const char* isa_name(Isa isa);
bool parse_isa(const std::string& name, Isa* out);  // "scalar" | "avx2" | "avx512" | "neon" (any case)

}  // namespace simkern
