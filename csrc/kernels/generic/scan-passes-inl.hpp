// Query passes of the quantised scan kernels: pass(Count{}, q0) for q0 = 0, 4, 8, ... with Count a compile-time
// query count (4, or what is left), so that each pass keeps its accumulators in registers. Included inside the ISA
// namespace like generic/maxsim-inl.hpp.
#pragma once

template <int N>
struct QueryCount {
  static constexpr int value = N;
};

template <typename Pass>
static inline void for_each_query_pass(int count, Pass&& pass) {
  static_assert(kScanQueries == 4, "the cases below cover passes of 1 to 4 queries");
  for (int q0 = 0; q0 < count;) {
    const int left = count - q0;
    if (left >= 4) pass(QueryCount<4>{}, q0);
    else if (left == 3) pass(QueryCount<3>{}, q0);
    else if (left == 2) pass(QueryCount<2>{}, q0);
    else pass(QueryCount<1>{}, q0);
    q0 += left >= 4 ? 4 : left;
  }
}
