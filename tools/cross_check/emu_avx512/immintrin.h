// Test shim, not the system header: a scalar emulation of the few AVX-512 / AVX512-BF16 intrinsics that
// csrc/kernels/x86_avx512*/ files use, so that those files can be compiled and checked on a CPU without
// AVX-512 (tools/cross_check/run.sh --emulate-avx512 puts this folder first on their include path only).
// Each function follows the pseudo-code of Intel's Intrinsics Guide lane by lane; fmadd is fused (std::fma),
// max returns the second operand unless the first is greater (MAXPS NaN rule), vdpbf16ps adds the odd then the
// even product with float rounding after each step.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#define _MM_HINT_T0 3
#define _MM_HINT_T1 2
#define _CMP_UNORD_Q 3
#define _CMP_LT_OQ 17

struct __m512 { float v[16]; };
struct __m512i { std::uint8_t b[64]; };
struct __m256i { std::uint8_t b[32]; };
struct __m512bh {
  std::uint16_t h[32];
  __m512bh() = default;
  __m512bh(const __m512i& x) { std::memcpy(h, x.b, 64); }  // the (__m512bh) casts in the kernels
};
typedef std::uint16_t __mmask16;
typedef std::uint32_t __mmask32;
typedef std::uint64_t __mmask64;

static inline void _mm_prefetch(const char*, int) {}
static inline __m512 _mm512_setzero_ps() { __m512 r; for (float& x : r.v) x = 0.0f; return r; }
static inline __m512 _mm512_set1_ps(float a) { __m512 r; for (float& x : r.v) x = a; return r; }
static inline __m512 _mm512_loadu_ps(const float* p) { __m512 r; std::memcpy(r.v, p, 64); return r; }
static inline void _mm512_storeu_ps(float* p, __m512 a) { std::memcpy(p, a.v, 64); }
static inline __m512 _mm512_fmadd_ps(__m512 a, __m512 b, __m512 c) {
  __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]); return r;
}
static inline __m512 _mm512_add_ps(__m512 a, __m512 b) { __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = a.v[i] + b.v[i]; return r; }
static inline __m512 _mm512_sub_ps(__m512 a, __m512 b) { __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = a.v[i] - b.v[i]; return r; }
static inline __m512 _mm512_mul_ps(__m512 a, __m512 b) { __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = a.v[i] * b.v[i]; return r; }
static inline __m512 _mm512_max_ps(__m512 a, __m512 b) {
  __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = a.v[i] > b.v[i] ? a.v[i] : b.v[i]; return r;
}
static inline __mmask16 _mm512_cmp_ps_mask(__m512 a, __m512 b, int pred) {  // _CMP_UNORD_Q or _CMP_LT_OQ
  __mmask16 m = 0;
  for (int i = 0; i < 16; ++i) {
    const bool unordered = a.v[i] != a.v[i] || b.v[i] != b.v[i];
    if (pred == _CMP_UNORD_Q ? unordered : (!unordered && a.v[i] < b.v[i])) m |= static_cast<__mmask16>(1u << i);
  }
  return m;
}
static inline __m256i _mm256_loadu_si256(const __m256i* p) { __m256i r; std::memcpy(r.b, p, 32); return r; }
static inline __m512i _mm512_loadu_si512(const void* p) { __m512i r; std::memcpy(r.b, p, 64); return r; }
static inline __m512i _mm512_set1_epi32(int a) { __m512i r; for (int i = 0; i < 16; ++i) std::memcpy(r.b + 4 * i, &a, 4); return r; }
static inline __m512i _mm512_cvtepu16_epi32(__m256i a) {
  __m512i r;
  for (int i = 0; i < 16; ++i) {
    std::uint16_t h; std::memcpy(&h, a.b + 2 * i, 2);
    const std::uint32_t w = h; std::memcpy(r.b + 4 * i, &w, 4);
  }
  return r;
}
static inline __m512i _mm512_slli_epi32(__m512i a, unsigned int n) {
  __m512i r;
  for (int i = 0; i < 16; ++i) {
    std::uint32_t w; std::memcpy(&w, a.b + 4 * i, 4);
    w = n > 31 ? 0 : w << n; std::memcpy(r.b + 4 * i, &w, 4);
  }
  return r;
}
static inline __m512i _mm512_mask_blend_epi32(__mmask16 k, __m512i a, __m512i b) {  // the bf16 half groups
  __m512i r; for (int i = 0; i < 16; ++i) std::memcpy(r.b + 4 * i, ((k >> i) & 1 ? b.b : a.b) + 4 * i, 4); return r;
}
static inline __m512 _mm512_castsi512_ps(__m512i a) { __m512 r; std::memcpy(r.v, a.b, 64); return r; }
static inline float emu_bf16_to_float(std::uint16_t h) {
  const std::uint32_t bits = static_cast<std::uint32_t>(h) << 16; float f; std::memcpy(&f, &bits, 4); return f;
}
static inline float emu_f16_to_float(std::uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff; const float s = (h & 0x8000) ? -1.0f : 1.0f;
  if (e == 31) return m ? NAN : s * INFINITY;
  if (e == 0) return s * std::ldexp(static_cast<float>(m), -24);
  return s * std::ldexp(static_cast<float>(m | 0x400), e - 25);
}
static inline __m512 _mm512_cvtph_ps(__m256i a) {
  __m512 r;
  for (int i = 0; i < 16; ++i) { std::uint16_t h; std::memcpy(&h, a.b + 2 * i, 2); r.v[i] = emu_f16_to_float(h); }
  return r;
}
static inline __m512 _mm512_dpbf16_ps(__m512 src, __m512bh a, __m512bh b) {
  __m512 r;
  for (int i = 0; i < 16; ++i) {
    float acc = src.v[i];
    acc += emu_bf16_to_float(a.h[2 * i + 1]) * emu_bf16_to_float(b.h[2 * i + 1]);
    acc += emu_bf16_to_float(a.h[2 * i]) * emu_bf16_to_float(b.h[2 * i]);
    r.v[i] = acc;
  }
  return r;
}
static inline __m512 _mm512_setr_ps(float e0, float e1, float e2, float e3, float e4, float e5, float e6, float e7,
                                    float e8, float e9, float e10, float e11, float e12, float e13, float e14,
                                    float e15) {
  return __m512{{e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15}};
}
static inline __m512 _mm512_mask_blend_ps(__mmask16 k, __m512 a, __m512 b) {
  __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = (k >> i) & 1 ? b.v[i] : a.v[i]; return r;
}
static inline __m512 _mm512_fnmadd_ps(__m512 a, __m512 b, __m512 c) {  // c - a * b with one rounding
  __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = std::fma(-a.v[i], b.v[i], c.v[i]); return r;
}
static inline __m512 _mm512_min_ps(__m512 a, __m512 b) {  // MINPS: the second operand unless a < b
  __m512 r; for (int i = 0; i < 16; ++i) r.v[i] = a.v[i] < b.v[i] ? a.v[i] : b.v[i]; return r;
}

// Float to int32 with truncation (values in range) and the truncating int32 -> byte store (generic/pq-inl.hpp's
// quantize_lut).
static inline __m512i _mm512_cvttps_epi32(__m512 a) {
  __m512i r; for (int i = 0; i < 16; ++i) { const std::int32_t v = static_cast<std::int32_t>(a.v[i]); std::memcpy(r.b + 4 * i, &v, 4); } return r;
}
static inline void _mm512_mask_cvtepi32_storeu_epi8(void* p, __mmask16 k, __m512i a) {
  for (int i = 0; i < 16; ++i) if ((k >> i) & 1) static_cast<std::uint8_t*>(p)[i] = a.b[4 * i];
}

// AVX512BW / VBMI integer operations of csrc/kernels/x86_avx512_vbmi/pq_scan8.cpp (bytes and uint16 lanes,
// little-endian as on x86).
static inline std::uint16_t emu_u16(const __m512i& a, int i) { std::uint16_t v; std::memcpy(&v, a.b + 2 * i, 2); return v; }
static inline void emu_set_u16(__m512i& a, int i, std::uint16_t v) { std::memcpy(a.b + 2 * i, &v, 2); }
static inline __m512i _mm512_setzero_si512() { __m512i r; std::memset(r.b, 0, 64); return r; }
static inline void _mm512_store_si512(void* p, __m512i a) { std::memcpy(p, a.b, 64); }
static inline __mmask64 _mm512_movepi8_mask(__m512i a) {
  __mmask64 m = 0; for (int i = 0; i < 64; ++i) if (a.b[i] & 0x80) m |= __mmask64{1} << i; return m;
}
static inline __m512i _mm512_permutex2var_epi8(__m512i a, __m512i idx, __m512i b) {  // vpermi2b / vpermt2b
  __m512i r; for (int i = 0; i < 64; ++i) r.b[i] = (idx.b[i] & 64) ? b.b[idx.b[i] & 63] : a.b[idx.b[i] & 63]; return r;
}
static inline __m512i _mm512_mask_blend_epi8(__mmask64 k, __m512i a, __m512i b) {
  __m512i r; for (int i = 0; i < 64; ++i) r.b[i] = (k >> i) & 1 ? b.b[i] : a.b[i]; return r;
}
static inline __m512i _mm512_add_epi16(__m512i a, __m512i b) {
  __m512i r; for (int i = 0; i < 32; ++i) emu_set_u16(r, i, static_cast<std::uint16_t>(emu_u16(a, i) + emu_u16(b, i))); return r;
}
static inline __m512i _mm512_sub_epi16(__m512i a, __m512i b) {
  __m512i r; for (int i = 0; i < 32; ++i) emu_set_u16(r, i, static_cast<std::uint16_t>(emu_u16(a, i) - emu_u16(b, i))); return r;
}
static inline __m512i _mm512_srli_epi16(__m512i a, unsigned n) {
  __m512i r; for (int i = 0; i < 32; ++i) emu_set_u16(r, i, n > 15 ? 0 : static_cast<std::uint16_t>(emu_u16(a, i) >> n)); return r;
}
static inline __m512i _mm512_slli_epi16(__m512i a, unsigned n) {
  __m512i r; for (int i = 0; i < 32; ++i) emu_set_u16(r, i, n > 15 ? 0 : static_cast<std::uint16_t>(emu_u16(a, i) << n)); return r;
}
static inline __m512i _mm512_set1_epi16(short v) {
  __m512i r; for (int i = 0; i < 32; ++i) emu_set_u16(r, i, static_cast<std::uint16_t>(v)); return r;
}
static inline __mmask32 _mm512_cmple_epu16_mask(__m512i a, __m512i b) {
  __mmask32 m = 0; for (int i = 0; i < 32; ++i) if (emu_u16(a, i) <= emu_u16(b, i)) m |= __mmask32{1} << i; return m;
}

// shuffle_f32x4 (same source twice): 128-bit block i of the result = block (imm >> 2i) & 3 of the source.
static inline __m512 _mm512_shuffle_f32x4(__m512 a, __m512 b, int imm) {
  __m512 r;
  for (int i = 0; i < 4; ++i) {
    const __m512& src = i < 2 ? a : b;
    const int block = (imm >> (2 * i)) & 3;
    for (int j = 0; j < 4; ++j) r.v[4 * i + j] = src.v[4 * block + j];
  }
  return r;
}
// permute_ps: within each 128-bit block, lane j = lane (imm >> 2j) & 3 of that block.
static inline __m512 _mm512_permute_ps(__m512 a, int imm) {
  __m512 r;
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) r.v[4 * i + j] = a.v[4 * i + ((imm >> (2 * j)) & 3)];
  return r;
}
static inline float _mm512_cvtss_f32(__m512 a) { return a.v[0]; }

// float64 lanes (the FWHT passes).
struct __m512d { double v[8]; };
static inline __m512d _mm512_loadu_pd(const double* p) { __m512d r; std::memcpy(r.v, p, sizeof r.v); return r; }
static inline void _mm512_storeu_pd(double* p, __m512d a) { std::memcpy(p, a.v, sizeof a.v); }
static inline __m512d _mm512_add_pd(__m512d a, __m512d b) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] + b.v[i]; return r; }
static inline __m512d _mm512_sub_pd(__m512d a, __m512d b) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = a.v[i] - b.v[i]; return r; }
static inline __m512d _mm512_setzero_pd() { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = 0.0; return r; }
static inline __m512d _mm512_set1_pd(double x) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = x; return r; }
static inline __m512d _mm512_fmadd_pd(__m512d a, __m512d b, __m512d c) { __m512d r; for (int i = 0; i < 8; ++i) r.v[i] = std::fma(a.v[i], b.v[i], c.v[i]); return r; }
