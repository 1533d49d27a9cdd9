// How well a judge's attribute scores agree with human preferences: the paper's Figure 3 (Li et al. 2024 scored
// 500 LLaVA-RLHF human-preference pairs with Gemini and correlated each attribute's score difference with the
// human label). Torch-free.
//
// Input: the scored-candidates JSONL that the `annotate` stage writes for rows of two responses that carry the human
// label, e.g. {"id": "p1", "image": "x.jpg", "question": "...", "candidates": [{"response": ..., "scores": {...}},
// {...}], "preference": 1}. `preference` is 1 or 2: the response humans preferred (LLaVA-RLHF's field). Scores sit in
// a `scores` map or on the candidate itself, as the scored-candidates format allows.
//
// Per attribute a: x = score_a(response 1) − score_a(response 2), y = +1 when humans preferred response 1, −1 for
// 2; the metric is Pearson's r of x and y over the pairs (numpy.corrcoef's value; NaN when x does not vary), and
// the same for `quality` = Helpfulness + Correctness + Coherence, the sum the paper's pair rule uses.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/api/metrics.h"

namespace mmr::judge_agreement {

struct ScoredPair {
  std::string id;
  std::map<std::string, double> first, second;  // attribute -> score of response 1 and of response 2
  int preference = 0;                           // 1 or 2
};

struct ScoredPairs {
  std::vector<ScoredPair> pairs;
  int64_t skipped = 0;  // rows without two scored responses (annotate leaves out a candidate it could not score)
};

// Reads the file; a malformed line, a missing or other `preference`, or a non-numeric score is a DataError naming
// file:line. Rows with fewer or more than two candidates are skipped and counted.
ScoredPairs read_scored_pairs(const std::string& path);

// Pearson's r of two equally long series; NaN when either does not vary or they are shorter than 2.
double pearson(const std::vector<double>& x, const std::vector<double>& y);

// pearson/<attribute> for each of the five HelpSteer attributes present in every pair and pearson/quality, then
// n_pairs and n_skipped.
MetricList agreement_metrics(const ScoredPairs& scored);

}  // namespace mmr::judge_agreement
