// Bindings of the IVF-PQ driver (csrc/runtime/ivfpq.cpp): the inverted lists as a class (_IVFLists), the coarse
// quantizer functions and the search. python/simkern/ivfpq_index.py validates the user's arguments; the checks
// here only keep a wrong internal call from reading out of bounds.
#include <cstring>
#include <mutex>
#include <shared_mutex>

#include "arrays.hpp"
#include "simkern/ivfpq.hpp"

namespace simkern::bind {
namespace {

// The lists and the arrays borrowed storage points into (a mapped file's views), kept alive with them.
struct PyIVFLists {
  IVFLists lists;
  py::object keep;
  PyIVFLists(i64 nlist, i64 m, int nbits, i64 vector_dim) : lists(checked(nlist, m, nbits, vector_dim)) {}
  static IVFLists checked(i64 nlist, i64 m, int nbits, i64 vector_dim) {
    require(nlist >= 1 && m >= 1 && m <= 256 && (nbits == 4 || nbits == 8) && vector_dim >= 0,
            "IVF lists need nlist >= 1, 1 <= m <= 256, nbits 4 or 8");
    return IVFLists(nlist, m, nbits, vector_dim);
  }
};

void check_rows(const py::array& a, i64 rows, i64 cols, const char* name) {
  require_ndim(a, 2, name);
  require(a.shape(0) == rows && a.shape(1) == cols, std::string(name) + " must have shape (" + std::to_string(rows) +
                                                        ", " + std::to_string(cols) + "), got " + shape_str(a));
}

void add_py(PyIVFLists& self, const CArray<std::int32_t>& cells, const CArray<std::uint8_t>& codes,
            const CArray<i64>& ids, const py::object& vectors_obj) {
  IVFLists& L = self.lists;
  require_ndim(cells, 1, "cells");
  const i64 n = cells.shape(0);
  check_rows(codes, n, L.m(), "codes");
  require_ndim(ids, 1, "ids");
  require(ids.shape(0) == n, "ids must have one entry per row");
  const i64 ksub = L.nbits() == 8 ? 256 : 16;
  for (i64 i = 0; i < n; ++i) require(cells.data()[i] >= 0 && cells.data()[i] < L.nlist(), "cell out of range");
  for (i64 i = 0; i < n * L.m(); ++i) require(codes.data()[i] < ksub, "code out of range");
  CArray<float> vectors;
  if (L.vector_dim()) {
    require(!vectors_obj.is_none(), "vectors are kept by these lists");
    vectors = vectors_obj.cast<CArray<float>>();
    check_rows(vectors, n, L.vector_dim(), "vectors");
  }
  const float* v = L.vector_dim() ? vectors.data() : nullptr;
  run_without_gil([&] {
    std::unique_lock lock(L.mutex);
    L.add(cells.data(), codes.data(), ids.data(), v, n);
  });
}

i64 remove_py(PyIVFLists& self, const CArray<i64>& sorted_ids) {
  require_ndim(sorted_ids, 1, "ids");
  i64 removed = 0;
  run_without_gil([&] {
    std::unique_lock lock(self.lists.mutex);
    removed = self.lists.remove(sorted_ids.data(), sorted_ids.shape(0));
  });
  return removed;
}

py::array_t<std::uint8_t> contains_py(const PyIVFLists& self, const CArray<i64>& sorted_ids) {
  require_ndim(sorted_ids, 1, "ids");
  py::array_t<std::uint8_t> found(sorted_ids.shape(0));
  std::uint8_t* f = found.mutable_data();
  run_without_gil([&] {
    std::shared_lock lock(self.lists.mutex);
    self.lists.contains(sorted_ids.data(), sorted_ids.shape(0), f);
  });
  return found;
}

py::array_t<i64> sizes_py(const PyIVFLists& self) {
  py::array_t<i64> out(self.lists.nlist());
  std::shared_lock lock(self.lists.mutex);
  self.lists.cell_sizes(out.mutable_data());
  return out;
}

py::tuple export_py(const PyIVFLists& self) {
  const IVFLists& L = self.lists;
  std::shared_lock lock(L.mutex);
  const i64 n = L.size(), nb = L.n_full_blocks(), tail = n - nb * L.group();
  py::array_t<i64> sizes(L.nlist());
  L.cell_sizes(sizes.mutable_data());
  py::array_t<std::uint8_t> blocks({nb, L.code_bytes(), L.group()});
  py::array_t<std::uint8_t> tails(tail * L.code_bytes());  // per cell (code_bytes, t) by code byte
  py::array_t<i64> ids(n);
  py::object vectors = py::none();
  float* v = nullptr;
  if (L.vector_dim()) {
    py::array_t<float> arr({n, L.vector_dim()});
    v = arr.mutable_data();
    vectors = arr;
  }
  L.export_arrays(blocks.mutable_data(), tails.mutable_data(), ids.mutable_data(), v);
  return py::make_tuple(sizes, blocks, tails, ids, vectors);
}

void import_py(PyIVFLists& self, const CArray<i64>& sizes, const CArray<std::uint8_t>& blocks,
               const CArray<std::uint8_t>& tails, const CArray<i64>& ids, const py::object& vectors_obj, bool own,
               const py::object& keep) {
  IVFLists& L = self.lists;
  require_ndim(sizes, 1, "sizes");
  require(sizes.shape(0) == L.nlist(), "sizes must have nlist entries");
  i64 n = 0, nb = 0;
  for (i64 c = 0; c < L.nlist(); ++c) {
    const i64 s = sizes.data()[c];
    require(s >= 0, "cell sizes must be >= 0");
    n += s;
    nb += s / L.group();
  }
  require(
      blocks.ndim() == 3 && blocks.shape(0) == nb && blocks.shape(1) == L.code_bytes() && blocks.shape(2) == L.group(),
      "blocks do not match the cell sizes");
  require_ndim(tails, 1, "tails");
  require(tails.shape(0) == (n - nb * L.group()) * L.code_bytes(), "tails do not match the cell sizes");
  require_ndim(ids, 1, "ids");
  require(ids.shape(0) == n, "ids do not match the cell sizes");
  CArray<float> vectors;
  if (L.vector_dim()) {
    vectors = vectors_obj.cast<CArray<float>>();
    check_rows(vectors, n, L.vector_dim(), "vectors");
  }
  std::unique_lock lock(L.mutex);
  L.import_arrays(sizes.data(), blocks.data(), tails.data(), ids.data(), L.vector_dim() ? vectors.data() : nullptr,
                  own);
  self.keep = own ? py::object(py::none()) : keep;
}

py::tuple search_py(const PyIVFLists& self, const CArray<float>& queries, const CArray<float>& ct, bool table_l2,
                    float table_mult, const py::object& cell_tables_obj, const py::object& cell_lo_obj,
                    const py::object& cell_hi_obj, const CArray<i64>& probes, const CArray<float>& bases, i64 k,
                    i64 width, bool smaller, const py::object& mask_obj, const py::object& allowed_obj,
                    const py::object& rerank_obj, int threads) {
  const IVFLists& L = self.lists;
  const i64 ksub = L.nbits() == 8 ? 256 : 16, m = L.m();
  require_ndim(queries, 2, "queries");
  const i64 nq = queries.shape(0), dim = queries.shape(1);
  require(dim % m == 0 && ct.ndim() == 3 && ct.shape(0) == m && ct.shape(1) == dim / m && ct.shape(2) == ksub,
          "ct must be (m, dim / m, ksub)");
  require_ndim(probes, 2, "probes");
  const i64 nprobe = probes.shape(1);
  require(probes.shape(0) == nq && nprobe >= 1, "probes must be (nq, nprobe)");
  check_rows(bases, nq, nprobe, "bases");
  for (i64 i = 0; i < nq * nprobe; ++i)
    require(probes.data()[i] >= -1 && probes.data()[i] < L.nlist(), "probe out of range");
  require(k >= 1 && width >= k, "need 1 <= k <= width");
  IVFSearchArgs a;
  a.nq = nq;
  a.nprobe = nprobe;
  a.k = k;
  a.width = width;
  a.queries = queries.data();
  a.ct = ct.data();
  a.table_l2 = table_l2;
  a.table_mult = table_mult;
  a.probes = probes.data();
  a.bases = bases.data();
  a.smaller_is_better = smaller;
  CArray<float> cell_tables, cell_lo, cell_hi, rerank;
  if (!cell_tables_obj.is_none()) {
    require(smaller, "cell tables are for L2 by residual");
    cell_tables = cell_tables_obj.cast<CArray<float>>();
    cell_lo = cell_lo_obj.cast<CArray<float>>();
    cell_hi = cell_hi_obj.cast<CArray<float>>();
    require(cell_tables.ndim() == 3 && cell_tables.shape(0) == L.nlist() && cell_tables.shape(1) == m &&
                cell_tables.shape(2) == ksub,
            "cell_tables must be (nlist, m, ksub)");
    check_rows(cell_lo, L.nlist(), m, "cell_lo");
    check_rows(cell_hi, L.nlist(), m, "cell_hi");
    a.cell_tables = cell_tables.data();
    a.cell_lo = cell_lo.data();
    a.cell_hi = cell_hi.data();
  }
  const CArray<std::uint8_t> mask = optional_vector<std::uint8_t>(mask_obj, "filter mask");
  const CArray<i64> allowed = optional_vector<i64>(allowed_obj, "filter ids");
  if (!mask_obj.is_none()) {
    a.mask = mask.data();
    a.mask_len = mask.shape(0);
    if (!a.mask_len) a.n_allowed = 0, a.mask = nullptr;  // an empty mask allows nothing
  } else if (!allowed_obj.is_none()) {
    a.allowed = allowed.data();
    a.n_allowed = allowed.shape(0);
  }
  if (!rerank_obj.is_none()) {
    require(L.vector_dim() > 0, "rerank needs stored vectors");
    rerank = rerank_obj.cast<CArray<float>>();
    check_rows(rerank, nq, L.vector_dim(), "rerank queries");
    a.rerank_queries = rerank.data();
  }
  py::array_t<float> scores({nq, k});
  py::array_t<i64> ids({nq, k});
  float* s = scores.mutable_data();
  i64* i = ids.mutable_data();
  run_without_gil([&] {
    std::shared_lock lock(L.mutex);
    ivfpq_search(L, a, dim, s, i, threads);
  });
  return py::make_tuple(scores, ids);
}

}  // namespace

void bind_ivfpq(py::module_& m) {
  py::class_<PyIVFLists>(m, "_IVFLists")
      .def(py::init<i64, i64, int, i64>(), py::arg("nlist"), py::arg("m"), py::arg("nbits"), py::arg("vector_dim"))
      .def_property_readonly("size", [](const PyIVFLists& s) { return s.lists.size(); })
      .def_property_readonly("memory_bytes",
                             [](const PyIVFLists& s) {
                               std::shared_lock lock(s.lists.mutex);
                               return s.lists.memory_bytes();
                             })
      .def("add", &add_py, py::arg("cells").noconvert(), py::arg("codes").noconvert(), py::arg("ids").noconvert(),
           py::arg("vectors"))
      .def("remove", &remove_py, py::arg("sorted_ids").noconvert())
      .def("contains", &contains_py, py::arg("sorted_ids").noconvert())
      .def("cell_sizes", &sizes_py)
      .def("export", &export_py,
           "(sizes, blocks (nb, code_bytes, group), tails (tail codes * code_bytes,), ids, vectors)")
      .def("import_", &import_py, py::arg("sizes").noconvert(), py::arg("blocks").noconvert(),
           py::arg("tails").noconvert(), py::arg("ids").noconvert(), py::arg("vectors"), py::arg("own"),
           py::arg("keep"))
      .def(
          "cell_codes",
          [](const PyIVFLists& s, i64 c) {
            require(c >= 0 && c < s.lists.nlist(), "cell out of range");
            std::shared_lock lock(s.lists.mutex);
            py::array_t<std::uint8_t> out({s.lists.cell_size(c), s.lists.m()});
            s.lists.cell_codes(c, out.mutable_data());
            return out;
          },
          py::arg("cell"))
      .def(
          "cell_ids",
          [](const PyIVFLists& s, i64 c) {
            require(c >= 0 && c < s.lists.nlist(), "cell out of range");
            std::shared_lock lock(s.lists.mutex);
            const i64 n = s.lists.cell_size(c);
            py::array_t<i64> out(n);
            if (n) std::memcpy(out.mutable_data(), s.lists.cell_ids(c), n * sizeof(i64));
            return out;
          },
          py::arg("cell"))
      .def("search", &search_py, py::arg("queries").noconvert(), py::arg("ct").noconvert(), py::arg("table_l2"),
           py::arg("table_mult"), py::arg("cell_tables"), py::arg("cell_lo"), py::arg("cell_hi"),
           py::arg("probes").noconvert(), py::arg("bases").noconvert(), py::arg("k"), py::arg("width"),
           py::arg("smaller_is_better"), py::arg("mask"), py::arg("allowed"), py::arg("rerank_queries"),
           py::arg("threads"));

  m.def(
      "_ivf_train",
      [](const CArray<float>& x, i64 nlist, int iters, std::uint64_t seed, int init, int threads) {
        require_ndim(x, 2, "x");
        const i64 n = x.shape(0), dim = x.shape(1);
        require(nlist >= 1 && n >= nlist, "training needs at least nlist points");
        require(iters >= 0 && (init == 0 || init == 1), "bad iters or init");
        py::array_t<float> centroids({nlist, dim});
        float* out = centroids.mutable_data();
        run_without_gil([&] { ivf_train_coarse(x.data(), n, dim, nlist, iters, seed, init, out, threads); });
        return centroids;
      },
      py::arg("x").noconvert(), py::arg("nlist"), py::arg("iters"), py::arg("seed"), py::arg("init"),
      py::arg("threads"), R"(_ivf_train(x f32 (n, dim), nlist, iters, seed, init 0|1, threads) -> f32 (nlist, dim))");
  m.def(
      "_ivf_pack",
      [](const CArray<float>& centroids) {
        require_ndim(centroids, 2, "centroids");
        const i64 nlist = centroids.shape(0), dim = centroids.shape(1);
        require(nlist >= 1 && dim >= 1, "centroids must be non-empty");
        py::array_t<float> blocked({(nlist + kCoarseBlock - 1) / kCoarseBlock, dim, kCoarseBlock});
        ivf_pack_centroids(centroids.data(), nlist, dim, blocked.mutable_data());
        return blocked;
      },
      py::arg("centroids").noconvert(), R"(_ivf_pack(centroids f32 (nlist, dim)) -> f32 (ceil(nlist/16), dim, 16))");
  // The blocked centroids and their nlist, checked against the queries' dim.
  const auto check_blocked = [](const CArray<float>& blocked, const CArray<float>& half_norms, i64 dim) {
    require(blocked.ndim() == 3 && blocked.shape(1) == dim && blocked.shape(2) == kCoarseBlock,
            "blocked centroids must be (nb, dim, 16)");
    require_ndim(half_norms, 1, "half_norms");
    const i64 nlist = half_norms.shape(0);
    require(nlist >= 1 && (nlist + kCoarseBlock - 1) / kCoarseBlock == blocked.shape(0),
            "half_norms must have nlist entries");
    return nlist;
  };
  m.def(
      "_ivf_assign",
      [check_blocked](const CArray<float>& x, const CArray<float>& blocked, const CArray<float>& half_norms, bool l2,
                      int threads) {
        require_ndim(x, 2, "x");
        const i64 n = x.shape(0), dim = x.shape(1), nlist = check_blocked(blocked, half_norms, dim);
        py::array_t<std::int32_t> cells(n);
        std::int32_t* out = cells.mutable_data();
        run_without_gil(
            [&] { ivf_assign(x.data(), n, dim, blocked.data(), half_norms.data(), nlist, l2, out, threads); });
        return cells;
      },
      py::arg("x").noconvert(), py::arg("blocked").noconvert(), py::arg("half_norms").noconvert(), py::arg("l2"),
      py::arg("threads"), R"(_ivf_assign(x f32 (n, dim), blocked, half_norms, l2, threads) -> i32 (n,))");
  m.def(
      "_ivf_coarse",
      [check_blocked](const CArray<float>& queries, const CArray<float>& blocked, const CArray<float>& half_norms,
                      bool l2, i64 nprobe, int threads) {
        require_ndim(queries, 2, "queries");
        const i64 nq = queries.shape(0), dim = queries.shape(1), nlist = check_blocked(blocked, half_norms, dim);
        require(nprobe >= 1 && nprobe <= nlist, "nprobe must be in 1..nlist");
        py::array_t<i64> probes({nq, nprobe});
        py::array_t<float> bases({nq, nprobe});
        i64* p = probes.mutable_data();
        float* b = bases.mutable_data();
        run_without_gil([&] {
          ivf_coarse(queries.data(), nq, dim, blocked.data(), half_norms.data(), nlist, l2, nprobe, p, b, threads);
        });
        return py::make_tuple(probes, bases);
      },
      py::arg("queries").noconvert(), py::arg("blocked").noconvert(), py::arg("half_norms").noconvert(), py::arg("l2"),
      py::arg("nprobe"), py::arg("threads"),
      R"(_ivf_coarse(queries, blocked, half_norms, l2, nprobe, threads) -> (probes i64 (nq, nprobe), bases f32))");
}

}  // namespace simkern::bind
