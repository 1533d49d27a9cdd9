// Preference pairs from scored candidates, by the paper's rule as DESIGN.md §6 records it (Li, Lin, Pei, ACL 2024):
// chosen = the highest Helpfulness + Correctness + Coherence, rejected = a random response at least 2 points
// lower, groups whose spread is under 2 skipped. Works on any scored-candidates rows (synthetic or judged by a
// model), so the preference dataset's build_pairs transform can use it as is.
//
// For each group (one question with its candidates):
//   score(candidate) = sum of its scores on rule.attributes (default Helpfulness, Correctness, Coherence)
//   fewer than 2 candidates                 -> skipped, counted in skipped_too_few_candidates
//   max(score) - min(score) < rule.min_gap  -> skipped, counted in skipped_small_spread
//   chosen   = the first candidate (lowest index) with the highest score   (ties: the earliest, as the samples'
//              order is the only neutral order a scored file carries)
//   rejected = uniform among the candidates with score <= max - min_gap, drawn with
//              Rng(derive_seed(seed, kStreamPairs, fnv1a64(id))): it depends only on the seed and the group's id,
//              so taking a subset of the groups (data scaling ablations) keeps every pair that remains.
// A candidate that lacks one of the rule's attributes is bad data: DataError naming the row and the key.
#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace mmr::synthetic {

struct ScoredCandidate {
  std::string response;
  std::map<std::string, double> scores;  // attribute name -> score
};

struct ScoredGroup {
  std::string id;
  std::string image;  // empty for text-only rows
  std::string question;
  std::vector<ScoredCandidate> candidates;
};

struct PairRule {
  std::vector<std::string> attributes = {"Helpfulness", "Correctness", "Coherence"};
  double min_gap = 2.0;
};

struct PreferencePair {
  std::string id, image, question;
  std::string chosen, rejected;
  double chosen_score = 0, rejected_score = 0;
  size_t chosen_index = 0, rejected_index = 0;  // positions in the group's candidate list
};

struct PairStats {
  size_t groups = 0;
  size_t pairs = 0;
  size_t skipped_small_spread = 0;
  size_t skipped_too_few_candidates = 0;
  nlohmann::ordered_json to_json() const;
};

struct PairResult {
  std::vector<PreferencePair> pairs;
  PairStats stats;
};

PairResult build_pairs(const std::vector<ScoredGroup>& groups, const PairRule& rule, uint64_t seed);

// Parses one scored-candidates row ({"id", "image"?, "question", "candidates": [{"response", "scores": {...}}]});
// `where` ("file.jsonl:12") prefixes every DataError.
ScoredGroup scored_group_from_json(const nlohmann::json& row, const std::string& where);
// Reads a scored-candidates JSONL file (blank lines ignored); DataError names the file and line.
std::vector<ScoredGroup> read_scored_groups(const std::filesystem::path& path);

// The DPO row: {"id", "image" (omitted when empty), "question", "chosen": {"from": "gpt", "value": ...},
// "rejected": {"from": "gpt", "value": ...}}. The question carries no "<image>" token.
nlohmann::ordered_json to_dpo_row(const PreferencePair& pair);

}  // namespace mmr::synthetic
