// MaxSim bindings. Validation (shapes, offsets, ids) happens here with the GIL held; the drivers run with the
// GIL released. Float16/bfloat16 docs arrive as uint16 views (the Python layer makes them, zero-copy) plus a
// dtype code.
#include <cmath>
#include <cstring>
#include <sstream>
#include <vector>

#include "arrays.hpp"
#include "simkern/maxsim.hpp"

namespace simkern::bind {

namespace {

struct Inputs {
  QueryTokens q;
  DocTokens d;
};

Inputs parse_inputs(const CArray<float>& q_tokens, const CArray<i64>& q_offsets, const py::array& d_tokens, int d_dtype,
                    const CArray<i64>& d_offsets) {
  Inputs in;
  require_ndim(q_tokens, 2, "queries.tokens");
  require_ndim(d_tokens, 2, "docs.tokens");
  require(d_dtype >= 0 && d_dtype < kNumDocDTypes, "unknown doc dtype code " + std::to_string(d_dtype));
  in.d.dtype = static_cast<DocDType>(d_dtype);
  const bool is_f32 = in.d.dtype == DocDType::f32;
  if (is_f32 ? !py::isinstance<py::array_t<float>>(d_tokens) : !py::isinstance<py::array_t<std::uint16_t>>(d_tokens))
    throw py::type_error(std::string("docs.tokens must be ") + (is_f32 ? "float32" : "a uint16 view"));
  if (!(d_tokens.flags() & py::array::c_style)) throw py::value_error("docs.tokens must be C-contiguous");
  in.q.dim = q_tokens.shape(1);
  in.d.dim = d_tokens.shape(1);
  if (in.q.dim != in.d.dim) {
    std::ostringstream s;
    s << "docs must have dim == " << in.q.dim << " (the queries' dim), got dim " << in.d.dim;
    throw py::value_error(s.str());
  }
  in.q.tokens = q_tokens.data();
  in.q.offsets = q_offsets.data();
  in.q.n_queries = check_offsets(q_offsets, q_tokens.shape(0), "queries.offsets");
  in.d.tokens = d_tokens.data();
  in.d.offsets = d_offsets.data();
  in.d.n_docs = check_offsets(d_offsets, d_tokens.shape(0), "docs.offsets");
  return in;
}

bool doc_value_finite(const DocTokens& d, i64 index) {
  if (d.dtype == DocDType::f32) return std::isfinite(static_cast<const float*>(d.tokens)[index]);
  const std::uint16_t h = static_cast<const std::uint16_t*>(d.tokens)[index];
  return d.dtype == DocDType::f16 ? (h & 0x7c00u) != 0x7c00u : (h & 0x7f80u) != 0x7f80u;
}

// Where does a non-finite value sit? Error path only: a full scan that names the argument, row and set.
i64 set_of_row(const i64* offsets, i64 n_sets, i64 row) {
  i64 lo = 0, hi = n_sets;  // largest set s with offsets[s] <= row and a non-empty range
  while (hi - lo > 1) {
    const i64 mid = (lo + hi) / 2;
    if (offsets[mid] <= row) lo = mid;
    else hi = mid;
  }
  return lo;
}

[[noreturn]] void raise_located(const Inputs& in) {
  const i64 q_values = in.q.offsets[in.q.n_queries] * in.q.dim;
  for (i64 i = 0; i < q_values; ++i) {
    if (!std::isfinite(in.q.tokens[i])) {
      const i64 row = i / in.q.dim;
      throw py::value_error("queries contain NaN or inf (token row " + std::to_string(row) + ", query " +
                            std::to_string(set_of_row(in.q.offsets, in.q.n_queries, row)) + ")");
    }
  }
  const i64 d_values = in.d.offsets[in.d.n_docs] * in.d.dim;
  for (i64 i = 0; i < d_values; ++i) {
    if (!doc_value_finite(in.d, i)) {
      const i64 row = i / in.d.dim;
      throw py::value_error("docs contain NaN or inf (token row " + std::to_string(row) + ", doc " +
                            std::to_string(set_of_row(in.d.offsets, in.d.n_docs, row)) + ")");
    }
  }
  throw py::value_error("MaxSim scores overflowed float32: the token values are too large");
}

int threads_arg(int threads) {
  if (threads < 0)
    throw py::value_error("threads must be >= 1 (or None for the default), got " + std::to_string(threads));
  return threads;  // 0 = default
}

py::array_t<float> maxsim_dense_py(const CArray<float>& q_tokens, const CArray<i64>& q_offsets,
                                   const py::array& d_tokens, int d_dtype, const CArray<i64>& d_offsets, int threads,
                                   const py::object& out_obj) {
  const Inputs in = parse_inputs(q_tokens, q_offsets, d_tokens, d_dtype, d_offsets);
  threads = threads_arg(threads);
  py::array_t<float> out = result_array(out_obj, {in.q.n_queries, in.d.n_docs});
  float* out_ptr = out.mutable_data();
  try {
    run_without_gil([&] { maxsim_dense(in.q, in.d, out_ptr, threads); });
  } catch (const NonFiniteError&) {
    raise_located(in);
  }
  return out;
}

py::array_t<float> maxsim_pairs_py(const CArray<float>& q_tokens, const CArray<i64>& q_offsets,
                                   const py::array& d_tokens, int d_dtype, const CArray<i64>& d_offsets,
                                   const CArray<i64>& query_ids, const CArray<i64>& doc_ids, int threads,
                                   const py::object& out_obj) {
  const Inputs in = parse_inputs(q_tokens, q_offsets, d_tokens, d_dtype, d_offsets);
  threads = threads_arg(threads);
  require_ndim(query_ids, 1, "query_ids");
  require_ndim(doc_ids, 1, "doc_ids");
  const i64 n_pairs = query_ids.shape(0);
  require(doc_ids.shape(0) == n_pairs, "query_ids and doc_ids must have the same length, got " +
                                           std::to_string(n_pairs) + " and " + std::to_string(doc_ids.shape(0)));
  check_ids(query_ids.data(), n_pairs, in.q.n_queries, "query_ids", false);
  check_ids(doc_ids.data(), n_pairs, in.d.n_docs, "doc_ids", false);
  py::array_t<float> out = result_array(out_obj, {n_pairs});
  float* out_ptr = out.mutable_data();
  try {
    run_without_gil([&] { maxsim_pairs(in.q, in.d, query_ids.data(), doc_ids.data(), n_pairs, out_ptr, threads); });
  } catch (const NonFiniteError&) {
    raise_located(in);
  }
  return out;
}

py::tuple maxsim_topk_py(const CArray<float>& q_tokens, const CArray<i64>& q_offsets, const py::array& d_tokens,
                         int d_dtype, const CArray<i64>& d_offsets, i64 k, const py::object& cand_ids_obj,
                         const py::object& cand_offsets_obj, int threads) {
  const Inputs in = parse_inputs(q_tokens, q_offsets, d_tokens, d_dtype, d_offsets);
  threads = threads_arg(threads);
  require(k >= 1, "k must be >= 1, got " + std::to_string(k));
  const i64* cand_ids = nullptr;
  const i64* cand_offsets = nullptr;
  CArray<i64> ids_arr, offsets_arr;
  if (!cand_offsets_obj.is_none()) {
    ids_arr = optional_vector<i64>(cand_ids_obj, "candidates (flat ids)");
    offsets_arr = optional_vector<i64>(cand_offsets_obj, "candidates (offsets)");
    const i64 n = check_offsets(offsets_arr, ids_arr.shape(0), "candidates (offsets)");
    require(n == in.q.n_queries, "candidates must have one list per query: " + std::to_string(in.q.n_queries) +
                                     " queries, got " + std::to_string(n) + " lists");
    check_ids(ids_arr.data(), ids_arr.shape(0), in.d.n_docs, "candidates", true);
    cand_ids = ids_arr.data();
    cand_offsets = offsets_arr.data();
  }
  py::array_t<float> scores({in.q.n_queries, k});
  py::array_t<i64> ids({in.q.n_queries, k});
  float* s_ptr = scores.mutable_data();
  i64* i_ptr = ids.mutable_data();
  try {
    run_without_gil([&] { maxsim_topk(in.q, in.d, k, cand_ids, cand_offsets, s_ptr, i_ptr, threads); });
  } catch (const NonFiniteError&) {
    raise_located(in);
  }
  return py::make_tuple(scores, ids);
}

}  // namespace

void bind_maxsim(py::module_& m) {
  m.def(
      "_maxsim_kernel_for",
      [](const CArray<i64>& q_offsets, i64 dim, int d_dtype, bool stacked) {
        require(q_offsets.ndim() == 1 && q_offsets.shape(0) >= 1, "q_offsets must be 1-D, n_queries + 1");
        require(d_dtype >= 0 && d_dtype < kNumDocDTypes, "unknown doc dtype code " + std::to_string(d_dtype));
        require(dim >= 1, "dim must be >= 1");
        const i64* o = q_offsets.data();
        for (i64 i = 0; i + 1 < q_offsets.shape(0); ++i)
          require(o[i] <= o[i + 1] && o[0] == 0, "q_offsets must rise from 0");
        return std::string(
            maxsim_kernel_name_for(o, q_offsets.shape(0) - 1, dim, static_cast<DocDType>(d_dtype), stacked));
      },
      py::arg("q_offsets").noconvert(), py::arg("dim"), py::arg("d_dtype"), py::arg("stacked"),
      "Test probe: the MaxSim kernel a call with these query offsets would run at the active ISA.");
  m.def(
      "_maxsim_dense", &maxsim_dense_py, py::arg("q_tokens").noconvert(), py::arg("q_offsets").noconvert(),
      py::arg("d_tokens"), py::arg("d_dtype"), py::arg("d_offsets").noconvert(), py::arg("threads"),
      py::arg("out") = py::none(),
      R"(_maxsim_dense(q_tokens f32 (Tq, dim), q_offsets i64 (nq+1,), d_tokens (Td, dim), d_dtype, d_offsets i64 (nd+1,), threads, out=None) -> f32 (nq, nd))");
  m.def("_maxsim_pairs", &maxsim_pairs_py, py::arg("q_tokens").noconvert(), py::arg("q_offsets").noconvert(),
        py::arg("d_tokens"), py::arg("d_dtype"), py::arg("d_offsets").noconvert(), py::arg("query_ids").noconvert(),
        py::arg("doc_ids").noconvert(), py::arg("threads"), py::arg("out") = py::none(),
        R"(_maxsim_pairs(..., query_ids i64 (P,), doc_ids i64 (P,), threads, out=None) -> f32 (P,))");
  m.def("_maxsim_topk", &maxsim_topk_py, py::arg("q_tokens").noconvert(), py::arg("q_offsets").noconvert(),
        py::arg("d_tokens"), py::arg("d_dtype"), py::arg("d_offsets").noconvert(), py::arg("k"), py::arg("cand_ids"),
        py::arg("cand_offsets"), py::arg("threads"),
        R"(_maxsim_topk(..., k, cand_ids i64 | None, cand_offsets i64 | None, threads) -> (f32 (nq, k), i64 (nq, k)))");
}

}  // namespace simkern::bind
