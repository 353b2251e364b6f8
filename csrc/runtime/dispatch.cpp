// Builds one KernelTable per supported ISA level at first use and hands out the active one.
#include "simkern/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <stdexcept>

namespace simkern {
namespace {

KernelTable g_tables[kNumIsas];  // own kernels per level
KernelTable g_chosen[kNumIsas];  // what each level runs (see dispatch.hpp)
DispatchInfo g_info;
MaxSimKernel g_bf16_narrow;  // the ymm vdpbf16ps kernel, the narrow alternative of the zmm one
std::once_flag g_tables_once;
std::atomic<bool> g_own_only{false};

#if defined(SIMKERN_HAVE_X86_KERNELS)
// Whether 512-bit FMAs give more flops than 256-bit ones here: SIMKERN_FMA512=full|half, else the probes (a few
// hundred microseconds, once). Zen 4 splits a 512-bit FMA into two 256-bit halves (ratio ~1.0); Intel server
// cores with two 512-bit FMA units reach ~2.0. The choice never changes a result: the float kernels of both
// levels are bit-identical (same per-lane FMA sequence).
void measure_fma512() {
  const char* env = std::getenv("SIMKERN_FMA512");
  if (env && (std::strcmp(env, "full") == 0 || std::strcmp(env, "half") == 0)) {
    g_info.fma512_full_rate = std::strcmp(env, "full") == 0;
    g_info.fma512_source = "SIMKERN_FMA512";
    return;
  }
  double r256 = 0, r512 = 0;
  for (int i = 0; i < 3; ++i) {  // interleaved, best of 3 each: a preempted run only lowers one sample
    const double a = avx2::fma_flops_per_ns(), b = avx512::fma_flops_per_ns();
    if (a > r256) r256 = a;
    if (b > r512) r512 = b;
  }
  g_info.fma256_flops_per_ns = r256;
  g_info.fma512_flops_per_ns = r512;
  g_info.fma512_full_rate = r512 >= 1.5 * r256;
  g_info.fma512_source = "probe";
}

// The avx512 level's substitutions, each measured by bench/bench_isa.py (one thread, AMD EPYC Zen 4 VM):
//  - fde: the avx2 kernels, always. The 512-bit ones ran at 0.28-0.42x (16-token AMS blocks pad short sets,
//    48-hyperplane SimHash passes leave a scalar tail for R * k = 120, 5 x 24 at avx2).
//  - on CPUs whose 512-bit FMA rate is not above the 256-bit one (Zen 4): the PQ float kernels (encode / train,
//    0.95x), fwht (0.97x) and sketch (0.92x) run the avx2 kernels; MaxSim float32 / float16 keeps its 512-bit
//    tiles (1.2-1.3x the avx2 ones on full 16-lane groups: half the broadcasts and loads per FMA) but gets the avx2
//    tiles as `narrow`, which the drivers run when they cost less for the call (short single queries: the 16-lane
//    groups ran 0.2-0.33x at 8-16 tokens, 0.86x at 18). The vdpbf16ps kernel gets its ymm twin as `narrow` the
//    same way (one 16-lane group, a query of 9-16 tokens, ran at 65-86 GF/s against 185-206 for 17-32 tokens: a
//    zmm broadcast costs a shuffle uop on Zen 4, one per dot). What AVX-512 does better stays: the VBMI 8-bit PQ scan
//    (4x), the vdpbf16ps MaxSim on bf16 docs (2x), HNSW distances (1.07x; 32 registers).
void choose_avx512(const KernelTable& own, const KernelTable& below, KernelTable* chosen) {
  *chosen = own;
  chosen->fde = below.fde;
  if (!g_info.fma512_full_rate) {
    for (DocDType dt : {DocDType::f32, DocDType::f16, DocDType::bf16}) {
      const int i = static_cast<int>(dt);
      if (dt == DocDType::bf16 && cpu_features().avx512_bf16) {  // vdpbf16ps: its narrow twin on ymm (same bits)
        avx512_bf16::fill_maxsim_bf16_256(&g_bf16_narrow);
        chosen->maxsim[i].narrow = &g_bf16_narrow;
        continue;
      }
      chosen->maxsim[i].narrow = &below.maxsim[i];  // short stacks run the avx2 tiles (choose_kernel)
    }
    PQKernels pq = below.pq;  // float kernels (encode, tables, training) from avx2; the quantised scans stay
    pq.scan8 = own.pq.scan8;
    pq.scan8_name = own.pq.scan8_name;
    pq.scan4 = own.pq.scan4;
    pq.scan4_name = own.pq.scan4_name;
    // IVF-PQ's table quantisation and ranges (no FMA: loads, adds, conversions) stay on zmm too: the avx512-own
    // IVF-PQ search rows of bench_isa ran 1.08-1.17x the avx2 float kernels' (bytes identical on every level).
    pq.quantize_lut = own.pq.quantize_lut;
    pq.table_ranges = own.pq.table_ranges;
    chosen->pq = pq;
    chosen->fwht = below.fwht;
    chosen->sketch = below.sketch;
  }
}
#endif

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
    if (cpu_features().avx512_bf16)
      avx512_bf16::fill_maxsim_bf16(&g_tables[2].maxsim[static_cast<int>(DocDType::bf16)]);
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
  for (int level = 0; level < kNumIsas; ++level) g_chosen[level] = g_tables[level];
#if defined(SIMKERN_HAVE_X86_KERNELS)
  if (isa_supported(Isa::avx512)) {
    measure_fma512();
    choose_avx512(g_tables[2], g_tables[1], &g_chosen[2]);
  }
#endif
}

}  // namespace

const KernelTable& kernels_for(Isa isa) {
  std::call_once(g_tables_once, build_tables);
  if (!isa_compiled(isa) || !isa_supported(isa)) throw std::invalid_argument("ISA level not available on this CPU");
  return g_tables[static_cast<int>(isa)];
}

const KernelTable& kernels() {
  const Isa isa = active_isa();
  const KernelTable& own = kernels_for(isa);  // builds the tables, checks the level
  return g_own_only.load(std::memory_order_relaxed) ? own : g_chosen[static_cast<int>(isa)];
}

const DispatchInfo& dispatch_info() {
  std::call_once(g_tables_once, build_tables);
  return g_info;
}

void set_own_kernels_only(bool own) { g_own_only.store(own); }
bool own_kernels_only() { return g_own_only.load(); }

const MaxSimKernel& maxsim_kernel(DocDType dtype) { return kernels().maxsim[static_cast<int>(dtype)]; }

const PQKernels& pq_kernels() { return kernels().pq; }

const FDEKernels& fde_kernels() { return kernels().fde; }

const HNSWKernels& hnsw_kernels() { return kernels().hnsw; }

const FWHTKernels& fwht_kernels() { return kernels().fwht; }

const SketchKernels& sketch_kernels() { return kernels().sketch; }

}  // namespace simkern
