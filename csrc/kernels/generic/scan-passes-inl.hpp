// Shared by the quantised scan kernels. Query passes: pass(Count{}, q0) for q0 = 0, 4, 8, ... with Count a compile-time
// query count (4, or what is left), so that each pass keeps its accumulators in registers. Included inside the ISA
// namespace like generic/maxsim-inl.hpp.
#pragma once

// Hands a group of uint16 sums to the scan callback when some sum is at or below query q's threshold: bit i of
// the mask <=> sums[i] <= threshold (the kernels' contract in simkern/pq.hpp).
static inline void report_sums(const ScanQueries& qs, int q, i64 first_id, const std::uint16_t* sums, int count) {
  const std::uint16_t threshold = qs.thresholds[q];
  std::uint64_t mask = 0;
  for (int i = 0; i < count; ++i)
    if (sums[i] <= threshold) mask |= std::uint64_t{1} << i;
  if (mask) qs.hit(qs.ctx, q, first_id, mask, sums);
}

template <typename Pass>
static inline void for_each_query_pass(int count, Pass&& pass) {
  static_assert(kScanQueries == 4, "the cases below cover passes of 1 to 4 queries");
  for (int q0 = 0; q0 < count;) {
    const int left = count - q0;
    if (left >= 4) pass(std::integral_constant<int, 4>{}, q0);
    else if (left == 3) pass(std::integral_constant<int, 3>{}, q0);
    else if (left == 2) pass(std::integral_constant<int, 2>{}, q0);
    else pass(std::integral_constant<int, 1>{}, q0);
    q0 += left >= 4 ? 4 : left;
  }
}
