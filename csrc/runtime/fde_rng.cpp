// FDE random matrices, drawn exactly as the reference's libstdc++ distributions draw them, written by hand on raw
// mt19937 words so the result does not depend on the C++ standard library (see simkern/fde.hpp). Compiled with
// -ffp-contract=off: x * x + y * y in the polar method must round twice, as in the reference build.
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "simkern/fde.hpp"

namespace simkern {
namespace {

// The Mersenne Twister MT19937 (Matsumoto & Nishimura 1998), 32-bit output, seeded like std::mt19937(seed).
class MT19937 {
 public:
  explicit MT19937(std::uint32_t seed) {
    state_[0] = seed;
    for (int i = 1; i < kN; ++i)
      state_[i] = 1812433253u * (state_[i - 1] ^ (state_[i - 1] >> 30)) + static_cast<std::uint32_t>(i);
    index_ = kN;
  }
  std::uint32_t next() {
    if (index_ >= kN) twist();
    std::uint32_t y = state_[index_++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
  }

 private:
  static constexpr int kN = 624, kM = 397;
  void twist() {
    for (int i = 0; i < kN; ++i) {
      const std::uint32_t y = (state_[i] & 0x80000000u) | (state_[(i + 1) % kN] & 0x7fffffffu);
      state_[i] = state_[(i + kM) % kN] ^ (y >> 1) ^ ((y & 1u) ? 0x9908b0dfu : 0u);
    }
    index_ = 0;
  }
  std::uint32_t state_[kN];
  int index_;
};

// generate_canonical<float, 24>: one word, float(u) / 2^32, kept below 1.
float canonical_float(MT19937& gen) {
  const float r = static_cast<float>(gen.next()) / 4294967296.0f;
  return r >= 1.0f ? std::nextafter(1.0f, 0.0f) : r;
}

// generate_canonical<double, 53>: two words, (u1 + u2 * 2^32) / 2^64 in double arithmetic, kept below 1.
double canonical_double(MT19937& gen) {
  double sum = static_cast<double>(gen.next());
  sum += static_cast<double>(gen.next()) * 4294967296.0;
  const double r = sum / 18446744073709551616.0;
  return r >= 1.0 ? std::nextafter(1.0, 0.0) : r;
}

// normal_distribution<float>(0, 1): Marsaglia's polar method; each accepted pair returns y * mult first and keeps
// x * mult for the next call.
class PolarNormal {
 public:
  float next(MT19937& gen) {
    if (saved_available_) {
      saved_available_ = false;
      return saved_;
    }
    float x, y, r2;
    do {
      x = 2.0f * canonical_float(gen) - 1.0f;
      y = 2.0f * canonical_float(gen) - 1.0f;
      r2 = x * x + y * y;
    } while (r2 > 1.0f || r2 == 0.0f);
    const float mult = std::sqrt(-2.0f * std::log(r2) / r2);
    saved_ = x * mult;
    saved_available_ = true;
    return y * mult;
  }

 private:
  float saved_ = 0.0f;
  bool saved_available_ = false;
};

// uniform_int_distribution over [0, range - 1] for range <= 2^32: Lemire's nearly divisionless method on 32-bit
// words, as libstdc++ (GCC >= 11.3) does for a 32-bit engine.
std::uint32_t uniform_below(MT19937& gen, std::uint32_t range) {
  std::uint64_t product = static_cast<std::uint64_t>(gen.next()) * range;
  std::uint32_t low = static_cast<std::uint32_t>(product);
  if (low < range) {
    const std::uint32_t threshold = static_cast<std::uint32_t>(-range) % range;
    while (low < threshold) {
      product = static_cast<std::uint64_t>(gen.next()) * range;
      low = static_cast<std::uint32_t>(product);
    }
  }
  return static_cast<std::uint32_t>(product >> 32);
}

// One (index, sign) pair per coordinate: uniform index in [0, range), then bernoulli(0.5) (true = +1).
void count_sketch(std::uint32_t seed, i64 count, std::uint32_t range, std::int32_t* index, float* sign) {
  MT19937 gen(seed);
  for (i64 i = 0; i < count; ++i) {
    index[i] = static_cast<std::int32_t>(uniform_below(gen, range));
    sign[i] = canonical_double(gen) < 0.5 ? 1.0f : -1.0f;
  }
}

}  // namespace

void fde_build_gather_lists(const FDEConfig& c, FDEMatrices& mats) {
  mats.ams_order.clear();
  mats.ams_start.clear();
  if (!c.ams) return;
  const i64 dp = c.projection_dim;
  mats.ams_order.resize(static_cast<std::size_t>(c.repetitions * c.dim));
  mats.ams_start.assign(static_cast<std::size_t>(c.repetitions * (dp + 1)), 0);
  for (i64 r = 0; r < c.repetitions; ++r) {
    std::int32_t* start = mats.ams_start.data() + r * (dp + 1);
    const std::int32_t* index = mats.ams_index.data() + r * c.dim;
    for (i64 i = 0; i < c.dim; ++i) ++start[index[i] + 1];
    for (i64 t = 0; t < dp; ++t) start[t + 1] += start[t];
    std::vector<std::int32_t> fill(start, start + dp);
    for (i64 i = 0; i < c.dim; ++i) mats.ams_order[r * c.dim + fill[index[i]]++] = static_cast<std::int32_t>(i);
  }
}

FDEMatrices fde_build_matrices(const FDEConfig& c) {
  if (c.dim <= 0 || c.repetitions <= 0 || c.simhash_bits < 0 || c.simhash_bits > 30 || c.projection_dim <= 0)
    throw std::invalid_argument("invalid FDE configuration");
  FDEMatrices mats;
  const i64 k = c.simhash_bits, hyperplanes = c.repetitions * k;
  mats.simhash.resize(static_cast<std::size_t>(c.dim * hyperplanes));
  for (i64 r = 0; r < c.repetitions; ++r) {
    if (k == 0) break;
    MT19937 gen(c.seed + static_cast<std::uint32_t>(r));
    PolarNormal normal;
    for (i64 j = 0; j < k; ++j)  // Eigen's column-major NullaryExpr: all coordinates of hyperplane 0 first
      for (i64 i = 0; i < c.dim; ++i) mats.simhash[i * hyperplanes + r * k + j] = normal.next(gen);
  }
  if (c.ams) {
    mats.ams_index.resize(static_cast<std::size_t>(c.repetitions * c.dim));
    mats.ams_sign.resize(static_cast<std::size_t>(c.repetitions * c.dim));
    for (i64 r = 0; r < c.repetitions; ++r)
      count_sketch(c.seed + static_cast<std::uint32_t>(r), c.dim, static_cast<std::uint32_t>(c.projection_dim),
                   mats.ams_index.data() + r * c.dim, mats.ams_sign.data() + r * c.dim);
  }
  fde_build_gather_lists(c, mats);
  if (c.final_dim > 0) {
    const i64 inner = c.inner_dim();
    mats.final_index.resize(static_cast<std::size_t>(inner));
    mats.final_sign.resize(static_cast<std::size_t>(inner));
    count_sketch(c.seed, inner, static_cast<std::uint32_t>(c.final_dim), mats.final_index.data(),
                 mats.final_sign.data());
  }
  return mats;
}

}  // namespace simkern
