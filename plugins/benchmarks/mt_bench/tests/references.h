// The scores show_result.py's arithmetic gives the small judgment file
// (tests/data/benchmarks/mt_bench/judgments_small.jsonl), derived by hand (and cross-checked with pandas 1.5.3)
// once here; the scorer's unit tests and the end-to-end `runner score mt_bench` tests both check them.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::mt_bench::references {

using benchmarks::testing::Expected;

// tiny-model: turn 1 [8] (the -1 on q111 is dropped) = 8; turn 2 [6, 3] = 4.5; overall [8, 6, 3] = 17/3.
// other: turn 1 [10, 9, 5] = 8 (the duplicate q81 row counts, as in pandas); turn 2 [7.5] = 7.5;
//        overall [10, 9, 5, 7.5] = 7.875. (pandas 1.5.3 prints the same: 8.0/8.0, 7.5/4.5, 7.875/5.666667.)
inline const Expected kSmallScores = {
    {"tiny-model/turn_1", 8.0}, {"tiny-model/turn_2", 4.5}, {"tiny-model/overall", 17.0 / 3},
    {"other/turn_1", 8.0},      {"other/turn_2", 7.5},      {"other/overall", 7.875},
};
inline const Expected kSmallCounts = {{"tiny-model/n_judgments", 4}, {"other/n_failed", 1}, {"other/n_duplicates", 1}};
// With question.jsonl (q81 writing, q111 math): tiny-model writing [8, 6] = 7, math [3] = 3;
// other writing [10, 9, 7.5] = 26.5/3, math [5] = 5.
inline const Expected kSmallCategoryScores = {
    {"tiny-model/writing", 7.0}, {"tiny-model/math", 3.0}, {"other/writing", 26.5 / 3}, {"other/math", 5.0},
};

}  // namespace mmr::mt_bench::references
