// FDE bindings: the _FDEPlan object holds a configuration and its random matrices (built once); encode checks
// shapes with the GIL held and runs the driver with it released. python/simkern/fde.py owns argument policy.
#include <cstdint>
#include <limits>
#include <string>

#include "arrays.hpp"
#include "simkern/fde.hpp"

namespace simkern::bind {

namespace {

class FDEPlan {
 public:
  FDEPlan(i64 dim, i64 repetitions, int simhash_bits, bool ams, i64 projection_dim, bool fill_empty, i64 final_dim,
          std::uint32_t seed) {
    require(dim >= 1, "dim must be >= 1");
    require(repetitions >= 1, "num_repetitions must be >= 1");
    require(simhash_bits >= 0 && simhash_bits <= 30, "num_simhash_projections must be in 0..30");
    require(projection_dim >= 1, "projection_dimension must be >= 1");
    require(final_dim >= 0, "final_projection_dimension must be >= 1");
    config_ = FDEConfig{dim, repetitions, simhash_bits, ams, ams ? projection_dim : dim, fill_empty, final_dim, seed};
    const double inner = static_cast<double>(repetitions) * static_cast<double>(i64{1} << simhash_bits) *
                         static_cast<double>(config_.projection_dim);
    require(inner <= static_cast<double>(std::numeric_limits<std::int32_t>::max()),
            "num_repetitions * 2**num_simhash_projections * projection_dimension must be < 2**31, got " +
                std::to_string(static_cast<long double>(inner)));
    {
      py::gil_scoped_release release;
      matrices_ = fde_build_matrices(config_);
    }
  }

  i64 output_dim() const { return config_.output_dim(); }
  i64 inner_dim() const { return config_.inner_dim(); }

  py::array_t<float> encode(const CArray<float>& tokens, const CArray<i64>& offsets, bool documents, int threads,
                            const py::object& out_obj) {
    require_ndim(tokens, 2, "tokens");
    require(tokens.shape(1) == config_.dim, "tokens must have dim " + std::to_string(config_.dim) + ", got " +
                                                std::to_string(tokens.shape(1)));
    const i64 n = check_offsets(offsets, tokens.shape(0), "offsets");
    py::array_t<float> out = result_array(out_obj, {n, config_.output_dim()});
    float* o = out.mutable_data();
    const float* t = tokens.data();
    const i64* off = offsets.data();
    run_without_gil([&] { fde_encode(config_, matrices_, t, off, n, documents, o, threads); });
    return out;
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
  FDEConfig config_;
  FDEMatrices matrices_;
};

}  // namespace

void bind_fde(py::module_& m) {
  py::class_<FDEPlan>(m, "_FDEPlan")
      .def(py::init<i64, i64, int, bool, i64, bool, i64, std::uint32_t>(), py::arg("dim"), py::arg("repetitions"),
           py::arg("simhash_bits"), py::arg("ams"), py::arg("projection_dim"), py::arg("fill_empty"),
           py::arg("final_dim"), py::arg("seed"))
      .def_property_readonly("output_dim", &FDEPlan::output_dim)
      .def_property_readonly("inner_dim", &FDEPlan::inner_dim)
      .def("encode", &FDEPlan::encode, py::arg("tokens").noconvert(), py::arg("offsets").noconvert(),
           py::arg("documents"), py::arg("threads"), py::arg("out") = py::none(),
           R"(encode(tokens f32 (T, dim), offsets i64 (n+1,), documents, threads, out=None) -> f32 (n, output_dim))")
      .def("matrices", &FDEPlan::matrices);
}

}  // namespace simkern::bind
