// `runner status`. See status.h. The status of each experiment is built as JSON (what --format json prints) and
// the text form is drawn from that, so the two never disagree.
#include "app/status.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <fstream>
#include <map>
#include <set>

#include "app/experiment_data.h"
#include "app/slurm.h"
#include "core/api/error.h"
#include "core/log.h"
#include "core/spawn.h"
#include "core/lib/util/json_safe.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace mmr {
namespace {

// "live", "stale" (its process is gone: the next run marks it interrupted) or "elsewhere" (another host's pid).
std::string liveness(const TrialInfo& t, const std::string& host) {
  if (t.host != host) return "elsewhere";
  return process_alive(t.pid, t.started_at) ? "live" : "stale";
}

// The progress file of a running trial, null when there is none or it cannot be read (it is being replaced
// atomically, so a reader sees a whole old or new file; a missing one just means no bar yet).
json read_progress(const TrialInfo& t) {
  if (t.artifact_dir.empty()) return nullptr;
  std::ifstream in(fs::path(t.artifact_dir) / "progress.json");
  if (!in) return nullptr;
  try {
    json j = json::parse(in);
    const auto updated = parse_iso8601(j.value("updated_at", ""));
    if (updated) j["age_s"] = std::max(0.0, now_seconds() - *updated);
    return j;
  } catch (const json::exception&) {
    return nullptr;
  }
}

// The last stage this attempt recorded: where a trial without a progress file stands.
std::string last_recorded_stage(const Store& store, const TrialInfo& t) {
  const QueryResult r = store.query(fmt::format(
      "SELECT name FROM stages WHERE trial_id = {} AND attempt = {} ORDER BY ordinal DESC LIMIT 1", t.id, t.attempt));
  return r.rows.empty() ? "" : r.rows[0][0].text;
}

json running_trial(const Store& store, const TrialInfo& t, const std::string& host) {
  json j = {{"ordinal", t.ordinal}, {"label", t.label}, {"host", t.host}, {"pid", t.pid},
            {"state", liveness(t, host)}, {"progress", read_progress(t)}, {"after_stage", last_recorded_stage(store, t)}};
  const auto started = parse_iso8601(t.started_at);
  j["elapsed_s"] = started ? json(now_seconds() - *started) : json(nullptr);
  j["stage"] = j["progress"].is_object() ? j["progress"].value("stage", "") : "";
  return j;
}

std::optional<double> duration(const TrialInfo& t) {
  const auto a = parse_iso8601(t.started_at), b = parse_iso8601(t.ended_at);
  if (!a || !b) return std::nullopt;
  return *b - *a;
}

// Mean duration of the trials finished by the live run (the processes of its running trials); of any run when
// this one has finished none yet. Sets "mean_trial_s" and "mean_basis".
void mean_trial(const std::vector<TrialInfo>& trials, const std::set<std::pair<std::string, int64_t>>& live, json& out) {
  for (bool this_run : {true, false}) {
    std::vector<double> d;
    for (const TrialInfo& t : trials)
      if (t.status == "finished" && (!this_run || live.count({t.host, t.pid})))
        if (auto s = duration(t)) d.push_back(*s);
    if (d.empty()) continue;
    out["mean_trial_s"] = stats_of(d).mean;
    out["mean_basis"] = fmt::format("{} trial(s) finished {}", d.size(), this_run ? "this run" : "in earlier runs");
    return;
  }
}

// What a running trial has left: its stage's own ETA when the stage reports one, at least what the mean trial
// leaves after the time it has run (later stages may follow the reporting one).
double running_left(const json& r, double mean) {
  double left = r["elapsed_s"].is_number() ? std::max(0.0, mean - r["elapsed_s"].get<double>()) : mean;
  const json& p = r["progress"];
  if (p.is_object() && p["eta_s"].is_number())
    left = std::max(left, p["eta_s"].get<double>() - p.value("age_s", 0.0));
  return left;
}

// Remaining time: the mean trial for each trial the live run has still to start (pending ones, and failed or
// interrupted ones after the running one, which it retries; a --force run's finished ones cannot be told from the
// store), plus what the running trials have left of theirs.
void experiment_eta(const std::vector<TrialInfo>& trials, const json& running, json& out) {
  std::set<std::pair<std::string, int64_t>> live;
  int64_t at = INT64_MAX;
  for (const json& r : running)
    if (r["state"] == "live") {
      live.insert({r["host"].get<std::string>(), r["pid"].get<int64_t>()});
      at = std::min(at, r["ordinal"].get<int64_t>());
    }
  mean_trial(trials, live, out);
  out["live"] = !live.empty();
  if (live.empty() || !out.contains("mean_trial_s")) return;
  const double mean = out["mean_trial_s"];
  int waiting = 0;
  for (const TrialInfo& t : trials)
    waiting += t.status == "pending" || ((t.status == "failed" || t.status == "interrupted") && t.ordinal > at);
  double eta = mean * waiting;
  for (const json& r : running)
    if (r["state"] == "live") eta += running_left(r, mean);
  out["not_started"] = waiting;
  out["eta_s"] = eta;
}

// The Slurm jobs of the experiment's trials (--executor slurm), by state, and the ones not yet ended.
json slurm_status(const fs::path& results, const std::string& name) {
  json out = {{"counts", json::object()}, {"live", json::array()}};
  for (const slurm::JobState& j : slurm::job_states(results, name)) {
    out["counts"][j.state] = out["counts"].value(j.state, 0) + 1;
    if (j.state != "ENDED") out["live"].push_back({{"ordinal", j.ordinal}, {"job", j.job_id}, {"state", j.state}});
  }
  return out;
}

json experiment_status(const Store& store, const fs::path& results, const std::string& name, const std::string& host) {
  const QueryResult e = store.query("SELECT id FROM experiments WHERE name = " + sql_quote(name));
  const std::vector<TrialInfo> trials = load_trials(store, std::stoll(e.rows.at(0).at(0).text));
  json out = {{"experiment", name}, {"trials", trials.size()}, {"eta_s", nullptr}, {"mean_trial_s", nullptr},
              {"live", false}};
  json counts = json::object();
  for (const char* s : {"finished", "failed", "interrupted", "running", "pending"}) counts[s] = 0;
  json running = json::array();
  for (const TrialInfo& t : trials) {
    counts[t.status] = counts.value(t.status, 0) + 1;
    if (t.status == "running") running.push_back(running_trial(store, t, host));
  }
  out["counts"] = counts;
  out["running"] = running;
  out["slurm"] = slurm_status(results, name);
  experiment_eta(trials, running, out);
  return out;
}

std::string rate_text(double rate) {
  if (rate >= 1) return fmt::format("{:.2f} it/s", rate);
  return rate > 0 ? fmt::format("{:.1f} s/it", 1 / rate) : "";
}

// "stage train: counter 3/40 (8%), 6.60 it/s, ETA 6s (updated 0s ago)"
std::string progress_text(const json& r) {
  const json& p = r["progress"];
  if (!p.is_object()) {
    const std::string after = r["after_stage"];
    return after.empty() ? "no stage has reported yet" : fmt::format("stage after '{}' (no progress reported)", after);
  }
  std::string s = fmt::format("stage {}", p.value("stage", "?"));
  const int64_t done = p.value("done", int64_t{0}), total = p.value("total", int64_t{0});
  if (!p.value("label", "").empty() || total > 0) s += fmt::format(": {} {}", p.value("label", ""), done);
  if (total > 0) s += fmt::format("/{} ({:.0f}%)", total, 100.0 * done / total);
  if (const std::string rate = rate_text(p.value("rate", 0.0)); !rate.empty()) s += ", " + rate;
  const double age = p.value("age_s", 0.0);
  if (p["eta_s"].is_number()) s += ", ETA " + Progress::format_duration(std::max(0.0, p["eta_s"].get<double>() - age));
  return s + fmt::format(" (updated {} ago)", Progress::format_duration(age));
}

std::string state_text(const json& r) {
  if (r["state"] == "stale")
    return fmt::format("STALE: process {} is gone (the next run marks this trial interrupted)", r["pid"].get<int64_t>());
  if (r["state"] == "elsewhere")
    return fmt::format("on host {} (pid {}, not checked from here)", r["host"].get<std::string>(), r["pid"].get<int64_t>());
  return fmt::format("pid {}", r["pid"].get<int64_t>());
}

void print_text(std::ostream& o, const json& e) {
  const json& c = e["counts"];
  o << fmt::format("experiment '{}': {} trial(s): {} finished, {} failed, {} interrupted, {} running, {} pending\n",
                   e["experiment"].get<std::string>(), e["trials"].get<size_t>(), c["finished"].get<int>(),
                   c["failed"].get<int>(), c["interrupted"].get<int>(), c["running"].get<int>(), c["pending"].get<int>());
  if (const json& s = e["slurm"]; !s["counts"].empty()) {
    std::string line;
    for (const auto& [state, n] : s["counts"].items()) line += fmt::format("{}{} {}", line.empty() ? "" : ", ", n.get<int>(), state);
    o << "  slurm jobs: " << line << "\n";
    for (const json& j : s["live"])
      o << fmt::format("  slurm #{}: job {} {}\n", j["ordinal"].get<int64_t>(), j["job"].get<std::string>(),
                       j["state"].get<std::string>());
  }
  for (const json& r : e["running"])
    o << fmt::format("  running #{} [{}] {}: {}\n", r["ordinal"].get<int64_t>(), r["label"].get<std::string>(),
                     state_text(r), (r["state"] == "stale" ? "last reported " : "") + progress_text(r));
  if (e["eta_s"].is_number())
    o << fmt::format("  ETA {} ({} not started, mean trial {} from {})\n",
                     Progress::format_duration(e["eta_s"].get<double>()), e["not_started"].get<int>(),
                     Progress::format_duration(e["mean_trial_s"].get<double>()), e["mean_basis"].get<std::string>());
  else if (e["live"].get<bool>())
    o << "  ETA unknown until a trial finishes\n";
  else if (!e["running"].empty())
    o << "  no live run (no process of a running trial is alive on this host)\n";
}

}  // namespace

void print_status(const StatusOptions& options, std::ostream& out) {
  if (options.format == Format::Csv) throw ConfigError("status: --format csv: expected table or json");
  const Store store = open_store_read_only(options.results);
  std::vector<std::string> names = store.experiment_names();
  if (names.empty())
    throw ConfigError(fmt::format("results database '{}' holds no experiment yet (run one first: runner EXP.yaml)",
                                  options.results.string()));
  if (!options.experiment.empty()) names = {resolve_experiment(store, options.experiment, options.results)};
  const std::string host = host_name();
  json all = json::array();
  for (const std::string& name : names) all.push_back(experiment_status(store, options.results, name, host));
  if (options.format == Format::Json) {
    out << dump_text(all, 2) << "\n";
    return;
  }
  for (const json& e : all) print_text(out, e);
}

}  // namespace mmr
