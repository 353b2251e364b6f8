// Sketch and LSQR-product bindings. python/simkern/linalg.py owns argument policy (dtypes, shapes, finiteness, m
// rules); these check what C++ relies on. A and B are read through their strides (no copies).
#include <string>

#include "arrays.hpp"
#include "simkern/sketch.hpp"

namespace simkern::bind {

namespace {

template <class T>
i64 element_stride(const py::array& x, int axis, const char* name) {
  const auto bytes = static_cast<i64>(x.strides(axis));
  require(bytes % static_cast<i64>(sizeof(T)) == 0,
          std::string(name) + "'s strides must be whole elements (got " + std::to_string(bytes) + " bytes)");
  return bytes / static_cast<i64>(sizeof(T));
}

i64 padded_rows(i64 n) {  // srht's N: the next power of two >= n
  i64 big_n = 1;
  while (big_n < n) big_n *= 2;
  return big_n;
}

template <class T>
py::array_t<T> sketch_rows(const py::array_t<T>& a, const py::object& b_obj, i64 m, int kind, std::uint64_t seed,
                           i64 nnz, int threads) {
  require_ndim(a, 2, "a");
  SketchInput<T> in;
  in.n = a.shape(0);
  in.d = a.shape(1);
  in.a = a.data();
  in.a_rs = element_stride<T>(a, 0, "a");
  in.a_cs = element_stride<T>(a, 1, "a");
  py::array_t<T> b;
  if (!b_obj.is_none()) {
    require(py::isinstance<py::array_t<T>>(b_obj), "b must be an array of a's dtype");
    b = py::reinterpret_borrow<py::array_t<T>>(b_obj);
    require_ndim(b, 2, "b");
    require(b.shape(0) == in.n, "b must have as many rows as a");
    in.b = b.data();
    in.k = b.shape(1);
    in.b_rs = element_stride<T>(b, 0, "b");
    in.b_cs = element_stride<T>(b, 1, "b");
  }
  require(kind >= 0 && kind <= 3, "unknown sketch kind");
  require(m >= 1, "m must be >= 1");
  const i64 big_n = padded_rows(in.n);
  if (kind == static_cast<int>(SketchKind::srht))
    require(m <= big_n, "srht samples m distinct rows of the padded length " + std::to_string(big_n));
  require(nnz >= 1 && (kind != static_cast<int>(SketchKind::sparse_sign) || nnz <= m), "nnz must be in [1, m]");
  py::array_t<T> out({m, in.d + in.k});
  T* o = out.mutable_data();
  run_without_gil([&] { sketch(in, m, static_cast<SketchKind>(kind), seed, nnz, o, threads); });
  return out;
}

py::array_t<std::int64_t> rows_of_srht(i64 n, i64 m, std::uint64_t seed) {
  require(n >= 1 && m >= 1 && m <= padded_rows(n), "need n >= 1 and 1 <= m <= next power of two of n");
  py::array_t<std::int64_t> out(m);
  srht_rows(n, m, seed, out.mutable_data());
  return out;
}

py::array_t<std::int8_t> signs_of_srht(i64 n, std::uint64_t seed) {
  require(n >= 0, "n must be >= 0");
  py::array_t<std::int8_t> out(n);
  srht_signs(n, seed, out.mutable_data());
  return out;
}

// a: (n, d) float64 with unit column stride (any row stride).
const double* lsqr_matrix(const py::array_t<double>& a, i64& stride) {
  require_ndim(a, 2, "a");
  require(a.shape(1) <= 1 || a.strides(1) == static_cast<py::ssize_t>(sizeof(double)), "a's rows must be contiguous");
  stride = a.shape(0) > 1 ? element_stride<double>(a, 0, "a") : a.shape(1);
  return a.data();
}

void matvec_into(const py::array_t<double>& a, const CArray<double>& v, CArray<double>& out, int threads) {
  i64 stride = 0;
  const double* p = lsqr_matrix(a, stride);
  const i64 n = a.shape(0), d = a.shape(1);
  require(v.ndim() == 1 && v.shape(0) == d, "v must have shape (d,)");
  require(out.ndim() == 1 && out.shape(0) == n && out.writeable(), "out must be a writeable (n,) array");
  const double* pv = v.data();
  double* po = out.mutable_data();
  run_without_gil([&] { matvec(p, n, d, stride, pv, po, threads); });
}

void rmatvec_into(const py::array_t<double>& a, const CArray<double>& u, CArray<double>& out, int threads) {
  i64 stride = 0;
  const double* p = lsqr_matrix(a, stride);
  const i64 n = a.shape(0), d = a.shape(1);
  require(u.ndim() == 1 && u.shape(0) == n, "u must have shape (n,)");
  require(out.ndim() == 1 && out.shape(0) == d && out.writeable(), "out must be a writeable (d,) array");
  const double* pu = u.data();
  double* po = out.mutable_data();
  run_without_gil([&] { rmatvec(p, n, d, stride, pu, po, threads); });
}

}  // namespace

void bind_sketch(py::module_& m) {
  m.def("_sketch_f32", &sketch_rows<float>, py::arg("a").noconvert(), py::arg("b"), py::arg("m"), py::arg("kind"),
        py::arg("seed"), py::arg("nnz"), py::arg("threads"));
  m.def("_sketch_f64", &sketch_rows<double>, py::arg("a").noconvert(), py::arg("b"), py::arg("m"), py::arg("kind"),
        py::arg("seed"), py::arg("nnz"), py::arg("threads"));
  m.def("_srht_rows", &rows_of_srht, py::arg("n"), py::arg("m"), py::arg("seed"));
  m.def("_srht_signs", &signs_of_srht, py::arg("n"), py::arg("seed"));
  m.def("_matvec", &matvec_into, py::arg("a").noconvert(), py::arg("v").noconvert(), py::arg("out").noconvert(),
        py::arg("threads"));
  m.def("_rmatvec", &rmatvec_into, py::arg("a").noconvert(), py::arg("u").noconvert(), py::arg("out").noconvert(),
        py::arg("threads"));
}

}  // namespace simkern::bind
