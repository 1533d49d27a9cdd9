// The scores summarize_gpt_review.py's arithmetic gives the small review files
// (tests/data/benchmarks/llava_bench/reviews_*.jsonl), derived by hand once here; the scorer's unit tests and the
// end-to-end `runner score llava_bench` tests both check them.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::llava_bench::references {

using benchmarks::testing::Expected;

// reviews_small.jsonl:
// conv: ref (8+7)/2 = 7.5, model (7+5)/2 = 6.0 -> 6/7.5*100 = 80.0
// detail: ref (9+10)/2 = 9.5, model (6+7)/2 = 6.5 -> 68.421... -> 68.4
// complex: the failed review [-1, -1] is averaged in: ref (8-1)/2 = 3.5, model 3.5 -> 100.0
// all: ref 41/6 = 6.8333 -> 6.833, model 32/6 = 5.3333 -> 5.333; 5.333/6.833*100 = 78.048... -> 78.0
// x10 and rounded to 1 place: round(6.833 * 10, 1) = 68.3, round(5.333 * 10, 1) = 53.3.
inline const Expected kSmallScores = {
    {"all", 78.0},
    {"llava_bench_conv", 80.0},
    {"llava_bench_detail", 68.4},
    {"llava_bench_complex", 100.0},
    {"llava_bench_conv/reference", 7.5},
    {"all/reference_score", 68.3},
    {"all/model_score", 53.3},
};
inline const Expected kSmallCounts = {{"all/n", 6}, {"all/n_failed", 1}, {"llava_bench_complex/n_failed", 1}};
// With question 4 (the failed review) ignored: complex = [8, 8] -> 100.0;
// all: ref (8+9+8+7+10)/5 = 8.4, model (7+6+8+5+7)/5 = 6.6 -> 78.571... -> 78.6
inline constexpr double kSmallAllIgnoring4 = 78.6;
// reviews_rounding.jsonl: tuples [1,2], [1,2], [2,1] (all conv): means 4/3 and 5/3, rounded to 1.333 and 1.667
// first; 1.667/1.333*100 = 125.0937... -> 125.1 (the unrounded ratio 125.0 would give 125.0).
inline constexpr double kRoundingAll = 125.1;

}  // namespace mmr::llava_bench::references
