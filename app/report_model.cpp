// Tables and plots of `runner report` from the store's numbers and the experiment's `report:` section. See
// report_model.h.
#include "app/report_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <set>

namespace mmr {
namespace {

const char* const kSpreadNote = "± is the sample standard deviation over the seeds (n − 1)";

std::optional<double> number(const std::string& text) {
  if (text.empty()) return std::nullopt;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (end != text.c_str() + text.size()) return std::nullopt;
  return v;
}

// "0" and "0.0" are one value: labels show values as written in the file, `where:` as written in `report:`.
bool same_value(const std::string& a, const std::string& b) {
  if (a == b) return true;
  const auto x = number(a), y = number(b);
  return x && y && *x == *y;
}

std::string list_text(const std::vector<std::string>& items) {
  return items.empty() ? "(none)" : fmt::format("{}", fmt::join(items, ", "));
}

template <class T>
void push_unique(std::vector<T>& v, const T& x) {
  if (std::find(v.begin(), v.end(), x) == v.end()) v.push_back(x);
}

Stats metric_stats(const ExperimentData& d, const std::string& metric, const std::vector<const TrialInfo*>& trials) {
  std::vector<double> values;
  auto by_trial = d.finals.find(metric);
  if (by_trial != d.finals.end())
    for (const TrialInfo* t : trials) {
      auto v = by_trial->second.find(t->id);
      if (v != by_trial->second.end()) values.push_back(v->second);
    }
  return stats_of(values);
}

// Rows of a table: trials grouped by a text (their cell, or one key's value), groups in first-seen order.
using Groups = std::vector<std::pair<std::string, std::vector<const TrialInfo*>>>;

template <class KeyOf>
Groups group_trials(const std::vector<const TrialInfo*>& trials, KeyOf key_of) {
  Groups groups;
  for (const TrialInfo* t : trials) {
    const std::string key = key_of(*t);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return g.first == key; });
    if (it == groups.end()) groups.push_back({key, {t}});
    else it->second.push_back(t);
  }
  return groups;
}

ReportTable make_table(const ExperimentData& d, std::string title, std::string row_header, const Groups& groups,
                       const std::vector<std::string>& metrics) {
  ReportTable t;
  t.title = std::move(title);
  t.row_header = std::move(row_header);
  t.columns = metrics;
  bool spread = false;
  for (const auto& [label, trials] : groups) {
    t.rows.push_back(label);
    std::vector<Stats> row;
    for (const std::string& m : metrics) {
      row.push_back(metric_stats(d, m, trials));
      spread = spread || row.back().n > 1;
    }
    t.cells.push_back(std::move(row));
  }
  t.transposed = t.columns.size() > t.rows.size();
  if (spread) t.notes.push_back(kSpreadNote);
  return t;
}

std::vector<const TrialInfo*> all_trials(const ExperimentData& d) {
  std::vector<const TrialInfo*> out;
  for (const TrialInfo& t : d.trials) out.push_back(&t);
  return out;
}

ReportTable default_table(const ExperimentData& d) {
  const Groups groups = group_trials(all_trials(d), [](const TrialInfo& t) { return t.cell; });
  ReportTable t = make_table(d, "Final metrics by trial", "trial", groups, d.final_metrics);
  const auto partial = std::count_if(d.trials.begin(), d.trials.end(), [&](const TrialInfo& x) {
    return x.status != "finished" && std::any_of(d.final_metrics.begin(), d.final_metrics.end(), [&](const auto& m) {
             return d.finals.at(m).count(x.id) > 0;
           });
  });
  if (partial > 0)
    t.notes.push_back(fmt::format("{} trial(s) that did not finish count here with the stages they finished", partial));
  if (t.transposed) t.notes.push_back("transposed: one row per metric, one column per trial (more metrics than trials)");
  return t;
}

// Reads one entry of `report.tables` or `report.plots`; `what` ("table 2") starts every warning about it.
class Entry {
 public:
  Entry(const ExperimentData& d, const YAML::Node& node, std::string what, std::vector<std::string>& warnings)
      : d_(d), node_(node), what_(std::move(what)), warnings_(warnings), keys_(d.label_keys()) {}

  bool check_fields(const std::vector<std::string>& allowed) {
    if (!node_.IsMap()) return warn("expected a map ({}: ...), found something else; left out", list_text(allowed));
    for (const auto& kv : node_)
      if (std::find(allowed.begin(), allowed.end(), kv.first.Scalar()) == allowed.end())
        warn("unknown field '{}' ignored (expected: {})", kv.first.Scalar(), list_text(allowed));
    return true;
  }
  std::string text(const char* field, const std::string& fallback = "") const {
    return node_[field] && node_[field].IsScalar() ? node_[field].Scalar() : fallback;
  }
  // A label key named by `field`; empty (after a warning) when it is missing or not a key of the labels.
  std::string label_key(const char* field) {
    const std::string key = text(field);
    if (key.empty()) warn("'{}:' is required (a key of the trial labels: {}); left out", field, list_text(keys_));
    else if (std::find(keys_.begin(), keys_.end(), key) == keys_.end())
      warn("{}: '{}' is not a key of the trial labels (expected one of: {}); left out", field, key, list_text(keys_));
    else return key;
    return "";
  }
  // False (after a warning) when `metric` was not recorded in this experiment.
  bool known_metric(const std::string& metric) {
    if (d_.finals.count(metric)) return true;
    std::vector<std::string> have;
    for (const auto& [m, values] : d_.finals) have.push_back(m);
    return warn("metric '{}' was not recorded in this experiment (expected stage/name, one of: {}); left out",
                metric, list_text(have));
  }
  // The trials `where:` keeps; a key that is not a label key or a value no trial has is a warning.
  std::vector<const TrialInfo*> filtered() {
    std::vector<const TrialInfo*> out = all_trials(d_);
    const YAML::Node where = node_["where"];
    if (!where) return out;
    if (!where.IsMap()) {
      warn("where: expected a map of label key to value(s); ignored");
      return out;
    }
    for (const auto& kv : where) out = keep(out, kv.first.Scalar(), kv.second);
    return out;
  }
  const std::string& what() const { return what_; }

  template <class... A>
  bool warn(fmt::format_string<A...> f, A&&... a) {
    warnings_.push_back(what_ + ": " + fmt::format(f, std::forward<A>(a)...));
    return false;
  }

 private:
  std::vector<const TrialInfo*> keep(const std::vector<const TrialInfo*>& in, const std::string& key,
                                     const YAML::Node& want) {
    if (std::find(keys_.begin(), keys_.end(), key) == keys_.end()) {
      warn("where: '{}' is not a key of the trial labels (expected one of: {}); ignored", key, list_text(keys_));
      return in;
    }
    std::vector<std::string> values;
    if (want.IsSequence()) for (const auto& v : want) values.push_back(v.Scalar());
    else values.push_back(want.Scalar());
    std::vector<const TrialInfo*> out;
    for (const TrialInfo* t : in) {
      const auto v = t->value_of(key);
      if (v && std::any_of(values.begin(), values.end(), [&](const auto& w) { return same_value(*v, w); }))
        out.push_back(t);
    }
    if (out.empty()) warn("where: no trial has {}={}", key, fmt::join(values, " or "));
    return out;
  }

  const ExperimentData& d_;
  YAML::Node node_;
  std::string what_;
  std::vector<std::string>& warnings_;
  std::vector<std::string> keys_;
};

// Label keys, other than `except` and the seed, whose value differs among `trials`.
std::vector<std::string> varying_keys(const ExperimentData& d, const std::vector<const TrialInfo*>& trials,
                                      const std::vector<std::string>& except) {
  std::vector<std::string> out;
  for (const std::string& key : d.label_keys()) {
    if (key == "seed" || std::find(except.begin(), except.end(), key) != except.end()) continue;
    std::set<std::string> values;
    for (const TrialInfo* t : trials) values.insert(t->value_of(key).value_or(""));
    if (values.size() > 1) out.push_back(key);
  }
  return out;
}

std::string values_text(const TrialInfo& t, const std::vector<std::string>& keys) {
  std::vector<std::string> words;
  for (const auto& k : keys) words.push_back(k + "=" + t.value_of(k).value_or("?"));
  return fmt::format("{}", fmt::join(words, " "));
}

// The declared columns that were recorded (each one that was not is a warning); every final metric by default.
std::vector<std::string> table_columns(const ExperimentData& d, const YAML::Node& columns, Entry& e) {
  if (!columns) return d.final_metrics;
  if (!columns.IsSequence()) {
    e.warn("columns: expected a list of stage/name metrics; showing every one");
    return d.final_metrics;
  }
  std::vector<std::string> out;
  for (const auto& c : columns)
    if (e.known_metric(c.IsScalar() ? c.Scalar() : "")) out.push_back(c.Scalar());
  return out;
}

std::optional<ReportTable> declared_table(const ExperimentData& d, const YAML::Node& node, size_t index,
                                          std::vector<std::string>& warnings) {
  Entry e(d, node, fmt::format("report.tables[{}]", index), warnings);
  if (!e.check_fields({"title", "rows", "columns", "where"})) return std::nullopt;
  const std::string rows = e.label_key("rows");
  if (rows.empty()) return std::nullopt;
  const std::vector<std::string> metrics = table_columns(d, node["columns"], e);
  const auto trials = e.filtered();
  const Groups groups = group_trials(trials, [&](const TrialInfo& t) { return t.value_of(rows).value_or("?"); });
  ReportTable t = make_table(d, e.text("title", "Table " + std::to_string(index + 1)), rows, groups, metrics);
  t.transposed = false;  // as the experiment declared it
  const auto pooled = varying_keys(d, trials, {rows});
  if (!pooled.empty())
    t.notes.push_back(fmt::format("each row pools trials that differ in {} (fix them with where:)", fmt::join(pooled, ", ")));
  return t;
}

// x positions: numbers when every value is one, else categories in first-seen order.
std::vector<std::string> x_categories(const std::vector<const TrialInfo*>& trials, const std::string& x) {
  std::vector<std::string> values;
  for (const TrialInfo* t : trials) push_unique(values, t->value_of(x).value_or("?"));
  const bool numeric = std::all_of(values.begin(), values.end(), [](const auto& v) { return number(v).has_value(); });
  return numeric ? std::vector<std::string>{} : values;
}

PlotSeries make_series(const ExperimentData& d, const std::string& title, const std::vector<const TrialInfo*>& trials,
                       const std::string& x, const std::string& y, const std::vector<std::string>& categories) {
  PlotSeries s{title, {}};
  const Groups by_x = group_trials(trials, [&](const TrialInfo& t) { return t.value_of(x).value_or("?"); });
  for (const auto& [value, group] : by_x) {
    const Stats st = metric_stats(d, y, group);
    if (st.n == 0) continue;
    const auto cat = std::find(categories.begin(), categories.end(), value);
    const double px = categories.empty() ? *number(value) : static_cast<double>(cat - categories.begin());
    s.points.push_back({px, st.mean, st.std});
  }
  std::sort(s.points.begin(), s.points.end(), [](const auto& a, const auto& b) { return a.x < b.x; });
  return s;
}

std::optional<ReportPlot> declared_plot(const ExperimentData& d, const YAML::Node& node, size_t index,
                                        std::vector<std::string>& warnings) {
  Entry e(d, node, fmt::format("report.plots[{}]", index), warnings);
  if (!e.check_fields({"title", "x", "y", "where"})) return std::nullopt;
  const std::string x = e.label_key("x");
  const std::string y = e.text("y");
  if (y.empty()) e.warn("'y:' is required (a metric, stage/name); left out");
  if (x.empty() || y.empty() || !e.known_metric(y)) return std::nullopt;
  const auto trials = e.filtered();
  ReportPlot p;
  p.title = e.text("title", y + " against " + x);
  p.file = fmt::format("plot-{}.svg", index + 1);
  p.xlabel = x;
  p.ylabel = y;
  p.categories = x_categories(trials, x);
  const auto lines = varying_keys(d, trials, {x});
  for (const auto& [title, group] : group_trials(trials, [&](const TrialInfo& t) { return values_text(t, lines); }))
    p.series.push_back(make_series(d, title.empty() ? y : title, group, x, y, p.categories));
  p.error_bars = std::any_of(trials.begin(), trials.end(), [&](const TrialInfo* t) { return t->seed != trials[0]->seed; });
  if (p.error_bars) p.notes.push_back("points are means over the seeds; error bars: the sample standard deviation");
  return p;
}

ReportPlot curve_plot(const ExperimentData& d, const std::string& metric) {
  ReportPlot p;
  p.title = "Training curve: " + metric;
  p.file = "curve-" + safe_name(metric) + ".svg";
  p.xlabel = "step";
  p.ylabel = metric;
  p.training_curve = true;
  const auto& by_trial = d.curves.at(metric);
  for (const TrialInfo& t : d.trials) {
    auto it = by_trial.find(t.id);
    if (it == by_trial.end()) continue;
    PlotSeries s{t.label.empty() ? fmt::format("trial {}", t.ordinal) : t.label, {}};
    for (const auto& [step, value] : it->second) s.points.push_back({static_cast<double>(step), value, 0});
    p.series.push_back(std::move(s));
  }
  p.notes.push_back("one line per trial (its latest attempt)");
  return p;
}

// The `report:` section of the spec stored with the experiment; a null node when there is none.
YAML::Node report_section(const ExperimentData& d, std::vector<std::string>& warnings) {
  YAML::Node doc;
  try {
    doc = YAML::Load(d.spec);
  } catch (const YAML::Exception& e) {
    warnings.push_back(fmt::format("the stored experiment file could not be read as YAML ({}); report: ignored", e.what()));
    return {};
  }
  if (!doc.IsMap() || !doc["report"]) return {};
  const YAML::Node r = doc["report"];
  if (!r.IsMap()) {
    warnings.push_back("report: expected a map with tables: and plots:; ignored");
    return {};
  }
  for (const auto& kv : r)
    if (kv.first.Scalar() != "tables" && kv.first.Scalar() != "plots")
      warnings.push_back(fmt::format("report: unknown key '{}' ignored (expected tables, plots)", kv.first.Scalar()));
  return r;
}

template <class Make, class Out>
void declared(const ExperimentData& d, const YAML::Node& list, const char* what, Make make, std::vector<Out>& out,
              std::vector<std::string>& warnings) {
  if (!list.IsDefined() || list.IsNull()) return;
  if (!list.IsSequence()) return warnings.push_back(fmt::format("report.{}: expected a list; ignored", what));
  for (size_t i = 0; i < list.size(); ++i)
    if (auto item = make(d, list[i], i, warnings)) out.push_back(std::move(*item));
}

}  // namespace

std::string format_stats(const Stats& s) {
  if (s.n == 0) return "–";
  if (s.n == 1) return fmt::format("{:.6g}", s.mean);
  return fmt::format("{:.6g} ± {:.3g}", s.mean, s.std);
}

std::string safe_name(const std::string& text) {
  std::string out;
  for (char c : text) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out;
}

ReportModel build_report_model(const ExperimentData& d) {
  ReportModel m;
  const YAML::Node section = report_section(d, m.warnings);
  m.tables.push_back(default_table(d));
  if (section.IsMap()) {
    declared(d, section["tables"], "tables", declared_table, m.tables, m.warnings);
    declared(d, section["plots"], "plots", declared_plot, m.plots, m.warnings);
  }
  for (const std::string& metric : d.step_metrics) m.plots.push_back(curve_plot(d, metric));
  return m;
}

}  // namespace mmr
