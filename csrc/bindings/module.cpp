// The compiled module simkern._core: only calls the per-family bind functions.
#include "arrays.hpp"

namespace py = pybind11;

namespace simkern::bind {
void bind_runtime(py::module_& m);
void bind_maxsim(py::module_& m);
void bind_pq(py::module_& m);
void bind_ivfpq(py::module_& m);
void bind_fde(py::module_& m);
void bind_hnsw(py::module_& m);
void bind_fwht(py::module_& m);
void bind_sketch(py::module_& m);
}  // namespace simkern::bind

PYBIND11_MODULE(_core, m, py::mod_gil_not_used()) {
  m.doc() = R"(simkern._core: compiled kernels. Use the Python API in `simkern`, which validates arguments.)";
  simkern::bind::main_thread_ident =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  simkern::bind::bind_runtime(m);
  simkern::bind::bind_maxsim(m);
  simkern::bind::bind_pq(m);
  simkern::bind::bind_ivfpq(m);
  simkern::bind::bind_fde(m);
  simkern::bind::bind_hnsw(m);
  simkern::bind::bind_fwht(m);
  simkern::bind::bind_sketch(m);
}
