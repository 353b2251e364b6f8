// FWHT binding: in place on a C-contiguous (n, d) float32/float64 array (python/simkern/linalg.py owns the axis,
// copy and validation policy).
#include <string>

#include "arrays.hpp"
#include "simkern/fwht.hpp"

namespace simkern::bind {

namespace {

template <class T>
void fwht_inplace(CArray<T>& x, bool normalize, int threads) {
  require_ndim(x, 2, "x");
  const i64 n = x.shape(0), d = x.shape(1);
  require(n >= 1 && (n & (n - 1)) == 0,
          "the transformed axis must have a power-of-two length, got " + std::to_string(n));
  require(x.writeable(), "x must be writeable");
  T* p = x.mutable_data();
  run_without_gil([&] { fwht(p, n, d, normalize, threads); });
}

}  // namespace

void bind_fwht(py::module_& m) {
  m.def("_fwht_f32", &fwht_inplace<float>, py::arg("x").noconvert(), py::arg("normalize"), py::arg("threads"));
  m.def("_fwht_f64", &fwht_inplace<double>, py::arg("x").noconvert(), py::arg("normalize"), py::arg("threads"));
}

}  // namespace simkern::bind
