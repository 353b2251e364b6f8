// PQ bindings: shape/value checks with the GIL held, then the drivers with the GIL released. The Python layer
// (python/simkern/pq.py) owns dtype policy, 4-bit packing and the ProductQuantizer object.
#include <cstdint>
#include <string>

#include "arrays.hpp"
#include "simkern/pq.hpp"

namespace simkern::bind {

namespace {

struct CodebookShape {
  i64 m, dsub, ksub;
};

CodebookShape check_ct(const CArray<float>& ct) {
  require_ndim(ct, 3, "transposed codebooks");
  return {ct.shape(0), ct.shape(1), ct.shape(2)};
}

void check_rows(const CArray<float>& x, i64 dim, const char* name) {
  require_ndim(x, 2, name);
  require(x.shape(1) == dim,
          std::string(name) + " must have shape (n, " + std::to_string(dim) + "), got " + shape_str(x));
}

py::array_t<float> transpose_py(const CArray<float>& codebooks) {
  require_ndim(codebooks, 3, "codebooks");
  const i64 m = codebooks.shape(0), ksub = codebooks.shape(1), dsub = codebooks.shape(2);
  py::array_t<float> ct({m, dsub, ksub});
  pq_transpose_codebooks(codebooks.data(), m, ksub, dsub, ct.mutable_data());
  return ct;
}

// The optional byte mask over ids (None: every id allowed).
CArray<std::uint8_t> filter_mask(const py::object& mask_obj, i64 n) {
  CArray<std::uint8_t> mask = optional_vector<std::uint8_t>(mask_obj, "filter mask");
  if (mask_obj.is_none()) return mask;
  require(mask.shape(0) == n,
          "filter mask must have one entry per id (" + std::to_string(n) + "), got " + std::to_string(mask.shape(0)));
  return mask;
}

py::array_t<std::uint8_t> encode_py(const CArray<float>& x, const CArray<float>& ct, int threads,
                                    const py::object& out_obj) {
  const CodebookShape s = check_ct(ct);
  check_rows(x, s.m * s.dsub, "x");
  require(s.ksub <= 256, "ksub must be <= 256");
  const i64 n = x.shape(0);
  py::array_t<std::uint8_t> codes = result_array<std::uint8_t>(out_obj, {n, s.m});
  std::uint8_t* out = codes.mutable_data();
  run_without_gil([&] { pq_encode(x.data(), n, s.m * s.dsub, ct.data(), s.m, s.ksub, out, threads); });
  return codes;
}

py::array_t<float> tables_py(const CArray<float>& queries, const CArray<float>& ct, int metric, int threads,
                             const py::object& out_obj) {
  const CodebookShape s = check_ct(ct);
  check_rows(queries, s.m * s.dsub, "queries");
  require(metric == 0 || metric == 1, "metric code must be 0 (l2) or 1 (ip)");
  const i64 nq = queries.shape(0);
  py::array_t<float> tables = result_array(out_obj, {nq, s.m, s.ksub});
  float* out = tables.mutable_data();
  run_without_gil([&] {
    pq_tables(queries.data(), nq, s.m * s.dsub, ct.data(), s.m, s.ksub, static_cast<PQMetric>(metric), out, threads);
  });
  return tables;
}

// Codes index the tables: every code must be < ksub (a power of two). One OR over all bytes (vectorised by the
// compiler), then the offending entry is looked for only when the check fails.
void require_codes_below(const std::uint8_t* c, i64 n, i64 m, i64 ksub) {
  if (ksub >= 256) return;
  std::uint8_t any = 0;
  for (i64 i = 0; i < n * m; ++i) any |= c[i];
  if (any < ksub) return;
  for (i64 i = 0; i < n * m; ++i)
    if (c[i] >= ksub)
      throw py::value_error("codes contain " + std::to_string(c[i]) + " at row " + std::to_string(i / m) +
                            ", subspace " + std::to_string(i % m) + "; codes must be < ksub = " + std::to_string(ksub));
}

py::array_t<float> adc_py(const CArray<float>& tables, const CArray<std::uint8_t>& codes, int threads,
                          const py::object& out_obj) {
  require_ndim(tables, 3, "tables");
  require_ndim(codes, 2, "codes");
  const i64 nq = tables.shape(0), m = tables.shape(1), ksub = tables.shape(2), n = codes.shape(0);
  require(codes.shape(1) == m,
          "codes must have shape (n, " + std::to_string(m) + ") (one code per subspace), got " + shape_str(codes));
  const std::uint8_t* c = codes.data();
  require_codes_below(c, n, m, ksub);
  py::array_t<float> out = result_array(out_obj, {nq, n});
  float* o = out.mutable_data();
  run_without_gil([&] { pq_adc(tables.data(), nq, c, n, m, ksub, o, threads); });
  return out;
}

py::tuple search_py(const CArray<float>& tables, const CArray<std::uint8_t>& codes, const py::object& mask_obj, i64 k,
                    bool smaller_is_better, int threads) {
  require_ndim(tables, 3, "tables");
  require_ndim(codes, 2, "codes");
  const i64 nq = tables.shape(0), m = tables.shape(1), ksub = tables.shape(2), n = codes.shape(0);
  require(codes.shape(1) == m, "codes must have shape (n, " + std::to_string(m) + "), got " + shape_str(codes));
  require(k >= 1, "k must be >= 1, got " + std::to_string(k));
  require_codes_below(codes.data(), n, m, ksub);
  const CArray<std::uint8_t> mask_arr = filter_mask(mask_obj, n);
  const std::uint8_t* mask = mask_obj.is_none() ? nullptr : mask_arr.data();
  py::array_t<float> scores({nq, k});
  py::array_t<i64> ids({nq, k});
  float* s = scores.mutable_data();
  i64* i = ids.mutable_data();
  run_without_gil(
      [&] { pq_search(tables.data(), nq, codes.data(), n, m, ksub, mask, k, smaller_is_better, s, i, threads); });
  return py::make_tuple(scores, ids);
}

// Quantised scan with exact re-scoring: ksub 16 needs the blocked codes, ksub 256 scans the row-major codes.
py::tuple search_quantised_py(const CArray<float>& tables, const CArray<std::uint8_t>& codes,
                              const py::object& blocks_obj, const py::object& mask_obj, i64 k, bool smaller_is_better,
                              int threads) {
  require_ndim(tables, 3, "tables");
  require_ndim(codes, 2, "codes");
  const i64 nq = tables.shape(0), m = tables.shape(1), ksub = tables.shape(2), n = codes.shape(0);
  require(ksub == 16 || ksub == 256, "the quantised scan needs ksub 16 or 256 tables");
  require(m <= 256, "the quantised scan supports m <= 256 (uint16 sums)");
  require(codes.shape(1) == m, "codes must have shape (n, " + std::to_string(m) + "), got " + shape_str(codes));
  require(k >= 1, "k must be >= 1, got " + std::to_string(k));
  const std::uint8_t* c = codes.data();
  require_codes_below(c, n, m, ksub);
  require(!blocks_obj.is_none(), "the quantised scan needs the blocked codes");
  const auto blocks = blocks_obj.cast<CArray<std::uint8_t>>();
  require_ndim(blocks, 3, "blocked codes");
  const i64 nb = blocks.shape(0);  // full blocks only, or the last one padded too
  if (ksub == 16)
    require((nb == n / 32 || nb == (n + 31) / 32) && blocks.shape(1) == (m + 1) / 2 && blocks.shape(2) == 32,
            "blocked codes must have shape (floor or ceil(n / 32), ceil(m / 2), 32), got " + shape_str(blocks));
  else
    require((nb == n / 64 || nb == (n + 63) / 64) && blocks.shape(1) == m && blocks.shape(2) == 64,
            "blocked codes must have shape (floor or ceil(n / 64), m, 64), got " + shape_str(blocks));
  const CArray<std::uint8_t> mask_arr = filter_mask(mask_obj, n);
  const std::uint8_t* mask = mask_obj.is_none() ? nullptr : mask_arr.data();
  const std::uint8_t* blocks_ptr = blocks.data();
  py::array_t<float> scores({nq, k});
  py::array_t<i64> ids({nq, k});
  float* s = scores.mutable_data();
  i64* i = ids.mutable_data();
  run_without_gil([&] {
    pq_search_quantised(tables.data(), nq, ksub, c, blocks_ptr, nb, n, m, mask, k, smaller_is_better, s, i, threads);
  });
  return py::make_tuple(scores, ids);
}

// Test hooks: the active level's scan kernels for up to kScanQueries queries with a fixed threshold (never
// lowered). Returns (sums u16 (nq, n_vectors), reported bool (nq, n_vectors)); sums are 0 where not reported.
py::tuple run_scan(bool four_bit, const CArray<std::uint8_t>& blocks, const CArray<std::uint8_t>& luts, int threshold) {
  require_ndim(blocks, 3, "blocks");
  require_ndim(luts, 3, "luts");
  const i64 n_blocks = blocks.shape(0), rows = blocks.shape(1), nq = luts.shape(0);
  const i64 group = four_bit ? 32 : 64;
  require(blocks.shape(2) == group, "blocks must be (n_blocks, rows, " + std::to_string(group) + ")");
  if (four_bit) require(luts.shape(1) == 2 * rows && luts.shape(2) == 16, "luts must be (nq, 2 * n_pairs, 16)");
  else require(luts.shape(1) == rows && luts.shape(2) == 256 && rows <= 256, "luts must be (nq, m, 256), m <= 256");
  require(nq >= 1 && nq <= kScanQueries, "1 to " + std::to_string(kScanQueries) + " queries");
  require(threshold >= 0 && threshold <= 65535, "threshold must be in 0..65535");
  py::array_t<std::uint16_t> sums({nq, n_blocks * group});
  py::array_t<bool> reported({nq, n_blocks * group});
  std::uint16_t* s = sums.mutable_data();
  bool* r = reported.mutable_data();
  std::fill(s, s + nq * n_blocks * group, std::uint16_t{0});
  std::fill(r, r + nq * n_blocks * group, false);
  struct Out {
    std::uint16_t* s;
    bool* r;
    i64 width;
  } out{s, r, n_blocks * group};
  std::uint16_t thresholds[kScanQueries];
  for (auto& t : thresholds) t = static_cast<std::uint16_t>(threshold);
  const ScanHit hit = [](void* ctx, int q, i64 first_id, std::uint64_t mask, const std::uint16_t* v) {
    Out& o = *static_cast<Out*>(ctx);
    for (int i = 0; i < 64; ++i)
      if (mask >> i & 1) {
        o.s[q * o.width + first_id + i] = v[i];
        o.r[q * o.width + first_id + i] = true;
      }
  };
  ScanQueries qs{luts.data(), luts.shape(1) * luts.shape(2), static_cast<int>(nq), thresholds, hit, &out};
  run_without_gil([&] {
    if (four_bit) pq_kernels().scan4(blocks.data(), 0, n_blocks, rows, qs);
    else pq_kernels().scan8(blocks.data(), 0, n_blocks, rows, qs);
  });
  return py::make_tuple(sums, reported);
}

py::array_t<float> train_py(const CArray<float>& x, i64 m, i64 ksub, int iters, std::uint64_t seed, int init,
                            int threads) {
  require_ndim(x, 2, "x");
  const i64 n = x.shape(0), dim = x.shape(1);
  require(m >= 1 && dim % m == 0, "dim must be a multiple of m");
  require(ksub >= 1 && ksub <= 256, "ksub must be in 1..256");
  require(n >= ksub, "training needs at least ksub = " + std::to_string(ksub) + " points, got " + std::to_string(n));
  require(iters >= 0, "iters must be >= 0");
  require(init == 0 || init == 1, "init code must be 0 (k-means++) or 1 (random)");
  py::array_t<float> codebooks({m, ksub, dim / m});
  float* out = codebooks.mutable_data();
  run_without_gil([&] { pq_train(x.data(), n, dim, m, ksub, iters, seed, init, out, threads); });
  return codebooks;
}

}  // namespace

void bind_pq(py::module_& m) {
  m.def("_pq_transpose", &transpose_py, py::arg("codebooks").noconvert(),
        R"(_pq_transpose(codebooks f32 (m, ksub, dsub)) -> f32 (m, dsub, ksub))");
  m.def("_pq_encode", &encode_py, py::arg("x").noconvert(), py::arg("ct").noconvert(), py::arg("threads"),
        py::arg("out") = py::none(),
        R"(_pq_encode(x f32 (n, dim), ct f32 (m, dsub, ksub), threads, out=None) -> u8 (n, m))");
  m.def("_pq_tables", &tables_py, py::arg("queries").noconvert(), py::arg("ct").noconvert(), py::arg("metric"),
        py::arg("threads"), py::arg("out") = py::none(),
        R"(_pq_tables(queries f32 (nq, dim), ct, metric 0|1, threads, out=None) -> f32 (nq, m, ksub))");
  m.def("_pq_adc", &adc_py, py::arg("tables").noconvert(), py::arg("codes").noconvert(), py::arg("threads"),
        py::arg("out") = py::none(),
        R"(_pq_adc(tables f32 (nq, m, ksub), codes u8 (n, m), threads, out=None) -> f32 (nq, n))");
  m.def(
      "_pq_search", &search_py, py::arg("tables").noconvert(), py::arg("codes").noconvert(), py::arg("mask"),
      py::arg("k"), py::arg("smaller_is_better"), py::arg("threads"),
      R"(_pq_search(tables f32 (nq, m, ksub), codes u8 (n, m), mask u8 (n,) | None, k, smaller_is_better, threads) -> (f32 (nq, k), i64 (nq, k)))");
  m.def(
      "_pq_search_quantised", &search_quantised_py, py::arg("tables").noconvert(), py::arg("codes").noconvert(),
      py::arg("blocks"), py::arg("mask"), py::arg("k"), py::arg("smaller_is_better"), py::arg("threads"),
      R"(_pq_search_quantised(tables f32 (nq, m, ksub), codes u8 (n, m), blocks u8 (ceil or floor(n/32), ceil(m/2), 32) or (ceil or floor(n/64), m, 64), mask, k, smaller_is_better, threads))");
  m.def(
      "_pq_scan4",
      [](const CArray<std::uint8_t>& b, const CArray<std::uint8_t>& l, int t) { return run_scan(true, b, l, t); },
      py::arg("blocks").noconvert(), py::arg("luts").noconvert(), py::arg("threshold"),
      R"(_pq_scan4(blocks u8 (nb, n_pairs, 32), luts u8 (nq<=4, 2*n_pairs, 16), threshold) -> (sums, reported))");
  m.def(
      "_pq_scan8",
      [](const CArray<std::uint8_t>& b, const CArray<std::uint8_t>& l, int t) { return run_scan(false, b, l, t); },
      py::arg("blocks").noconvert(), py::arg("luts").noconvert(), py::arg("threshold"),
      R"(_pq_scan8(blocks u8 (nb, m, 64), luts u8 (nq<=4, m, 256), threshold) -> (sums, reported))");
  m.def("_pq_train", &train_py, py::arg("x").noconvert(), py::arg("m"), py::arg("ksub"), py::arg("iters"),
        py::arg("seed"), py::arg("init"), py::arg("threads"),
        R"(_pq_train(x f32 (n, dim), m, ksub, iters, seed, init 0|1, threads) -> f32 (m, ksub, dsub))");
}

}  // namespace simkern::bind
