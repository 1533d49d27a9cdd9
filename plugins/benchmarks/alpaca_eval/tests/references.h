// The scores alpaca_eval's arithmetic gives the test annotation files in tests/data/benchmarks/alpaca_eval/,
// computed once with python3 from the formulas in shared/benchmarks/PROVENANCE.md (not with our code):
//   p = [1.5 if v == 0 else v for v in prefs]; p = [v for v in p if v is not None and 1 <= v <= 2]
//   x = [v - 1 for v in p]; m = sum(x) / n; var = sum((m - v) ** 2 for v in x) / (n - 1)
//   win_rate = 100 * m; standard_error = 100 * math.sqrt(var) / math.sqrt(n)
// (below 8 values numpy's pairwise sum is the plain loop python3 runs, so these agree to the bit).
// The scorer's unit tests and the end-to-end `runner score alpaca_eval` tests both check them.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::alpaca_eval::references {

using benchmarks::testing::Expected;

// annotations_edge_cases.json, preferences [2, 1, 1.5, 0, null, 3, 1.25, 2.0]: null and 3 are dropped, 0 is a
// draw; x = [1, 0, 0.5, 0.5, 0.25, 1], mean 3.25 / 6; discrete x = [1, 0, 0.5, 0.5, 0, 1] -> 3 / 6.
// avg_length: len() of the 8 output_2 = [15, 5 ("héllo": 5 code points, 6 bytes), 4, 4, 1, 1, 13, 1] -> 44 / 8 = 5.5 -> 5.
inline const Expected kEdgeScores = {
    {"win_rate", 54.166666666666664}, {"standard_error", 16.35118072529049}, {"discrete_win_rate", 50.0}};
inline const Expected kEdgeCounts = {{"n_wins", 2},  {"n_wins_base", 2}, {"n_draws", 2},   {"n_total", 6},
                                     {"n_rows", 8},  {"n_dropped", 2},   {"avg_length", 5}};

// annotations_davinci_subset.json: 8 rows of text_davinci_003_annotations_94ecb30.json (text-davinci-003 against
// itself, every preference the legacy draw 0): 50 +- 0; output_2 lengths [4, 4, 7, 3, 5, 20, 17, 25] -> 85 / 8 -> 10.
inline const Expected kDavinciScores = {{"win_rate", 50.0}, {"standard_error", 0.0}, {"discrete_win_rate", 50.0}};
inline const Expected kDavinciCounts = {{"n_wins", 0}, {"n_wins_base", 0}, {"n_draws", 8}, {"n_total", 8},
                                        {"n_rows", 8}, {"n_dropped", 0},   {"avg_length", 10}};

}  // namespace mmr::alpaca_eval::references
