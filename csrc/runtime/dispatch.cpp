// Builds one KernelTable per supported ISA level at first use and hands out the active one.
#include "simkern/dispatch.hpp"

#include <mutex>
#include <stdexcept>

namespace simkern {
namespace {

KernelTable g_tables[kNumIsas];
std::once_flag g_tables_once;

void build_tables() {
  // Fill functions run only for supported levels: their bodies may use that level's instructions.
  g_tables[0].isa = Isa::scalar;
  scalar::fill_maxsim(g_tables[0].maxsim);
  scalar::fill_pq(&g_tables[0].pq);
  scalar::fill_fde(&g_tables[0].fde);
  scalar::fill_hnsw(&g_tables[0].hnsw);
  scalar::fill_fwht(&g_tables[0].fwht);
  scalar::fill_sketch(&g_tables[0].sketch);
#if defined(SIMKERN_HAVE_X86_KERNELS)
  if (isa_supported(Isa::avx2)) {
    g_tables[1].isa = Isa::avx2;
    avx2::fill_maxsim(g_tables[1].maxsim);
    avx2::fill_pq(&g_tables[1].pq);
    avx2::fill_fde(&g_tables[1].fde);
    avx2::fill_hnsw(&g_tables[1].hnsw);
    avx2::fill_fwht(&g_tables[1].fwht);
    avx2::fill_sketch(&g_tables[1].sketch);
  }
  if (isa_supported(Isa::avx512)) {
    g_tables[2].isa = Isa::avx512;
    avx512::fill_maxsim(g_tables[2].maxsim);
    avx512::fill_pq(&g_tables[2].pq);
    avx512::fill_fde(&g_tables[2].fde);
    avx512::fill_hnsw(&g_tables[2].hnsw);
    avx512::fill_fwht(&g_tables[2].fwht);
    avx512::fill_sketch(&g_tables[2].sketch);
    // Sub-feature variant: bf16 docs scored with vdpbf16ps when the CPU has AVX512_BF16.
    if (cpu_features().avx512_bf16) avx512_bf16::fill_maxsim_bf16(&g_tables[2].maxsim[static_cast<int>(DocDType::bf16)]);
    // Sub-feature variant: the 8-bit PQ scan with vpermi2b byte permutes when the CPU has AVX512_VBMI.
    if (cpu_features().avx512_vbmi) avx512_vbmi::fill_pq_scan8(&g_tables[2].pq);
  }
#endif
#if defined(SIMKERN_HAVE_NEON_KERNELS)
  if (isa_supported(Isa::neon)) {
    g_tables[3].isa = Isa::neon;
    neon::fill_maxsim(g_tables[3].maxsim);
    neon::fill_pq(&g_tables[3].pq);
    neon::fill_fde(&g_tables[3].fde);
    neon::fill_hnsw(&g_tables[3].hnsw);
    neon::fill_fwht(&g_tables[3].fwht);
    neon::fill_sketch(&g_tables[3].sketch);
  }
#endif
}

}  // namespace

const KernelTable& kernels_for(Isa isa) {
  std::call_once(g_tables_once, build_tables);
  if (!isa_compiled(isa) || !isa_supported(isa)) throw std::invalid_argument("ISA level not available on this CPU");
  return g_tables[static_cast<int>(isa)];
}

const KernelTable& kernels() { return kernels_for(active_isa()); }

const MaxSimKernel& maxsim_kernel(DocDType dtype) { return kernels().maxsim[static_cast<int>(dtype)]; }

const PQKernels& pq_kernels() { return kernels().pq; }

const FDEKernels& fde_kernels() { return kernels().fde; }

const HNSWKernels& hnsw_kernels() { return kernels().hnsw; }

const FWHTKernels& fwht_kernels() { return kernels().fwht; }

const SketchKernels& sketch_kernels() { return kernels().sketch; }

}  // namespace simkern
