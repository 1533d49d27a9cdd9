// The scores eval_pope.py's rules give the small test files (tests/data/benchmarks/pope/small/), derived by hand
// once here; the scorer's unit tests and the end-to-end `runner score pope` tests both check them.
#pragma once

#include "plugins/benchmarks/common/testing.h"

namespace mmr::pope::references {

using benchmarks::testing::Expected;

// adversarial (answers by position): q1 "Yes"/yes TP, q2 "No, there is not."/no TN, q3 "No"/yes FN,
//   q4 "Yes, there is a bus."/no FP -> TP=FP=TN=FN=1: P=R=F1=acc=yes=0.5.
// random: "Yes."/yes TP, "There is a cup. It is not full."/yes TP (only the first sentence counts),
//   "Yes"/no FP -> TP=2 FP=1: P=2/3, R=1, F1=2*(2/3)/(5/3)=0.8, acc=2/3, yes=1.
// The popular answer has no label file: unscored (as eval_pope.py, which only scores splits with label files).
// mean F1 = (50 + 80) / 2 = 65. Ratios in percent.
inline const Expected kSmallScores = {
    {"adversarial/f1", 50.0},       {"adversarial/accuracy", 50.0},   {"random/f1", 80.0},
    {"random/precision", 100.0 * 2 / 3}, {"random/recall", 100.0},    {"random/accuracy", 100.0 * 2 / 3},
    {"random/yes_ratio", 100.0},    {"mean/f1", 65.0},                {"mean/accuracy", 100 * (0.5 + 2.0 / 3) / 2},
};
inline const Expected kSmallCounts = {
    {"adversarial/tp", 1}, {"adversarial/fp", 1}, {"adversarial/tn", 1}, {"adversarial/fn", 1}, {"adversarial/n", 4},
};

}  // namespace mmr::pope::references
