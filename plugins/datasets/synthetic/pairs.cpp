#include "plugins/datasets/synthetic/pairs.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <fstream>

#include "core/api/error.h"
#include "plugins/datasets/synthetic/rng.h"

namespace mmr::synthetic {

nlohmann::ordered_json PairStats::to_json() const {
  return {{"groups", groups},
          {"pairs", pairs},
          {"skipped_small_spread", skipped_small_spread},
          {"skipped_too_few_candidates", skipped_too_few_candidates}};
}

namespace {

// Each candidate's sum of the rule's attributes; a missing one is bad data naming the group.
std::vector<double> candidate_scores(const ScoredGroup& group, const PairRule& rule) {
  std::vector<double> score(group.candidates.size(), 0.0);
  for (size_t i = 0; i < group.candidates.size(); ++i) {
    for (const std::string& attribute : rule.attributes) {
      const auto it = group.candidates[i].scores.find(attribute);
      if (it == group.candidates[i].scores.end()) {
        throw DataError(fmt::format("scored group '{}': candidate {} has no score for '{}' (the pair rule sums {})",
                                    group.id, i, attribute, fmt::join(rule.attributes, " + ")));
      }
      score[i] += it->second;
    }
  }
  return score;
}

}  // namespace

PairResult build_pairs(const std::vector<ScoredGroup>& groups, const PairRule& rule, uint64_t seed) {
  PairResult out;
  for (const ScoredGroup& group : groups) {
    ++out.stats.groups;
    if (group.candidates.size() < 2) {
      ++out.stats.skipped_too_few_candidates;
      continue;
    }
    const std::vector<double> score = candidate_scores(group, rule);
    size_t best = 0, worst = 0;
    for (size_t i = 1; i < score.size(); ++i) {
      if (score[i] > score[best]) best = i;  // strict: ties keep the earliest
      if (score[i] < score[worst]) worst = i;
    }
    if (score[best] - score[worst] < rule.min_gap) {
      ++out.stats.skipped_small_spread;
      continue;
    }
    std::vector<size_t> low;
    for (size_t i = 0; i < score.size(); ++i) {
      if (score[i] <= score[best] - rule.min_gap) low.push_back(i);
    }
    Rng rng(derive_seed(seed, kStreamPairs, fnv1a64(group.id)));
    const size_t rejected = rng.pick(low);
    out.pairs.push_back({group.id, group.image, group.question, group.candidates[best].response,
                         group.candidates[rejected].response, score[best], score[rejected], best, rejected});
    ++out.stats.pairs;
  }
  return out;
}

namespace {

const nlohmann::json& required(const nlohmann::json& obj, const char* key, const std::string& where) {
  const auto it = obj.find(key);
  if (it == obj.end()) throw DataError(fmt::format("{}: missing key '{}'", where, key));
  return *it;
}

std::string required_string(const nlohmann::json& obj, const char* key, const std::string& where) {
  const nlohmann::json& v = required(obj, key, where);
  if (!v.is_string()) {
    throw DataError(fmt::format("{}: key '{}' should be a string, found {}", where, key, v.type_name()));
  }
  return v.get<std::string>();
}

}  // namespace

ScoredGroup scored_group_from_json(const nlohmann::json& row, const std::string& where) {
  if (!row.is_object()) throw DataError(fmt::format("{}: expected a JSON object, found {}", where, row.type_name()));
  ScoredGroup group;
  group.id = required_string(row, "id", where);
  if (row.contains("image")) group.image = required_string(row, "image", where);
  group.question = required_string(row, "question", where);
  const nlohmann::json& candidates = required(row, "candidates", where);
  if (!candidates.is_array()) {
    throw DataError(fmt::format("{}: 'candidates' should be an array, found {}", where, candidates.type_name()));
  }
  for (size_t i = 0; i < candidates.size(); ++i) {
    const std::string at = fmt::format("{}: candidates[{}]", where, i);
    const nlohmann::json& c = candidates[i];
    if (!c.is_object()) throw DataError(fmt::format("{}: expected an object, found {}", at, c.type_name()));
    ScoredCandidate candidate;
    candidate.response = required_string(c, "response", at);
    const nlohmann::json& scores = required(c, "scores", at);
    if (!scores.is_object()) {
      throw DataError(fmt::format("{}: 'scores' should be an object, found {}", at, scores.type_name()));
    }
    for (const auto& [name, value] : scores.items()) {
      if (!value.is_number()) {
        throw DataError(fmt::format("{}: score '{}' should be a number, found {}", at, name, value.dump()));
      }
      candidate.scores[name] = value.get<double>();
    }
    group.candidates.push_back(std::move(candidate));
  }
  return group;
}

std::vector<ScoredGroup> read_scored_groups(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) throw IoError(fmt::format("{}: cannot open for reading", path.string()));
  std::vector<ScoredGroup> groups;
  std::string line;
  for (size_t line_no = 1; std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = fmt::format("{}:{}", path.string(), line_no);
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw DataError(fmt::format("{}: not valid JSON: {}", where, e.what()));
    }
    groups.push_back(scored_group_from_json(row, where));
  }
  return groups;
}

nlohmann::ordered_json to_dpo_row(const PreferencePair& pair) {
  nlohmann::ordered_json row;
  row["id"] = pair.id;
  if (!pair.image.empty()) row["image"] = pair.image;
  row["question"] = pair.question;
  row["chosen"] = {{"from", "gpt"}, {"value", pair.chosen}};
  row["rejected"] = {{"from", "gpt"}, {"value", pair.rejected}};
  return row;
}

}  // namespace mmr::synthetic
