// The results store: one SQLite file (WAL, busy timeout, foreign keys) holding experiments, trials, their
// stages, metrics and artifacts, and the judge cache. The schema is versioned; opening an older file migrates
// it forward in one transaction per step, opening a newer one is an error. results/README.md documents it.
//
// Trials are claimed with a conditional UPDATE, so several runner processes can share one file: a trial
// that another live process is running is skipped, not run twice.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

struct sqlite3;

namespace mmr {

struct Trial;

constexpr int kSchemaVersion = 4;

struct QueryCell {
  enum Type { Null, Integer, Real, Text, Blob } type = Null;
  std::string text;  // the value as SQLite prints it (numbers too)
};
struct QueryResult {
  std::vector<std::string> columns;
  std::vector<std::vector<QueryCell>> rows;
};

struct TrialRow {
  int64_t id = 0;
  int64_t experiment_id = 0;
  std::string identity;
  std::string label;
  std::string status;  // pending | running | finished | failed | interrupted
  int attempt = 0;
  std::string host;
  int64_t pid = 0;
  std::string started_at;  // of the latest attempt ("" before the first)
  std::string artifact_dir;
  std::string error;
};

// A trial as `runner results` and `runner plan` list it.
struct TrialSummary {
  std::string experiment;  // the experiment's name
  int64_t id = 0;
  int64_t ordinal = 0;
  std::string identity;
  std::string label;
  std::string status;
  int attempt = 0;
};

// The value a metric ended with in a trial's latest attempt (a row of the final_metrics view).
struct FinalMetric {
  int64_t trial_id = 0;
  std::string stage;
  std::string name;
  QueryCell value;  // as SQLite prints it (a REAL: "0.125", "4.0"), or NULL (a NaN is stored as NULL)
};

struct MetricRow {
  std::string name;
  int64_t step = -1;  // < 0: a final value (stored as NULL)
  double value = 0;
};

struct ArtifactRow {
  std::string name;
  std::string path;
  std::string sha256;  // of the file, or of the sorted (relative path, file hash) list for a folder
  int64_t bytes = 0;
};

struct StageRecord {
  std::string name;
  std::string plugin;
  int ordinal = 0;
  std::string status;  // finished | failed | interrupted
  std::string started_at, ended_at;
  std::string error;
  std::vector<MetricRow> metrics;
  std::vector<ArtifactRow> artifacts;
  std::string key;          // what determines its output (runner.cpp: stage_key); empty: not shareable
  std::string reused_from;  // "trial 3 attempt 1 stage train" when this record stands in for that one's
};

class Store {
 public:
  enum class Mode { ReadWrite, ReadOnly };

  // Opens (creating when ReadWrite) and migrates up to `target_version` (tests use older versions).
  explicit Store(const std::filesystem::path& path, Mode mode = Mode::ReadWrite,
                 int target_version = kSchemaVersion);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  const std::filesystem::path& path() const { return path_; }
  int schema_version() const;

  int64_t upsert_experiment(const std::string& name, const std::string& source, const std::string& spec_text);
  // Inserts the trial as pending if it is new; returns its row either way.
  TrialRow ensure_trial(int64_t experiment_id, const Trial& trial);
  std::optional<TrialRow> trial(int64_t trial_id) const;

  // Trials left 'running' by a process of this host that no longer exists become 'interrupted'.
  int recover_stale(const std::string& host);

  // Claims a trial: status running, attempt + 1. Returns the new attempt, or nullopt when another process holds
  // it (status running) or it finished, unless `rerun_finished_before` is given and it finished before that
  // instant (a forced run reruns what finished before it began, once; not what another process finished since).
  std::optional<int> begin_attempt(int64_t trial_id, const std::string& host, int64_t pid,
                                   const std::string& git_commit, const std::string& artifact_dir,
                                   const std::optional<std::string>& rerun_finished_before = std::nullopt);

  // Records a stage (its row, metrics and artifacts) and, when `trial_status` is given, the trial's end,
  // all in one transaction.
  void commit_stage(int64_t trial_id, int attempt, const StageRecord& stage,
                    const std::optional<std::string>& trial_status = std::nullopt, const std::string& error = "");
  // The newest record of stage `name` run by `plugin` that finished in an attempt before `before_attempt`,
  // with its metrics and artifacts; nullopt when there is none.
  std::optional<StageRecord> previous_stage(int64_t trial_id, int before_attempt, const std::string& name,
                                            const std::string& plugin) const;
  // Finished stages (any trial, newest first, at most 8) whose key is `key` and that ran at or after
  // `started_since` (ISO time; "" = any), with metrics and artifacts, and `reused_from` naming where each first
  // ran (schema v3).
  std::vector<StageRecord> stages_with_key(const std::string& key, const std::string& started_since = "") const;
  // Stage leases (schema v4): a process about to run a stage takes the lease on its key; false when a live
  // process (or one on another host) holds it. A lease of a dead process of this host is taken over.
  bool lease_stage(const std::string& key, const std::string& host, int64_t pid);
  std::optional<int64_t> stage_lease_holder(const std::string& key) const;
  void release_stage(const std::string& key, int64_t pid);
  // Ends a trial without a stage record (e.g. interrupted between stages).
  void end_trial(int64_t trial_id, int attempt, const std::string& status, const std::string& error = "");

  // A consistent copy of the whole database in a new file `to` (VACUUM INTO), safe while others write.
  void snapshot_to(const std::filesystem::path& to);
  // Merges what another store file (written elsewhere, e.g. by a Slurm job that started from a snapshot of this
  // one) recorded for trial `identity` of `experiment` since this store's attempt of it: the newer attempts'
  // stages, metrics and artifacts, the trial's status, and every judgment it cached — in one transaction.
  // Returns the trial's status in `from`, or nullopt when `from` does not hold the trial. Idempotent.
  std::optional<std::string> import_trial(const std::filesystem::path& from, const std::string& experiment,
                                          const std::string& identity);
  // Marks trial `identity` of `experiment` failed with `error` unless it finished (a job that never got to it).
  void fail_trial(const std::string& experiment, const std::string& identity, const std::string& error);
  // Judge cache (schema v2).
  std::optional<std::string> cached_judgment(const std::string& judge, const std::string& prompt) const;
  void store_judgment(const std::string& judge, const std::string& prompt, const std::string& reply);

  // Reading for the command line. `experiment` names one experiment; nullopt means all of them. Every value is
  // a bound parameter, so any name (quotes and all) is safe.
  std::vector<std::string> experiment_names() const;  // sorted
  bool has_experiment(const std::string& name) const;
  // Trials ordered by experiment name, ordinal, id.
  std::vector<TrialSummary> trials(const std::optional<std::string>& experiment) const;
  // Final metric values (the final_metrics view) ordered by stage, then name.
  std::vector<FinalMetric> final_metrics(const std::optional<std::string>& experiment) const;

  // Any SQL; in ReadOnly mode the connection refuses writes.
  QueryResult query(const std::string& sql) const;
  void exec(const std::string& sql);

 private:
  void migrate(int target_version);
  void refuse_foreign() const;
  void use_wal();
  std::filesystem::path path_;
  Mode mode_;
  sqlite3* db_ = nullptr;
};

std::string now_iso8601();  // UTC, milliseconds: 2026-11-26T21:39:35.123Z
std::optional<double> parse_iso8601(const std::string& text);  // seconds since the epoch; nullopt: not that form
// Whether process `pid` of this host exists (a signal could be sent to it) and, given `since` (when it took the
// trial or lease, as now_iso8601 wrote it), started no later than that: a pid the system has since given to a
// newer process is not the holder's (found by probing: a reused pid kept a dead trial 'running' for ever).
bool process_alive(int64_t pid, const std::string& since = "");

}  // namespace mmr
