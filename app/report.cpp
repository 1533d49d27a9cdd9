// `runner report`: gathers one experiment from the store, draws its plots and writes report.html and report.md.
// See report.h.
#include "app/report.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <map>
#include <set>

#include "app/experiment_data.h"
#include "app/gnuplot.h"
#include "app/report_model.h"
#include "app/report_render.h"
#include "core/api/error.h"
#include "core/lib/util/atomic_file.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// A link from the report's folder: relative when the target is on the same tree (the report can move with the
// results), else an absolute file:// URL.
std::string href_to(const fs::path& target, const fs::path& folder) {
  const fs::path abs = fs::absolute(target).lexically_normal();
  const fs::path rel = abs.lexically_relative(folder);
  return rel.empty() ? "file://" + abs.generic_string() : rel.generic_string();
}

std::string bytes_text(int64_t bytes) {
  if (bytes >= 1 << 30) return fmt::format("{:.1f} GiB", bytes / double(1 << 30));
  if (bytes >= 1 << 20) return fmt::format("{:.1f} MiB", bytes / double(1 << 20));
  if (bytes >= 1 << 10) return fmt::format("{:.1f} KiB", bytes / double(1 << 10));
  return fmt::format("{} B", bytes);
}

std::string status_counts(const std::vector<TrialInfo>& trials) {
  std::map<std::string, int> count;
  for (const TrialInfo& t : trials) ++count[t.status];
  std::string out = fmt::format("{}", trials.size());
  const char* sep = ": ";
  for (const char* s : {"finished", "failed", "interrupted", "running", "pending"})
    if (count[s]) out += fmt::format("{}{} {}", std::exchange(sep, ", "), count[s], s);
  return out;
}

// When the trials ran: the first start and the last end recorded.
std::string run_span(const std::vector<TrialInfo>& trials) {
  std::string first, last;
  for (const TrialInfo& t : trials) {
    if (!t.started_at.empty() && (first.empty() || t.started_at < first)) first = t.started_at;
    if (!t.ended_at.empty() && t.ended_at > last) last = t.ended_at;
  }
  return first.empty() ? "not yet" : fmt::format("{} to {}", first, last.empty() ? "(still running)" : last);
}

std::vector<std::pair<std::string, std::string>> facts(const ExperimentData& d, const fs::path& db) {
  return {{"experiment", d.name},
          {"source", d.source.empty() ? "(not recorded)" : d.source},
          {"trials", status_counts(d.trials)},
          {"recorded", fmt::format("{} (first) to {} (last update)", d.created_at, d.updated_at)},
          {"trials ran", run_span(d.trials)},
          {"report written", now_iso8601()},
          {"results database", fs::absolute(db).lexically_normal().string()}};
}

Cell trial_files(const ExperimentData& d, const TrialInfo& t, const fs::path& folder) {
  Cell files;
  auto it = d.artifacts.find(t.id);
  if (it == d.artifacts.end()) return {{"(none)", ""}};
  for (const ArtifactInfo& a : it->second)
    files.push_back({fmt::format("{}/{} ({})", a.stage, a.name, bytes_text(a.bytes)), href_to(a.path, folder)});
  return files;
}

Grid trials_grid(const ExperimentData& d, const fs::path& folder) {
  Grid g;
  g.header = {"#", "trial", "seed", "status", "attempt", "log", "artifacts", "error"};
  for (const TrialInfo& t : d.trials) {
    Cell log = {{"-", ""}};
    if (!t.artifact_dir.empty()) log = {{"trial.log", href_to(fs::path(t.artifact_dir) / "trial.log", folder)}};
    g.rows.push_back({{{std::to_string(t.ordinal), ""}},
                      {{t.label.empty() ? "-" : t.label, ""}},
                      {{std::to_string(t.seed), ""}},
                      {{t.status, ""}},
                      {{std::to_string(t.attempt), ""}},
                      log,
                      trial_files(d, t, folder),
                      {{t.error, ""}}});
  }
  return g;
}

// A plot gnuplot cannot draw becomes a warning, so one bad plot does not cost the whole report.
std::vector<RenderedPlot> draw_plots(const ReportModel& model, std::vector<std::string>& warnings) {
  std::vector<RenderedPlot> out;
  for (const ReportPlot& p : model.plots) {
    RenderedPlot r;
    r.plot = &p;
    try {
      r.svg = plot_svg(p);
    } catch (const Error& e) {
      r.error = e.what();
      warnings.push_back(fmt::format("plot '{}' not drawn: {}", p.title, e.what()));
      spdlog::warn("plot '{}' not drawn: {}", p.title, e.what());
    }
    out.push_back(std::move(r));
  }
  return out;
}

// The plots of an earlier report in this folder that this one does not draw (a curve no longer selected, a plot
// no longer declared): left there, report.md's folder would show plots the report does not. Only a folder with a
// report.md is cleaned, and only of the names reports give their plots.
void remove_stale_plots(const ReportPage& page, const fs::path& folder) {
  std::error_code ec;
  if (!fs::exists(folder / "report.md", ec)) return;
  std::set<std::string> written;
  for (const RenderedPlot& p : page.plots)
    if (!p.svg.empty()) written.insert(p.plot->file);
  for (const auto& entry : fs::directory_iterator(folder, ec)) {
    const std::string name = entry.path().filename().string();
    const bool ours = (name.rfind("curve-", 0) == 0 || name.rfind("plot-", 0) == 0) && name.size() > 4 &&
                      name.compare(name.size() - 4, 4, ".svg") == 0;
    if (ours && entry.is_regular_file(ec) && !written.count(name)) fs::remove(entry.path(), ec);
  }
}

void write_files(const ReportPage& page, const fs::path& folder) {
  remove_stale_plots(page, folder);
  for (const RenderedPlot& p : page.plots)
    if (!p.svg.empty()) write_file_atomic(folder / p.plot->file, p.svg);
  write_file_atomic(folder / "report.md", render_markdown(page));
  write_file_atomic(folder / "report.html", render_html(page));
}

}  // namespace

fs::path write_report(const ReportOptions& options) {
  const Store store = open_store_read_only(options.results);
  const std::string name = resolve_experiment(store, options.experiment, options.results);
  const ExperimentData data = load_experiment_data(store, name);
  const fs::path folder = fs::absolute(options.out.empty()
                                           ? fs::absolute(options.results).parent_path() / safe_name(name) / "report"
                                           : options.out).lexically_normal();
  const ReportModel model = build_report_model(data);
  ReportPage page;
  page.title = "Experiment " + data.name;
  page.facts = facts(data, options.results);
  page.warnings = model.warnings;
  page.tables = model.tables;
  page.plots = draw_plots(model, page.warnings);
  page.curves_note = model.curves_note;
  page.trials = trials_grid(data, folder);
  write_files(page, folder);
  for (const auto& w : model.warnings) spdlog::warn("{}", w);
  return folder;
}

}  // namespace mmr
