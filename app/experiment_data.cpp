// Reading one experiment out of the results store for `runner report` and `runner status`. See experiment_data.h.
#include "app/experiment_data.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <set>

#include "core/api/error.h"
#include "core/lib/util/json_safe.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

int64_t int_of(const QueryCell& c) { return c.type == QueryCell::Null ? 0 : std::strtoll(c.text.c_str(), nullptr, 10); }

bool is_key_word(const std::string& word) {
  const size_t eq = word.find('=');
  if (eq == std::string::npos || eq == 0) return false;
  return std::all_of(word.begin(), word.begin() + static_cast<long>(eq), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

bool is_experiment_file(const std::string& arg) {
  auto ends = [&](const std::string& suffix) {
    return arg.size() > suffix.size() && arg.compare(arg.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  std::error_code ec;
  return ends(".yaml") || ends(".yml") || fs::is_regular_file(arg, ec);
}

// The `name:` of an experiment file, read on its own: the report of an experiment whose file has changed since
// (or no longer expands) is still wanted.
std::string name_in_file(const std::string& file) {
  if (!fs::exists(file)) throw ConfigError(fmt::format("experiment file '{}' does not exist (expected an experiment "
                                                       "name from the store or an experiment YAML file)", file));
  YAML::Node doc;
  try {
    doc = YAML::LoadFile(file);
  } catch (const YAML::Exception& e) {
    throw ConfigError(fmt::format("{}: cannot read the experiment's name: {}", file, e.what()));
  }
  if (!doc.IsMap() || !doc["name"] || !doc["name"].IsScalar() || doc["name"].Scalar().empty())
    throw ConfigError(fmt::format("{}: expected 'name: <experiment name>' at the top level", file));
  return doc["name"].Scalar();
}

TrialInfo read_trial(const std::vector<QueryCell>& r) {
  TrialInfo t;
  t.id = int_of(r[0]);
  t.ordinal = int_of(r[1]);
  t.label = r[2].text;
  t.seed = int_of(r[3]);
  t.status = r[4].text;
  t.attempt = static_cast<int>(int_of(r[5]));
  t.started_at = r[6].text;
  t.ended_at = r[7].text;
  t.host = r[8].text;
  t.pid = int_of(r[9]);
  t.artifact_dir = r[10].text;
  t.error = r[11].text;
  std::vector<std::string> words;
  for (const LabelKey& k : parse_label(t.label)) {
    if (k.key == "seed") continue;
    t.keys.push_back(k);
    words.push_back(k.key + "=" + k.value);
  }
  t.cell = words.empty() ? "(defaults)" : fmt::format("{}", fmt::join(words, " "));  // a label that varies nothing
  return t;
}

// Stages in the order the trials ran them: what the metric columns follow.
std::map<std::string, int64_t> stage_order(const Store& store, int64_t experiment_id) {
  std::map<std::string, int64_t> order;
  const QueryResult r = store.query(fmt::format(
      "SELECT s.name, min(s.ordinal) FROM stages s JOIN trials t ON t.id = s.trial_id WHERE t.experiment_id = {} "
      "GROUP BY s.name", experiment_id));
  for (const auto& row : r.rows) order[row[0].text] = int_of(row[1]);
  return order;
}

void sort_metrics(std::vector<std::string>& metrics, const std::map<std::string, int64_t>& order) {
  auto rank = [&](const std::string& m) {
    auto it = order.find(m.substr(0, m.find('/')));
    return std::make_pair(it == order.end() ? INT64_MAX : it->second, m);
  };
  std::sort(metrics.begin(), metrics.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
}

// The final_metrics view; a NaN is stored as NULL and left out (the cell shows no value).
void load_finals(const Store& store, ExperimentData& d) {
  const QueryResult r = store.query(fmt::format(
      "SELECT trial_id, stage || '/' || name, step IS NULL, value FROM final_metrics WHERE experiment_id = {}", d.id));
  std::set<std::string> step_less;
  for (const auto& row : r.rows) {
    if (row[2].text == "1") step_less.insert(row[1].text);
    auto& by_trial = d.finals[row[1].text];  // there even when every value is NaN: a known metric, no values
    if (row[3].type != QueryCell::Null) by_trial[int_of(row[0])] = std::strtod(row[3].text.c_str(), nullptr);
  }
  d.final_metrics.assign(step_less.begin(), step_less.end());
}

void load_curves(const Store& store, ExperimentData& d) {
  const QueryResult r = store.query(fmt::format(
      "SELECT m.trial_id, m.stage || '/' || m.name, m.step, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id "
      "AND m.attempt = t.attempt WHERE t.experiment_id = {} AND m.step IS NOT NULL ORDER BY m.step", d.id));
  for (const auto& row : r.rows)
    if (row[3].type != QueryCell::Null)
      d.curves[row[1].text][int_of(row[0])].emplace_back(int_of(row[2]), std::strtod(row[3].text.c_str(), nullptr));
  for (const auto& [metric, by_trial] : d.curves) d.step_metrics.push_back(metric);
}

// A configuration value as text: strings as they are, anything else as compact JSON ("1.0", "true", "[1,2]").
std::string json_text(const nlohmann::json& v) { return v.is_string() ? v.get<std::string>() : dump_text(v); }

// Every path under `node` (maps only: a list is one value) into `out`, keeping what is there already.
void flatten(const nlohmann::json& node, const std::string& prefix, std::map<std::string, std::string>& out) {
  if (!prefix.empty()) out.emplace(prefix, json_text(node));
  if (!node.is_object()) return;
  for (const auto& [key, value] : node.items()) flatten(value, prefix.empty() ? key : prefix + "." + key, out);
}

void load_configs(const Store& store, ExperimentData& d) {
  const QueryResult r = store.query(fmt::format("SELECT id, config FROM trials WHERE experiment_id = {}", d.id));
  std::map<int64_t, std::map<std::string, std::string>> by_trial;
  for (const auto& row : r.rows) by_trial[int_of(row[0])] = flatten_trial_config(row[1].text);
  for (TrialInfo& t : d.trials)
    if (auto it = by_trial.find(t.id); it != by_trial.end()) t.config = std::move(it->second);
}

void load_artifacts(const Store& store, ExperimentData& d) {
  const QueryResult r = store.query(fmt::format(
      "SELECT a.trial_id, a.stage, a.name, a.path, a.bytes FROM artifacts a JOIN trials t ON t.id = a.trial_id AND "
      "a.attempt = t.attempt WHERE t.experiment_id = {} ORDER BY a.trial_id, a.stage, a.name", d.id));
  for (const auto& row : r.rows)
    d.artifacts[int_of(row[0])].push_back({row[1].text, row[2].text, row[3].text, int_of(row[4])});
}

}  // namespace

// trials.config, canonical JSON {"config": {...}, "seed": N, "stages": [{"name", "options", ...}]}: the
// configuration's paths first, then the stages' options under their names. A value that is not that JSON (a store
// written before it was recorded) gives an empty map.
std::map<std::string, std::string> flatten_trial_config(const std::string& config_json) {
  std::map<std::string, std::string> out;
  const nlohmann::json doc = nlohmann::json::parse(config_json, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return out;
  if (doc.contains("config")) flatten(doc["config"], "", out);
  if (doc.contains("stages") && doc["stages"].is_array())
    for (const auto& stage : doc["stages"])
      if (stage.is_object() && stage.contains("name") && stage["name"].is_string() && stage.contains("options") &&
          stage["options"].is_object())
        for (const auto& [option, value] : stage["options"].items())
          flatten(value, stage["name"].get<std::string>() + "." + option, out);
  return out;
}

std::optional<std::string> TrialInfo::value_of(const std::string& key) const {
  if (key == "seed") return std::to_string(seed);
  for (const LabelKey& k : keys)
    if (k.key == key) return k.value;
  if (auto it = config.find(key); it != config.end()) return it->second;
  return std::nullopt;
}

std::optional<std::string> TrialInfo::resolved_of(const std::string& key) const {
  if (auto it = config.find(key); it != config.end() && key != "seed") return it->second;
  return value_of(key);
}

std::vector<std::string> ExperimentData::label_keys() const {
  std::vector<std::string> out;
  std::set<int64_t> seeds;
  for (const TrialInfo& t : trials) {
    seeds.insert(t.seed);
    for (const LabelKey& k : t.keys)
      if (std::find(out.begin(), out.end(), k.key) == out.end()) out.push_back(k.key);
  }
  if (seeds.size() > 1) out.push_back("seed");
  return out;
}

std::vector<std::string> ExperimentData::config_keys() const {
  std::set<std::string> keys;
  for (const TrialInfo& t : trials)
    for (const auto& [path, value] : t.config)
      if (path.find('.') == std::string::npos) keys.insert(path);
  return {keys.begin(), keys.end()};
}

bool ExperimentData::has_key(const std::string& key) const {
  return std::any_of(trials.begin(), trials.end(), [&](const TrialInfo& t) { return t.value_of(key).has_value(); });
}

Stats stats_of(const std::vector<double>& values) {
  Stats s;
  s.n = static_cast<int>(values.size());
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / s.n;
  double sq = 0;
  for (double v : values) sq += (v - s.mean) * (v - s.mean);
  s.std = s.n > 1 ? std::sqrt(sq / (s.n - 1)) : 0;
  return s;
}

std::string sql_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("''") : std::string(1, c);
  return out + "'";
}

std::vector<LabelKey> parse_label(const std::string& label) {
  std::vector<LabelKey> out;
  size_t pos = 0;
  while (pos < label.size()) {
    size_t end = label.find(' ', pos);
    if (end == std::string::npos) end = label.size();
    const std::string word = label.substr(pos, end - pos);
    if (is_key_word(word)) {
      const size_t eq = word.find('=');
      out.push_back({word.substr(0, eq), word.substr(eq + 1)});
    } else if (!out.empty()) {
      out.back().value += " " + word;  // a value with a space in it
    }
    pos = end + 1;
  }
  return out;
}

double now_seconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

Store open_store_read_only(const fs::path& db) {
  if (!fs::exists(db))
    throw ConfigError(fmt::format("results database '{}' does not exist (expected the --results of a run; default "
                                  "results/results.db)", db.string()));
  return Store(db, Store::Mode::ReadOnly);
}

std::string resolve_experiment(const Store& store, const std::string& arg, const fs::path& db) {
  const std::string name = is_experiment_file(arg) ? name_in_file(arg) : arg;
  const std::vector<std::string> have = store.experiment_names();
  if (have.empty())
    throw ConfigError(fmt::format("results database '{}' holds no experiment yet (run one first: runner EXP.yaml)",
                                  db.string()));
  if (!store.has_experiment(name))
    throw ConfigError(fmt::format("no experiment '{}' in {}; expected one of: {}", name, db.string(),
                                  fmt::join(have, ", ")));
  return name;
}

std::vector<TrialInfo> load_trials(const Store& store, int64_t experiment_id) {
  const QueryResult r = store.query(fmt::format(
      "SELECT id, ordinal, label, seed, status, attempt, started_at, ended_at, host, pid, artifact_dir, error "
      "FROM trials WHERE experiment_id = {} ORDER BY ordinal, id", experiment_id));
  std::vector<TrialInfo> out;
  for (const auto& row : r.rows) out.push_back(read_trial(row));
  return out;
}

ExperimentData load_experiment_data(const Store& store, const std::string& name) {
  const QueryResult e = store.query(
      "SELECT id, name, source, spec, created_at, updated_at FROM experiments WHERE name = " + sql_quote(name));
  if (e.rows.empty()) throw ConfigError(fmt::format("no experiment '{}' in {}", name, store.path().string()));
  ExperimentData d;
  d.id = int_of(e.rows[0][0]);
  d.name = e.rows[0][1].text;
  d.source = e.rows[0][2].text;
  d.spec = e.rows[0][3].text;
  d.created_at = e.rows[0][4].text;
  d.updated_at = e.rows[0][5].text;
  d.trials = load_trials(store, d.id);
  load_configs(store, d);
  load_finals(store, d);
  load_curves(store, d);
  load_artifacts(store, d);
  const auto order = stage_order(store, d.id);
  sort_metrics(d.final_metrics, order);
  sort_metrics(d.step_metrics, order);
  return d;
}

}  // namespace mmr
