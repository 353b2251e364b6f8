// simkern/dispatch.hpp - the kernel table: one function-pointer set per ISA level.
//
// Each ISA translation unit exports `fill_<family>(...)` inside `namespace simkern::<isa>`; dispatch.cpp calls
// them only for levels the CPU supports (their bodies may contain that ISA's instructions) and builds, at first
// use, two immutable KernelTables per level:
//   own    - the level's own kernels (kernels_for(isa): what tools/cross_check and the "own" test mode check);
//   chosen - what the level runs (kernels(): the active level's): its own kernels, except that an entry whose
//            kernel is not faster than the level below's on this CPU points at the lower level's kernel (the
//            rule "no level is slower than the one below it"; dispatch.cpp lists each substitution and why).
//            kernel_names() shows the result (e.g. fde_avx2 at the avx512 level).
// To add a kernel family: add its struct here, a fill_ function per ISA TU, and a line in dispatch.cpp.
#pragma once

#include "simkern/fde.hpp"
#include "simkern/fwht.hpp"
#include "simkern/hnsw.hpp"
#include "simkern/isa.hpp"
#include "simkern/maxsim.hpp"
#include "simkern/pq.hpp"
#include "simkern/sketch.hpp"

namespace simkern {

struct KernelTable {
  Isa isa = Isa::scalar;
  MaxSimKernel maxsim[kNumDocDTypes];
  PQKernels pq;
  FDEKernels fde;
  HNSWKernels hnsw;
  FWHTKernels fwht;
  SketchKernels sketch;
};

const KernelTable& kernels();             // active level, chosen table (own table in the own-kernels test mode)
const KernelTable& kernels_for(Isa isa);  // the level's own kernels; isa must be supported

// What the dispatcher measured and chose (simkern.runtime.dispatch_info()).
struct DispatchInfo {
  double fma256_flops_per_ns = 0;  // 0: not measured (no AVX-512 on this CPU)
  double fma512_flops_per_ns = 0;
  bool fma512_full_rate = false;   // 512-bit FMAs give >= 1.5x the 256-bit flop rate (or SIMKERN_FMA512=full)
  const char* fma512_source = "";  // "probe", "SIMKERN_FMA512" or "" (not measured)
};
const DispatchInfo& dispatch_info();
// Test hook: kernels() returns the active level's own table (true) or its chosen table (false, the default).
void set_own_kernels_only(bool own);
bool own_kernels_only();

namespace scalar {
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
void scan4(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 n_pairs, const ScanQueries& qs);
void scan8(const std::uint8_t* blocks, i64 block_begin, i64 block_end, i64 m, const ScanQueries& qs);
void centroids_from(const float* x, const float* ct, i64 dsub, i64 ksub, i64 j_begin, bool l2, float* out);
void nearest(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, std::int32_t* ids, float* dists);
void nearest_dot(const float* x, i64 n, i64 x_stride, const float* ct, const float* half_norms, i64 dsub, i64 ksub,
                 std::int32_t* ids, float* dists);
float sum_squares(const float* x, i64 dsub);
void quantize_lut(const float* q_tables, const float* cell_tables, const float* lows, i64 m, i64 ksub, float sign,
                  float scale, float top, std::uint8_t* out);
void table_ranges(const float* t, i64 m, i64 ksub, float* lo, float* hi);
void simhash_from(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, i64 h_begin, float* out);
void fde_stream_copy(float* dst, const float* src, i64 count);  // memcpy (FDEKernels::stream_copy)
void fde_stream_fence();                                        // nothing to order
void fde_sign_words(const float* sketch, i64 hyperplanes, std::uint64_t* words);
}  // namespace scalar
namespace avx2 {
double fma_flops_per_ns();  // throughput probe (x86_avx2/maxsim.cpp)
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
void fde_stream_copy(float* dst, const float* src, i64 count);  // non-temporal stores (the avx512 table's too)
void fde_stream_fence();                                        // sfence
void fde_sign_words(const float* sketch, i64 hyperplanes, std::uint64_t* words);  // compare + movemask
}  // namespace avx2
namespace avx512 {
double fma_flops_per_ns();  // throughput probe (x86_avx512/maxsim.cpp)
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
}  // namespace avx512
namespace avx512_bf16 {
void fill_maxsim_bf16(MaxSimKernel* out);
void fill_maxsim_bf16_256(MaxSimKernel* out);  // the same dot products on ymm (AVX512-BF16 + VL), 8 lanes
}  // namespace avx512_bf16
namespace avx512_vbmi {
void fill_pq_scan8(PQKernels* out);
}
namespace neon {
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
}  // namespace neon

}  // namespace simkern
