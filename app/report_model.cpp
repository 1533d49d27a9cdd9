// Tables and plots of `runner report` from the store's numbers and the experiment's `report:` section. See
// report_model.h.
#include "app/report_model.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <iterator>
#include <map>
#include <optional>
#include <set>

#include "core/lib/util/strings.h"

namespace mmr {
namespace {

const char* const kSpreadNote = "± is the sample standard deviation over the seeds (n − 1)";
const char* const kPooledSpreadNote = "± is the sample standard deviation over the trials of the row (n − 1)";

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

// Rows of a table: trials grouped by a text (their cell, or one key's value: numbers as numbers, "0.5" and "0.50"
// one group shown as first seen), groups in first-seen order.
using Groups = std::vector<std::pair<std::string, std::vector<const TrialInfo*>>>;

template <class KeyOf>
Groups group_trials(const std::vector<const TrialInfo*>& trials, KeyOf key_of) {
  Groups groups;
  for (const TrialInfo* t : trials) {
    const std::string key = key_of(*t);
    auto it = std::find_if(groups.begin(), groups.end(), [&](const auto& g) { return same_value(g.first, key); });
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

// A metric with values from at least two trials, all of them equal (NaN, stored as no value, is no value).
std::optional<SameValue> same_everywhere(const ExperimentData& d, const std::string& metric) {
  const auto& by_trial = d.finals.at(metric);
  if (by_trial.size() < 2) return std::nullopt;
  const double first = by_trial.begin()->second;
  for (const auto& [trial, value] : by_trial)
    if (value != first) return std::nullopt;
  return SameValue{metric, first, static_cast<int>(by_trial.size())};
}

// Every final metric by trial; with two trials or more, the metrics with one value in all of them go to `same`
// (dozens of counts of a shared upstream stage would otherwise bury the few that differ).
ReportTable default_table(const ExperimentData& d) {
  const Groups groups = group_trials(all_trials(d), [](const TrialInfo& t) { return t.cell; });
  std::vector<std::string> differ;
  std::vector<SameValue> same;
  for (const std::string& m : d.final_metrics) {
    auto s = d.trials.size() > 1 ? same_everywhere(d, m) : std::nullopt;
    if (s) same.push_back(std::move(*s));
    else differ.push_back(m);
  }
  ReportTable t = make_table(d, "Final metrics by trial", "trial", groups, differ);
  t.trial_rows = true;
  t.same = std::move(same);
  t.trial_count = static_cast<int>(d.trials.size());
  const auto partial = std::count_if(d.trials.begin(), d.trials.end(), [&](const TrialInfo& x) {
    return x.status != "finished" && std::any_of(d.final_metrics.begin(), d.final_metrics.end(), [&](const auto& m) {
             return d.finals.at(m).count(x.id) > 0;
           });
  });
  if (partial > 0)
    t.notes.push_back(fmt::format("{} trial(s) that did not finish count here with the stages they finished", partial));
  if (t.transposed) t.notes.push_back("transposed: one row per metric, one column per trial (more metrics than trials)");
  if (!t.same.empty())
    t.notes.push_back(fmt::format("{} metric(s) with one value in every trial are listed under \"Same in every "
                                  "trial\" instead", t.same.size()));
  return t;
}

// Metrics a missing one may have meant: the same last part ("overall" for "text/overall"), one name inside the
// other, or a few letters apart; at most five.
std::vector<std::string> close_metrics(const ExperimentData& d, const std::string& metric) {
  auto last = [](const std::string& m) { return m.substr(m.rfind('/') + 1); };
  std::vector<std::string> out;
  for (const auto& [m, values] : d.finals) {
    const bool close = last(m) == last(metric) || m.find(metric) != std::string::npos ||
                       metric.find(m) != std::string::npos || edit_distance(m, metric) <= 3;
    if (close && out.size() < 5) out.push_back(m);
  }
  return out;
}

// What the entries share while they are read: the warnings, and the metrics no trial recorded with the entries
// that named them (one warning each, at the end).
struct Context {
  const ExperimentData& d;
  std::vector<std::string>& warnings;
  std::vector<std::pair<std::string, std::vector<std::string>>> missing;  // metric -> "report.tables[0]", ...
};

// Reads one entry of `report.tables` or `report.plots`; `what` ("report.tables[1]") starts every warning about it.
class Entry {
 public:
  Entry(Context& c, const YAML::Node& node, std::string what) : c_(c), d_(c.d), node_(node), what_(std::move(what)) {}

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
  // A trial key named by `field`; empty (after a warning) when it is missing or no trial has it.
  std::string trial_key(const char* field) {
    const std::string key = text(field);
    if (key.empty()) warn("'{}:' is required (a key of the trial labels or their configuration: {}); left out", field,
                          keys_text());
    else if (!d_.has_key(key)) warn("{}: '{}' is not a key of the trial labels or their configuration (expected {}); "
                                    "left out", field, key, keys_text());
    else return key;
    return "";
  }
  // False when no trial recorded `metric` (noted for the one warning about it).
  bool known_metric(const std::string& metric) {
    if (d_.finals.count(metric)) return true;
    auto it = std::find_if(c_.missing.begin(), c_.missing.end(), [&](const auto& m) { return m.first == metric; });
    if (it == c_.missing.end()) c_.missing.push_back({metric, {what_}});
    else push_unique(it->second, what_);
    return false;
  }
  // The trials `where:` keeps; a key no trial has or a value no trial has is a warning.
  std::vector<const TrialInfo*> filtered() {
    std::vector<const TrialInfo*> out = all_trials(d_);
    const YAML::Node where = node_["where"];
    if (!where) return out;
    if (!where.IsMap()) {
      warn("where: expected a map of key to value(s); ignored");
      return out;
    }
    for (const auto& kv : where) out = keep(out, kv.first.Scalar(), kv.second);
    return out;
  }

  template <class... A>
  bool warn(fmt::format_string<A...> f, A&&... a) {
    c_.warnings.push_back(what_ + ": " + fmt::format(f, std::forward<A>(a)...));
    return false;
  }

 private:
  std::string keys_text() const {
    return fmt::format("one of the labels' {}, the configuration's {} (a dotted path for a value inside a map), or "
                       "a stage's option as <stage>.<option>", list_text(d_.label_keys()), list_text(d_.config_keys()));
  }

  // A trial matches when its label's value or its configuration's is one of the wanted values.
  static bool matches(const TrialInfo& t, const std::string& key, const std::vector<std::string>& wanted) {
    const auto shown = t.value_of(key), resolved = t.resolved_of(key);
    return std::any_of(wanted.begin(), wanted.end(), [&](const std::string& w) {
      return (shown && same_value(*shown, w)) || (resolved && same_value(*resolved, w));
    });
  }

  std::vector<const TrialInfo*> keep(const std::vector<const TrialInfo*>& in, const std::string& key,
                                     const YAML::Node& want) {
    if (!d_.has_key(key)) {
      warn("where: '{}' is not a key of the trial labels or their configuration (expected {}); ignored", key,
           keys_text());
      return in;
    }
    std::vector<std::string> values;
    if (want.IsSequence()) for (const auto& v : want) values.push_back(v.Scalar());
    else values.push_back(want.Scalar());
    std::vector<const TrialInfo*> out;
    for (const TrialInfo* t : in)
      if (matches(*t, key, values)) out.push_back(t);
    if (out.empty()) warn("where: no trial has {}={}", key, fmt::join(values, " or "));
    return out;
  }

  Context& c_;
  const ExperimentData& d_;
  YAML::Node node_;
  std::string what_;
};

// Label keys, other than `except` and the seed, whose value differs among `trials` (as they ran: the
// configuration's value first, so "${models.aligned}" in one label and the map it stands for are one value).
std::vector<std::string> varying_keys(const ExperimentData& d, const std::vector<const TrialInfo*>& trials,
                                      const std::vector<std::string>& except) {
  std::vector<std::string> out;
  for (const std::string& key : d.label_keys()) {
    if (key == "seed" || std::find(except.begin(), except.end(), key) != except.end()) continue;
    std::vector<std::string> values;
    for (const TrialInfo* t : trials) {
      const std::string v = t->resolved_of(key).value_or("");
      if (std::none_of(values.begin(), values.end(), [&](const auto& x) { return same_value(x, v); }))
        values.push_back(v);
    }
    if (values.size() > 1) out.push_back(key);
  }
  return out;
}

std::string values_text(const TrialInfo& t, const std::vector<std::string>& keys) {
  std::vector<std::string> words;
  for (const auto& k : keys) words.push_back(k + "=" + t.value_of(k).value_or("?"));
  return fmt::format("{}", fmt::join(words, " "));
}

// The declared columns, as declared: a metric no trial recorded stays (its cells show "—") and is one warning.
std::vector<std::string> table_columns(const ExperimentData& d, const YAML::Node& columns, Entry& e) {
  if (!columns) return d.final_metrics;
  if (!columns.IsSequence()) {
    e.warn("columns: expected a list of stage/name metrics; showing every one");
    return d.final_metrics;
  }
  std::vector<std::string> out;
  for (const auto& c : columns) {
    if (!c.IsScalar() || c.Scalar().empty()) {
      e.warn("columns: expected stage/name metrics, found a {}; left out", c.IsMap() ? "map" : "list or null");
      continue;
    }
    e.known_metric(c.Scalar());
    out.push_back(c.Scalar());
  }
  return out;
}

std::optional<ReportTable> declared_table(Context& c, const YAML::Node& node, size_t index) {
  const ExperimentData& d = c.d;
  Entry e(c, node, fmt::format("report.tables[{}]", index));
  if (!e.check_fields({"title", "rows", "columns", "where"})) return std::nullopt;
  const std::string rows = e.trial_key("rows");
  if (rows.empty()) return std::nullopt;
  const std::vector<std::string> metrics = table_columns(d, node["columns"], e);
  const auto trials = e.filtered();
  const Groups groups = group_trials(trials, [&](const TrialInfo& t) { return t.value_of(rows).value_or("?"); });
  ReportTable t = make_table(d, e.text("title", "Table " + std::to_string(index + 1)), rows, groups, metrics);
  t.transposed = false;  // as the experiment declared it
  std::vector<std::string> pooled;  // keys that differ inside a row (across rows is what the table shows)
  for (const auto& [row, group] : groups)
    for (const std::string& key : varying_keys(d, group, {rows})) push_unique(pooled, key);
  if (!pooled.empty()) {
    std::replace(t.notes.begin(), t.notes.end(), std::string(kSpreadNote), std::string(kPooledSpreadNote));
    t.notes.push_back(fmt::format("each row pools trials that differ in {} (fix them with where:)", fmt::join(pooled, ", ")));
  }
  return t;
}

// x positions: numbers when every value is one, else categories in first-seen order.
std::vector<std::string> x_categories(const std::vector<const TrialInfo*>& trials, const std::string& x) {
  std::vector<std::string> values;
  for (const TrialInfo* t : trials) {
    const std::string v = t->value_of(x).value_or("?");
    if (std::none_of(values.begin(), values.end(), [&](const auto& have) { return same_value(have, v); }))
      values.push_back(v);
  }
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
    const auto cat =
        std::find_if(categories.begin(), categories.end(), [&](const auto& c) { return same_value(c, value); });
    const double px = categories.empty() ? *number(value) : static_cast<double>(cat - categories.begin());
    s.points.push_back({px, st.mean, st.std});
  }
  std::sort(s.points.begin(), s.points.end(), [](const auto& a, const auto& b) { return a.x < b.x; });
  return s;
}

std::optional<ReportPlot> declared_plot(Context& c, const YAML::Node& node, size_t index) {
  const ExperimentData& d = c.d;
  Entry e(c, node, fmt::format("report.plots[{}]", index));
  if (!e.check_fields({"title", "x", "y", "where"})) return std::nullopt;
  const std::string x = e.trial_key("x");
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

// The metrics with steps whose curves are drawn: `curves:` as listed (a metric without steps is a warning),
// `curves: all` every one, else those default_curve picks.
std::vector<std::string> selected_curves(const ExperimentData& d, const YAML::Node& curves,
                                         std::vector<std::string>& warnings) {
  if (!curves || curves.IsNull()) {
    std::vector<std::string> out;
    std::copy_if(d.step_metrics.begin(), d.step_metrics.end(), std::back_inserter(out), default_curve);
    return out;
  }
  if (curves.IsScalar() && curves.Scalar() == "all") return d.step_metrics;
  if (!curves.IsSequence()) {
    warnings.push_back("report.curves: expected a list of stage/name metrics with steps, or all; ignored");
    return selected_curves(d, YAML::Node(), warnings);
  }
  std::vector<std::string> out;
  for (const auto& c : curves) {
    const std::string metric = c.IsScalar() ? c.Scalar() : "";
    if (d.curves.count(metric)) push_unique(out, metric);
    else
      warnings.push_back(fmt::format("report.curves: '{}' is not a metric with steps in this experiment (expected "
                                     "one of: {}); left out", metric, list_text(d.step_metrics)));
  }
  return out;
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
    warnings.push_back("report: expected a map with tables:, plots: and curves:; ignored");
    return {};
  }
  for (const auto& kv : r)
    if (kv.first.Scalar() != "tables" && kv.first.Scalar() != "plots" && kv.first.Scalar() != "curves")
      warnings.push_back(fmt::format("report: unknown key '{}' ignored (expected tables, plots, curves)",
                                     kv.first.Scalar()));
  return r;
}

template <class Make, class Out>
void declared(Context& c, const YAML::Node& list, const char* what, Make make, std::vector<Out>& out) {
  if (!list.IsDefined() || list.IsNull()) return;
  if (!list.IsSequence()) return c.warnings.push_back(fmt::format("report.{}: expected a list; ignored", what));
  for (size_t i = 0; i < list.size(); ++i)
    if (auto item = make(c, list[i], i)) out.push_back(std::move(*item));
}

// One warning per metric that the declared tables and plots name and no trial recorded.
void warn_missing(const Context& c) {
  for (const auto& [metric, entries] : c.missing) {
    const auto close = close_metrics(c.d, metric);
    c.warnings.push_back(fmt::format(
        "metric '{}' was not recorded in this experiment, by any trial ({} name it: its table cells show —, a plot of "
        "it is left out); expected stage/name, {}", metric, fmt::join(entries, ", "),
        close.empty() ? fmt::format("one of the {} metrics in the table of final metrics", c.d.finals.size())
                      : fmt::format("perhaps {}", fmt::join(close, " or "))));
  }
}

}  // namespace

bool default_curve(const std::string& metric) {
  std::string name = metric.substr(metric.find('/') == std::string::npos ? 0 : metric.find('/') + 1);
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char ch) { return std::tolower(ch); });
  for (const char* word : {"loss", "accuracy", "reward", "margin", "logps"})
    if (name.find(word) != std::string::npos) return true;
  return false;
}

std::string format_stats(const Stats& s) {
  if (s.n == 0) return "—";
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
  Context c{d, m.warnings, {}};
  if (section.IsMap()) {
    declared(c, section["tables"], "tables", declared_table, m.tables);
    declared(c, section["plots"], "plots", declared_plot, m.plots);
  }
  warn_missing(c);
  YAML::Node curves;  // stays undefined without report: curves:
  if (section.IsMap() && section["curves"]) curves.reset(section["curves"]);
  const std::vector<std::string> drawn = selected_curves(d, curves, m.warnings);
  for (const std::string& metric : d.step_metrics) {
    if (std::find(drawn.begin(), drawn.end(), metric) != drawn.end()) m.plots.push_back(curve_plot(d, metric));
    else m.curves_left_out.push_back(metric);
  }
  if (!m.curves_left_out.empty())
    m.curves_note = fmt::format(
        "{} more metric(s) with steps not drawn: {} ({}; report: curves: [stage/name, ...] or curves: all draws them)",
        m.curves_left_out.size(), fmt::join(m.curves_left_out, ", "),
        curves.IsSequence() ? "not listed in report.curves"
                            : "by default only curves whose name has loss, accuracy, reward, margin or logps");
  return m;
}

}  // namespace mmr
