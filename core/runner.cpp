// The trial scheduler: stages in order, outcomes and metrics committed together, resume and signals.
#include "core/runner.h"

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <nlohmann/json.hpp>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <regex>
#include <set>
#include <thread>

#include "core/log.h"
#include "core/ranks.h"
#include "core/spawn.h"
#include "core/stage_context.h"
#include "core/lib/util/atomic_file.h"
#include "core/lib/util/kill_point.h"
#include "core/lib/util/sha256.h"

namespace fs = std::filesystem;

namespace mmr {
namespace {

// What the signal watcher needs to record an abort on the second signal.
struct CurrentTrial {
  std::mutex mu;
  fs::path db;
  int64_t trial_id = 0;
  int attempt = 0;
};
CurrentTrial& current() {
  static CurrentTrial c;
  return c;
}

// A file's hash, or for a folder the hash of its sorted "relative path, file hash" list.
ArtifactRow checksum(const std::string& name, const fs::path& path) {
  ArtifactRow row;
  row.name = name;
  row.path = path.string();
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    row.sha256 = sha256_file(path);
    row.bytes = static_cast<int64_t>(fs::file_size(path));
    return row;
  }
  if (!fs::is_directory(path, ec))
    throw Error(fmt::format("artifact '{}' does not exist: {}", name, path.string()));
  std::vector<fs::path> files;
  for (const auto& e : fs::recursive_directory_iterator(path))
    if (e.is_regular_file()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  Sha256 h;
  for (const auto& f : files) {
    const std::string rel = fs::relative(f, path).string();
    h.update(rel);
    h.update("\0", 1);
    h.update(sha256_file(f));
    h.update("\n", 1);
    row.bytes += static_cast<int64_t>(fs::file_size(f));
  }
  row.sha256 = h.hex_digest();
  return row;
}


// A stage of an earlier attempt can stand in for this one when every artifact is still there, unchanged.
bool artifacts_intact(const StageRecord& rec, spdlog::logger& log) {
  for (const auto& a : rec.artifacts) {
    try {
      if (checksum(a.name, a.path).sha256 != a.sha256) {
        log.info("stage '{}' ran before, but its artifact '{}' changed since; running it again", rec.name, a.name);
        return false;
      }
    } catch (const Error&) {
      log.info("stage '{}' ran before, but its artifact '{}' is gone ({}); running it again", rec.name, a.name, a.path);
      return false;
    }
  }
  return true;
}

// What determines a stage's output: its plugin and version, its options as written (run-time references as
// text), the trial seed, and the content hashes of every artifact the trial's earlier stages produced (a superset
// of what it reads, so two stages with one key saw the same inputs). Empty when the options name the trial itself
// (${trial:dir}, ${trial:identity}): such a stage is never shared between trials.
std::string stage_key(const StageSpec& stage, const std::string& version, uint64_t seed,
                      const std::map<std::string, std::string>& input_hashes) {
  const std::string options = canonical_json(stage.options);
  if (options.find("${trial:") != std::string::npos) return "";
  nlohmann::json inputs = nlohmann::json::object();
  for (const auto& [name, hash] : input_hashes) inputs[name] = hash;
  const nlohmann::json key = {{"kind", kind_name(stage.kind)}, {"plugin", stage.plugin}, {"version", version},
                              {"options", nlohmann::json::parse(options)}, {"seed", seed}, {"inputs", inputs}};
  return sha256_hex(key.dump());
}


std::string safe_dir_name(const std::string& s) {
  std::string out;
  for (char c : s) out += (std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.') ? c : '_';
  return out;
}

}  // namespace

std::atomic<bool>& stop_flag() {
  static std::atomic<bool> flag{false};
  return flag;
}

namespace {
std::atomic<bool> g_watcher_quit{false};
std::atomic<int> g_exit_at_once{0};  // ExitOnFirstSignal objects alive
std::thread g_watcher;

// The watcher thread: the first signal sets stop_flag(); the second records the running trial as interrupted
// (own connection, own thread) and exits at once with 130.
void watch_signals(sigset_t set) {
  int count = 0;
  while (!g_watcher_quit.load()) {
    timespec timeout{0, 200 * 1000 * 1000};
    const int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig < 0) continue;
    if (g_exit_at_once.load() > 0) {
      std::fprintf(stderr, "%s received before anything ran: stopped\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      _exit(130);
    }
    if (++count == 1) {
      stop_flag() = true;
      spdlog::warn("{} received: stopping after the current step; send it again to abort at once",
                   sig == SIGINT ? "SIGINT" : "SIGTERM");
      continue;
    }
    std::lock_guard<std::mutex> lock(current().mu);
    if (current().trial_id > 0) {
      try {
        Store store(current().db);
        store.end_trial(current().trial_id, current().attempt, "interrupted", "aborted by a second signal");
      } catch (const std::exception& e) {
        std::fprintf(stderr, "could not record the interruption: %s\n", e.what());
      }
    }
    std::fprintf(stderr, "aborted\n");
    _exit(130);
  }
}
}  // namespace

SignalWatcher::SignalWatcher() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  g_watcher_quit = false;
  g_watcher = std::thread(watch_signals, set);
}

SignalWatcher::~SignalWatcher() {
  g_watcher_quit = true;
  if (g_watcher.joinable()) g_watcher.join();
}

ExitOnFirstSignal::ExitOnFirstSignal() { ++g_exit_at_once; }
ExitOnFirstSignal::~ExitOnFirstSignal() { --g_exit_at_once; }

const char* git_commit_text();  // generated at build time (cmake/git_commit.cmake)
const char* build_git_commit() { return git_commit_text(); }

namespace {

// "stage 'train' (algorithm 'dpo')": who a stage's option errors are about, at plan time and at run time.
std::string stage_owner(const StageSpec& stage) {
  return fmt::format("stage '{}' ({} '{}')", stage.name, kind_name(stage.kind), stage.plugin);
}

// The folder the experiment's relative paths are read from: its file's (the working directory for an experiment
// read from text with no file).
fs::path experiment_folder(const Experiment& exp) {
  std::error_code ec;
  return fs::absolute(exp.source, ec).parent_path();
}

// The plugin that runs `stage`; an unknown one is a ConfigError at the stage's position in the file.
const PluginInfo& stage_plugin(const Experiment& exp, const StageSpec& stage, const Registry& registry) {
  try {
    return registry.find(stage.kind, stage.plugin);
  } catch (const PluginError& e) {
    throw ConfigError(yaml_where(stage.where, exp.source.string()) + "stage '" + stage.name + "': " + e.what());
  }
}

// Tells the signal watcher which trial a second signal must record as interrupted, for as long as it lives.
class WatchedTrial {
 public:
  WatchedTrial(const fs::path& db, int64_t trial_id, int attempt) {
    std::lock_guard<std::mutex> lock(current().mu);
    current().db = fs::absolute(db);
    current().trial_id = trial_id;
    current().attempt = attempt;
  }
  ~WatchedTrial() {
    std::lock_guard<std::mutex> lock(current().mu);
    current().trial_id = 0;
  }
  WatchedTrial(const WatchedTrial&) = delete;
  WatchedTrial& operator=(const WatchedTrial&) = delete;
};

// One attempt at a trial: what its stages share and how it ends.
struct TrialAttempt {
  TrialAttempt(const Trial& trial, int64_t trial_id, int attempt, fs::path dir)
      : trial(trial), trial_id(trial_id), attempt(attempt), dir(std::move(dir)),
        log(make_logger("trial " + trial.identity.substr(0, 8), this->dir / "trial.log")) {}

  const Trial& trial;
  const int64_t trial_id;
  const int attempt;
  const fs::path dir;
  std::shared_ptr<spdlog::logger> log;  // the console and <dir>/trial.log
  std::map<std::string, fs::path> artifacts;  // "stage/name" -> path, from this attempt's stages so far
  std::map<std::string, std::string> artifact_hashes;  // "stage/name" -> sha256, the same artifacts
  std::string outcome = "finished";           // finished | failed | interrupted
  std::string error;
};

// The lease on a stage key this process holds while it runs the stage (Store::lease_stage).
struct StageLease {
  Store& store;
  std::string key;
  // Never throws: it runs while a failed commit (a full disk) unwinds, and a throw there aborted the runner. A lease
  // left behind is taken over once this process is gone (Store::lease_stage).
  ~StageLease() {
    if (key.empty()) return;
    try {
      store.release_stage(key, getpid());
    } catch (const std::exception& e) {
      spdlog::warn("stage lease {} not released: {}", key.substr(0, 12), e.what());
    }
  }
};

// One call of run_experiment, a method per level: the experiment (run), a trial (run_trial, run_attempt) and a
// stage (run_stage, reuse_stage, execute_stage).
class ExperimentRun {
 public:
  ExperimentRun(const Experiment& exp, const Registry& registry, const RunOptions& opt)
      : exp_(exp), registry_(registry), opt_(opt), log_(spdlog::default_logger()), store_(opt.results_db),
        host_(host_name()),
        root_(opt.artifacts_root.empty() ? fs::absolute(opt.results_db).parent_path() : opt.artifacts_root) {}

  RunSummary run();

 private:
  std::vector<TrialRow> register_trials();
  bool run_trial(size_t index, const TrialRow& row, Progress& overall);
  void take_over_busy(const std::vector<TrialRow>& rows);
  std::string run_attempt(size_t index, const TrialRow& row, int attempt, const fs::path& dir);
  bool run_stage(TrialAttempt& t, size_t ordinal);
  bool reuse_stage(TrialAttempt& t, const StageSpec& stage, int ordinal, bool last);
  bool reuse_shared_stage(TrialAttempt& t, const StageSpec& stage, const std::string& key, int ordinal, bool last);
  std::optional<bool> wait_for_identical_stage(TrialAttempt& t, const StageSpec& stage, const std::string& key,
                                               int ordinal, bool last);
  void commit_reused(TrialAttempt& t, const StageSpec& stage, StageRecord rec, int ordinal, bool last);
  void execute_stage(TrialAttempt& t, const StageSpec& stage, const fs::path& dir, StageRecord& rec);
  Options stage_options(const TrialAttempt& t, const StageSpec& stage, const PluginInfo& info,
                        bool keep_env = false) const;
  RankRequest rank_request(const TrialAttempt& t, const StageSpec& stage, const Options& options,
                           const fs::path& dir) const;

  const Experiment& exp_;
  const Registry& registry_;
  const RunOptions& opt_;
  std::shared_ptr<spdlog::logger> log_;
  Store store_;
  const std::string host_;
  const fs::path root_;
  std::string force_since_;  // opt_.force_since, or the run's start
  std::vector<size_t> busy_;  // trials another process held when this one came to them
  RunSummary summary_;
};

RunSummary ExperimentRun::run() {
  force_since_ = opt_.force_since.empty() ? now_iso8601() : opt_.force_since;
  summary_.total = static_cast<int>(exp_.trials.size());
  const std::vector<TrialRow> rows = register_trials();
  int todo = 0;
  for (const auto& r : rows) todo += (opt_.force || r.status != "finished") ? 1 : 0;
  log_->info("experiment '{}': {} trial(s), {} to run, {} already finished{}", exp_.name, rows.size(), todo,
             static_cast<int>(rows.size()) - todo, opt_.force ? " (--force: rerunning all)" : "");
  Progress overall(fmt::format("experiment {}", exp_.name), todo, log_);
  for (size_t i = 0; i < exp_.trials.size() && !stop_flag(); ++i)
    if (!run_trial(i, rows[i], overall)) break;
  overall.finish();
  if (opt_.take_over_busy) take_over_busy(rows);
  log_->info("experiment '{}': {} ran ({} finished, {} failed, {} interrupted), {} skipped as finished, {} busy, {} "
             "stage(s) reused; results in {}", exp_.name, summary_.ran, summary_.finished, summary_.failed,
             summary_.interrupted, summary_.skipped, summary_.busy, summary_.reused_stages,
             opt_.results_db.string());
  return summary_;
}

// Waits for the trials other processes held during the pass, and runs any whose process died meanwhile (its
// finished stages are reused), so a --jobs run finishes even when one of its workers is killed.
void ExperimentRun::take_over_busy(const std::vector<TrialRow>& rows) {
  std::vector<size_t> waiting = std::move(busy_);
  busy_.clear();
  Progress progress("trials of other workers", static_cast<int64_t>(waiting.size()), log_);
  while (!waiting.empty() && !stop_flag()) {
    std::vector<size_t> still;
    for (size_t i : waiting) {
      const TrialRow row = *store_.trial(rows[i].id);
      const bool holder_alive = row.host != host_ || process_alive(row.pid, row.started_at);
      if (row.status == "running" && holder_alive) {
        still.push_back(i);
        continue;
      }
      if (row.status == "running") {  // its process is gone: recorded as interrupted, then run here
        log_->warn("trial {} [{}]: its process (pid {}) is gone; taking it over", row.identity.substr(0, 12),
                   row.label, row.pid);
        store_.recover_stale(host_);
        run_trial(i, *store_.trial(rows[i].id), progress);
        still.insert(still.end(), busy_.begin(), busy_.end());  // another worker was quicker: wait for it
        busy_.clear();
      } else {
        progress.advance();  // ended by its own worker
      }
    }
    waiting = std::move(still);
    for (int k = 0; k < 10 && !waiting.empty() && !stop_flag(); ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  progress.finish();
}

// Records the experiment and its trials (new ones as pending) after marking trials of dead processes interrupted.
std::vector<TrialRow> ExperimentRun::register_trials() {
  if (int n = store_.recover_stale(host_))
    log_->warn("{} trial(s) were left 'running' by a process that is gone; marked interrupted", n);
  const int64_t exp_id = store_.upsert_experiment(exp_.name, fs::absolute(exp_.source).string(), exp_.text);
  std::vector<TrialRow> rows;
  for (const auto& t : exp_.trials) rows.push_back(store_.ensure_trial(exp_id, t));
  return rows;
}

// Runs trial `index` unless it finished before (and there is no --force) or another process holds it.
// Returns false when the run should end here (a failed trial without keep_going).
bool ExperimentRun::run_trial(size_t index, const TrialRow& row, Progress& overall) {
  const Trial& trial = exp_.trials[index];
  if (row.status == "finished" && !opt_.force) {
    ++summary_.skipped;
    log_->debug("trial {} [{}] finished before; skipped", trial.identity.substr(0, 12), trial.label);
    return true;
  }
  const fs::path dir = root_ / safe_dir_name(exp_.name) / trial.identity.substr(0, 12);
  fs::create_directories(dir);
  const auto attempt = store_.begin_attempt(row.id, host_, getpid(), build_git_commit(), dir.string(),
                                            opt_.force ? std::optional<std::string>(force_since_) : std::nullopt);
  if (!attempt && store_.trial(row.id)->status == "finished") {  // by another process since the run began
    ++summary_.skipped;
    overall.advance();
    return true;
  }
  if (!attempt) {
    ++summary_.busy;
    busy_.push_back(index);
    log_->warn("trial {} [{}] is being run by another process (pid {} on {}); skipped", trial.identity.substr(0, 12),
               trial.label, row.pid, row.host);
    overall.advance();
    return true;
  }
  const std::string outcome = run_attempt(index, row, *attempt, dir);
  if (outcome == "finished") ++summary_.finished;
  if (outcome == "failed") ++summary_.failed;
  if (outcome == "interrupted") ++summary_.interrupted;
  overall.advance();
  return !(outcome == "failed" && !opt_.keep_going);
}

// Runs the stages of a claimed trial in order until one does not finish; returns the trial's outcome.
std::string ExperimentRun::run_attempt(size_t index, const TrialRow& row, int attempt, const fs::path& dir) {
  const Trial& trial = exp_.trials[index];
  const WatchedTrial watched(opt_.results_db, row.id, attempt);
  ++summary_.ran;
  TrialAttempt t(trial, row.id, attempt, dir);
  t.log->info("trial {}/{} [{}] attempt {}: {}", index + 1, exp_.trials.size(), trial.label.empty() ? "-" : trial.label,
              attempt, dir.string());
  kill_point("runner.trial_begin");
  try {
    for (size_t s = 0; s < trial.stages.size(); ++s)
      if (!run_stage(t, s)) break;
  } catch (const std::exception& e) {
    // Not the plugin (execute_stage catches its errors) but the runner around it: the store (a full disk, a
    // locked or damaged database) or the file system. The attempt ends failed, not 'running' until some later
    // run finds its process gone; the store may refuse that too, and the first error is the one to report.
    try {
      store_.end_trial(t.trial_id, t.attempt, "failed", redact_secrets(e.what()));
    } catch (const std::exception& again) {
      t.log->error("the trial's end could not be recorded either: {}", again.what());
    }
    throw;
  }
  t.log->info("trial {} {}", trial.identity.substr(0, 12), t.outcome);
  kill_point("runner.trial_end");
  return t.outcome;
}

// Runs stage `ordinal` (or reuses it from an earlier attempt) and commits its record, with the trial's end when
// it is the last stage or did not finish. Returns false when the trial ends here.
bool ExperimentRun::run_stage(TrialAttempt& t, size_t ordinal) {
  const StageSpec& stage = t.trial.stages[ordinal];
  const bool last = ordinal + 1 == t.trial.stages.size();
  const int ord = static_cast<int>(ordinal);
  kill_point("runner.stage_begin");  // the N-th stage this process comes to: the previous one is committed
  const std::string key = stage_key(stage, registry_.find(stage.kind, stage.plugin).version, t.trial.seed,
                                    t.artifact_hashes);
  if (!opt_.force && t.attempt > 1 && reuse_stage(t, stage, ord, last)) return true;
  if (!key.empty())
    if (const auto done = wait_for_identical_stage(t, stage, key, ord, last)) return *done;
  const StageLease lease{store_, key};  // taken above; released when the stage is committed
  StageRecord rec;
  rec.key = key;
  rec.name = stage.name;
  rec.plugin = stage.plugin;
  rec.ordinal = static_cast<int>(ordinal);
  const fs::path dir = t.dir / stage.name;
  fs::create_directories(dir);
  if (int n = remove_stale_temporaries(dir))  // a killed earlier attempt's; this one writes its own
    t.log->info("stage '{}': removed {} temporary file(s) a killed process left", stage.name, n);
  const ProgressFile progress_file(t.dir / "progress.json", stage.name);  // for `runner status`
  rec.started_at = now_iso8601();
  t.log->info("stage '{}' ({} '{}') starts", stage.name, kind_name(stage.kind), stage.plugin);
  const auto t0 = std::chrono::steady_clock::now();
  execute_stage(t, stage, dir, rec);
  rec.ended_at = now_iso8601();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool ends_trial = last || rec.status != "finished";
  // Said before the commit: when the commit fails too (a full disk), the stage's own error is what to read.
  if (rec.status != "finished") t.log->error("stage '{}' {}: {}", stage.name, rec.status, rec.error);
  store_.commit_stage(t.trial_id, t.attempt, rec, ends_trial ? std::optional<std::string>(t.outcome) : std::nullopt,
                      t.error);
  if (rec.status != "finished") return false;
  t.log->info("stage '{}' finished in {} ({} metric value(s), {} artifact(s))", stage.name,
              Progress::format_duration(secs), rec.metrics.size(), rec.artifacts.size());
  return true;
}

// Stands in the newest finished record of this stage from an earlier attempt, when its artifacts are intact:
// commits it (metrics and artifacts copied) to this attempt. False when there is none to reuse.
bool ExperimentRun::reuse_stage(TrialAttempt& t, const StageSpec& stage, int ordinal, bool last) {
  auto prev = store_.previous_stage(t.trial_id, t.attempt, stage.name, stage.plugin);
  if (!prev || !artifacts_intact(*prev, *t.log)) return false;
  t.log->info("stage '{}': finished in an earlier attempt, artifacts intact; reused", stage.name);
  commit_reused(t, stage, std::move(*prev), ordinal, last);
  return true;
}

// Stands in a finished stage of any trial with the same key (same plugin, options, seed and input artifacts)
// whose artifacts are intact, so shared upstream work (pretraining, sampling, annotation) is done once per
// experiment grid. The record says where it came from (stages.reused_from).
bool ExperimentRun::reuse_shared_stage(TrialAttempt& t, const StageSpec& stage, const std::string& key, int ordinal,
                                       bool last) {
  // A forced run reuses only what it made itself.
  for (StageRecord& rec : store_.stages_with_key(key, opt_.force ? force_since_ : "")) {
    if (rec.name != stage.name || !artifacts_intact(rec, *t.log)) continue;
    t.log->info("stage '{}': identical to {} (same plugin, options, seed and inputs); reused", stage.name,
                rec.reused_from);
    commit_reused(t, stage, std::move(rec), ordinal, last);
    return true;
  }
  return false;
}

// Before running a keyed stage: reuses an identical finished one, or takes the key's lease, waiting while another
// live process holds it (several runners on one store: `runner --jobs`), so identical work runs once. Returns
// the stage's result when it ends here (reused: true; interrupted while waiting: false), nullopt to run it.
std::optional<bool> ExperimentRun::wait_for_identical_stage(TrialAttempt& t, const StageSpec& stage,
                                                            const std::string& key, int ordinal, bool last) {
  bool said = false;
  while (true) {
    if (reuse_shared_stage(t, stage, key, ordinal, last)) return true;
    if (store_.lease_stage(key, host_, getpid())) return std::nullopt;
    if (!said)
      t.log->info("stage '{}': an identical stage is running in process {}; waiting to reuse it", stage.name,
                  store_.stage_lease_holder(key).value_or(0));
    said = true;
    for (int i = 0; i < 10 && !stop_flag(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (stop_flag()) {
      t.outcome = "interrupted";
      store_.end_trial(t.trial_id, t.attempt, "interrupted", "interrupted by signal while waiting for stage '" +
                                                                stage.name + "'");
      return false;
    }
  }
}

// Commits a reused record to this attempt (metrics and artifacts copied) and makes its artifacts this trial's.
void ExperimentRun::commit_reused(TrialAttempt& t, const StageSpec& stage, StageRecord rec, int ordinal, bool last) {
  for (const auto& a : rec.artifacts) {
    t.artifacts[stage.name + "/" + a.name] = a.path;
    t.artifact_hashes[stage.name + "/" + a.name] = a.sha256;
  }
  rec.ordinal = ordinal;
  rec.plugin = stage.plugin;
  store_.commit_stage(t.trial_id, t.attempt, rec, last ? std::optional<std::string>("finished") : std::nullopt);
  ++summary_.reused_stages;
}

// Creates the stage's plugin and runs it. Fills the record's status, error, metrics and artifacts; a failure or
// an interruption also becomes the attempt's outcome.
void ExperimentRun::execute_stage(TrialAttempt& t, const StageSpec& stage, const fs::path& dir, StageRecord& rec) {
  std::unique_ptr<StageContextImpl> ctx;
  try {
    const PluginInfo& info = registry_.find(stage.kind, stage.plugin);
    const Options options = stage_options(t, stage, info, /*keep_env=*/stage.ranks > 1);
    std::vector<std::pair<std::string, fs::path>> produced;
    if (stage.ranks > 1) {
      RankResult ranks = run_stage_ranks(rank_request(t, stage, options, dir), *t.log);
      rec.metrics = std::move(ranks.metrics);
      produced = std::move(ranks.artifacts);
    } else {
      std::shared_ptr<Plugin> plugin = registry_.create(info, options);
      ctx = std::make_unique<StageContextImpl>(exp_, t.trial, stage, options, dir, t.log, registry_, t.artifacts,
                                               store_);
      call_plugin(info, [&] {
        as_stage_runner(stage.kind, plugin.get())->run(*ctx);
        return 0;
      });
      produced = ctx->artifacts_;
    }
    if (stop_flag()) throw Interrupted();
    kill_point("runner.stage_returned");  // the plugin is done, nothing of the stage is committed yet
    for (const auto& [name, path] : produced) {
      rec.artifacts.push_back(checksum(name, path));
      t.artifacts[stage.name + "/" + name] = path;
      t.artifact_hashes[stage.name + "/" + name] = rec.artifacts.back().sha256;
    }
    rec.status = "finished";
  } catch (const Interrupted&) {
    rec.status = t.outcome = "interrupted";
    t.error = rec.error = "interrupted by signal";
  } catch (const std::exception& e) {
    rec.status = t.outcome = "failed";
    t.error = rec.error = redact_secrets(e.what());
  }
  if (ctx) rec.metrics = std::move(ctx->metrics_);
}

// What the ranks of a data-parallel stage need to run it as this process would.
RankRequest ExperimentRun::rank_request(const TrialAttempt& t, const StageSpec& stage, const Options& options,
                                        const fs::path& dir) const {
  RankRequest r;
  r.experiment = exp_.name;
  r.source = exp_.source;
  r.trial_identity = t.trial.identity;
  r.seed = t.trial.seed;
  r.stage = stage;
  r.options = options.node();
  r.stage_dir = dir;
  r.artifacts = t.artifacts;
  r.results_db = opt_.results_db;
  r.plugin_paths = opt_.plugin_paths;
  return r;
}

// The stage's options with its run-time references (${artifact:stage/name}, ${trial:dir}, ${trial:identity})
// resolved, checked against the plugin's schema with defaults filled in. This is the one check of the run: the
// plugin and its StageContext get the same Options.
Options ExperimentRun::stage_options(const TrialAttempt& t, const StageSpec& stage, const PluginInfo& info,
                                     bool keep_env) const {
  const std::string source = exp_.source.string();
  // Relative paths are read from the experiment file's folder, so the runner works from any directory; they are
  // made absolute before the references resolve (an artifact's path is the runner's own, never the file's).
  // ${env:...} first, so a path read from the environment is made absolute as the others; the ranks of a
  // data-parallel stage read the environment themselves (keep_env), so no secret is written to their request.
  const YAML::Node options = keep_env ? YAML::Clone(stage.options) : resolve_env(YAML::Clone(stage.options));
  const fs::path base = experiment_folder(exp_);
  visit_paths(registry_, info.options, check_options(info.options, options, source, stage_owner(stage)), source,
              stage_owner(stage), [&](YAML::Node v, const std::string&, const std::string&, bool) {
                v = resolve_path(v.Scalar(), base);
              });
  const YAML::Node resolved = resolve_runtime(options, [&](const std::string& ns, const std::string& key) {
    if (ns == "trial") return key == "dir" ? t.dir.string() : t.trial.identity;
    auto it = t.artifacts.find(key);
    if (it == t.artifacts.end())
      throw ConfigError(fmt::format("{}stage '{}': ${{artifact:{}}} was not produced by that stage",
                                    yaml_where(stage.where, source), stage.name, key));
    return it->second.string();
  });
  return Options(check_options(info.options, resolved, source, stage_owner(stage)), source);
}

}  // namespace

namespace {

// A URL with a user name or password in it ("https://user:key@host/v1") anywhere in a stage's options: it would be
// stored with the trial's configuration and printed by plan. Found with its position; the credential not shown.
void refuse_urls_with_credentials(const YAML::Node& node, const std::string& source) {
  if (!node) return;
  if (node.IsMap() || node.IsSequence()) {
    for (auto it = node.begin(); it != node.end(); ++it)
      refuse_urls_with_credentials(node.IsMap() ? it->second : *it, source);
    return;
  }
  const std::string& text = node.Scalar();
  if (!node.IsScalar() || text.find("://") == std::string::npos || text.find('@') == std::string::npos) return;
  static const std::regex re(R"(([A-Za-z][A-Za-z0-9+.-]*)://[^/?#\s@]*@([^/?#\s]*))");
  std::smatch m;
  if (std::regex_search(text, m, re))
    throw ConfigError(fmt::format("{}a URL with credentials ('{}://...@{}') would be stored with the results; give "
                                  "the key through the plugin's api_key_env or ${{env:NAME}} instead",
                                  yaml_where(node, source), m[1].str(), m[2].str()));
}

}  // namespace

void validate_experiment(const Experiment& exp, const Registry& registry) {
  // Run-time references (${artifact:...}, ${trial:...}) are still text here: they are checked as strings.
  // Then the files and folders the stages read: every missing one is listed (not only the first), after every
  // other check passed.
  const std::string source = exp.source.string();
  const fs::path base = experiment_folder(exp);
  std::set<std::string> missing;
  // New containers in the trials' own pool (spec.h): checking 10,000 trials stays linear.
  const YamlPool pool(exp.pool ? exp.pool : YAML::Node(YAML::NodeType::Sequence));
  for (const auto& trial : exp.trials)
    for (const auto& stage : trial.stages) {
      refuse_urls_with_credentials(stage.options, source);
      const OptionSchema& schema = stage_plugin(exp, stage, registry).options;
      const YAML::Node checked = check_options(schema, stage.options, source, stage_owner(stage));
      visit_paths(registry, schema, checked, source, stage_owner(stage),
                  [&](const YAML::Node& v, const std::string& owner, const std::string& option, bool input) {
                    std::error_code ec;
                    const std::string path = resolve_path(v.Scalar(), base);
                    if (input && !fs::exists(path, ec))
                      missing.insert(fmt::format("{}{}: option '{}': {}", yaml_where(v, source), owner, option, path));
                  });
    }
  if (!missing.empty())
    throw ConfigError(fmt::format("{} file(s) or folder(s) the experiment reads do not exist (relative paths are read "
                                  "from {}):\n  {}", missing.size(), base.string(), fmt::join(missing, "\n  ")));
}

RunSummary run_experiment(const Experiment& exp, const Registry& registry, const RunOptions& opt) {
  {
    const ExitOnFirstSignal nothing_recorded_yet;
    validate_experiment(exp, registry);  // before the store is opened: a spec that cannot run records nothing
  }
  return ExperimentRun(exp, registry, opt).run();
}

}  // namespace mmr
