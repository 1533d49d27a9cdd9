// The scores mm-vet_evaluator.py's arithmetic gives the small test files (tests/data/benchmarks/mm_vet/
// grades_small_2runs.json with metadata_small.json), derived by hand once here; the scorer's unit tests and the
// end-to-end `runner score mm_vet` tests both check them.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::mm_vet::references {

using benchmarks::testing::Expected;

// grades (run1, run2): v1_0 rec (1.0, 0.5); v1_1 ocr+math (0, 0); v1_2 rec+know (0.5, 0.5);
//                      v1_3 ocr (0.3, 0.2); v1_4 math+ocr (1.0, 1.0).
// total: run1 2.8/5*100 = 56, run2 2.2/5*100 = 44 -> mean 50.0, std 6.0, runs [56.0, 44.0].
// rec (2 samples): (1.5/2, 1.0/2)*100 = 75, 50 -> 62.5.   ocr (3): 1.3/3*100 = 43.33, 1.2/3*100 = 40 -> 41.7.
// math (2): 50, 50 -> 50.0.   know (1): 50, 50 -> 50.0.
// Column order by count: ocr (3), rec (2), math (2), know (1); rec before math by first occurrence.
// Integrations: ocr_math (2 samples: v1_1, v1_4) 50.0; rec (v1_0) 75.0; rec_know 50.0; ocr (v1_3) 25.0.
inline const Expected kSmallScores = {
    {"total", 50.0}, {"std", 6.0},  {"run_1/total", 56.0}, {"run_2/total", 44.0},          {"rec", 62.5},
    {"ocr", 41.7},   {"math", 50.0}, {"know", 50.0},       {"integration/rec", 75.0},      {"integration/ocr", 25.0},
    {"integration/ocr_math", 50.0},
};
// Without the metadata only the total (over the graded samples): the same 5 samples, so the same total.
inline const Expected kTotalOnlyScores = {{"total", 50.0}, {"run_1/total", 56.0}};
// num_run = 1: run 1 only -> total 56.0, std 0.0, rec (1.0 + 0.5) / 2 = 75.0.
inline const Expected kFirstRunScores = {{"total", 56.0}, {"std", 0.0}, {"rec", 75.0}};

}  // namespace mmr::mm_vet::references
