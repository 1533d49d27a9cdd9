// numpy's float64 sum of a contiguous 1-D array, bit for bit: the benchmarks' official scripts average scores with
// numpy/pandas (MM-Vet's evaluator, alpaca_eval's win rate), and a plain left-to-right sum differs in the last bits.
// Hand-written because it must match numpy's pairwise_sum (numpy/_core/src/umath/loops_utils.h.src): below 8
// values a plain loop; up to 128, eight accumulators combined as ((r0+r1)+(r2+r3))+((r4+r5)+(r6+r7)) and the rest
// added in order; above that, split in two halves (the first a multiple of 8).
#pragma once

#include <cstddef>
#include <vector>

namespace mmr {

inline double numpy_pairwise_sum(const double* a, size_t n) {
  if (n < 8) {
    double res = 0.0;
    for (size_t i = 0; i < n; ++i) res += a[i];
    return res;
  }
  if (n <= 128) {
    double r[8];
    for (size_t j = 0; j < 8; ++j) r[j] = a[j];
    size_t i = 8;
    for (; i < n - (n % 8); i += 8)
      for (size_t j = 0; j < 8; ++j) r[j] += a[i + j];
    double res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for (; i < n; ++i) res += a[i];
    return res;
  }
  size_t n2 = n / 2;
  n2 -= n2 % 8;
  return numpy_pairwise_sum(a, n2) + numpy_pairwise_sum(a + n2, n - n2);
}

// np.sum(values) (the reduction starts from 0.0, which turns a -0.0 sum into 0.0 as numpy does).
inline double numpy_sum(const std::vector<double>& values) { return 0.0 + numpy_pairwise_sum(values.data(), values.size()); }

}  // namespace mmr
