// `runner results`: the trials × final metrics table and its filters. See results_view.h.
#include "app/results_view.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <fnmatch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>
#include <utility>

#include "app/experiment_data.h"
#include "app/format.h"
#include "core/api/error.h"

namespace mmr {
namespace {

const std::vector<std::string> kTrialColumns = {"experiment", "#", "trial", "label", "status", "attempt"};
const std::vector<std::string> kTrialFields = {"experiment", "#", "trial", "label", "status", "attempt", "seed"};

struct MetricColumn {
  std::string stage, name, column;
};

// The distinct metrics in final_metrics' order (stage, then name) with their column names: metric_column's,
// unless that is also another metric's full "stage/name" (a stage logging both "loss" and "train/loss").
std::vector<MetricColumn> metric_columns(const std::vector<FinalMetric>& metrics) {
  std::vector<MetricColumn> out;
  std::set<std::string> full;
  for (const FinalMetric& m : metrics)
    if (full.insert(m.stage + "/" + m.name).second) out.push_back({m.stage, m.name, ""});
  for (MetricColumn& c : out) {
    const std::string shorter = metric_column(c.stage, c.name);
    const bool taken = shorter != c.stage + "/" + c.name && full.count(shorter);
    c.column = taken ? c.stage + "/" + c.name : shorter;
  }
  return out;
}

// What --where reads of a trial: its seed, label keys and resolved configuration (TrialInfo::value_of).
std::map<int64_t, TrialInfo> where_info(const Store& store, const std::optional<std::string>& experiment) {
  const QueryResult r = store.query(
      "SELECT t.id, t.seed, t.label, t.config FROM trials t JOIN experiments e ON e.id = t.experiment_id" +
      (experiment ? " WHERE e.name = " + sql_quote(*experiment) : std::string()));
  std::map<int64_t, TrialInfo> out;
  for (const auto& row : r.rows) {
    TrialInfo& t = out[std::strtoll(row[0].text.c_str(), nullptr, 10)];
    t.seed = std::strtoll(row[1].text.c_str(), nullptr, 10);
    for (const LabelKey& k : parse_label(row[2].text))
      if (k.key != "seed") t.keys.push_back(k);
    t.config = flatten_trial_config(row[3].text);
  }
  return out;
}

// The value of --where's KEY for a trial: a field as its column shows it, else the label's or the configuration's.
std::optional<std::string> where_value(const TrialSummary& t, const TrialInfo& info, const std::string& key) {
  if (key == "experiment") return t.experiment;
  if (key == "#") return std::to_string(t.ordinal);
  if (key == "trial") return t.identity.substr(0, 12);
  if (key == "label") return t.label;
  if (key == "status") return t.status;
  if (key == "attempt") return std::to_string(t.attempt);
  return info.value_of(key);  // seed, label keys, configuration paths
}

std::optional<double> as_number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (*end != '\0' || !std::isfinite(v)) return std::nullopt;
  return v;
}

bool value_matches(const std::string& value, const std::string& pattern) {
  const auto a = as_number(value), b = as_number(pattern);
  if (a && b) return *a == *b;
  return fnmatch(pattern.c_str(), value.c_str(), 0) == 0;
}

// What a --where KEY may be, for the error naming one that no trial has.
std::string known_keys(const std::map<int64_t, TrialInfo>& info) {
  std::set<std::string> label, config;
  for (const auto& [id, t] : info) {
    for (const LabelKey& k : t.keys) label.insert(k.key);
    for (const auto& [path, value] : t.config) config.insert(path.substr(0, path.find('.')));
  }
  return fmt::format("trial fields: {}; label keys: {}; configuration keys (and dotted paths under them, "
                     "<stage>.<option>): {}", fmt::join(kTrialFields, ", "),
                     label.empty() ? "(none)" : fmt::format("{}", fmt::join(label, ", ")),
                     config.empty() ? "(none)" : fmt::format("{}", fmt::join(config, ", ")));
}

// The trials every --where holds for; throws ConfigError for a malformed one or a KEY no trial has.
std::vector<TrialSummary> select_trials(const Store& store, const ResultsSelection& s) {
  std::vector<TrialSummary> trials = store.trials(s.experiment);
  if (s.where.empty()) return trials;
  const std::map<int64_t, TrialInfo> info = where_info(store, s.experiment);
  for (const std::string& w : s.where) {
    const size_t eq = w.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ConfigError(fmt::format("--where '{}': expected KEY=VALUE (e.g. --where status=finished)", w));
    const std::string key = w.substr(0, eq), pattern = w.substr(eq + 1);
    bool known = false;
    std::vector<TrialSummary> kept;
    for (const TrialSummary& t : trials) {
      const auto it = info.find(t.id);
      const auto value = where_value(t, it == info.end() ? TrialInfo{} : it->second, key);
      known = known || value.has_value();
      if (value && value_matches(*value, pattern)) kept.push_back(t);
    }
    if (!known && !trials.empty())
      throw ConfigError(fmt::format("--where '{}': no trial has a key '{}'; {}", w, key, known_keys(info)));
    trials = std::move(kept);
  }
  return trials;
}

// The metric columns of stage `stage` (all when empty); throws ConfigError when no metric has that stage.
std::vector<MetricColumn> stage_columns(std::vector<MetricColumn> all, const std::string& stage) {
  if (stage.empty()) return all;
  std::vector<MetricColumn> kept;
  std::set<std::string> stages;
  for (const MetricColumn& c : all) {
    stages.insert(c.stage);
    if (c.stage == stage) kept.push_back(c);
  }
  if (kept.empty())
    throw ConfigError(fmt::format("--stage '{}': no final metric of a stage '{}'; stages with metrics: {}", stage,
                                  stage, stages.empty() ? "(none)" : fmt::format("{}", fmt::join(stages, ", "))));
  return kept;
}

// The indices of the columns the --columns globs name, in the globs' order (each column once).
std::vector<size_t> chosen_columns(const std::vector<std::string>& columns, const std::vector<std::string>& globs) {
  std::vector<size_t> out;
  for (const std::string& glob : globs) {
    bool any = false;
    for (size_t i = 0; i < columns.size(); ++i)
      if (fnmatch(glob.c_str(), columns[i].c_str(), 0) == 0) {
        any = true;
        if (std::find(out.begin(), out.end(), i) == out.end()) out.push_back(i);
      }
    if (!any)
      throw ConfigError(fmt::format("--columns '{}' matches no column; columns: {}", glob, fmt::join(columns, ", ")));
  }
  return out;
}

}  // namespace

std::string metric_column(const std::string& stage, const std::string& name) {
  return name.rfind(stage + "/", 0) == 0 ? name : stage + "/" + name;
}

const std::vector<std::string>& results_key_columns() {
  static const std::vector<std::string> keys = {"#", "label"};
  return keys;
}

QueryResult results_table(const Store& store, const ResultsSelection& s) {
  const std::vector<TrialSummary> trials = select_trials(store, s);
  const std::vector<FinalMetric> metrics = store.final_metrics(s.experiment);
  std::map<std::pair<int64_t, std::string>, QueryCell> values;  // (trial id, "stage/name") -> value
  for (const FinalMetric& m : metrics) values[{m.trial_id, m.stage + "/" + m.name}] = m.value;
  // A metric none of the selected trials has (a --where left only other methods' trials) gets no column.
  std::vector<MetricColumn> columns;
  for (const MetricColumn& c : stage_columns(metric_columns(metrics), s.stage))
    if (std::any_of(trials.begin(), trials.end(),
                    [&](const TrialSummary& t) { return values.count({t.id, c.stage + "/" + c.name}) > 0; }))
      columns.push_back(c);
  QueryResult out;
  out.columns = kTrialColumns;
  for (const MetricColumn& c : columns) out.columns.push_back(c.column);
  for (const TrialSummary& t : trials) {
    std::vector<QueryCell> row = {{QueryCell::Text, t.experiment},
                                  {QueryCell::Integer, std::to_string(t.ordinal)},
                                  {QueryCell::Text, t.identity.substr(0, 12)},
                                  {QueryCell::Text, t.label.empty() ? "-" : t.label},
                                  {QueryCell::Text, t.status},
                                  {QueryCell::Integer, std::to_string(t.attempt)}};
    for (const MetricColumn& c : columns) {
      auto it = values.find({t.id, c.stage + "/" + c.name});
      row.push_back(it == values.end() ? QueryCell{} : it->second);
    }
    out.rows.push_back(std::move(row));
  }
  return s.columns.empty() ? out : with_columns(out, chosen_columns(out.columns, s.columns));
}

}  // namespace mmr
