// CPU feature detection (cpuid + xgetbv on x86-64) and the active ISA level.
#include <atomic>
#include <cctype>
#include <cstdlib>
#include <mutex>

#include "simkern/isa.hpp"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>
#define SIMKERN_X86 1
#endif

namespace simkern {
namespace {

#if SIMKERN_X86
unsigned long long read_xcr0() {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

CpuFeatures detect() {
  CpuFeatures f;
#if SIMKERN_X86
  f.x86_64 = true;
  unsigned a = 0, b = 0, c = 0, d = 0;
  unsigned max_leaf = __get_cpuid_max(0, nullptr);
  if (max_leaf >= 1) {
    __cpuid_count(1, 0, a, b, c, d);
    f.sse42 = c & (1u << 20);
    f.fma = c & (1u << 12);
    f.f16c = c & (1u << 29);
    const bool osxsave = c & (1u << 27);
    f.avx = c & (1u << 28);
    if (osxsave) {
      const unsigned long long xcr0 = read_xcr0();
      f.os_avx = (xcr0 & 0x6) == 0x6;       // SSE + AVX state
      f.os_avx512 = (xcr0 & 0xE6) == 0xE6;  // + opmask, ZMM_Hi256, Hi16_ZMM
    }
  }
  if (max_leaf >= 7) {
    __cpuid_count(7, 0, a, b, c, d);
    f.avx2 = b & (1u << 5);
    f.avx512f = b & (1u << 16);
    f.avx512dq = b & (1u << 17);
    f.avx512cd = b & (1u << 28);
    f.avx512bw = b & (1u << 30);
    f.avx512vl = b & (1u << 31);
    f.avx512_vbmi = c & (1u << 1);
    f.avx512_vnni = c & (1u << 11);
    f.avx512_fp16 = d & (1u << 23);
    const unsigned sub_leaves = a;
    if (sub_leaves >= 1) {
      __cpuid_count(7, 1, a, b, c, d);
      f.avx512_bf16 = a & (1u << 5);
    }
  }
  // Features the OS does not save state for are unusable.
  if (!f.os_avx) f.avx = f.avx2 = f.fma = f.f16c = false;
  if (!f.os_avx512) {
    f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx512cd = false;
    f.avx512_bf16 = f.avx512_vbmi = f.avx512_vnni = f.avx512_fp16 = false;
  }
#if defined(SIMKERN_TEST_EMULATE_AVX512)
  // tools/cross_check only: the AVX-512 files were compiled against a scalar emulation of their intrinsics.
  f.avx512f = f.avx512bw = f.avx512dq = f.avx512vl = f.avx512_bf16 = f.avx512_vbmi = f.os_avx512 = true;
#endif
#elif defined(__aarch64__)
  f.aarch64 = true;
  f.neon = true;  // Advanced SIMD is part of the armv8-a baseline
#endif
  return f;
}

Isa env_cap() {
  const char* env = std::getenv("SIMKERN_MAX_ISA");
  Isa cap = Isa::avx512;
  if (env && *env) {
    if (!parse_isa(env, &cap)) cap = Isa::avx512;  // unknown names are ignored; show_runtime() reports the env
  }
  return cap;
}

bool available(Isa isa) { return isa_compiled(isa) && isa_supported(isa); }

// The highest available level whose rank does not exceed the cap's.
Isa highest_within(Isa cap) {
  Isa chosen = Isa::scalar;
  for (int level = 0; level < kNumIsas; ++level) {
    const Isa isa = static_cast<Isa>(level);
    if (available(isa) && isa_rank(isa) <= isa_rank(cap) && isa_rank(isa) > isa_rank(chosen)) chosen = isa;
  }
  return chosen;
}

std::atomic<int> g_active{-1};
std::once_flag g_active_once;

void init_active() { g_active.store(static_cast<int>(highest_within(env_cap()))); }

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

int isa_rank(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return 0;
    case Isa::avx2:
    case Isa::neon:
      return 1;
    case Isa::avx512:
      return 2;
  }
  return 0;
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
    case Isa::avx512:
#if defined(SIMKERN_HAVE_X86_KERNELS)
      return true;
#else
      return false;
#endif
    case Isa::neon:
#if defined(SIMKERN_HAVE_NEON_KERNELS)
      return true;
#else
      return false;
#endif
  }
  return false;
}

bool isa_supported(Isa isa) {
  const CpuFeatures& f = cpu_features();
  switch (isa) {
    case Isa::scalar:
      return true;
    case Isa::avx2:
      return f.avx2 && f.fma && f.f16c;
    case Isa::avx512:
      return f.avx2 && f.fma && f.f16c && f.avx512f && f.avx512bw && f.avx512dq && f.avx512vl;
    case Isa::neon:
      return f.neon;
  }
  return false;
}

Isa best_isa() { return highest_within(Isa::avx512); }

Isa active_isa() {
  std::call_once(g_active_once, init_active);
  return static_cast<Isa>(g_active.load(std::memory_order_relaxed));
}

Isa set_max_isa(Isa cap) {
  std::call_once(g_active_once, init_active);
  const Isa level = highest_within(cap);
  g_active.store(static_cast<int>(level));
  return level;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::scalar:
      return "scalar";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::neon:
      return "neon";
  }
  return "unknown";
}

bool parse_isa(const std::string& name, Isa* out) {
  std::string lower;
  for (char ch : name) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(ch))));
  for (int level = 0; level < kNumIsas; ++level) {
    if (lower == isa_name(static_cast<Isa>(level))) {
      *out = static_cast<Isa>(level);
      return true;
    }
  }
  return false;
}

}  // namespace simkern
