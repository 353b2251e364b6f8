// simkern/dispatch.hpp - the kernel table: one function-pointer set per ISA level.
//
// Each ISA translation unit exports `fill_<family>(...)` inside `namespace simkern::<isa>`; dispatch.cpp calls
// them only for levels the CPU supports (their bodies may contain that ISA's instructions) and builds one
// immutable KernelTable per level at first use. kernels() returns the table of the active level.
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

const KernelTable& kernels();             // active level
const KernelTable& kernels_for(Isa isa);  // isa must be supported

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
void nearest(const float* x, i64 n, i64 x_stride, const float* ct, i64 dsub, i64 ksub, std::int32_t* ids,
             float* dists);
void nearest_dot(const float* x, i64 n, i64 x_stride, const float* ct, const float* half_norms, i64 dsub, i64 ksub,
                 std::int32_t* ids, float* dists);
float sum_squares(const float* x, i64 dsub);
void simhash_from(const float* x, i64 n, i64 dim, const float* g, i64 hyperplanes, i64 h_begin, float* out);
}  // namespace scalar
namespace avx2 {
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
}  // namespace avx2
namespace avx512 {
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
}  // namespace avx512
namespace avx512_bf16 { void fill_maxsim_bf16(MaxSimKernel* out); }
namespace avx512_vbmi { void fill_pq_scan8(PQKernels* out); }
namespace neon {
void fill_maxsim(MaxSimKernel out[kNumDocDTypes]);
void fill_pq(PQKernels* out);
void fill_fde(FDEKernels* out);
void fill_hnsw(HNSWKernels* out);
void fill_fwht(FWHTKernels* out);
void fill_sketch(SketchKernels* out);
}  // namespace neon

}  // namespace simkern
