#include "plugins/benchmarks/judge_agreement/scoring.h"

#include <fmt/format.h>

#include <cmath>
#include <limits>

#include "core/api/error.h"
#include "plugins/benchmarks/common/jsonl.h"

namespace mmr::judge_agreement {
namespace {

using Json = benchmarks::jsonl::Json;
namespace jsonl = benchmarks::jsonl;

const char* const kAttributes[] = {"Helpfulness", "Correctness", "Coherence", "Complexity", "Verbosity"};
const char* const kQuality[] = {"Helpfulness", "Correctness", "Coherence"};  // the paper's pair rule

std::map<std::string, double> scores_of(const Json& candidate, const std::string& where) {
  if (!candidate.is_object()) throw DataError(where + "a candidate must be an object {response, scores}");
  const Json& scores = candidate.contains("scores") ? candidate["scores"] : candidate;
  std::map<std::string, double> out;
  for (const char* a : kAttributes) {
    if (!scores.contains(a)) continue;
    if (!scores[a].is_number())
      throw DataError(fmt::format("{}score '{}': expected a number, found {}", where, a, scores[a].dump()));
    out[a] = scores[a].get<double>();
  }
  return out;
}

}  // namespace

ScoredPairs read_scored_pairs(const std::string& path) {
  ScoredPairs out;
  for (const auto& [line, row] : jsonl::read_jsonl(path, "scored pairs file")) {
    const std::string where = jsonl::at(path, line);
    const Json pref = row.value("preference", Json());
    if (!pref.is_number_integer() || (pref.get<int>() != 1 && pref.get<int>() != 2))
      throw DataError(where + "\"preference\": expected 1 or 2 (the response humans preferred), found " + pref.dump());
    const Json cands = row.value("candidates", Json());
    if (!cands.is_array()) throw DataError(where + "\"candidates\": expected a list of two scored responses");
    if (cands.size() != 2) {
      ++out.skipped;
      continue;
    }
    // LLaVA-RLHF's human-preference rows, which annotate reads as they are, have integer ids.
    const Json id = row.value("id", Json());
    const std::string name = id.is_string() ? id.get<std::string>() : id.is_number() ? id.dump() : std::to_string(line);
    out.pairs.push_back({name, scores_of(cands[0], where), scores_of(cands[1], where), pref.get<int>()});
  }
  return out;
}

double pearson(const std::vector<double>& x, const std::vector<double>& y) {
  const size_t n = x.size();
  if (n < 2 || y.size() != n) return std::numeric_limits<double>::quiet_NaN();
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= static_cast<double>(n), my /= static_cast<double>(n);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) * (x[i] - mx);
    syy += (y[i] - my) * (y[i] - my);
  }
  if (sxx == 0 || syy == 0) return std::numeric_limits<double>::quiet_NaN();
  return sxy / std::sqrt(sxx * syy);
}

MetricList agreement_metrics(const ScoredPairs& scored) {
  std::vector<double> human;
  for (const auto& p : scored.pairs) human.push_back(p.preference == 1 ? 1.0 : -1.0);
  auto difference = [&](const std::vector<const char*>& attrs) -> std::vector<double> {
    std::vector<double> d;
    for (const auto& p : scored.pairs) {
      double v = 0;
      for (const char* a : attrs) {
        if (!p.first.count(a) || !p.second.count(a)) return {};  // not scored in every pair
        v += p.first.at(a) - p.second.at(a);
      }
      d.push_back(v);
    }
    return d;
  };
  MetricList out;
  for (const char* a : kAttributes)
    if (auto d = difference({a}); !d.empty()) out.push_back({std::string("pearson/") + a, pearson(d, human)});
  if (auto d = difference({kQuality[0], kQuality[1], kQuality[2]}); !d.empty())
    out.push_back({"pearson/quality", pearson(d, human)});
  out.push_back({"n_pairs", static_cast<double>(scored.pairs.size())});
  out.push_back({"n_skipped", static_cast<double>(scored.skipped)});
  return out;
}

}  // namespace mmr::judge_agreement
