// Candidate responses of graded quality for a question, and the rule that scores them.
//
// Stands in for the paper's pipeline (4 samples per question from LLaVA-1.5-13B, scored by Gemini on five
// HelpSteer attributes, 0-4): here the candidates are written to be of a known quality, and the scores follow
// a fixed rule, so a tiny model has a real signal to learn and tests can check every number.
//
// Kinds of candidate:
//   correct       the exact answer
//   partial       partly right: hedged between the right and a wrong value, one axis of a position wrong,
//                 an approximate number, a sort with one adjacent pair swapped, the last step of a word problem off
//   hallucinated  wrong, stated with confidence; visual answers also mention an object that is not in the image
//   padded        the correct answer wrapped in 2-4 filler sentences ("Great question!", "I hope this helps!")
//
// Scoring rule (score_candidate):
//                   Helpfulness  Correctness  Coherence      (sum of the three: what build_pairs ranks by)
//   correct              4            4           4          12
//   padded               3            4           4          11   filler dilutes helpfulness, not correctness
//   partial              2            2           3           7
//   hallucinated         1            0           3           4   fluent, but wrong
//   Complexity = clamp(base complexity of the question kind + (1 if the response has more than 30 words), 0, 4),
//     base: colour 0, existence 0, count 1, position 1, uppercase 0, add 1, subtract 1, reverse 1,
//     count_letter 1, multiply 2, sort_numbers 2, sort_words 2, word_problem 3.
//   Verbosity by the response's whitespace-separated word count w: w <= 4 -> 0, <= 10 -> 1, <= 20 -> 2,
//     <= 35 -> 3, else 4.
// With the paper's pair rule (gap 2 in H+C+Coh), correct-vs-padded groups are skipped (spread 1), and
// correct or padded beat partial and hallucinated, and partial beats hallucinated.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "plugins/datasets/synthetic/questions.h"
#include "plugins/datasets/synthetic/rng.h"
#include "plugins/datasets/synthetic/scene.h"
#include "plugins/datasets/synthetic/text_tasks.h"

namespace mmr::synthetic {

enum class CandidateKind { kCorrect, kPartial, kHallucinated, kPadded };

const std::vector<CandidateKind>& all_candidate_kinds();
const std::string& candidate_kind_name(CandidateKind kind);  // "correct", "partial", "hallucinated", "padded"
CandidateKind candidate_kind_from_name(const std::string& name, const std::string& key);

// The five attributes, in HelpSteer order: Helpfulness, Correctness, Coherence, Complexity, Verbosity.
const std::vector<std::string>& attribute_names();

struct AttributeScores {
  int helpfulness = 0, correctness = 0, coherence = 0, complexity = 0, verbosity = 0;
  std::vector<int> values() const;                 // in attribute_names() order
  std::map<std::string, double> by_name() const;   // attribute name -> score (what the pair rule reads)
  nlohmann::ordered_json to_json() const;          // {"Helpfulness": h, "Correctness": c, ...}, in that order
  bool operator==(const AttributeScores& o) const;
};

int base_complexity(QuestionType type);
int base_complexity(TextTaskType type);
int word_count(const std::string& text);
int verbosity_for_words(int words);
AttributeScores score_candidate(CandidateKind kind, const std::string& response, int base_complexity);

// The three hand-written variants of one question; padded ones are made from `correct` by pad_response.
struct ResponseVariants {
  std::string correct, partial, hallucinated;
  int base_complexity = 0;
};

// Visual variants; hallucinated ones name an object absent from `truth` (when the vocabulary has one).
ResponseVariants vqa_variants(const VqaItem& item, const ImageTruth& truth, const Vocabulary& vocab, Rng& rng);
ResponseVariants text_variants(const TextTask& task);

// `correct` with 1-2 filler sentences before and 1-2 after (distinct, from fixed lists).
std::string pad_response(const std::string& correct, Rng& rng);

struct Candidate {
  std::string response;
  CandidateKind kind = CandidateKind::kCorrect;
  AttributeScores scores;
};

// Relative weights of the kinds when drawing a candidate; at least one must be > 0.
struct KindWeights {
  uint64_t correct = 1, partial = 1, hallucinated = 1, padded = 1;
};

// `n` candidates, each kind drawn independently by the weights (so some groups have every candidate alike, like
// real samples, and the pair builder skips them).
std::vector<Candidate> make_candidates(const ResponseVariants& variants, int n, const KindWeights& weights, Rng& rng);

// One row of the scored-candidates JSONL: {"id", "image" (omitted when empty), "question",
// "candidates": [{"response", "kind", "scores": {"Helpfulness": ..., ...}}]}.
nlohmann::ordered_json scored_candidates_row(const std::string& id, const std::string& image,
                                             const std::string& question, const std::vector<Candidate>& candidates);

}  // namespace mmr::synthetic
