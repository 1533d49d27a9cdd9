// SteerLM conditioning (Dong et al. 2023, "SteerLM: Attribute Conditioned SFT as an (User-Steerable) Alternative to
// RLHF"), as the paper applied it to LLaVA: the five attribute scores written as
// "Helpfulness:4,Correctness:4,Coherence:4,Complexity:4,Verbosity:4" into the user turn. The `steerlm` algorithm
// trains on it, and hands generation the same conditioning as a model prompt template (ChatModel's
// set_prompt_template). Torch-free, header-only; no statics (see dataset_api.h on GNU-unique symbols).
#pragma once

#include <cmath>
#include <map>
#include <string>

#include "core/api/dataset_api.h"

namespace mmr {

// "{question}" and "{attributes}" are replaced; the question keeps its "<image>\n" prefix.
// Scores as "Name:v,Name:v,..." in the paper's attribute order; whole numbers print without a decimal point.
inline std::string steer_attribute_string(const std::map<std::string, double>& scores) {
  std::string out;
  for (const auto& name : attribute_names()) {
    auto it = scores.find(name);
    if (it == scores.end()) continue;
    const double v = it->second;
    std::string value = std::floor(v) == v ? std::to_string(static_cast<long long>(v)) : std::to_string(v);
    if (value.find('.') != std::string::npos) {
      while (value.back() == '0') value.pop_back();
      if (value.back() == '.') value.pop_back();
    }
    out += (out.empty() ? "" : ",") + name + ":" + value;
  }
  return out;
}

inline std::string apply_steer_template(const std::string& tmpl, const std::string& question, const std::string& attributes) {
  std::string out = tmpl;
  auto replace = [&](const std::string& key, const std::string& value) {
    for (size_t pos = out.find(key); pos != std::string::npos; pos = out.find(key, pos + value.size()))
      out.replace(pos, key.size(), value);
  };
  replace("{question}", question);
  replace("{attributes}", attributes);
  return out;
}

}  // namespace mmr
