// A named scalar result (a benchmark score, a training-curve point's value), in report order.
#pragma once

#include <string>
#include <vector>

namespace mmr {

struct MetricValue {
  std::string name;  // "adversarial/f1", "overall", "turn_1", ...
  double value = 0;
};
using MetricList = std::vector<MetricValue>;

}  // namespace mmr
