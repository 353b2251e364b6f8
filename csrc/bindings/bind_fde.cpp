// FDE bindings: the _FDEPlan object holds a configuration and its random matrices (drawn once, or the caller's
// through from_matrices); encode checks shapes with the GIL held and runs the driver with it released.
// python/simkern/fde.py owns argument policy.
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "arrays.hpp"
#include "simkern/fde.hpp"

namespace simkern::bind {

namespace {

class FDEPlan {
 public:
  FDEPlan(i64 dim, i64 repetitions, int simhash_bits, bool ams, i64 projection_dim, bool fill_empty, i64 final_dim,
          std::uint32_t seed) {
    configure(dim, repetitions, simhash_bits, ams, projection_dim, fill_empty, final_dim, seed,
              FDEFillTarget::kReference);
    {
      py::gil_scoped_release release;
      matrices_ = fde_build_matrices(config_);
    }
  }

  // A plan over the caller's matrices (FDE.from_matrices, which checks them first and names its own arguments;
  // checked again here since nothing else stands between them and the kernels' indexing): simhash (dim, R * k)
  // in FDEMatrices' layout, finite; AMS index / sign (R, dim) with indices in [0, projection_dim) and signs +-1
  // (ignored for identity); final index / sign (R * 2**k * d_p,) with indices in [0, final_dim) (ignored when
  // final_dim == 0).
  static FDEPlan from_matrices(const CArray<float>& simhash, i64 repetitions, int simhash_bits, bool ams,
                               const CArray<std::int32_t>& ams_index, const CArray<float>& ams_sign, i64 projection_dim,
                               bool fill_empty, const CArray<std::int32_t>& final_index,
                               const CArray<float>& final_sign, i64 final_dim, bool gray_decoded_fill) {
    FDEPlan plan;
    require_ndim(simhash, 2, "simhash");
    const i64 dim = simhash.shape(0);
    plan.configure(dim, repetitions, simhash_bits, ams, projection_dim, fill_empty, final_dim, 0,
                   gray_decoded_fill ? FDEFillTarget::kGrayDecoded : FDEFillTarget::kReference);
    const FDEConfig& c = plan.config_;
    const i64 hyperplanes = c.repetitions * c.simhash_bits;
    require(simhash.shape(1) == hyperplanes,
            "simhash must have shape (dim, " + std::to_string(hyperplanes) + "), got " + shape_str(simhash));
    const auto finite = [](const float* v, i64 n) {
      for (i64 i = 0; i < n; ++i)
        if (!std::isfinite(v[i])) return false;
      return true;
    };
    const auto signs_ok = [](const float* v, i64 n) {
      for (i64 i = 0; i < n; ++i)
        if (v[i] != 1.0f && v[i] != -1.0f) return false;
      return true;
    };
    const auto indices_ok = [](const std::int32_t* v, i64 n, i64 bound) {
      for (i64 i = 0; i < n; ++i)
        if (v[i] < 0 || v[i] >= bound) return false;
      return true;
    };
    require(finite(simhash.data(), dim * hyperplanes), "simhash must be finite");
    FDEMatrices& m = plan.matrices_;
    m.simhash.assign(simhash.data(), simhash.data() + dim * hyperplanes);
    if (c.ams) {
      require_ndim(ams_index, 2, "ams_index");
      require_ndim(ams_sign, 2, "ams_sign");
      require(ams_index.shape(0) == c.repetitions && ams_index.shape(1) == dim && ams_sign.shape(0) == c.repetitions &&
                  ams_sign.shape(1) == dim,
              "ams_index and ams_sign must have shape (repetitions, dim)");
      require(indices_ok(ams_index.data(), c.repetitions * dim, c.projection_dim),
              "ams_index must be in [0, projection_dim)");
      require(signs_ok(ams_sign.data(), c.repetitions * dim), "ams_sign must be +1 or -1");
      m.ams_index.assign(ams_index.data(), ams_index.data() + c.repetitions * dim);
      m.ams_sign.assign(ams_sign.data(), ams_sign.data() + c.repetitions * dim);
    }
    if (c.final_dim > 0) {
      const i64 inner = c.inner_dim();
      require_ndim(final_index, 1, "final_index");
      require_ndim(final_sign, 1, "final_sign");
      require(final_index.shape(0) == inner && final_sign.shape(0) == inner,
              "final_index and final_sign must have shape (" + std::to_string(inner) + ",)");
      require(indices_ok(final_index.data(), inner, c.final_dim), "final_index must be in [0, final_dim)");
      require(signs_ok(final_sign.data(), inner), "final_sign must be +1 or -1");
      m.final_index.assign(final_index.data(), final_index.data() + inner);
      m.final_sign.assign(final_sign.data(), final_sign.data() + inner);
    }
    fde_build_gather_lists(c, m);
    return plan;
  }

  i64 output_dim() const { return config_.output_dim(); }
  i64 inner_dim() const { return config_.inner_dim(); }

  py::array_t<float> encode(const CArray<float>& tokens, const CArray<i64>& offsets, bool documents, int threads,
                            const py::object& out_obj, const std::string& name) {
    require_ndim(tokens, 2, "tokens");
    require(tokens.shape(1) == config_.dim,
            "tokens must have dim " + std::to_string(config_.dim) + ", got " + std::to_string(tokens.shape(1)));
    const i64 n = check_offsets(offsets, tokens.shape(0), "offsets");
    py::array_t<float> out = result_array(out_obj, {n, config_.output_dim()});
    std::vector<const float*> clouds(static_cast<std::size_t>(n));
    std::vector<i64> rows(static_cast<std::size_t>(n));
    const float* t = tokens.data();
    const i64* off = offsets.data();
    for (i64 i = 0; i < n; ++i) {
      clouds[static_cast<std::size_t>(i)] = t + off[i] * config_.dim;
      rows[static_cast<std::size_t>(i)] = off[i + 1] - off[i];
    }
    run(clouds, rows, documents, threads, out, name);
    return out;
  }

  // A list or tuple of 2-D arrays encoded in place (no concatenation). Returns None, leaving the general path to
  // the caller, unless every item is a float32 C-contiguous NumPy array of shape (rows, dim). Empty items raise
  // when documents and not allow_empty.
  py::object encode_list(const py::sequence& items, bool documents, bool allow_empty, int threads,
                         const py::object& out_obj, const std::string& name) {
    const auto n = static_cast<i64>(py::len(items));
    std::vector<py::array> keep;  // references held while the GIL is released
    keep.reserve(static_cast<std::size_t>(n));
    const py::dtype f32 = py::dtype::of<float>();
    for (i64 i = 0; i < n; ++i) {
      py::object item = items[static_cast<py::size_t>(i)];
      if (!py::isinstance<py::array>(item)) return py::none();
      auto a = py::reinterpret_borrow<py::array>(item);
      if (!a.dtype().equal(f32) || a.ndim() != 2 || a.shape(1) != config_.dim || !(a.flags() & py::array::c_style))
        return py::none();
      keep.push_back(std::move(a));
    }
    std::vector<const float*> clouds(static_cast<std::size_t>(n));
    std::vector<i64> rows(static_cast<std::size_t>(n));
    for (i64 i = 0; i < n; ++i) {
      const py::array& a = keep[static_cast<std::size_t>(i)];
      clouds[static_cast<std::size_t>(i)] = static_cast<const float*>(a.data());
      rows[static_cast<std::size_t>(i)] = a.shape(0);
      require(!documents || allow_empty || a.shape(0) > 0,
              name + "[" + std::to_string(i) +
                  "] is empty (0 tokens): an FDE of an empty document is undefined; "
                  "pass empty='zeros' to encode it as zeros");
    }
    py::array_t<float> out = result_array(out_obj, {n, config_.output_dim()});
    for (i64 i = 0; i < n; ++i) {
      const py::array& a = keep[static_cast<std::size_t>(i)];
      require(!ranges_overlap(out, a), "out must not overlap the input tokens");
    }
    run(clouds, rows, documents, threads, out, name);
    return std::move(out);
  }

  // The random matrices, for tests: simhash (dim, R * k), AMS index / sign (R, dim) (empty for identity), final
  // index / sign (inner_dim,) (empty without a final projection).
  py::dict matrices() const {
    py::dict d;
    const i64 hyper = config_.repetitions * config_.simhash_bits;
    d["simhash"] = py::array_t<float>({config_.dim, hyper}, matrices_.simhash.data());
    const i64 ams_rows = config_.ams ? config_.repetitions : 0;
    d["ams_index"] = py::array_t<std::int32_t>({ams_rows, config_.dim}, matrices_.ams_index.data());
    d["ams_sign"] = py::array_t<float>({ams_rows, config_.dim}, matrices_.ams_sign.data());
    const i64 final_n = static_cast<i64>(matrices_.final_index.size());
    d["final_index"] = py::array_t<std::int32_t>({final_n}, matrices_.final_index.data());
    d["final_sign"] = py::array_t<float>({final_n}, matrices_.final_sign.data());
    return d;
  }

 private:
  FDEPlan() = default;

  // Checks the sizes and sets config_ (FDEConfig::projection_dim is dim for identity).
  void configure(i64 dim, i64 repetitions, int simhash_bits, bool ams, i64 projection_dim, bool fill_empty,
                 i64 final_dim, std::uint32_t seed, FDEFillTarget fill_target) {
    require(dim >= 1, "dim must be >= 1");
    require(repetitions >= 1, "num_repetitions must be >= 1");
    require(simhash_bits >= 0 && simhash_bits <= 30, "num_simhash_projections must be in 0..30");
    require(projection_dim >= 1, "projection_dimension must be >= 1");
    require(final_dim >= 0, "final_projection_dimension must be >= 1");
    config_ = FDEConfig{dim, repetitions, simhash_bits, ams, ams ? projection_dim : dim, fill_empty, final_dim, seed};
    config_.fill_target = fill_target;
    const double inner = static_cast<double>(repetitions) * static_cast<double>(i64{1} << simhash_bits) *
                         static_cast<double>(config_.projection_dim);
    require(inner <= static_cast<double>(std::numeric_limits<std::int32_t>::max()),
            "num_repetitions * 2**num_simhash_projections * projection_dimension must be < 2**31, got " +
                std::to_string(static_cast<long double>(inner)));
  }

  static bool ranges_overlap(const py::array& a, const py::array& b) {
    const auto* a0 = static_cast<const char*>(a.data());
    const auto* b0 = static_cast<const char*>(b.data());
    return a.nbytes() > 0 && b.nbytes() > 0 && a0 < b0 + b.nbytes() && b0 < a0 + a.nbytes();
  }

  // Encodes without the GIL; a cloud holding a NaN or infinity raises ValueError naming it and its first such token,
  // and an encoding that overflowed float32 (finite tokens) raises ValueError naming the first such cloud.
  void run(const std::vector<const float*>& clouds, const std::vector<i64>& rows, bool documents, int threads,
           py::array_t<float>& out, const std::string& name) {
    float* o = out.mutable_data();
    const auto n = static_cast<i64>(clouds.size());
    i64 bad = -1, overflow = -1;
    run_without_gil(
        [&] { bad = fde_encode(config_, matrices_, clouds.data(), rows.data(), n, documents, o, threads, &overflow); });
    if (bad < 0 && overflow >= 0)
      throw py::value_error("the FDE of " + name + "[" + std::to_string(overflow) +
                            "] overflowed float32: the token "
                            "values of " +
                            name +
                            " are too large (each coordinate sums up to every token of a "
                            "set); scale them down");
    if (bad < 0) return;
    const float* x = clouds[static_cast<std::size_t>(bad)];
    i64 token = 0;
    for (i64 i = 0; i < rows[static_cast<std::size_t>(bad)] * config_.dim; ++i)
      if (!std::isfinite(x[i])) {
        token = i / config_.dim;
        break;
      }
    throw py::value_error(name + "[" + std::to_string(bad) + "] has a NaN or infinite value (token " +
                          std::to_string(token) + ")");
  }

  FDEConfig config_;
  FDEMatrices matrices_;
};

}  // namespace

void bind_fde(py::module_& m) {
  py::class_<FDEPlan>(m, "_FDEPlan")
      .def(py::init<i64, i64, int, bool, i64, bool, i64, std::uint32_t>(), py::arg("dim"), py::arg("repetitions"),
           py::arg("simhash_bits"), py::arg("ams"), py::arg("projection_dim"), py::arg("fill_empty"),
           py::arg("final_dim"), py::arg("seed"))
      .def_static(
          "from_matrices", &FDEPlan::from_matrices, py::arg("simhash").noconvert(), py::arg("repetitions"),
          py::arg("simhash_bits"), py::arg("ams"), py::arg("ams_index").noconvert(), py::arg("ams_sign").noconvert(),
          py::arg("projection_dim"), py::arg("fill_empty"), py::arg("final_index").noconvert(),
          py::arg("final_sign").noconvert(), py::arg("final_dim"), py::arg("gray_decoded_fill"),
          R"(from_matrices(simhash f32 (dim, R*k), repetitions, simhash_bits, ams, ams_index i32 (R, dim), ams_sign f32 (R, dim), projection_dim, fill_empty, final_index i32 (inner,), final_sign f32 (inner,), final_dim, gray_decoded_fill) -> _FDEPlan over these matrices)")
      .def_property_readonly("output_dim", &FDEPlan::output_dim)
      .def_property_readonly("inner_dim", &FDEPlan::inner_dim)
      .def(
          "encode", &FDEPlan::encode, py::arg("tokens").noconvert(), py::arg("offsets").noconvert(),
          py::arg("documents"), py::arg("threads"), py::arg("out") = py::none(), py::arg("name") = "x",
          R"(encode(tokens f32 (T, dim), offsets i64 (n+1,), documents, threads, out=None, name="x") -> f32 (n, output_dim))")
      .def(
          "encode_list", &FDEPlan::encode_list, py::arg("items"), py::arg("documents"), py::arg("allow_empty"),
          py::arg("threads"), py::arg("out") = py::none(), py::arg("name") = "x",
          R"(encode_list(list of f32 (rows, dim) C-contiguous arrays, documents, allow_empty, threads, out=None, name="x") -> f32 (n, output_dim), or None when an item does not qualify)")
      .def("matrices", &FDEPlan::matrices);
}

}  // namespace simkern::bind
