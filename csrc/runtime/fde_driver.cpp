// FDE driver: one task per point cloud (threads split clouds), SimHash sketches by the SIMD kernel for all
// repetitions at once, then per repetition the partition of each token, the projection (identity or the signed
// scatter of the AMS matrix, coordinates in order), aggregation in token order, averaging / filling for documents,
// and the optional final CountSketch. Every output value is computed by one task with a fixed operation order, so
// results do not depend on the batch or the thread count. Compiled with -ffp-contract=off.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#include "simkern/dispatch.hpp"
#include "simkern/fde.hpp"
#include "simkern/fde_partition.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

// Sign strings and partitions of every (repetition, token): signs[r * n + t] holds the k sign bits of token t's
// sketches for repetition r with hyperplane 0 as the most significant bit (compared with p ^ (p >> 1) when filling),
// parts[r * n + t] its partition. Per token the "sketch > 0" bits of all R * k hyperplanes are packed into 64-bit
// words (FDEKernels::sign_words), then each repetition's k-bit field is read out and
// mapped through the tables (bit reversal within k bits and its partition; built for k <= kTableBits) or
// reversed bit by bit.
constexpr int kTableBits = 12;

struct SignTables {
  int k = -1;
  std::vector<std::uint32_t> reverse, partition;  // 2^k entries each when k <= kTableBits
  void build(int bits) {
    if (bits == k) return;
    k = bits;
    reverse.clear();
    partition.clear();
    if (k > kTableBits) return;
    reverse.resize(std::size_t{1} << k);
    partition.resize(std::size_t{1} << k);
    for (std::uint32_t v = 0; v < reverse.size(); ++v) {
      std::uint32_t rv = 0;
      for (int j = 0; j < k; ++j) rv |= (v >> j & 1u) << (k - 1 - j);
      reverse[v] = rv;
      partition[v] = gray_partition(rv);
    }
  }
};

void sign_strings(const FDEKernels& kern, const float* sketches, i64 n, i64 repetitions, int k,
                  const SignTables& tables, std::vector<std::uint64_t>& words, std::uint32_t* signs,
                  std::uint32_t* parts) {
  const i64 hyperplanes = repetitions * k;
  const std::size_t n_words = static_cast<std::size_t>(hyperplanes / 64 + 2);
  words.resize(n_words);
  const std::uint64_t field_mask = (std::uint64_t{1} << k) - 1;
  for (i64 t = 0; t < n; ++t) {
    const float* sk = sketches + t * hyperplanes;
    std::fill(words.begin(), words.end(), std::uint64_t{0});
    kern.sign_words(sk, hyperplanes, words.data());
    for (i64 r = 0; r < repetitions; ++r) {
      const i64 bit = r * k, shift = bit & 63;
      const std::size_t w = static_cast<std::size_t>(bit >> 6);
      std::uint64_t field = words[w] >> shift;
      if (shift + k > 64) field |= words[w + 1] << (64 - shift);
      const auto lsb_first = static_cast<std::uint32_t>(field & field_mask);
      if (k <= kTableBits) {
        signs[r * n + t] = tables.reverse[lsb_first];
        parts[r * n + t] = tables.partition[lsb_first];
      } else {
        std::uint32_t msb_first = 0;
        for (int j = 0; j < k; ++j) msb_first |= (lsb_first >> j & 1u) << (k - 1 - j);
        signs[r * n + t] = msb_first;
        parts[r * n + t] = gray_partition(msb_first);
      }
    }
  }
}

// Bits set per byte value: popcount without the POPCNT instruction (not in the x86-64 baseline of this file).
struct ByteBits {
  std::uint8_t bits[256];
  constexpr ByteBits() : bits() {
    for (int v = 0; v < 256; ++v)
      bits[v] = static_cast<std::uint8_t>((v & 1) + (v >> 1 & 1) + (v >> 2 & 1) + (v >> 3 & 1) + (v >> 4 & 1) +
                                          (v >> 5 & 1) + (v >> 6 & 1) + (v >> 7 & 1));
  }
};
constexpr ByteBits kByteBits;

inline std::uint32_t popcount32(std::uint32_t v) {
  return kByteBits.bits[v & 255] + kByteBits.bits[v >> 8 & 255] + kByteBits.bits[v >> 16 & 255] +
         kByteBits.bits[v >> 24];
}

// dst[j] += y[j] (no aliasing: lets the compiler use vector adds; each element still gets one float add).
inline void add_row(float* __restrict dst, const float* __restrict y, i64 n) {
  for (i64 j = 0; j < n; ++j) dst[j] += y[j];
}

// Whether every value is finite: x * 0 is (+-)0 for finite x and NaN for inf / NaN, summed in 8 independent lanes
// that the compiler vectorizes at the baseline ISA (this file holds no intrinsics: they belong to the kernels).
bool all_finite(const float* x, i64 count) {
  float lanes[8] = {};
  i64 i = 0;
  for (; i + 8 <= count; i += 8)
    for (int j = 0; j < 8; ++j) lanes[j] += x[i + j] * 0.0f;
  float total = 0.0f;
  for (; i < count; ++i) total += x[i] * 0.0f;
  for (int j = 0; j < 8; ++j) total += lanes[j];
  return total == 0.0f;
}

struct Scratch {
  std::vector<float> sketches, projected, inner, block, counts, xt, yt;
  std::vector<std::uint32_t> signs, parts;  // (R, n) sign strings and partitions
  std::vector<std::uint64_t> sign_words;
  SignTables tables;
  std::vector<std::uint64_t> keys;   // nearest_tokens: (distance << 40) | token per sign string
  std::vector<std::int32_t> keys32;  // the same as (distance << 25) | token
};

// For every sign string s of k bits: the token whose sign string is nearest to s in Hamming distance, lowest
// token index on ties (the reference's rule for filling an empty partition). Hamming distance is an L1 distance
// on the hypercube, so its distance transform is separable: start from key (0, t) on each token's string (lowest t
// per string) and, one bit at a time, key(s) = min(key(s), key(s ^ bit) + one step) from the previous keys. Keys
// hold the distance above the token index, so the minimum is the nearest token with the smallest index. k * 2^k
// branch-free steps over contiguous runs (vectorized by the compiler for bits >= 2); with fewer than 2^25 tokens
// the keys are int32 (distance << 25 | token). nearest_token() reads it.
constexpr int kNarrowShift = 25;

// The distance transform's steps for bits b_begin .. k - 1.
// Blocks of 2 * bit strings; within one, string j pairs with j + bit: contiguous runs the compiler vectorizes.
template <class Key>
void hypercube_steps(Key* key, int k, int b_begin, Key step) {
  const std::uint32_t strings = 1u << k;
  for (int b = b_begin; b < k; ++b) {
    const std::uint32_t bit = 1u << b;
    for (std::uint32_t base = 0; base < strings; base += 2 * bit) {
      Key* __restrict lo = key + base;
      Key* __restrict hi = key + base + bit;
      for (std::uint32_t j = 0; j < bit; ++j) {
        const Key a = lo[j], c = hi[j];
        lo[j] = c + step < a ? c + step : a;
        hi[j] = a + step < c ? a + step : c;
      }
    }
  }
}

void nearest_tokens(const std::uint32_t* signs, i64 n, int k, Scratch& s) {
  const std::uint32_t strings = 1u << k;
  if (n >= (i64{1} << kNarrowShift)) {  // wide keys: (distance << 40) | token
    s.keys.assign(strings, ~std::uint64_t{0} >> 1);
    for (i64 t = n - 1; t >= 0; --t) s.keys[signs[t]] = static_cast<std::uint64_t>(t);  // lowest t wins
    hypercube_steps<std::uint64_t>(s.keys.data(), k, 0, std::uint64_t{1} << 40);
    return;
  }
  // Narrow keys; "none yet" is distance 40 (> any real distance, k <= 30; + 1 step still fits an int32).
  constexpr std::int32_t kStep = std::int32_t{1} << kNarrowShift, kNone = std::int32_t{40} << kNarrowShift;
  s.keys32.assign(strings, kNone);
  for (i64 t = n - 1; t >= 0; --t) s.keys32[signs[t]] = static_cast<std::int32_t>(t);
  std::int32_t* key = s.keys32.data();
  hypercube_steps<std::int32_t>(key, k, 0, kStep);
}

inline i64 nearest_token(const Scratch& s, i64 n, std::uint32_t target) {
  if (n >= (i64{1} << kNarrowShift)) return static_cast<i64>(s.keys[target] & ((std::uint64_t{1} << 40) - 1));
  return static_cast<i64>(s.keys32[target] & ((std::int32_t{1} << kNarrowShift) - 1));
}

// Returns whether the encoding is finite (checked on the scratch block before each repetition is written, and on
// the final projection).
bool encode_one(const FDEConfig& c, const FDEMatrices& mats, const FDEKernels& kern, const float* x, i64 n,
                bool documents, Scratch& s, float* out) {
  bool finite = true;
  const int k = c.simhash_bits;
  const i64 hyperplanes = c.repetitions * k, parts = c.partitions(), dp = c.projection_dim;
  const i64 inner_dim = c.inner_dim();
  float* inner = out;
  if (c.final_dim > 0) {
    s.inner.resize(static_cast<std::size_t>(inner_dim));
    inner = s.inner.data();
  }
  if (n == 0) std::fill(inner, inner + inner_dim, 0.0f);
  if (n > 0) {
    s.sketches.resize(static_cast<std::size_t>(n * std::max<i64>(1, hyperplanes)));
    if (k > 0) kern.simhash(x, n, c.dim, mats.simhash.data(), hyperplanes, s.sketches.data());
    if (c.ams) {  // all repetitions' projections at once: (R, n, dp)
      s.projected.resize(static_cast<std::size_t>(c.repetitions * n * dp));
      s.xt.resize(static_cast<std::size_t>(c.dim * kFDELanes));
      s.yt.resize(static_cast<std::size_t>(dp * kFDELanes));
      kern.ams_project(x, n, c.dim, mats, c.repetitions, dp, s.xt.data(), s.yt.data(), s.projected.data());
    }
    s.signs.resize(static_cast<std::size_t>(c.repetitions * n));
    s.parts.resize(static_cast<std::size_t>(c.repetitions * n));
    if (k > 0) {
      s.tables.build(k);
      sign_strings(kern, s.sketches.data(), n, c.repetitions, k, s.tables, s.sign_words, s.signs.data(),
                   s.parts.data());
    } else {
      std::fill(s.signs.begin(), s.signs.end(), 0u);
      std::fill(s.parts.begin(), s.parts.end(), 0u);
    }
    s.counts.assign(static_cast<std::size_t>(parts), 0.0f);
    // Each repetition is accumulated in a scratch block (cache-resident), written to the output once, and reset:
    // only the rows it touched when nothing was filled (queries, no fill), else whole.
    s.block.assign(static_cast<std::size_t>(parts * dp), 0.0f);
    float* block = s.block.data();
    for (i64 r = 0; r < c.repetitions; ++r) {
      // The projected tokens of this repetition: (n, dp) rows.
      const float* proj = c.ams ? s.projected.data() + r * n * dp : x;
      const std::uint32_t* signs = s.signs.data() + r * n;
      const std::uint32_t* parts_r = s.parts.data() + r * n;
      for (i64 t = 0; t < n; ++t) {
        const std::uint32_t p = parts_r[t];
        add_row(block + static_cast<i64>(p) * dp, proj + t * dp, dp);
        s.counts[p] += 1.0f;
      }
      const auto write_and_reset = [&](bool whole) {
        if (c.final_dim > 0)  // the inner vector is read back right away: keep it in cache
          std::memcpy(inner + r * parts * dp, block, static_cast<std::size_t>(parts * dp) * sizeof(float));
        else kern.stream_copy(inner + r * parts * dp, block, parts * dp);
        if (whole) {
          std::fill(block, block + parts * dp, 0.0f);
          std::fill(s.counts.begin(), s.counts.end(), 0.0f);
        } else {
          for (i64 t = 0; t < n; ++t) {
            std::fill(block + static_cast<i64>(parts_r[t]) * dp, block + (static_cast<i64>(parts_r[t]) + 1) * dp, 0.0f);
            s.counts[parts_r[t]] = 0.0f;
          }
        }
      };
      if (!documents) {
        for (i64 t = 0; t < n; ++t) finite &= all_finite(block + static_cast<i64>(parts_r[t]) * dp, dp);
        write_and_reset(false);
        continue;
      }
      // Fill: the nearest token of every sign string by one distance transform over the hypercube when that is
      // cheaper than scanning every token for each empty partition.
      i64 empty = 0;
      for (i64 p = 0; p < parts; ++p) empty += s.counts[p] == 0.0f;
      const bool search = k > 0 && c.fill_empty && empty > 0 && parts * k <= empty * n;
      if (search) nearest_tokens(signs, n, k, s);
      for (i64 p = 0; p < parts; ++p) {
        float* dst = block + p * dp;
        if (s.counts[p] == 0.0f) {
          if (k > 0 && c.fill_empty) {  // nearest sign string to the target; strict < keeps the lowest token
            const auto part = static_cast<std::uint32_t>(p);
            const std::uint32_t target =
                c.fill_target == FDEFillTarget::kGrayDecoded ? gray_partition(part) : part ^ (part >> 1);
            i64 best = 0;
            if (search) {
              best = nearest_token(s, n, target);
            } else {
              // Smallest (distance, token) pair, branch-free: distance in the high bits of the key.
              std::uint64_t best_key = ~std::uint64_t{0};
              for (i64 t = 0; t < n; ++t) {
                const std::uint64_t key =
                    static_cast<std::uint64_t>(popcount32(signs[t] ^ target)) << 40 | static_cast<std::uint64_t>(t);
                best_key = key < best_key ? key : best_key;
              }
              best = static_cast<i64>(best_key & ((std::uint64_t{1} << 40) - 1));
            }
            std::memcpy(dst, proj + best * dp, static_cast<std::size_t>(dp) * sizeof(float));
          }
          continue;
        }
        // The average: one float division per value; by 1 nothing changes, and by a power of two the product
        // with its reciprocal is the same correctly rounded value (both round the exact quotient).
        const float count = s.counts[p];
        if (count == 1.0f) continue;
        const auto whole = static_cast<std::uint32_t>(count);
        if ((whole & (whole - 1)) == 0) {
          const float reciprocal = 1.0f / count;
          for (i64 j = 0; j < dp; ++j) dst[j] = dst[j] * reciprocal;
        } else {
          for (i64 j = 0; j < dp; ++j) dst[j] = dst[j] / count;
        }
      }
      finite &= all_finite(block, parts * dp);
      write_and_reset(k > 0 && c.fill_empty && empty > 0);
    }
  }
  kern.stream_fence();  // the streamed stores are visible before the task reports completion
  if (c.final_dim > 0) {
    std::fill(out, out + c.final_dim, 0.0f);
    const std::int32_t* index = mats.final_index.data();
    const float* sign = mats.final_sign.data();
    for (i64 i = 0; i < inner_dim; ++i) out[index[i]] += sign[i] * inner[i];
    finite &= all_finite(out, c.final_dim);
  }
  return finite;
}

}  // namespace

i64 fde_encode(const FDEConfig& config, const FDEMatrices& matrices, const float* const* clouds, const i64* rows,
               i64 n_clouds, bool documents, float* out, int threads, i64* first_overflow) {
  threads = resolve_threads(threads);
  const FDEKernels& kern = fde_kernels();
  const i64 out_dim = config.output_dim();
  std::atomic<i64> first_bad{n_clouds}, overflow{n_clouds};
  const auto lower_to = [](std::atomic<i64>& a, i64 v) {
    i64 seen = a.load(std::memory_order_relaxed);
    while (v < seen && !a.compare_exchange_weak(seen, v, std::memory_order_relaxed)) {}
  };
  parallel_for(n_clouds, threads, [&](i64 cloud, int) {
    thread_local Scratch scratch;
    const float* x = clouds[cloud];
    const i64 n = rows[cloud];
    if (cloud > first_bad.load(std::memory_order_relaxed)) return;  // an error will be raised: skip the rest
    if (!all_finite(x, n * config.dim)) {  // the tokens are in cache for the sketches right after
      lower_to(first_bad, cloud);
      return;
    }
    if (!encode_one(config, matrices, kern, x, n, documents, scratch, out + cloud * out_dim)) lower_to(overflow, cloud);
  });
  const i64 over = overflow.load();
  *first_overflow = over < n_clouds ? over : -1;
  const i64 bad = first_bad.load();
  return bad < n_clouds ? bad : -1;
}

}  // namespace simkern
