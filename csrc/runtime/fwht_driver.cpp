// FWHT driver (contract in simkern/fwht.hpp): the passes are grouped into levels of bits whose working set fits in
// cache (rows_transform), so memory is swept once per level (about log2(n) / 9 times) rather than once per pass;
// threads take the independent tasks of a level. A 1-D transform first runs the passes inside rows of m values,
// then the (n / m, m) row transform. Pass order per element: h increasing, always.
#include <algorithm>
#include <cmath>

#include "simkern/dispatch.hpp"
#include "simkern/fwht.hpp"
#include "simkern/thread_pool.hpp"

namespace simkern {
namespace {

constexpr i64 kBlockBytes = i64{1} << 18;  // working set of one level's task: 256 KiB
constexpr i64 kChunkBytes = i64{1} << 12;  // contiguous bytes per group member in the levels above the first
constexpr i64 kRowValues = 64;             // 1-D transforms run as rows of 64 values

template <class T>
using PassFn = void (*)(T*, i64, i64, i64, i64, i64);

// The row transform in levels of bits: a level runs the passes of bits [lo, hi) for every setting of the other
// bits; the rows it touches for one setting are 2^(hi - lo) groups, 2^lo rows apart, and a task takes `chunk`
// neighbouring rows of each group (contiguous: chunk * d values), so its working set - groups x chunk rows - fits
// in cache and every pass of the level runs there: one sweep of memory per level instead of one per pass.
template <class T>
void rows_transform(T* x, i64 n, i64 d, PassFn<T> passes, int threads) {
  const i64 row_bytes = d * static_cast<i64>(sizeof(T));
  int log_n = 0;
  while ((i64{1} << log_n) < n) ++log_n;
  for (int lo = 0; lo < log_n;) {
    const i64 spacing = i64{1} << lo;  // rows between the members of a group
    i64 chunk = 1;                     // a power of two, so that it divides the spacing
    while (chunk * 2 <= spacing && chunk * 2 * row_bytes <= kChunkBytes) chunk *= 2;
    int hi = lo + 1;
    while (hi < log_n && (i64{1} << (hi + 1 - lo)) * chunk * row_bytes <= kBlockBytes) ++hi;
    const i64 groups = i64{1} << (hi - lo), chunks = spacing / chunk, outers = n >> hi;
    parallel_for(outers * chunks, threads, [&](i64 task, int) {
      const i64 outer = task / chunks, r0 = (task % chunks) * chunk;
      passes(x + ((outer << hi) + r0) * d, groups, spacing * d, chunk * d, 1, groups);
    });
    lo = hi;
  }
}

template <class T>
void transform(T* x, i64 n, i64 d, bool normalize, int threads, PassFn<T> passes) {
  threads = resolve_threads(threads);
  if (n > 1) {
    if (d == 1 && n > kRowValues) {  // low bits inside rows of m values, then the rows
      const i64 m = kRowValues, rows = n / m, per_task = std::max<i64>(1, 4096 / m);
      parallel_for((rows + per_task - 1) / per_task, threads, [&](i64 t, int) {
        for (i64 r = t * per_task; r < std::min(rows, (t + 1) * per_task); ++r) passes(x + r * m, m, 1, 1, 1, m);
      });
      rows_transform(x, rows, m, passes, threads);
    } else {
      rows_transform(x, n, d, passes, threads);
    }
  }
  if (normalize && n > 1) {
    const T scale = static_cast<T>(1.0 / std::sqrt(static_cast<double>(n)));
    const i64 total = n * d, chunk = i64{1} << 16;
    parallel_for((total + chunk - 1) / chunk, threads, [&](i64 t, int) {
      for (i64 i = t * chunk; i < std::min(total, (t + 1) * chunk); ++i) x[i] *= scale;
    });
  }
}

}  // namespace

void fwht(float* x, i64 n, i64 d, bool normalize, int threads) {
  transform<float>(x, n, d, normalize, threads, fwht_kernels().passes_f32);
}
void fwht(double* x, i64 n, i64 d, bool normalize, int threads) {
  transform<double>(x, n, d, normalize, threads, fwht_kernels().passes_f64);
}

}  // namespace simkern
