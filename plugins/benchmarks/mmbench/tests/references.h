// The scores the official MMBench rules give the small hand-made files (tests/data/benchmarks/mmbench/), derived
// by hand once here; the scorer's unit tests and the end-to-end `runner score mmbench` tests both check them.
//
// dev_small.tsv: 5 questions, 14 rows (passes at index + k·1,000,000); predictions_small.tsv has, per pass:
//   q0 (image_style, coarse_perception; 4 passes, answers C B A D): "C", "B. photograph", "The answer is A",
//      "(D)\nphotograph" -> letters C B A D, all right -> right.
//   q1 (object_localization, FP-S; 2 passes, A B): "yes, it is." -> text "yes" = A, right;
//      "No, not yes" -> no letter, both option texts contained -> unresolved.
//   q2 (future_prediction, logic_reasoning; 3 passes, A C B): "A" right, "B" wrong -> wrong by rule
//      ("I don't know" is unresolved but never needed).
//   q3 (image_scene, coarse_perception; D fixed, A-C rotate; answers B A C): "B C" (two letters, no text) and
//      "It could be A or C" unresolved, "C" right.
//   q4 (physical_property, attribute_reasoning; answers B A): "E. a dog" -> 2024-01: E is not one of the row's
//      letters, text "a dog" = B, right; 2023-11: letters A-E, E, wrong. "A" right.
// Rules 2024-01, no judge: right q0, q4 -> 2/5 = 40%; unresolved rows q1:1 + q3:2 = 3 in 2 questions.
//   L2 (sorted by full name): AR q4 100, CP q0 q3 50, FP-S q1 0, LR q2 0.
// Rules 2024-01 with a judge that answers "B" for q1's second pass (right) and, for q3, "The answer is B" (first
//   pass: right) then "Z" (second pass: Z, wrong): right q0, q1, q4 -> 60%; 3 judge requests in 2 rounds.
// Rules 2023-11, no judge: q4 wrong by rule too -> 1/5 = 20%.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::mmbench::references {

using benchmarks::testing::Expected;

inline const Expected kSmallScores = {
    {"overall", 40.0},         {"l2/AR", 100.0},           {"l2/CP", 50.0},
    {"l2/FP-S", 0.0},          {"l2/LR", 0.0},             {"category/image_style", 100.0},
    {"category/image_scene", 0.0}, {"category/physical_property", 100.0}, {"category/future_prediction", 0.0},
    {"category/object_localization", 0.0},
};
inline const Expected kSmallCounts = {
    {"n_questions", 5},        {"n_rows", 14},             {"n_correct", 2},
    {"rule_resolved_rows", 10}, {"unresolved_rows", 3},    {"unresolved_questions", 2},
};
inline constexpr double kSmallWithJudgeOverall = 60.0;
inline constexpr double kSmall2023Overall = 20.0;

}  // namespace mmr::mmbench::references
