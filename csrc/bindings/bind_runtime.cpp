// Runtime bindings: CPU features, ISA level, threads, build information, pool test hook.
#include <pybind11/functional.h>
#include <pybind11/stl.h>

#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "arrays.hpp"
#include "simkern/dispatch.hpp"
#include "simkern/isa.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern::bind {

namespace {

py::dict capabilities() {
  const CpuFeatures& f = cpu_features();
  py::dict d;
  d["x86_64"] = f.x86_64;
  d["aarch64"] = f.aarch64;
  d["sse4_2"] = f.sse42;
  d["avx"] = f.avx;
  d["avx2"] = f.avx2;
  d["fma"] = f.fma;
  d["f16c"] = f.f16c;
  d["avx512f"] = f.avx512f;
  d["avx512bw"] = f.avx512bw;
  d["avx512dq"] = f.avx512dq;
  d["avx512vl"] = f.avx512vl;
  d["avx512cd"] = f.avx512cd;
  d["avx512_bf16"] = f.avx512_bf16;
  d["avx512_vbmi"] = f.avx512_vbmi;
  d["avx512_vnni"] = f.avx512_vnni;
  d["avx512_fp16"] = f.avx512_fp16;
  d["neon"] = f.neon;
  return d;
}

Isa isa_from_name(const std::string& name) {
  Isa isa;
  if (!parse_isa(name, &isa))
    throw py::value_error("unknown ISA '" + name + "'; expected one of 'scalar', 'avx2', 'avx512', 'neon'");
  return isa;
}

std::vector<std::string> available_isas() {
  std::vector<std::string> out;
  for (int level = 0; level < kNumIsas; ++level) {
    const Isa isa = static_cast<Isa>(level);
    if (isa_compiled(isa) && isa_supported(isa)) out.emplace_back(isa_name(isa));
  }
  return out;
}

py::dict kernel_names() {
  const KernelTable& t = kernels();
  py::dict maxsim;
  maxsim["float32"] = t.maxsim[static_cast<int>(DocDType::f32)].name;
  maxsim["float16"] = t.maxsim[static_cast<int>(DocDType::f16)].name;
  maxsim["bfloat16"] = t.maxsim[static_cast<int>(DocDType::bf16)].name;
  static const char* const dtype_names[kNumDocDTypes] = {"float32", "float16", "bfloat16"};
  for (int i = 0; i < kNumDocDTypes; ++i)  // the kernel short query stacks run instead (choose_kernel)
    if (t.maxsim[i].narrow) maxsim[py::str(std::string(dtype_names[i]) + "_short_queries")] = t.maxsim[i].narrow->name;
  py::dict pq;
  pq["float32"] = t.pq.name;
  pq["scan8"] = t.pq.scan8_name;  // the 8-bit quantised scan: scan8_scalar or scan8_vbmi
  pq["scan4"] = t.pq.scan4_name;
  py::dict fde, hnsw, fwht, sketch;
  fde["float32"] = t.fde.name;
  hnsw["distances"] = t.hnsw.name;
  fwht["float"] = t.fwht.name;
  sketch["float"] = t.sketch.name;
  py::dict d;
  d["maxsim"] = maxsim;
  d["pq"] = pq;
  d["fde"] = fde;
  d["hnsw"] = hnsw;
  d["fwht"] = fwht;
  d["sketch"] = sketch;
  return d;
}

py::dict build_info() {
  py::dict d;
  d["version"] = SIMKERN_VERSION;
  d["compiler"] = SIMKERN_COMPILER;
  d["build_type"] = SIMKERN_BUILD_TYPE;
  d["baseline_flags"] = SIMKERN_BUILD_FLAGS;
  std::vector<std::string> compiled;
  for (int level = 0; level < kNumIsas; ++level)
    if (isa_compiled(static_cast<Isa>(level))) compiled.emplace_back(isa_name(static_cast<Isa>(level)));
  d["compiled_isas"] = compiled;
  d["isa_flags"] = py::dict(py::arg("avx2") = "-mavx2 -mfma -mf16c",
                            py::arg("avx512") =
                                "-mavx512f -mavx512bw -mavx512dq -mavx512vl (+ -mavx512bf16 for the bf16 dot-product "
                                "TU, -mavx512vbmi for the 8-bit PQ scan TU)");
  return d;
}

// Test hook: runs n_tasks tasks on the pool; task `fail_at` throws. Returns the thread index of every task.
std::vector<int> pool_probe(i64 n_tasks, int threads, i64 fail_at, double sleep_ms) {
  std::vector<int> owner(static_cast<std::size_t>(n_tasks), -1);
  run_without_gil([&] {
    parallel_for(n_tasks, resolve_threads(threads), [&](i64 task, int thread) {
      if (sleep_ms > 0) std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(sleep_ms));
      if (task == fail_at) throw std::runtime_error("pool_probe: task " + std::to_string(task) + " failed");
      owner[task] = thread;
    });
  });
  return owner;
}

}  // namespace

void bind_runtime(py::module_& m) {
  m.def("capabilities", &capabilities, "CPU features this machine has (dict of bool).");
  m.def("available_isas", &available_isas, "ISA levels that are compiled in and supported here, lowest first.");
  m.def("best_isa", [] { return std::string(isa_name(best_isa())); });
  m.def("active_isa", [] { return std::string(isa_name(active_isa())); });
  m.def(
      "set_max_isa", [](const std::string& name) { return std::string(isa_name(set_max_isa(isa_from_name(name)))); },
      py::arg("name"), "Cap the ISA level (clamped to what the CPU has); returns the level now active.");
  m.def("get_num_threads", &default_num_threads);
  m.def(
      "set_num_threads",
      [](int n) {
        if (n < 1) throw py::value_error("threads must be >= 1, got " + std::to_string(n));
        set_default_num_threads(n);
      },
      py::arg("n"));
  m.def("kernel_names", &kernel_names, "Kernel variant chosen per family and dtype at the active ISA.");
  m.def("build_info", &build_info);
  m.def("_pool_probe", &pool_probe, py::arg("n_tasks"), py::arg("threads"), py::arg("fail_at") = -1,
        py::arg("sleep_ms") = 0.0);
  m.def(
      "dispatch_info",
      [] {
        const DispatchInfo& i = dispatch_info();
        py::dict d;
        d["fma256_flops_per_ns"] = i.fma256_flops_per_ns;
        d["fma512_flops_per_ns"] = i.fma512_flops_per_ns;
        d["fma512_full_rate"] = i.fma512_full_rate;
        d["fma512_source"] = std::string(i.fma512_source);
        return d;
      },
      "What the dispatcher measured to choose the avx512 level's kernels (FMA probe).");
  m.def("_set_own_kernels", &set_own_kernels_only, py::arg("own"),
        "Test hook: True runs each level's own kernels (no substitution from the level below).");
  m.def("_own_kernels", &own_kernels_only);
  m.def("_parallel_widest_request", &parallel_for_widest_request, py::arg("reset") = true,
        "Test probe: widest resolved thread count parallel_for was asked for on this thread since the last reset.");
}

}  // namespace simkern::bind
